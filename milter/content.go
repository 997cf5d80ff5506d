package milter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
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
	// MaxMessage, when set, is the largest message (header and body, as
	// given to Message) the milters' changes may leave (or the size of
	// the message given, if larger): a milter whose changes would pass
	// it has failed, and none of its changes is made. The caller sets it
	// to what its store or queue accepts, so that a milter's growth is
	// never refused there.
	MaxMessage int64
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

// Bounds of one milter's changes at the end of a message. The library
// keeps every modification packet in memory until the milter's last
// answer, each up to maxPacket, any number of them: packetConn counts them
// as they arrive and, past a bound, passes no more of them on (the milter
// has failed; see Session.capped).
const (
	maxChanges      = 1000      // modification packets of any kind
	maxChangeBytes  = 256 << 10 // their data
	maxHeaderChange = 64 << 10  // data of ADDHEADER, INSHEADER, CHGHEADER
	maxAddRcpts     = 100       // ADDRCPT and ADDRCPT_PAR: a directory lookup each
)

// change reports whether code is one of the modification packets counted
// against the bounds above (not a body piece, not a final answer).
func change(code byte) bool {
	switch code {
	case '+', '-', '2', 'e', 'h', 'i', 'm', 'q':
		return true
	}
	return false
}

// overflow says why a milter's changes passed a bound (why, "" if none),
// with a spam verdict found in a packet not passed on (junk, its reason).
type overflow struct {
	why  string
	junk string
}

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
	err       error       // a local failure of the replaced body: the read fails

	// The changes counted since startReplacing, and the bound passed.
	changes, changeBytes, headerBytes, addRcpts int64
	over                                        overflow
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
		if c.replacing && change(c.hdr[4]) {
			if c.over.why == "" {
				c.over.why = c.count(c.hdr[4], int64(length)-1)
			}
			if c.over.why != "" {
				if err := c.skip(c.hdr[4], int64(length)-1); err != nil {
					return 0, err
				}
				continue
			}
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

// count adds a modification packet of n data bytes to the milter's
// changes; it returns the bound passed, if any.
func (c *packetConn) count(code byte, n int64) string {
	c.changes++
	c.changeBytes += n
	switch code {
	case 'h', 'i', 'm':
		c.headerBytes += n
	case '+', '2':
		c.addRcpts++
	}
	switch {
	case c.changes > maxChanges:
		return fmt.Sprintf("more than %d changes", maxChanges)
	case c.changeBytes > maxChangeBytes:
		return fmt.Sprintf("changes of more than %d bytes", maxChangeBytes)
	case c.headerBytes > maxHeaderChange:
		return fmt.Sprintf("header changes of more than %d bytes", maxHeaderChange)
	case c.addRcpts > maxAddRcpts:
		return fmt.Sprintf("more than %d recipients added", maxAddRcpts)
	}
	return ""
}

// skip reads and drops a modification packet of n data bytes, past a
// bound: only a spam verdict in it (a quarantine, X-Spam: Yes) is kept.
func (c *packetConn) skip(code byte, n int64) error {
	var peek [512]byte
	k, err := io.ReadFull(c.Conn, peek[:min(n, int64(len(peek)))])
	if err != nil {
		return err
	}
	if _, err := io.CopyN(io.Discard, c.Conn, n-int64(k)); err != nil {
		return err
	}
	if c.over.junk != "" {
		return nil
	}
	p := peek[:k]
	switch code {
	case 'q':
		c.over.junk = "quarantine: " + sanitize(string(bytes.TrimRight(p, "\x00")), 200)
	case 'i', 'm':
		if len(p) < 4 {
			return nil
		}
		p = p[4:]
		fallthrough
	case 'h':
		name, rest, ok := bytes.Cut(p, []byte{0})
		value, _, ok2 := bytes.Cut(rest, []byte{0})
		if ok && ok2 && isSpamFlag(string(name), string(value)) {
			c.over.junk = sanitize(string(name)+": "+strings.TrimSpace(string(value)), 64)
		}
	}
	return nil
}

// replBody reads n bytes of a new body into c.replaced; a body past
// Spool.Limit, or one that comes after a bound was passed, is dropped.
func (c *packetConn) replBody(n int64) error {
	if c.replaced == nil && c.over.why == "" {
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
		if c.err != nil || c.over.why != "" {
			continue
		}
		err = c.replaced.write(c.buf[:m])
		if errors.Is(err, errBodyTooLarge) {
			c.over.why = err.Error()
			c.replaced.close()
			c.replaced = nil
			continue
		}
		c.err = err
	}
	// Read to the end of the packet first: a local failure is reported
	// with the connection still in step, though it is closed anyway.
	return c.err
}

// startReplacing diverts SMFIR_REPLBODY packets to a new body, and counts
// the other changes, until stopReplacing, which returns the body (nil if
// the milter sent none, or passed a bound) and the bound passed.
func (c *packetConn) startReplacing(sp Spool) {
	c.replacing, c.spool, c.replaced, c.err = true, sp, nil, nil
	c.changes, c.changeBytes, c.headerBytes, c.addRcpts, c.over = 0, 0, 0, 0, overflow{}
}

func (c *packetConn) stopReplacing() (*bodyBuffer, overflow, error) {
	b, over, err := c.replaced, c.over, c.err
	c.replacing, c.replaced, c.err, c.buf, c.over = false, nil, nil, nil, overflow{}
	return b, over, err
}
