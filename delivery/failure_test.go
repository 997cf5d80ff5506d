package delivery

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
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
			m.Body = []byte(strings.Repeat("line of body\r\n", 10000)) // larger than the write buffer
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
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", base).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			// CI runs as root: a real disk-full must be exercised there.
			t.Fatalf("cannot mount a tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", base).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", base, err, out)
		}
	})
	s := newStore(t, Options{AllowedBase: base})
	md := base + "/u/mailbox/"
	rcpt := []Recipient{{Address: "x@y.z", Maildir: md}}
	deliverOK(t, s, testMessage("F3"), rcpt...) // small: fits

	m := testMessage("F4")
	m.Body = []byte(strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 2000)) // 128 KiB
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
