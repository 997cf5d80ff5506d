package mailstore

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// durability says how far writeFileLocked makes a file survive a crash.
type durability int

const (
	// noSync: a file a crash may leave short, empty or older, which its
	// reader detects (courriel-state: CRC, stamps).
	noSync durability = iota
	// syncFile: the file's data is on disk before its rename, so that a
	// crash leaves the old file or the whole new one; the rename itself
	// may be lost (courriel-index: a cache).
	syncFile
	// syncFolder: syncFile, and the folder fsynced after the rename, so
	// that the new file is the one a crash leaves: the only record of
	// what it holds (courriel-modseq, courriel-pending-flags).
	syncFolder
)

// errFolderSync marks writeFileLocked's failure to fsync the folder: the
// file was renamed into place, its content is the new one.
var errFolderSync = errors.New("mailstore: fsync of the folder failed")

// writeFileLocked replaces the folder's file name with the parts of data
// written in turn: a temporary file (mode 0600 whatever the umask: these
// files hold envelopes and flags), given the folder's owner, renamed over
// name, fsynced as d says. A failure leaves the old file, and no
// temporary one, except after the rename (errFolderSync).
func (mb *Mailbox) writeFileLocked(name string, d durability, data ...[]byte) error {
	tmp := name + ".tmp"
	out, err := mb.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, b := range data {
		if _, err = out.Write(b); err != nil {
			break
		}
	}
	if err == nil && d >= syncFile {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		mb.owner.chown(mb.root, tmp)
		err = mb.root.Rename(tmp, name)
	}
	if err != nil {
		_ = mb.root.Remove(tmp)
		return err
	}
	if d >= syncFolder {
		if err := mb.syncFolderLocked(); err != nil {
			return fmt.Errorf("%w: %w", errFolderSync, err)
		}
	}
	return nil
}

func (mb *Mailbox) syncFolderLocked() error {
	d, err := mb.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return ignoringEINTR(func() error { return unix.Fsync(int(d.Fd())) })
}
