package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// MountTmpfs mounts a tmpfs with options opts (say "size=64k,mode=0700") on
// dir until the test ends: a real file system that fills up. It needs root;
// without it the test is skipped, except in CI (CI=true), which runs as root
// so that disk-full paths are exercised there.
func MountTmpfs(t testing.TB, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}
