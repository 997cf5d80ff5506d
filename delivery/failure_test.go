package delivery

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"courriel/internal/testenv"
)

// failAfter passes n bytes through, then fails with err.
type failAfter struct {
	w   io.Writer
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k, _ := f.w.Write(p[:f.n])
		f.n = 0
		return k, f.err
	}
	f.n -= len(p)
	return f.w.Write(p)
}

func TestDeliverWriteFailure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		diskFull bool
	}{
		{"ENOSPC", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}, true},
		{"EDQUOT", &os.PathError{Op: "write", Path: "x", Err: syscall.EDQUOT}, true},
		{"EIO", &os.PathError{Op: "write", Path: "x", Err: syscall.EIO}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base})
			s.wrapWriter = func(w io.Writer) io.Writer { return &failAfter{w: w, n: 100, err: tc.err} }
			md := base + "/u/mailbox/"
			m := testMessage("F1")
			m.Body = bytes.NewReader([]byte(strings.Repeat("line of body\r\n", 10000))) // larger than the write buffer
			err := s.Deliver(context.Background(), m, []Recipient{{Address: "x@y.z", Maildir: md}})[0]
			var e *Error
			if !errors.As(err, &e) || !e.Temporary {
				t.Fatalf("error %v, want a temporary *Error", err)
			}
			if errors.Is(err, ErrDiskFull) != tc.diskFull {
				t.Errorf("error %v: ErrDiskFull %v, want %v", err, errors.Is(err, ErrDiskFull), tc.diskFull)
			}
			treeEmpty(t, md+"tmp")
			treeEmpty(t, md+"new")
		})
	}
}

// TestDeliverDirSyncFailure: when the fsync of new/ fails, the copy is not
// acknowledged and its file is taken back out of new/.
func TestDeliverDirSyncFailure(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var rec recorder
	s := newStore(t, Options{AllowedBase: base, OnDelivered: rec.notify})
	s.syncer.sync = func(*os.File) error { return &os.PathError{Op: "fsync", Path: "new", Err: syscall.EIO} }
	md := base + "/u/mailbox/"
	err := s.Deliver(context.Background(), testMessage("F2"), []Recipient{{Address: "x@y.z", Maildir: md}})[0]
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || !errors.Is(err, syscall.EIO) {
		t.Fatalf("error %v, want a temporary *Error wrapping EIO", err)
	}
	treeEmpty(t, md+"tmp")
	treeEmpty(t, md+"new")
	if calls := rec.get(); len(calls) != 0 {
		t.Errorf("OnDelivered called for an unacknowledged copy: %v", calls)
	}
}

// TestDeliverDiskFullTmpfs fills a real 64 KiB tmpfs (needs root and mount
// rights; skipped otherwise, except in CI).
func TestDeliverDiskFullTmpfs(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	testenv.MountTmpfs(t, base, "size=64k,mode=0700")
	s := newStore(t, Options{AllowedBase: base})
	md := base + "/u/mailbox/"
	rcpt := []Recipient{{Address: "x@y.z", Maildir: md}}
	deliverOK(t, s, testMessage("F3"), rcpt...) // small: fits

	m := testMessage("F4")
	m.Body = bytes.NewReader([]byte(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 2000))) // 128 KiB
	err := s.Deliver(context.Background(), m, rcpt)[0]
	var e *Error
	if !errors.As(err, &e) || !e.Temporary || !errors.Is(err, ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("error %v, want a temporary ErrDiskFull wrapping ENOSPC", err)
	}
	treeEmpty(t, md+"tmp")
	if n := len(files(t, md+"new")); n != 1 {
		t.Errorf("new/ holds %d files, want only the first message", n)
	}
	// The space was given back: a small message fits again.
	deliverOK(t, s, testMessage("F5"), rcpt...)
}

// TestDeliverNotWritable: a maildir the file system will not write to (a
// read-only mount, an immutable new/) fails the copy with a temporary
// ErrNotWritable, leaves nothing in tmp/ or new/, and delivery works again
// once the file system does.
func TestDeliverNotWritable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		errno syscall.Errno
		setup func(t *testing.T, base string)                    // before the first delivery; may be nil
		deny  func(t *testing.T, base, md string) (allow func()) // after it
	}{
		{"read-only mount", syscall.EROFS,
			func(t *testing.T, base string) { testenv.MountTmpfs(t, base, "size=1m,mode=0700") },
			func(t *testing.T, base, _ string) func() {
				testenv.Remount(t, base, "ro")
				return func() { testenv.Remount(t, base, "rw") }
			}},
		{"immutable new/", syscall.EPERM, nil,
			func(t *testing.T, _, md string) func() { return testenv.MakeImmutable(t, md+"new") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, base)
			}
			md := base + "/u/mailbox/"
			s := newStore(t, Options{AllowedBase: base})
			rcpt := []Recipient{{Address: "x@y.z", Maildir: md}}
			deliverOK(t, s, testMessage("W1"), rcpt...)
			allow := tc.deny(t, base, md)
			err := s.Deliver(context.Background(), testMessage("W2"), rcpt)[0]
			var e *Error
			if !errors.As(err, &e) || !e.Temporary || !errors.Is(err, ErrNotWritable) || !errors.Is(err, tc.errno) {
				t.Fatalf("error %v, want a temporary ErrNotWritable wrapping %v", err, tc.errno)
			}
			if got := e.dsn(); got != "4.3.1" {
				t.Errorf("dsn %s, want 4.3.1", got)
			}
			treeEmpty(t, md+"tmp")
			if n := len(files(t, md+"new")); n != 1 {
				t.Errorf("new/ holds %d files, want only the first message", n)
			}
			allow()
			deliverOK(t, s, testMessage("W3"), rcpt...)
			if n := len(files(t, md+"new")); n != 2 {
				t.Errorf("new/ holds %d files once writable again, want 2", n)
			}
		})
	}
}
