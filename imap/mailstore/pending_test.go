package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// A flag change made while another process holds the uidlist lock, and
// still waiting for it when the folder closes (the other holds it through
// the close's wait too), is not lost: the next open makes it, under the
// lock, on the flags the file has then, as Dovecot applies its index to
// the files at a later sync. Each case says what happens between the
// close and the next open.
func TestPendingFlagsSurviveClose(t *testing.T) {
	t.Parallel()
	base := deliverFileBase
	cases := []struct {
		name    string
		between func(t *testing.T, dir string) // the lock still held
		// lockedAtOpen: the lock is still held at the next open, and
		// freed only after that folder's close.
		lockedAtOpen bool
		want         map[int]Flags // each file's flags at the end, by message
	}{
		{
			name: "lock freed",
			want: map[int]Flags{1: FlagFlagged | FlagAnswered, 2: FlagFlagged, 3: 0},
		},
		{
			name: "renamed by another program",
			between: func(t *testing.T, dir string) {
				rename(t, filepath.Join(dir, "cur", base(2)+":2,"), filepath.Join(dir, "cur", base(2)+":2,S"))
			},
			want: map[int]Flags{1: FlagFlagged | FlagAnswered, 2: FlagFlagged | FlagSeen, 3: 0},
		},
		{
			name: "flag taken away by another program",
			between: func(t *testing.T, dir string) {
				// Message 3's \Seen, taken away here, is set again
				// there: the other's change stands beside ours.
				rename(t, filepath.Join(dir, "cur", base(3)+":2,S"), filepath.Join(dir, "cur", base(3)+":2,FS"))
			},
			want: map[int]Flags{1: FlagFlagged | FlagAnswered, 2: FlagFlagged, 3: FlagFlagged},
		},
		{
			name: "expunged by another program",
			between: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "cur", base(1)+":2,")); err != nil {
					t.Fatal(err)
				}
			},
			want: map[int]Flags{2: FlagFlagged, 3: 0},
		},
		{
			name:         "still locked at the next open",
			lockedAtOpen: true,
			want:         map[int]Flags{1: FlagFlagged | FlagAnswered, 2: FlagFlagged, 3: 0},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			for i := 1; i <= 3; i++ {
				deliverFile(t, st, "", i)
			}
			reg := NewRegistry()
			reg.flagLockWait = 50 * time.Millisecond
			mb := openBox(t, reg, st, "INBOX")
			if _, _, err := mb.StoreFlags([]uint32{3}, StoreAdd, []string{Seen}, nil); err != nil {
				t.Fatal(err)
			}
			before := curNames(t, st, "")
			lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
			if err := os.WriteFile(lock, nil, 0o600); err != nil { // Dovecot's: empty
				t.Fatal(err)
			}
			for _, s := range []struct {
				uids []uint32
				op   StoreOp
				flag string
			}{
				{[]uint32{1, 2}, StoreAdd, Flagged},
				{[]uint32{1}, StoreAdd, Answered},
				{[]uint32{3}, StoreRemove, Seen},
			} {
				if _, _, err := mb.StoreFlags(s.uids, s.op, []string{s.flag}, nil); err != nil {
					t.Fatal(err)
				}
			}
			mb.Release() // the last session goes: the lock is still held
			reg.SaveAll()
			if now := curNames(t, st, ""); !slices.Equal(now, before) {
				t.Fatalf("renamed while another process holds the lock:\n%q\nwas\n%q", now, before)
			}
			if _, err := os.Stat(filepath.Join(st.Path(), PendingFlagsFileName)); err != nil {
				t.Fatalf("the close kept nothing of the waiting renames: %v", err)
			}
			if c.between != nil {
				c.between(t, st.Path())
			}
			if c.lockedAtOpen {
				// The changes come back to the sessions, though the
				// files keep their names; the close keeps them again.
				reg := NewRegistry()
				reg.flagLockWait = 50 * time.Millisecond
				mb, err := reg.Open(st, "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				fl, _ := mb.FlagsOf([]uint32{1, 2, 3})
				if want := []Flags{FlagFlagged | FlagAnswered, FlagFlagged, 0}; !slices.Equal(fl, want) {
					t.Errorf("reopened while still locked: flags %v, want %v", fl, want)
				}
				mb.Release()
				reg.SaveAll()
				if now := curNames(t, st, ""); !slices.Equal(now, before) {
					t.Fatalf("renamed while another process holds the lock:\n%q\nwas\n%q", now, before)
				}
			}
			if err := os.Remove(lock); err != nil {
				t.Fatal(err)
			}

			mb = openBox(t, closedAtEnd(t), st, "INBOX")
			var want []string
			for i, fl := range c.want {
				want = append(want, FileName(base(i), fl))
				m, _ := mb.Get(uint32(i))
				if m.Flags != fl {
					t.Errorf("message %d has flags %q, want %q", i, m.Flags, fl)
				}
			}
			slices.Sort(want)
			if now := curNames(t, st, ""); !slices.Equal(now, want) {
				t.Errorf("after the next open:\n%q\nwant\n%q", now, want)
			}
			if _, err := os.Stat(filepath.Join(st.Path(), PendingFlagsFileName)); !os.IsNotExist(err) {
				t.Errorf("%s left after its changes were made (%v)", PendingFlagsFileName, err)
			}
		})
	}
}

// deliverFileBase is the base name deliverFile gives message n.
func deliverFileBase(n int) string {
	return fmt.Sprintf("1700000000.M%dP1.test,S=20", n)
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// A malformed or truncated file is dropped, never a reason to refuse the
// folder; a well-formed one reads back as written.
func TestPendingFlagsCodec(t *testing.T) {
	t.Parallel()
	l := []pendingFlag{{base: "a", disk: FlagSeen, want: FlagSeen | FlagFlagged}, {base: "b:c", disk: 0, want: KeywordFlag(3)}}
	data := encodePending(l)
	got, err := decodePending(string(data))
	if err != nil || !slices.Equal(got, l) {
		t.Fatalf("decoded %v, %v; want %v", got, err, l)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"truncated": data[:len(data)-1],
		"magic":     append([]byte("X"), data[1:]...),
		"crc":       append(slices.Clone(data[:len(data)-1]), data[len(data)-1]^1),
		"trailing":  append(slices.Clone(data), 0),
	} {
		if got, err := decodePending(string(bad)); err == nil {
			t.Errorf("%s: decoded %v", name, got)
		}
	}
}

// A flag change deferred while another process holds the uidlist lock
// survives a crash of courriel (the folder never closed): it is in
// PendingFlagsFileName before its command returns, with every change
// still waiting, and without those made since (an applied change made
// again would undo a later one). The next open makes them; an open while
// the lock is still held keeps them in the file through a second crash.
func TestPendingFlagsSurviveCrash(t *testing.T) {
	t.Parallel()
	base := deliverFileBase
	st := testStore(t)
	for i := 1; i <= 4; i++ {
		deliverFile(t, st, "", i)
	}
	pending := filepath.Join(st.Path(), PendingFlagsFileName)
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	hold := func() {
		t.Helper()
		if err := os.WriteFile(lock, nil, 0o600); err != nil { // Dovecot's: empty
			t.Fatal(err)
		}
	}
	free := func() {
		t.Helper()
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
	}
	store := func(mb *Mailbox, uids []uint32, op StoreOp, flag string) {
		t.Helper()
		if _, _, err := mb.StoreFlags(uids, op, []string{flag}, nil); err != nil {
			t.Fatal(err)
		}
	}
	hasPending := func(when string, want bool) {
		t.Helper()
		_, err := os.Stat(pending)
		if got := err == nil; got != want {
			t.Errorf("%s: %s there %v, want %v (%v)", when, PendingFlagsFileName, got, want, err)
		}
	}
	// The crashing courriel: its folder is never released.
	reg := NewRegistry()
	reg.flagLockWait = 50 * time.Millisecond
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	store(mb, []uint32{3}, StoreAdd, Seen) // the lock free: renamed at once
	hasPending("a change made at once", false)

	hold()
	store(mb, []uint32{1, 2}, StoreAdd, Flagged)
	store(mb, []uint32{1}, StoreAdd, Answered)
	hasPending("changes deferred", true)
	free()
	// The lock free again: the waiting renames are made, and so is this
	// one, after them. Nothing waits any more.
	store(mb, []uint32{2}, StoreRemove, Flagged)
	hasPending("every rename made", false)

	hold()
	store(mb, []uint32{3}, StoreRemove, Seen)
	// A command of several pieces: recorded once, at its end.
	var fw FlagWait
	for _, s := range []struct {
		uid  uint32
		op   StoreOp
		flag string
	}{{4, StoreAdd, Draft}, {1, StoreRemove, Answered}} {
		if _, _, err := mb.StoreFlagsPiece(&fw, []uint32{s.uid}, s.op, []string{s.flag}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if data, err := os.ReadFile(pending); err != nil {
		t.Error(err)
	} else if l, err := decodePending(string(data)); err != nil || len(l) != 1 || l[0].base != base(3) {
		t.Errorf("the pieces wrote %v (%v) before the command's end", l, err)
	}
	fw.Done()
	want := map[int]Flags{1: FlagFlagged, 2: 0, 3: 0, 4: FlagDraft}
	wantNames := func() []string {
		var names []string
		for i, fl := range want {
			names = append(names, FileName(base(i), fl))
		}
		slices.Sort(names)
		return names
	}
	// kill -9: mb is left as it is.

	// Opened while the lock is still held: the changes come back to the
	// sessions, and stay in the file, through a second crash.
	reg2 := NewRegistry()
	reg2.flagLockWait = 50 * time.Millisecond
	mb2, err := reg2.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	fl, _ := mb2.FlagsOf([]uint32{1, 2, 3, 4})
	if w := []Flags{want[1], want[2], want[3], want[4]}; !slices.Equal(fl, w) {
		t.Errorf("reopened after the crash, still locked: flags %v, want %v", fl, w)
	}
	hasPending("reopened, still locked", true)
	// kill -9 again.

	free()
	mb3 := openBox(t, closedAtEnd(t), st, "INBOX")
	for i, fl := range want {
		if m, _ := mb3.Get(uint32(i)); m.Flags != fl {
			t.Errorf("message %d has flags %q, want %q", i, m.Flags, fl)
		}
	}
	if now := curNames(t, st, ""); !slices.Equal(now, wantNames()) {
		t.Errorf("after the crashes:\n%q\nwant\n%q", now, wantNames())
	}
	hasPending("reopened, the lock free", false)
}
