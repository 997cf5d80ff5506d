package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// checkListen is check-config's test of one listener address: it is fine
// when it is free, or when every socket holding it is a listener of owner
// (the running courriel that owns this configuration's spool, 0 if none), so
// that `check-config && systemctl reload courriel` works on a live server.
// A port held by anything else is reported. ownerErr is why the owner could
// not be identified, if so. It returns a note for the report line.
func checkListen(addr string, owner int, ownerErr error) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		ln.Close()
		return "free", nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return "", err
	}
	if owner == 0 && ownerErr != nil {
		return "", fmt.Errorf("%w (cannot tell whether a running courriel holds it: %v)", err, ownerErr)
	}
	if owner == 0 {
		return "", fmt.Errorf("%w, and no courriel runs this configuration's queue directory: another program holds it (or a courriel with another queue.dir, which only a restart can change)", err)
	}
	held, err2 := listenerInodes(addr)
	if err2 != nil {
		return "", fmt.Errorf("%w (its holder could not be identified: %v)", err, err2)
	}
	if len(held) == 0 {
		return "", fmt.Errorf("%w (no listening socket found for it in /proc/net/tcp)", err)
	}
	mine, err2 := socketInodes(owner)
	if err2 != nil {
		return "", fmt.Errorf("%w (cannot tell whether the running courriel, pid %d, holds it: %v; run check-config as root or as the server's user)", err, owner, err2)
	}
	for _, ino := range held {
		if !mine[ino] {
			return "", fmt.Errorf("%w by another program (not the running courriel, pid %d)", err, owner)
		}
	}
	return fmt.Sprintf("held by the running courriel (pid %d)", owner), nil
}

// listenerInodes returns the socket inodes of every TCP listener, IPv4 or
// IPv6, that a bind to addr would collide with: the same port on the same
// address, or with either side a wildcard address.
func listenerInodes(addr string) ([]uint64, error) {
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		socks, err := readListeners(file)
		if errors.Is(err, os.ErrNotExist) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, err
		}
		for _, s := range socks {
			if s.port != want.Port {
				continue
			}
			if want.IP == nil || want.IP.IsUnspecified() || s.ip.IsUnspecified() || s.ip.Equal(want.IP) {
				out = append(out, s.inode)
			}
		}
	}
	return out, nil
}

type listenSocket struct {
	ip    net.IP
	port  int
	inode uint64
}

// tcpListen is the TCP_LISTEN state in /proc/net/tcp's "st" column.
const tcpListen = "0A"

// readListeners parses the listening sockets of a /proc/net/tcp{,6} file:
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
//
// where an address is the IP's 32-bit words, each printed in hex in the
// kernel's byte order, then ":" and the port in hex.
func readListeners(file string) ([]listenSocket, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []listenSocket
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != tcpListen {
			continue
		}
		hexIP, hexPort, ok := strings.Cut(fields[1], ":")
		raw, err := hex.DecodeString(hexIP)
		if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
			return nil, fmt.Errorf("%s: bad address %q", file, fields[1])
		}
		ip := make(net.IP, len(raw))
		for i := 0; i < len(raw); i += 4 {
			binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(raw[i:]))
		}
		port, err := strconv.ParseUint(hexPort, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: bad port %q", file, fields[1])
		}
		inode, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad inode %q", file, fields[9])
		}
		out = append(out, listenSocket{ip: ip, port: int(port), inode: inode})
	}
	return out, sc.Err()
}

// socketInodes returns the inodes of the sockets process pid has open
// (its /proc/PID/fd links read "socket:[INODE]").
func socketInodes(pid int) (map[uint64]bool, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[uint64]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(dir, fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if s, ok := strings.CutPrefix(link, "socket:["); ok {
			if ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64); err == nil {
				out[ino] = true
			}
		}
	}
	return out, nil
}
