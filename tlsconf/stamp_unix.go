//go:build unix && !linux

package tlsconf

import (
	"os"
	"syscall"
)

// sysFileID adds the inode (for symlink swaps); ctime's field name differs
// between BSDs, so only Linux uses it.
func sysFileID(fi os.FileInfo, id *fileID) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	id.dev = uint64(st.Dev)
	id.ino = uint64(st.Ino)
}
