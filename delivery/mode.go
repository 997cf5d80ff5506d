package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// copyMode is the mode of every copy: the owner reads and writes it
// (IMAP renames it, sets flags), nobody else sees it.
const copyMode = 0o600

// umaskKeeps says whether the process umask clears none of mode's bits,
// as /proc/self/status tells without changing it (umask(2) can only be
// read by setting it, which would race with every file being created).
// false when it cannot tell: the copy is then chmodded.
func umaskKeeps(mode uint32) bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false
	}
	defer f.Close()
	mask, ok := parseUmask(f)
	return ok && mask&mode == 0
}

// parseUmask reads the Umask: line of a /proc/PID/status (Linux 4.7 on).
func parseUmask(status io.Reader) (uint32, bool) {
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Umask:"))
		if !ok {
			continue
		}
		m, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
		return uint32(m), err == nil
	}
	return 0, false
}

// hasDefaultACL says whether files created in dir take their permissions
// from a default ACL instead of the umask; true when it cannot tell.
func hasDefaultACL(dir *os.File) bool {
	var n int
	err := withFd(dir, func(fd int) error {
		var err error
		n, err = unix.Fgetxattr(fd, "system.posix_acl_default", nil)
		return err
	})
	switch {
	case errors.Is(err, unix.ENODATA), errors.Is(err, unix.EOPNOTSUPP):
		return false
	case err != nil:
		return true
	}
	return n > 0
}
