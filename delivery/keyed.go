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
// already in the maildir: in new/, or in cur/ with an info part
// (":2,<flags>") once an IMAP client has seen it. It is known by its
// arrival, key and host, whatever its S=/W= sizes: a copy stored by an
// earlier version whose added fields differed in length (X-Original-To
// came in one) is the same copy, and storing it again would duplicate it.
// A copy the user has since expunged is not found, and is stored again:
// the maildir keeps no tombstones, and a retry happens only when an
// attempt's outcome was lost, which is rare enough that one such repeat
// beats a lost copy.
func keyedCopyStored(md *openMaildir, name string) (bool, error) {
	switch _, err := md.root.Lstat("new/" + name); {
	case err == nil:
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	stem, _, _ := strings.Cut(name, ",S=")
	for _, sub := range []string{"new", "cur"} {
		found, err := hasPrefixedName(md, sub, stem+",")
		if found || err != nil {
			return found, err
		}
	}
	return false, nil
}

// hasPrefixedName says whether the maildir's directory sub holds a name
// starting with prefix.
func hasPrefixedName(md *openMaildir, sub, prefix string) (bool, error) {
	d, err := md.root.OpenFile(sub, os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false, err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(4096)
		for _, n := range names {
			if strings.HasPrefix(n, prefix) {
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
