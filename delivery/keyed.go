package delivery

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// keyedCopyStored reports whether the copy named name (a keyedName) is
// already in the maildir: in new/ under that name, or in cur/ under it with
// an info part (":2,<flags>") once an IMAP client has seen it. A copy the
// user has since expunged is not found, and is stored again: the maildir
// keeps no tombstones, and a retry happens only when an attempt's outcome
// was lost, which is rare enough that one such repeat beats a lost copy.
func keyedCopyStored(md *openMaildir, name string) (bool, error) {
	switch _, err := md.root.Lstat("new/" + name); {
	case err == nil:
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	cur, err := md.root.OpenFile("cur", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false, err
	}
	defer cur.Close()
	prefix := name + ":"
	for {
		names, err := cur.Readdirnames(4096)
		for _, n := range names {
			if n == name || strings.HasPrefix(n, prefix) {
				return true, nil
			}
		}
		if err == io.EOF || len(names) == 0 {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}
