package wire

import (
	"io"
	"strconv"
	"strings"
)

// Enhanced is an enhanced status code (RFC 3463), class.subject.detail.
// The zero value means "not given": Reply then sends X.0.0 after a 2xx,
// 4xx or 5xx code, as RFC 2034 wants one on every such reply. A negative
// class means none at all (Plain).
type Enhanced [3]int

// maxHeld bounds the replies held for a client that pipelines (1000
// pipelined RCPTs make about 30 KiB); past it they are written at once.
const maxHeld = 64 << 10

// maxReplyLine bounds one line of reply text (RFC 5321 §4.5.3.1.5 says
// 512 octets for a reply line, code and CRLF included).
const maxReplyLine = 500

// Writer formats SMTP replies and holds them until Flush, so that the
// replies to pipelined commands leave together (RFC 2920 §3.2): the
// server flushes when it is about to wait for the client.
type Writer struct {
	dst  io.Writer
	held []byte
	err  error // the first write error; every later Flush returns it
}

// NewWriter writes to dst.
func NewWriter(dst io.Writer) *Writer {
	// Room for an EHLO reply: one allocation for a session's replies, not
	// one per growth of the buffer.
	return &Writer{dst: dst, held: make([]byte, 0, initialHeld)}
}

// initialHeld is what a Writer holds before its buffer grows.
const initialHeld = 512

// SetDestination makes w write to dst (STARTTLS). Held replies are kept.
func (w *Writer) SetDestination(dst io.Writer) { w.dst = dst }

// Reply adds one reply. text may have several lines (separated by LF):
// each becomes a line of a multi-line reply, the enhanced code on the
// last. Control characters in text are replaced, so that nothing from a
// caller can end a reply early or start another.
func (w *Writer) Reply(code int, ec Enhanced, text string) {
	if ec == (Enhanced{}) {
		switch code / 100 {
		case 2, 4, 5:
			ec = Enhanced{code / 100, 0, 0}
		default:
			ec = Enhanced{-1}
		}
	}
	for rest, more := text, true; more; {
		var l string
		l, rest, more = strings.Cut(rest, "\n")
		sep := byte('-')
		if !more {
			sep = ' '
		}
		w.held = strconv.AppendInt(w.held, int64(code), 10)
		w.held = append(w.held, sep)
		if !more && ec[0] >= 0 {
			w.held = strconv.AppendInt(w.held, int64(ec[0]), 10)
			w.held = append(w.held, '.')
			w.held = strconv.AppendInt(w.held, int64(ec[1]), 10)
			w.held = append(w.held, '.')
			w.held = strconv.AppendInt(w.held, int64(ec[2]), 10)
			if l != "" {
				w.held = append(w.held, ' ')
			}
		}
		w.held = appendClean(w.held, l)
		w.held = append(w.held, '\r', '\n')
	}
}

// Plain adds a reply without enhanced code (the greeting, 334, 354, EHLO):
// each of lines is a line of it.
func (w *Writer) Plain(code int, lines ...string) {
	w.Reply(code, Enhanced{-1}, strings.Join(lines, "\n"))
}

// appendClean appends s without control characters, at most maxReplyLine
// octets.
func appendClean(b []byte, s string) []byte {
	if len(s) > maxReplyLine {
		s = s[:maxReplyLine]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f {
			c = '?'
		}
		b = append(b, c)
	}
	return b
}

// Held is how many octets of replies wait for Flush.
func (w *Writer) Held() int { return len(w.held) }

// Full says whether the held replies should go now rather than wait.
func (w *Writer) Full() bool { return len(w.held) >= maxHeld }

// Flush writes the held replies in one write.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.held) == 0 {
		return nil
	}
	_, err := w.dst.Write(w.held)
	w.held = w.held[:0]
	if cap(w.held) > maxHeld {
		w.held = nil // a flood's buffer is not kept for the connection's life
	}
	w.err = err
	return err
}
