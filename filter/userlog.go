package filter

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// UserLogName is Pigeonhole's default user log beside the active script.
const UserLogName = ".dovecot.sieve.log"

// maxUserLog bounds the user log: past it the log is moved to
// UserLogName + ".0" (replacing the previous one) and started afresh.
const maxUserLog = 64 << 10

// appendUserLog appends line to ~/.dovecot.sieve.log: a regular file
// owned by the user, never a FIFO, never reached through a symlink
// (Pigeonhole opens it O_NOFOLLOW too: sieve_logfile_start) nor one with
// another name (a hard link): the server writes it as root, then gives
// it to the user, and either would let a user have it append to (and
// hand them) a file of the home they may not write.
func appendUserLog(home, line string, uid, gid int) error {
	root, err := os.OpenRoot(home)
	if err != nil {
		return err
	}
	defer root.Close()
	if fi, err := root.Lstat(UserLogName); err == nil && fi.Mode().IsRegular() && fi.Size() > maxUserLog {
		_ = root.Rename(UserLogName, UserLogName+".0")
	}
	f, err := openNoFollow(root, UserLogName, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", UserLogName)
	}
	if err := oneLink(f, UserLogName); err != nil {
		return err
	}
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	_, err = f.WriteString(line)
	return errors.Join(err, f.Close())
}
