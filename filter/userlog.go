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
// (never through a symlink, never a FIFO), owned by the user.
func appendUserLog(home, line string, uid, gid int) error {
	root, err := os.OpenRoot(home)
	if err != nil {
		return err
	}
	defer root.Close()
	if fi, err := root.Lstat(UserLogName); err == nil && fi.Mode().IsRegular() && fi.Size() > maxUserLog {
		_ = root.Rename(UserLogName, UserLogName+".0")
	}
	f, err := root.OpenFile(UserLogName, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
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
	if uid >= 0 {
		if err := f.Chown(uid, gid); err != nil {
			return err
		}
	}
	_, err = f.WriteString(line)
	return errors.Join(err, f.Close())
}
