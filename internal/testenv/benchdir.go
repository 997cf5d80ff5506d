package testenv

import (
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fsTopdirFL is FS_TOPDIR_FL from linux/fs.h (chattr +T); x/sys lacks it.
const fsTopdirFL = 0x00020000

// BenchDir returns a temporary directory for disk benchmarks, once the disk
// has settled. On ext4 without a journal (this machine's disk) every inode
// allocation steps over each inode of its block group freed in the last 5
// seconds, or 5 minutes while the inode table is not yet written back
// (fs/ext4/ialloc.c, recently_deleted): after a build or an earlier benchmark
// deleted thousands of files, creating one cost ~450 µs of CPU here instead
// of ~20 µs, and benchmarks measured that litter rather than the code. So
// BenchDir writes everything back (sync) and waits out the 5 seconds, and
// marks the directory FS_TOPDIR_FL (as on /home) so that its subdirectories
// are spread to other block groups than os.TempDir()'s, where other programs
// keep deleting. Benchmarks that compare against a raw loop put both in
// subdirectories of one BenchDir. On other file systems the flag is ignored.
//
// COURRIEL_BENCH_DIR names another parent: a mount of the file system to
// measure (HACKING.md shows a journaled ext4 image, like most servers').
func BenchDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if parent := os.Getenv("COURRIEL_BENCH_DIR"); parent != "" {
		var err error
		if dir, err = os.MkdirTemp(parent, "bench"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err == nil {
		_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFL))
	}
	unix.Sync()
	time.Sleep(6 * time.Second)
	return dir
}
