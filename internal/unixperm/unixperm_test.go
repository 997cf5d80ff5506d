package unixperm

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestAllows(t *testing.T) {
	t.Parallel()
	const uid, gid = 20001, 20000
	tests := []struct {
		name     string
		uid, gid uint32
		mode     uint32
		access   uint32
		want     bool
	}{
		{"own 0700 dir, search+write", uid, gid, unix.S_IFDIR | 0o700, Write | Execute, true},
		{"another user's 0700 dir", 20099, 20099, unix.S_IFDIR | 0o700, Execute, false},
		{"another user's 0700 dir, same group", 20099, gid, unix.S_IFDIR | 0o700, Execute, false},
		{"root's 0755 dir: search", 0, 0, unix.S_IFDIR | 0o755, Execute, true},
		{"root's 0755 dir: write", 0, 0, unix.S_IFDIR | 0o755, Write | Execute, false},
		{"group 0750 dir of its group", 5000, gid, unix.S_IFDIR | 0o750, Execute, true},
		{"group 0750 dir of another group", 5000, 5000, unix.S_IFDIR | 0o750, Execute, false},
		{"owner bits only, even when others have more", uid, gid, unix.S_IFDIR | 0o077, Execute, false},
		{"0711 traversal by others", 5000, 5000, unix.S_IFDIR | 0o711, Execute, true},
	}
	for _, tc := range tests {
		if got := Allows(tc.uid, tc.gid, tc.mode, uid, gid, tc.access); got != tc.want {
			t.Errorf("%s: Allows = %v, want %v", tc.name, got, tc.want)
		}
	}
}
