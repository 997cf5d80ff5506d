package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"courriel/imap/uidlist"
	"courriel/internal/testenv"
)

// foreignWriter delivers one message into a folder as Dovecot does, and as
// the QA's foreign.py imitates it, one step at a time: under
// dovecot-uidlist.lock the file is written into new/ and its record
// appended with the next UID; the lock is released; then (a client of the
// other program saw the message) the file is renamed to cur/ with \Seen,
// without the lock.
type foreignWriter struct {
	dir, base string
	done      int  // steps done
	locked    bool // between the first step and the second
}

var foreignSteps = []string{"lock, write new/X", "append X's record, unlock", "rename new/X to cur/X:2,S"}

// step does the next step; errLockBusy when it cannot now: the lock is
// held by us (the other program waits for it).
func (f *foreignWriter) step() error {
	lock := filepath.Join(f.dir, uidlist.FileName+".lock")
	switch f.done {
	case 0:
		lf, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return errLockBusy
		}
		if err != nil {
			return err
		}
		lf.Close()
		f.locked = true
		if err := os.WriteFile(filepath.Join(f.dir, "new", f.base), []byte("Subject: foreign\n\nx\n"), 0o600); err != nil {
			return err
		}
	case 1:
		data, err := os.ReadFile(filepath.Join(f.dir, uidlist.FileName))
		if err != nil {
			return err
		}
		l, err := uidlist.Parse(strings.NewReader(string(data)))
		if err != nil {
			return err
		}
		// As Dovecot numbers: past the header's next UID and the last
		// record (Parse gives the larger of the two).
		af, err := os.OpenFile(filepath.Join(f.dir, uidlist.FileName), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(af, "%d :%s\n", l.NextUID, f.base)
		af.Close()
		if err != nil {
			return err
		}
		if err := os.Remove(lock); err != nil {
			return err
		}
		f.locked = false
	case 2:
		err := os.Rename(filepath.Join(f.dir, "new", f.base), filepath.Join(f.dir, "cur", f.base+":2,S"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) { // moved to cur/ by us first
			return err
		}
	}
	f.done++
	return nil
}

var errLockBusy = errors.New("uidlist lock held")

// sessionModel applies a watcher's changes as an IMAP session does
// (pushUpdates): a message is shown only above the last one shown, and the
// UIDNEXT it was told bounds every UID it may see later (RFC 3501
// §2.3.1.1: UIDs are assigned in ascending order).
type sessionModel struct {
	w       *Watcher
	view    []uint32
	uidNext uint32 // the highest UIDNEXT announced to it
	// invalidated: the folder was renumbered; the session ended (BYE).
	invalidated bool
}

func (s *sessionModel) update(t *testing.T, ctx string) {
	t.Helper()
	for _, c := range s.w.Changes(true) {
		switch c.Kind {
		case Added:
			if c.UID < s.uidNext {
				t.Errorf("%s: UID %d added below the UIDNEXT %d the session was told: a client fetching from its last UIDNEXT never sees it", ctx, c.UID, s.uidNext)
			}
			if n := len(s.view); n > 0 && c.UID <= s.view[n-1] {
				t.Errorf("%s: UID %d added below the session's last UID %d: hidden from it", ctx, c.UID, s.view[n-1])
				continue
			}
			s.view = append(s.view, c.UID)
		case Expunged:
			if i, ok := slices.BinarySearch(s.view, c.UID); ok {
				s.view = slices.Delete(s.view, i, i+1)
			}
		case Invalidated:
			s.invalidated = true
			return
		}
	}
	s.uidNext = max(s.uidNext, s.w.Mailbox().Status().UIDNext)
}

// checkFolder checks what a client and what Dovecot would see of the
// folder: every message file has exactly one UID, the one dovecot-uidlist
// gives it, which lists no file twice; the session's view is the folder's
// messages; a fresh load agrees.
func checkFolder(t *testing.T, ctx string, st *Store, mb *Mailbox, s *sessionModel) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(st.Path(), uidlist.FileName))
	if err != nil {
		t.Fatalf("%s: %v", ctx, err)
	}
	l, err := uidlist.Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatalf("%s: dovecot-uidlist: %v\n%s", ctx, err, data)
	}
	listed := map[string]uint32{}
	for _, r := range l.Records {
		if u, dup := listed[r.Name]; dup {
			t.Errorf("%s: dovecot-uidlist lists %s twice (UIDs %d and %d):\n%s", ctx, r.Name, u, r.UID, data)
		}
		listed[r.Name] = r.UID
	}
	onDisk := map[string]bool{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(st.Path(), sub))
		for _, e := range ents {
			base, _ := SplitName(e.Name())
			onDisk[base] = true
		}
	}
	uids := mb.UIDs()
	byBase := map[string]uint32{}
	for _, u := range uids {
		m, _ := mb.Get(u)
		if prev, dup := byBase[m.Base]; dup {
			t.Errorf("%s: %s has two UIDs, %d and %d", ctx, m.Base, prev, u)
		}
		byBase[m.Base] = u
		if lu, ok := listed[m.Base]; !ok || lu != u {
			t.Errorf("%s: %s has UID %d here, %d (listed: %v) in dovecot-uidlist", ctx, m.Base, u, lu, ok)
		}
	}
	for base := range onDisk {
		if _, ok := byBase[base]; !ok {
			t.Errorf("%s: %s is on disk without a UID here", ctx, base)
		}
	}
	if s.invalidated {
		t.Errorf("%s: the folder was renumbered (sessions end with BYE)", ctx)
	} else if !slices.Equal(s.view, uids) {
		t.Errorf("%s: the session shows %v, the folder has %v", ctx, s.view, uids)
	}
	fresh, err := NewRegistry().Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Release()
	if got := fresh.UIDs(); !slices.Equal(got, uids) {
		t.Errorf("%s: a fresh load has %v, the open folder %v", ctx, got, uids)
	}
}

// TestForeignWriterInterleaved runs the other program's delivery with each
// of its steps at every boundary of ours within one sync or APPEND (a hook
// at each point where the two may interleave: the uidlist read, each
// directory listing, the taking of the lock), then lets the folder settle:
// whatever the interleaving, the message gets the one UID the other
// program gave it, above what the session knew, and shown to it.
func TestForeignWriterInterleaved(t *testing.T) {
	t.Parallel()
	const points = 6 // hook calls a schedule places steps at
	sync := func(mb *Mailbox) error { return mb.Sync(false) }
	ops := []struct {
		name string
		// ours: a file of our delivery agent waits in new/ for its UID
		// (numbered by the sync, as the other program's may be).
		ours bool
		op   func(mb *Mailbox) error
	}{
		{"sync", false, sync},
		{"sync numbering a delivery of ours", true, sync},
		{"forced sync", false, func(mb *Mailbox) error { return mb.Sync(true) }},
		{"APPEND", false, func(mb *Mailbox) error {
			_, err := mb.Append(strings.NewReader("Subject: ours\r\n\r\no\r\n"), nil, time.Time{})
			return err
		}},
	}
	// Every schedule: the hook call at which each step is done (0: before
	// our operation, points+1: after it), in the steps' order.
	var schedules [][]int
	var gen func(s []int, from int)
	gen = func(s []int, from int) {
		if len(s) == len(foreignSteps) {
			schedules = append(schedules, slices.Clone(s))
			return
		}
		for p := from; p <= points+1; p++ {
			gen(append(s, p), p)
		}
	}
	gen(nil, 0)
	for _, tc := range ops {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := testenv.MemoryDir(t)
			for i, sched := range schedules {
				runInterleaving(t, filepath.Join(dir, fmt.Sprint(i)), sched, tc.ours, tc.op)
				if t.Failed() {
					t.Fatalf("schedule %v (steps %q at hook calls; 0 before, %d after)", sched, foreignSteps, points+1)
				}
			}
		})
	}
}

func runInterleaving(t *testing.T, path string, sched []int, ours bool, op func(*Mailbox) error) {
	st, err := OpenStore(path, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 1; i <= 3; i++ {
		deliverFile(t, st, "", i)
	}
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Release()
	w, view := mb.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: mb.Status().UIDNext}
	f := &foreignWriter{dir: st.Path(), base: "1700000100.M1P99999.foreign"}
	calls := 0
	var stepErr error
	runTo := func(call int) {
		for f.done < len(foreignSteps) && sched[f.done] <= call && stepErr == nil {
			if err := f.step(); err == errLockBusy {
				return // it waits for our lock: after our operation
			} else if err != nil {
				stepErr = err
			}
		}
	}
	reg.syncHook = func(event string) {
		calls++
		runTo(calls)
		if event == "lock" && f.locked {
			// We wait for the other program's lock: it ends its
			// delivery meanwhile.
			for f.locked && stepErr == nil {
				stepErr = f.step()
			}
		}
	}
	if ours {
		deliverFile(t, st, "", 4)
	}
	runTo(0)
	if err := op(mb); err != nil {
		t.Fatalf("our operation: %v", err)
	}
	reg.syncHook = nil
	runTo(len(sched) + 1000)
	if stepErr != nil {
		t.Fatalf("the other program: %v", stepErr)
	}
	s.update(t, "after the interleaved operation")
	for i := range 2 {
		// Forced: a directory changed within the clock tick of our last
		// look keeps its stamp.
		if err := mb.Sync(true); err != nil {
			t.Fatal(err)
		}
		s.update(t, fmt.Sprintf("sync %d after", i+1))
	}
	checkFolder(t, "settled", st, mb, s)
}
