package testenv

import (
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// fsImmutableFL is FS_IMMUTABLE_FL from linux/fs.h (chattr +i); x/sys
// lacks it.
const fsImmutableFL = 0x00000010

// MakeImmutable marks the directory dir immutable (chattr +i) until the
// returned function or the end of the test clears it: nothing can be created, linked or renamed in it, even by root, so a
// test running as root can still meet a maildir it may not write (EPERM).
// Needs CAP_LINUX_IMMUTABLE and a file system with the flag (ext2/3/4, XFS,
// btrfs); the test fails otherwise.
func MakeImmutable(t testing.TB, dir string) (clear func()) {
	t.Helper()
	setFlag := func(on bool) error {
		f, err := os.Open(dir)
		if err != nil {
			return err
		}
		defer f.Close()
		flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
		if err != nil {
			return err
		}
		if on {
			flags |= fsImmutableFL
		} else {
			flags &^= fsImmutableFL
		}
		return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
	}
	if err := setFlag(true); err != nil {
		t.Fatalf("chattr +i %s: %v", dir, err)
	}
	var once sync.Once
	clear = func() {
		once.Do(func() {
			if err := setFlag(false); err != nil {
				t.Errorf("chattr -i %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(clear)
	return clear
}
