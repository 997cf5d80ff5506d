package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"courriel/imap/uidlist"
)

// APPEND, COPY and MOVE wait for the destination's dovecot-uidlist lock
// before their file appears in cur/: another process holding it (Dovecot
// numbering its own files) never finds one of ours without a UID.
func TestWritersTakeUIDListLockFirst(t *testing.T) {
	t.Parallel()
	ops := map[string]func(inbox, archive *Mailbox) error{
		"append": func(_, archive *Mailbox) error {
			_, err := archive.Append(strings.NewReader("Subject: x\r\n\r\nx\r\n"), []string{Seen}, time.Time{})
			return err
		},
		"copy": func(inbox, archive *Mailbox) error {
			_, _, err := inbox.CopyTo(archive, []uint32{1})
			return err
		},
		"move": func(inbox, archive *Mailbox) error {
			_, _, err := inbox.MoveTo(archive, []uint32{1})
			return err
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st, inbox, archive := copyFixture(t, NewRegistry())
			lock := filepath.Join(st.Path(), ".Archive", "dovecot-uidlist.lock")
			if err := os.WriteFile(lock, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- op(inbox, archive) }()
			// While the other process holds the lock: nothing in cur/.
			for range 20 {
				time.Sleep(10 * time.Millisecond)
				if n := curCount(t, st, ".Archive"); n != 0 {
					t.Fatalf("%d file(s) in cur/ while another process holds the uidlist lock", n)
				}
				select {
				case err := <-done:
					t.Fatalf("finished while locked: %v", err)
				default:
				}
			}
			os.Remove(lock)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if n := curCount(t, st, ".Archive"); n != 1 {
				t.Errorf("%d files in cur/ after the lock was released, want 1", n)
			}
			if l := readUIDList(t, st, ".Archive"); len(l) != 2 || !strings.HasPrefix(l[1], "1 :") {
				t.Errorf("uidlist %q", l)
			}
		})
	}
}

// A STORE, an APPEND of many messages and a MOVE hold the uidlist lock
// through one rename a message; on slow storage that outlasts
// StaleTimeout, and another process (Dovecot, another courriel) would
// break the lock and number or rename files beside ours. The holder
// touches the lock every uidlist.TouchInterval as it goes, as Dovecot
// does: here every step takes a second of the registry's clock, the lock
// looks three minutes old from the first step on, and once the interval
// has passed it must look fresh to another process.
func TestLongHoldsTouchTheLock(t *testing.T) {
	t.Parallel()
	const n = 40
	ops := map[string]func(t *testing.T, reg *Registry, st *Store) (lockDir string, run func() error){
		"store": func(t *testing.T, reg *Registry, st *Store) (string, func() error) {
			for i := 1; i <= n; i++ {
				deliverFile(t, st, "", i)
			}
			inbox := openBox(t, reg, st, "INBOX")
			return "", func() error {
				uids := make([]uint32, n)
				for i := range uids {
					uids[i] = uint32(i + 1)
				}
				_, _, err := inbox.StoreFlags(uids, StoreAdd, []string{Flagged}, nil)
				return err
			}
		},
		"append": func(t *testing.T, reg *Registry, st *Store) (string, func() error) {
			inbox := openBox(t, reg, st, "INBOX")
			a := inbox.NewAppender()
			for i := range n {
				if err := a.Add(strings.NewReader(fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i)), nil, time.Time{}); err != nil {
					t.Fatal(err)
				}
			}
			return "", func() error { _, err := a.Commit(); return err }
		},
		"move": func(t *testing.T, reg *Registry, st *Store) (string, func() error) {
			for i := 1; i <= n; i++ {
				deliverFile(t, st, "", i)
			}
			if err := st.Create("Archive"); err != nil {
				t.Fatal(err)
			}
			inbox := openBox(t, reg, st, "INBOX")
			archive := openBox(t, reg, st, "Archive")
			return ".Archive", func() error {
				uids := make([]uint32, n)
				for i := range uids {
					uids[i] = uint32(i + 1)
				}
				_, _, err := inbox.MoveTo(archive, uids)
				return err
			}
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := testStore(t)
			reg := NewRegistry()
			var elapsed atomic.Int64 // seconds of slow storage so far
			reg.clock = func() time.Time { return time.Now().Add(time.Duration(elapsed.Load()) * time.Second) }
			dir, run := op(t, reg, st)
			lock := filepath.Join(st.Path(), dir, "dovecot-uidlist.lock")
			steps, staleAt := 0, 0
			reg.syncHook = func(event string) {
				if event != "held" {
					return
				}
				fi, err := os.Stat(lock)
				if err != nil {
					return // not held
				}
				steps++
				if steps == 1 {
					old := time.Now().Add(-uidlist.StaleTimeout - time.Minute)
					os.Chtimes(lock, old, old)
				} else if time.Since(fi.ModTime()) > uidlist.StaleTimeout {
					staleAt = steps
				}
				elapsed.Add(1)
			}
			if err := run(); err != nil {
				t.Fatal(err)
			}
			reg.syncHook = nil
			if steps < n {
				t.Fatalf("%d steps under the lock, want %d", steps, n)
			}
			if limit := int(uidlist.TouchInterval/time.Second) + 2; staleAt > limit {
				t.Errorf("the lock looked stale to another process at step %d of %d (a second each): not touched every %v", staleAt, steps, uidlist.TouchInterval)
			}
		})
	}
}

// curNames lists folder dir's cur/.
func curNames(t *testing.T, st *Store, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(st.Path(), dir, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// A flag change while another process holds the uidlist lock (Dovecot
// syncing a large folder) waits for it without the folder's mutex: the
// folder's other sessions go on meanwhile. Past the wait it is made as
// Dovecot 2.3 makes it when its own lock wait times out (checked with a
// lock held by hand): the sessions have the new flags at once (STORE
// answers OK, FETCH BODY[] sets \Seen), and the files are renamed once the
// lock is free, at a later sync; never while the other holds it. A file
// the other program renames meanwhile gets the change on its new flags.
func TestFlagChangeWhileLockedElsewhere(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	// Long beside the other sessions' calls below, which must return
	// while the STORE still waits.
	reg.flagLockWait = 5 * time.Second
	mb := openBox(t, reg, st, "INBOX")
	w, _ := mb.Watch()
	defer w.Close()
	before := curNames(t, st, "")
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil { // Dovecot's: empty
		t.Fatal(err)
	}

	done := make(chan error, 1)
	start := time.Now()
	var got []Flags
	go func() {
		var err error
		got, _, err = mb.StoreFlags([]uint32{1, 2}, StoreAdd, []string{Flagged}, nil)
		done <- err
	}()
	// Meanwhile the folder answers its other sessions.
	time.Sleep(50 * time.Millisecond)
	mb.FlagsOf([]uint32{3})
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
		t.Errorf("the folder's other sessions were answered only once the flag change waiting for the lock ended")
	default:
	}
	if err := <-done; err != nil {
		t.Fatalf("STORE while another process holds the lock: %v", err)
	}
	if d := time.Since(start); d < reg.flagLockWait {
		t.Errorf("gave up waiting after %v", d)
	}
	if got[0]&FlagFlagged == 0 || got[1]&FlagFlagged == 0 {
		t.Errorf("STORE answered flags %v", got)
	}
	if fl, _ := mb.FlagsOf([]uint32{1, 2}); fl[0]&FlagFlagged == 0 || fl[1]&FlagFlagged == 0 {
		t.Errorf("sessions see flags %v", fl)
	}
	flagged := 0
	for _, c := range w.Changes(false) {
		if c.Kind == FlagsChanged {
			flagged++
		}
	}
	if flagged != 2 {
		t.Errorf("%d FlagsChanged for the sessions, want 2", flagged)
	}
	// The message is read as before (its file under its old name).
	if f, _, err := mb.Open(1); err != nil {
		t.Errorf("open a message whose rename waits: %v", err)
	} else {
		f.Close()
	}
	// Not renamed while the other holds the lock, a full listing
	// included; the other renames message 2 itself (adds \Seen).
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	if now := curNames(t, st, ""); !slices.Equal(now, before) {
		t.Fatalf("renamed while another process holds the lock:\n%q\nwas\n%q", now, before)
	}
	m2, _ := mb.Get(2)
	if err := os.Rename(filepath.Join(st.Path(), "cur", m2.Base+":2,"), filepath.Join(st.Path(), "cur", m2.Base+":2,S")); err != nil {
		t.Fatal(err)
	}
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	if fl, _ := mb.FlagsOf([]uint32{2}); fl[0] != FlagFlagged|FlagSeen {
		t.Errorf("message 2 renamed by the other program: flags %v, want \\Flagged \\Seen", fl[0])
	}
	// A second change, still deferred, on top of the first.
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{Answered}, nil); err != nil {
		t.Fatal(err)
	}

	os.Remove(lock)
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, fl := range []Flags{FlagFlagged | FlagAnswered, FlagFlagged | FlagSeen, 0} {
		m, _ := mb.Get(uint32(i + 1))
		want = append(want, FileName(m.Base, fl))
	}
	slices.Sort(want)
	if now := curNames(t, st, ""); !slices.Equal(now, want) {
		t.Errorf("after the lock was freed and a sync:\n%q\nwant\n%q", now, want)
	}
	mb.mu.Lock()
	if n := len(mb.dirty); n != 0 {
		t.Errorf("%d renames still waiting", n)
	}
	mb.mu.Unlock()
}

// A cur/ name without an info part (another program's doing) is given
// its empty ":2," under the uidlist lock only, as Dovecot renames in cur/
// only under it (and its listings under it trust that nobody else does):
// while another process holds the lock, a sync leaves the name as it is,
// and the message is read, flagged (the rename waiting) and synced under
// it; once the lock is free the next sync renames it. A fresh file named
// so is numbered and renamed under the lock.
func TestBareNameRenamedUnderLock(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 2; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	reg.flagLockWait = 50 * time.Millisecond
	mb := openBox(t, reg, st, "INBOX")
	cur := filepath.Join(st.Path(), "cur")
	base1, base2 := deliverFileBase(1), deliverFileBase(2)
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rename(t, filepath.Join(cur, base1+":2,"), filepath.Join(cur, base1))
	for _, force := range []bool{false, true} {
		if err := mb.Sync(force); err != nil {
			t.Fatal(err)
		}
		if now, want := curNames(t, st, ""), []string{base1, base2 + ":2,"}; !slices.Equal(now, want) {
			t.Fatalf("sync (force %v) while another process holds the lock:\n%q\nwant\n%q", force, now, want)
		}
	}
	if b, _, err := mb.ReadMessage(1, nil, 0); err != nil || !strings.HasPrefix(string(b), "Subject: 1\n") {
		t.Fatalf("read the message of a bare name: %q, %v", b, err)
	}
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{Flagged}, nil); err != nil {
		t.Fatal(err)
	}
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	if now, want := curNames(t, st, ""), []string{base1, base2 + ":2,"}; !slices.Equal(now, want) {
		t.Fatalf("STORE while another process holds the lock:\n%q\nwant\n%q", now, want)
	}
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	if now, want := curNames(t, st, ""), []string{base1 + ":2,F", base2 + ":2,"}; !slices.Equal(now, want) {
		t.Fatalf("after the lock was freed:\n%q\nwant\n%q", now, want)
	}

	// A fresh file, no UID yet, with a bare name: numbered and renamed
	// under the lock; and a numbered one renamed bare with the lock free.
	const fresh = "1700000009.M9P1.test,S=20"
	if err := os.WriteFile(filepath.Join(cur, fresh), []byte("Subject: 9\n\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rename(t, filepath.Join(cur, base2+":2,"), filepath.Join(cur, base2))
	if err := mb.Sync(false); err != nil {
		t.Fatal(err)
	}
	if now, want := curNames(t, st, ""), []string{base1 + ":2,F", base2 + ":2,", fresh + ":2,"}; !slices.Equal(now, want) {
		t.Errorf("after a sync with the lock free:\n%q\nwant\n%q", now, want)
	}
	if uids := mb.UIDs(); !slices.Equal(uids, []uint32{1, 2, 3}) {
		t.Errorf("UIDs %v, want 1 2 3", uids)
	}
	mb.mu.Lock()
	if n := len(mb.bare); n != 0 {
		t.Errorf("%d bare names left", n)
	}
	mb.mu.Unlock()
}

// A command that changes flags in pieces (a large STORE) waits for
// another process's uidlist lock once, not once a piece: past the
// command's wait, each later piece defers its renames at once while the
// lock is held, and takes the lock, renaming its files and those that
// waited, as soon as it is free. A new command waits afresh.
func TestStoreInPiecesWaitsOnce(t *testing.T) {
	t.Parallel()
	const pieces = 5
	st := testStore(t)
	for i := 1; i <= pieces+1; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	reg.flagLockWait = 400 * time.Millisecond
	var waits atomic.Int32 // the waits for the lock flag changes began
	reg.syncHook = func(event string) {
		if event == "flag lock wait" {
			waits.Add(1)
		}
	}
	mb := openBox(t, reg, st, "INBOX")
	lock := filepath.Join(st.Path(), "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var fw FlagWait
	start := time.Now()
	for i := 1; i <= pieces-1; i++ {
		fl, _, err := mb.StoreFlagsPiece(&fw, []uint32{uint32(i)}, StoreAdd, []string{Flagged}, nil)
		if err != nil || fl[0] != FlagFlagged {
			t.Fatalf("piece %d: %v, %v", i, fl, err)
		}
	}
	if n := waits.Load(); n != 1 || !fw.spent {
		t.Errorf("%d pieces while another process holds the lock waited %d times (spent %v), want once", pieces-1, n, fw.spent)
	}
	// The one wait ran out: it lasted the whole of it.
	if d := time.Since(start); d < reg.flagLockWait {
		t.Errorf("%d pieces while another process holds the lock took %v, want one wait of %v", pieces-1, d, reg.flagLockWait)
	}
	if n := len(curNamesWith(t, st, ":2,F")); n != 0 {
		t.Fatalf("%d files renamed while another process holds the lock", n)
	}
	// Freed: the last piece takes it without waiting.
	if err := os.Remove(lock); err != nil {
		t.Fatal(err)
	}
	if _, _, err := mb.StoreFlagsPiece(&fw, []uint32{pieces}, StoreAdd, []string{Flagged}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(curNamesWith(t, st, ":2,F")); n != pieces {
		t.Errorf("%d files renamed once the lock was free, want %d", n, pieces)
	}
	// The next command waits its own wait.
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if _, _, err := mb.StoreFlags([]uint32{pieces + 1}, StoreAdd, []string{Flagged}, nil); err != nil {
		t.Fatal(err)
	}
	if n := waits.Load(); n != 2 {
		t.Errorf("the next command: %d waits in all, want 2 (its own)", n)
	}
	if d := time.Since(start); d < reg.flagLockWait {
		t.Errorf("the next command waited %v, want %v", d, reg.flagLockWait)
	}
	os.Remove(lock)
}

// curNamesWith lists the names of INBOX's cur/ that end with suffix.
func curNamesWith(t *testing.T, st *Store, suffix string) []string {
	t.Helper()
	var out []string
	for _, n := range curNames(t, st, "") {
		if strings.HasSuffix(n, suffix) {
			out = append(out, n)
		}
	}
	return out
}
