package delivery

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"
)

// nameRE is the file name format promised in the package documentation.
var nameRE = regexp.MustCompile(`^[0-9]+\.M[0-9]{1,6}P[0-9]+Q[0-9]+R[0-9a-f]{16}\.([^/,:]+),S=([0-9]+),W=([0-9]+)$`)

func newStore(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Hostname == "" {
		o.Hostname = "mx.example.test"
	}
	s, err := NewStore(o)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMessage(id string) *Message {
	return &Message{
		ID:      id,
		From:    "sender@example.org",
		Header:  []byte("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"),
		Body:    bytes.NewReader([]byte("Subject: " + id + "\r\n\r\nHello " + id + "\r\n")),
		Arrived: time.Now(),
	}
}

// deliverOK delivers and fails the test on any copy's error.
func deliverOK(t testing.TB, s *Store, m *Message, rcpts ...Recipient) {
	t.Helper()
	for i, err := range s.Deliver(context.Background(), m, rcpts) {
		if err != nil {
			t.Fatalf("copy %d to %s: %v", i, rcpts[i].Maildir, err)
		}
	}
}

// files lists the names in dir (empty if dir does not exist).
func files(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// onlyNew returns the content and name of the single file in maildir/new/
// and checks that tmp/ is empty.
func onlyNew(t testing.TB, maildir string) (string, []byte) {
	t.Helper()
	if tmp := files(t, filepath.Join(maildir, "tmp")); len(tmp) != 0 {
		t.Errorf("tmp/ not empty: %v", tmp)
	}
	names := files(t, filepath.Join(maildir, "new"))
	if len(names) != 1 {
		t.Fatalf("new/ holds %d files, want 1: %v", len(names), names)
	}
	data, err := os.ReadFile(filepath.Join(maildir, "new", names[0]))
	if err != nil {
		t.Fatal(err)
	}
	return names[0], data
}

// treeEmpty fails if anything at all exists under dir.
func treeEmpty(t testing.TB, dir string) {
	t.Helper()
	if names := files(t, dir); len(names) != 0 {
		t.Errorf("%s should be empty, holds %v", dir, names)
	}
}

// recorder collects OnDelivered calls.
type recorder struct {
	mu      sync.Mutex
	calls   []string
	missing []string // notified names not found in new/
}

func (r *recorder) notify(maildir, folder, name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, maildir)
	if _, err := os.Stat(filepath.Join(maildir, folder, "new", name)); err != nil {
		r.missing = append(r.missing, err.Error())
	}
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// crlfSize is what W= must be for the bytes stored on disk.
func crlfSize(disk []byte) int {
	return len(disk) + bytes.Count(disk, []byte{'\n'})
}

// contentBytes reads a whole Content (test messages are small).
func contentBytes(c Content) []byte {
	b := make([]byte, c.Size())
	if _, err := c.ReadAt(b, 0); err != nil && len(b) > 0 {
		panic(err)
	}
	return b
}
