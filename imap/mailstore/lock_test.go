package mailstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
