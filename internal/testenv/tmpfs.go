package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// MountTmpfs mounts a tmpfs with options opts (size=64k, nr_inodes=40,
// mode=0700...) on dir until the test ends: a real file system that fills
// up, for the disk-full and out-of-inodes paths. Mounting needs root; the
// test is skipped without it, and failed when CI=true (CI runs as root:
// those paths must be exercised there).
func MountTmpfs(t testing.TB, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		skipOrFail(t, fmt.Errorf("cannot mount a tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// Remount changes the mount at dir (one MountTmpfs made) to mode, "ro" or
// "rw": a file system that refuses every write with EROFS, then takes
// them again.
func Remount(t testing.TB, dir, mode string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+mode, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, mode, err, out)
	}
}

// FillSpace writes the file path until its file system has no block left
// (ENOSPC); free removes it, giving the space back (also at the end of the
// test).
func FillSpace(t testing.TB, path string) (free func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v, want ENOSPC", path, err)
	}
	free = func() { os.Remove(path) }
	t.Cleanup(free)
	return free
}

// FillInodes creates empty files in dir until its file system has only
// leave inodes free; free removes them (also at the end of the test).
func FillInodes(t testing.TB, dir string, leave uint64) (free func()) {
	t.Helper()
	var made []string
	free = func() {
		for _, p := range made {
			os.Remove(p)
		}
		made = nil
	}
	t.Cleanup(free)
	for i := 0; ; i++ {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Ffree <= leave {
			if st.Ffree < leave {
				t.Fatalf("%s: %d inodes free, fewer than the %d asked for", dir, st.Ffree, leave)
			}
			return free
		}
		p := filepath.Join(dir, fmt.Sprintf(".fill-inode-%d", i))
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatalf("filling the inodes of %s: %v", dir, err)
		}
		made = append(made, p)
	}
}

// MemoryDir returns a directory removed when the test ends: on /dev/shm
// when that is a tmpfs, where an fsync costs nothing, for tests that run a
// durable write path hundreds of times (every interleaving of two
// programs); elsewhere t.TempDir(), slower but the same.
func MemoryDir(t testing.TB) string {
	t.Helper()
	if dir, ok := InMemoryDir(t); ok {
		return dir
	}
	return t.TempDir()
}

// InMemoryDir is MemoryDir for a caller that must know: false, and no
// directory, where /dev/shm is no tmpfs (a benchmark's "nothing durable"
// row means nothing on a disk).
func InMemoryDir(t testing.TB) (string, bool) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		return "", false
	}
	dir, err := os.MkdirTemp("/dev/shm", "courriel-test")
	if err != nil {
		return "", false
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, true
}
