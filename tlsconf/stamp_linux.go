package tlsconf

import (
	"os"
	"syscall"
)

func sysFileID(fi os.FileInfo, id *fileID) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	id.dev = uint64(st.Dev)
	id.ino = uint64(st.Ino)
	// ctime catches a rewrite that keeps size and restores mtime (cp -p,
	// rsync -t), which mtime and size alone would miss.
	id.ctimeNs = st.Ctim.Nano()
}
