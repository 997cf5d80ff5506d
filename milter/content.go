package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// Content is a message or a body, read in place: a message is never held
// whole in memory here (it may be a file of the caller's spool). A
// *bytes.Reader is one; so is courriel/delivery.Content.
type Content interface {
	io.ReaderAt
	Size() int64
}

// Spool says where a body a milter replaces is kept: in memory up to
// Threshold, then in a file Create opens (the caller's spool: an unnamed
// file of the queue's incoming directory, so that a crash leaves nothing).
// The zero Spool keeps replaced bodies in memory, up to DefaultBodyLimit.
type Spool struct {
	Create    func() (*os.File, error)
	Threshold int64 // 0: DefaultSpoolThreshold
	// Limit is the largest replaced body accepted (after CRLF
	// normalisation); a milter that sends more has failed. 0:
	// DefaultBodyLimit.
	Limit int64
}

// Defaults of Spool.
const (
	DefaultSpoolThreshold = 128 << 10
	DefaultBodyLimit      = 64 << 20
)

// errBodyTooLarge: a milter's replaced body passes Spool.Limit.
var errBodyTooLarge = errors.New("replaced body larger than the message size limit")

// localError is a failure of ours (reading the message, writing the
// replaced body to the spool), not of the milter: the message gets a
// temporary failure whatever the milter's default action.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// bodyBuffer is a body a milter sends to replace the message's: given
// CRLF line ends as it arrives (a milter may send LF alone, and no bare CR
// or LF may reach a maildir or the next hop; NUL is dropped, RFC 6152 §3),
// in memory up to the threshold, then in the spool.
type bodyBuffer struct {
	sp     Spool
	mem    []byte
	f      *os.File // nil while the body is in memory
	size   int64
	lastCR bool   // the last byte written was a CR: an LF next is its pair
	out    []byte // normalised bytes, reused
}

func newBodyBuffer(sp Spool) *bodyBuffer {
	if sp.Threshold <= 0 {
		sp.Threshold = DefaultSpoolThreshold
	}
	if sp.Limit <= 0 {
		sp.Limit = DefaultBodyLimit
	}
	return &bodyBuffer{sp: sp}
}

// write appends a piece of the replaced body.
func (b *bodyBuffer) write(p []byte) error {
	out := b.out[:0]
	for _, c := range p {
		if b.lastCR {
			b.lastCR = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\r':
			out = append(out, '\r', '\n')
			b.lastCR = true
		case '\n':
			out = append(out, '\r', '\n')
		case 0:
		default:
			out = append(out, c)
		}
	}
	b.out = out[:0]
	if len(out) == 0 {
		return nil
	}
	if b.size+int64(len(out)) > b.sp.Limit {
		return errBodyTooLarge
	}
	if b.f == nil && (b.sp.Create == nil || b.size+int64(len(out)) <= b.sp.Threshold) {
		b.mem = append(b.mem, out...)
		b.size += int64(len(out))
		return nil
	}
	if b.f == nil {
		f, err := b.sp.Create()
		if err != nil {
			return &localError{fmt.Errorf("spooling a replaced body: %w", err)}
		}
		b.f = f
		if _, err := f.Write(b.mem); err != nil {
			return &localError{fmt.Errorf("spooling a replaced body: %w", err)}
		}
		b.mem = nil
	}
	if _, err := b.f.Write(out); err != nil {
		return &localError{fmt.Errorf("spooling a replaced body: %w", err)}
	}
	b.size += int64(len(out))
	return nil
}

// content is the body; valid until close.
func (b *bodyBuffer) content() Content {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.size)
	}
	return bytes.NewReader(b.mem)
}

// spooled says whether the body went to a file.
func (b *bodyBuffer) spooled() bool { return b != nil && b.f != nil }

// close frees the body (the spool's file has no name).
func (b *bodyBuffer) close() {
	if b == nil {
		return
	}
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.mem = nil
}

// Bounds of a milter's packets. The library reads any packet up to 512 MiB
// into memory at once (and panics on one of length 0): no answer of a
// milter needs more than a body chunk of the largest size the protocol
// negotiates, or a header value (maxValueLen) with its name.
const maxPacket = 1<<20 + 4<<10

// smfirReplBody is SMFIR_REPLBODY, a piece of a milter's new body.
const smfirReplBody = 'b'

// packetConn is the connection to a milter as the library reads it: packet
// by packet, each checked against maxPacket, and, while replacing is set
// (the end of a message), the SMFIR_REPLBODY packets go to a bodyBuffer
// as they arrive instead of to the library, which would hold them all in
// memory until the milter's last answer.
type packetConn struct {
	net.Conn
	hdr     [5]byte // length and code of the current packet
	hdrLeft int     // bytes of hdr not yet read by the library
	left    int64   // data bytes of the current packet not yet read

	replacing bool
	spool     Spool
	replaced  *bodyBuffer // the replaced body, once a milter sends one
	buf       []byte      // for SMFIR_REPLBODY data
	err       error       // a failure of the replaced body: the read fails
}

func (c *packetConn) Read(p []byte) (int, error) {
	for c.hdrLeft == 0 && c.left == 0 {
		if _, err := io.ReadFull(c.Conn, c.hdr[:]); err != nil {
			return 0, err
		}
		length := binary.BigEndian.Uint32(c.hdr[:4])
		if length == 0 || length > maxPacket {
			return 0, fmt.Errorf("milter sent a packet of %d bytes", length)
		}
		if c.replacing && c.hdr[4] == smfirReplBody {
			if err := c.replBody(int64(length) - 1); err != nil {
				return 0, err
			}
			continue
		}
		c.hdrLeft, c.left = len(c.hdr), int64(length)-1
	}
	if c.hdrLeft > 0 {
		n := copy(p, c.hdr[len(c.hdr)-c.hdrLeft:])
		c.hdrLeft -= n
		return n, nil
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.Conn.Read(p)
	c.left -= int64(n)
	return n, err
}

// replBody reads n bytes of a new body into c.replaced.
func (c *packetConn) replBody(n int64) error {
	if c.replaced == nil {
		c.replaced = newBodyBuffer(c.spool)
	}
	if c.buf == nil {
		c.buf = make([]byte, 32<<10)
	}
	for n > 0 {
		m, err := io.ReadFull(c.Conn, c.buf[:min(n, int64(len(c.buf)))])
		if err != nil {
			return err
		}
		n -= int64(m)
		if c.err == nil {
			c.err = c.replaced.write(c.buf[:m])
		}
	}
	// Read to the end of the packet first: a local failure is reported
	// with the connection still in step, though it is closed anyway.
	return c.err
}

// startReplacing diverts SMFIR_REPLBODY packets to a new body until
// stopReplacing, which returns it (nil if the milter sent none).
func (c *packetConn) startReplacing(sp Spool) {
	c.replacing, c.spool, c.replaced, c.err = true, sp, nil, nil
}

func (c *packetConn) stopReplacing() (*bodyBuffer, error) {
	b, err := c.replaced, c.err
	c.replacing, c.replaced, c.err, c.buf = false, nil, nil, nil
	return b, err
}
