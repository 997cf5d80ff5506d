package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxSocketPath is what sun_path holds on Linux, its NUL excluded.
const maxSocketPath = 107

// listenLocal binds the local submission socket (listen.local) for
// courriel sendmail. The directory is created 0755 when missing: everyone
// must reach the socket, nobody but its owner may replace it, so a
// directory that others may write (sticky or not), or that belongs to
// another user than root or us, is refused.
// The socket is 0666: any local user may submit, as anyone may run
// Postfix's setgid postdrop; the server names each client by its peer
// credentials. A socket left by a server that died is replaced; one a
// running server answers on is not (a second serve would take its mail).
func listenLocal(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o755); err != nil { // past the umask
			return nil, err
		}
	}
	if err := checkSocketDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: a server is listening on it already", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// checkSocketDir refuses a directory for the local socket that others
// could put their own socket in: writable by others, or owned by another
// user than root or us. A sticky directory (/tmp) is no better: anyone
// may make the socket there while the server is down, and receive the
// mail of everyone who runs sendmail.
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		sticky := ""
		if fi.Mode()&fs.ModeSticky != 0 {
			sticky = ", sticky"
		}
		return fmt.Errorf("%s is writable by others (mode %v%s): anyone could put their own socket in its place", dir, fi.Mode().Perm(), sticky)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, neither root nor us: its owner could put their own socket in its place", dir, st.Uid)
	}
	return nil
}

// checkLocalSocket is check-config's look at listen.local, changing
// nothing: a socket there (the running server's, or a stale one serve
// replaces), or a directory serve may use, or one it can make. The
// directory is checked as serve checks it, a socket in it or not.
func checkLocalSocket(path string) (note string, err error) {
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); err == nil {
		if err := checkSocketDir(dir); err != nil {
			return "", err
		}
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return "", fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return "(a server answers on it)", nil
		}
		return "(a stale socket, replaced at the start)", nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		parent := filepath.Dir(dir)
		if err := unix.Access(parent, unix.W_OK|unix.X_OK); err != nil {
			return "", fmt.Errorf("cannot make %s: %s: %w", dir, parent, err)
		}
		return "(directory made at the start)", nil
	}
	return "", checkSocketDir(dir)
}
