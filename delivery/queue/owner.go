package queue

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// OwnerPID returns the pid of the process that runs the spool at dir (the
// holder of its owner lock), or 0 when no process does. It reads the pid the
// owner wrote into the lock file and confirms it in /proc: that process must
// hold the file open with an exclusive flock on it, so a stale pid, or one
// reused by another program, is never taken for the owner. It never touches
// the lock itself, so it cannot disturb a server starting up. Reading another
// user's /proc/PID/fd needs root: without it the result is an error.
func OwnerPID(dir string) (int, error) {
	path := filepath.Join(dir, ownerFile)
	want, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue: owner: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("queue: owner: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, nil // never written, or torn: no owner to name
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(fdDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil // the process is gone
	}
	if err != nil {
		return 0, fmt.Errorf("queue: owner: pid %d: %w", pid, err)
	}
	for _, fd := range fds {
		st, err := os.Stat(filepath.Join(fdDir, fd.Name()))
		if err != nil || !os.SameFile(st, want) {
			continue
		}
		locked, err := holdsFlock(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			return 0, fmt.Errorf("queue: owner: pid %d: %w", pid, err)
		}
		if locked {
			return pid, nil
		}
	}
	return 0, nil
}

// holdsFlock reads a /proc/PID/fdinfo/FD file and reports whether it lists
// an exclusive flock (a "lock:\t1: FLOCK  ADVISORY  WRITE ..." line).
func holdsFlock(fdinfo string) (bool, error) {
	f, err := os.Open(fdinfo)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "lock:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) >= 4 && fields[1] == "FLOCK" && fields[3] == "WRITE" {
			return true, nil
		}
	}
	return false, sc.Err()
}
