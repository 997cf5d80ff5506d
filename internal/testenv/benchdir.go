package testenv

import (
	"cmp"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fsTopdirFL is FS_TOPDIR_FL from linux/fs.h (chattr +T); x/sys lacks it.
const fsTopdirFL = 0x00020000

// BenchDir returns a temporary directory for disk benchmarks, in a block
// group nobody has just deleted files from.
//
// On ext4 without a journal (this machine's disk) every inode allocation
// steps over each inode of its block group freed in the last 5 seconds, or 5
// minutes once that part of the inode table is written to again
// (fs/ext4/ialloc.c, recently_deleted). After a build or an earlier run
// deleted thousands of files there, creating one file cost ~450 µs of CPU
// here instead of ~20 µs, and benchmarks measured that litter rather than
// the code. ext4 places a new directory in its parent's group, except below
// a directory marked FS_TOPDIR_FL (as /home is), where it picks an empty
// group starting from a hash of the new name (Orlov): so BenchDir marks a
// temporary directory and returns a randomly named directory inside it. A
// fixed name would land in the same group run after run, the one the
// previous run's clean-up just emptied. It also writes back what is dirty
// (sync) and waits out the 5 seconds. Benchmarks that compare against a raw
// loop put both below one BenchDir, so that both pay what its group costs.
//
// COURRIEL_BENCH_DIR names another parent: a mount of the file system to
// measure (HACKING.md shows a journaled ext4 image, like most servers').
func BenchDir(t testing.TB) string {
	t.Helper()
	top := t.TempDir()
	if parent := os.Getenv("COURRIEL_BENCH_DIR"); parent != "" {
		top = benchTop(t, parent)
	}
	return benchDirIn(t, top)
}

// PublicBenchDir is BenchDir that other users may traverse (mode 0755 from
// the system's temporary directory down), for a server that drops root
// to write maildirs, as Postfix's virtual(8) does.
func PublicBenchDir(t testing.TB) string {
	t.Helper()
	top := benchTop(t, cmp.Or(os.Getenv("COURRIEL_BENCH_DIR"), os.TempDir()))
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := benchDirIn(t, top)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func benchTop(t testing.TB, parent string) string {
	t.Helper()
	top, err := os.MkdirTemp(parent, "bench")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	return top
}

func benchDirIn(t testing.TB, top string) string {
	t.Helper()
	f, err := os.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS); err == nil {
		_ = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsTopdirFL))
	}
	dir, err := os.MkdirTemp(top, "g")
	if err != nil {
		t.Fatal(err)
	}
	unix.Sync()
	time.Sleep(6 * time.Second)
	return dir
}
