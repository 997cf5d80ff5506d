//go:build !unix

package wire

import "net"

// Peek reports nothing where the socket cannot be peeked at: only what
// the Reader holds is seen (see the unix version).
func Peek(nc net.Conn, p []byte) int { return 0 }
