package testenv

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// fsTopdirFL is FS_TOPDIR_FL from linux/fs.h (chattr +T); x/sys lacks it.
const fsTopdirFL = 0x00020000

// BenchDir returns a temporary directory for disk benchmarks whose
// subdirectories ext4 places in block groups of their own (FS_TOPDIR_FL, as
// on /home). Without it they share the group of os.TempDir(), where builds and
// earlier tests have just deleted thousands of files; on ext4 without a
// journal (this machine's disk) every inode allocation then steps over each
// inode freed in the last seconds to minutes (fs/ext4/ialloc.c,
// recently_deleted), which made a file creation cost ~240 µs instead of
// ~20 µs here and measured the test suite's litter rather than the code.
// Benchmarks that compare against a raw loop put both in subdirectories of
// one BenchDir. Where the flag is unsupported (tmpfs) it is a plain TempDir.
func BenchDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err == nil {
		_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFL))
	}
	return dir
}
