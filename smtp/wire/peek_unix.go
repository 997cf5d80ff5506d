//go:build unix

package wire

import (
	"net"
	"syscall"
)

// Peek copies into p what the kernel holds of nc's input that nobody has
// read yet, without consuming it and without waiting, and returns its
// length (0: nothing arrived, or nc is not a socket). It is Postfix's
// peekfd: whether a client sent more than it was allowed to before our
// reply (RFC 2920 §3.1). nc is the TCP connection itself, below any TLS.
func Peek(nc net.Conn, p []byte) int {
	sc, ok := nc.(syscall.Conn)
	if !ok || len(p) == 0 {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Read(func(fd uintptr) bool {
		m, _, err := syscall.Recvfrom(int(fd), p, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == nil && m > 0 {
			n = m
		}
		return true // never wait
	})
	return n
}
