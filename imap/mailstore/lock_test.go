package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
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
