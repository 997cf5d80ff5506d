package wire

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Writer buffers the responses of one connection. Its buffer is taken
// from a pool on the first write and given back by Flush, so an idle
// connection holds none. The destination can be replaced (STARTTLS, a
// deflate stream for COMPRESS) between responses.
type Writer struct {
	dst  io.Writer
	bw   *bufio.Writer
	err  error
	pool *Buffers
}

// NewWriter returns a Writer to dst, borrowing its buffer from pool (nil:
// a buffer of its own, kept).
func NewWriter(dst io.Writer, pool *Buffers) *Writer { return &Writer{dst: dst, pool: pool} }

// SetDest replaces the destination; call after Flush.
func (w *Writer) SetDest(dst io.Writer) { w.dst = dst }

// Dest is the current destination.
func (w *Writer) Dest() io.Writer { return w.dst }

// Err is the first write error; later writes are dropped.
func (w *Writer) Err() error { return w.err }

func (w *Writer) buf() *bufio.Writer {
	if w.bw == nil {
		if w.pool != nil {
			w.bw, _ = w.pool.write.Get().(*bufio.Writer)
		}
		if w.bw == nil {
			// One full TLS record (16 KiB of plaintext) per write: with
			// 8 KiB, a large FETCH went out in twice as many records, and
			// the client spent that much more on reading them (warm
			// FETCH ENVELOPE of 20,000 messages, imaplib: 0.22–0.24 s →
			// 0.21–0.22 s wall, BenchmarkBesideDovecot). An idle
			// connection holds none (Flush returns it to the pool).
			w.bw = bufio.NewWriterSize(nil, 16384)
		}
		w.bw.Reset(w.dst)
	}
	return w.bw
}

// Flush writes out what is buffered and releases the buffer.
func (w *Writer) Flush() error {
	if w.bw == nil {
		return w.err
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
	if w.pool == nil {
		return w.err // keeps its own buffer
	}
	w.bw.Reset(nil)
	w.pool.write.Put(w.bw)
	w.bw = nil
	return w.err
}

// Raw writes s as is.
func (w *Writer) Raw(s string) {
	if w.err == nil {
		_, w.err = w.buf().WriteString(s)
	}
}

// Bytes writes b as is.
func (w *Writer) Bytes(b []byte) {
	if w.err == nil {
		_, w.err = w.buf().Write(b)
	}
}

// AvailableBuffer is an empty slice over the free part of the buffer:
// a response appended to it and given to Bytes is copied nowhere else
// when it fit. Less than minAvailable free flushes first.
func (w *Writer) AvailableBuffer() []byte {
	bw := w.buf()
	if bw.Available() < minAvailable && w.err == nil {
		w.err = bw.Flush()
	}
	return bw.AvailableBuffer()
}

// minAvailable is the room AvailableBuffer makes: an ENVELOPE or a
// BODYSTRUCTURE usually fits.
const minAvailable = 2048

// Byte writes one byte.
func (w *Writer) Byte(c byte) {
	if w.err == nil {
		w.err = w.buf().WriteByte(c)
	}
}

// SP writes a space.
func (w *Writer) SP() { w.Byte(' ') }

// CRLF ends a response line.
func (w *Writer) CRLF() { w.Raw("\r\n") }

// Number writes a decimal number.
func (w *Writer) Number(n uint64) {
	if w.err == nil {
		// Appended in the buffer's free part: a local array would
		// escape (bufio may hand it to the destination), one allocation
		// a number, five per line of a FETCH over 20,000 messages.
		bw := w.buf()
		_, w.err = bw.Write(strconv.AppendUint(bw.AvailableBuffer(), n, 10))
	}
}

// Number32 writes a decimal number.
func (w *Writer) Number32(n uint32) { w.Number(uint64(n)) }

// quotable reports whether s can go in a quoted string (utf8: UTF-8 text
// allowed, after ENABLE UTF8=ACCEPT or IMAP4rev2; other 8-bit text never,
// RFC 9051 utf8-quoted).
func quotable(s string, utf8 bool) bool {
	if len(s) > 4096 {
		return false
	}
	high := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 || c == '\r' || c == '\n' || (c >= 0x80 && !utf8) {
			return false
		}
		high = high || c >= 0x80
	}
	return !high || ValidUTF8(s)
}

// ValidUTF8 reports whether s is UTF-8, what a quoted string may hold
// beyond ASCII.
func ValidUTF8(s string) bool { return utf8.ValidString(s) }

// String writes s as a quoted string, or a literal when it cannot be
// quoted.
func (w *Writer) String(s string, utf8 bool) {
	if !quotable(s, utf8) {
		w.Literal(s)
		return
	}
	w.Byte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			w.Byte('\\')
		}
		w.Byte(s[i])
	}
	w.Byte('"')
}

// NString writes NIL for an empty s, else String.
func (w *Writer) NString(s string, utf8 bool) {
	if s == "" {
		w.Raw("NIL")
		return
	}
	w.String(s, utf8)
}

// AString writes s as an atom when it is one, else String.
func (w *Writer) AString(s string, utf8 bool) {
	ok := s != "" && len(s) < 1024 && !equalFold(s, "NIL")
	for i := 0; ok && i < len(s); i++ {
		ok = IsAStringChar(s[i])
	}
	if ok {
		w.Raw(s)
		return
	}
	w.String(s, utf8)
}

// NULInLiteral is what a NUL byte becomes in a literal that is no
// literal8: a literal holds CHAR8, any byte but NUL (RFC 3501, RFC 9051
// §4.3), and a message may hold NULs (UTF-16 text sent as 8bit, broken
// mailers). Dovecot sends 0x80 for them; the length stays the same.
const NULInLiteral = 0x80

// Literal writes s as a literal, NULs replaced (NULInLiteral).
func (w *Writer) Literal(s string) {
	w.Byte('{')
	w.Number(uint64(len(s)))
	w.Raw("}\r\n")
	for {
		i := strings.IndexByte(s, 0)
		if i < 0 {
			w.Raw(s)
			return
		}
		w.Raw(s[:i])
		w.Byte(NULInLiteral)
		s = s[i+1:]
	}
}

// LiteralBytes writes b as a literal, NULs replaced (NULInLiteral);
// binary makes it a literal8 (~{n}), written as it is.
func (w *Writer) LiteralBytes(b []byte, binary bool) {
	if binary {
		w.Byte('~')
	}
	w.Byte('{')
	w.Number(uint64(len(b)))
	w.Raw("}\r\n")
	for !binary {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			break
		}
		w.Bytes(b[:i]) // b is not ours to change (a cache's)
		w.Byte(NULInLiteral)
		b = b[i+1:]
	}
	w.Bytes(b)
}

// nulReplacer replaces the NULs of what r reads (NULInLiteral).
type nulReplacer struct{ r io.Reader }

func (n nulReplacer) Read(p []byte) (int, error) {
	c, err := n.r.Read(p)
	for b := p[:c]; ; {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			break
		}
		b[i] = NULInLiteral
		b = b[i+1:]
	}
	return c, err
}

// LiteralFrom writes a literal of exactly n bytes copied from r, without
// holding them in memory (NULs replaced but in a literal8); a short source is padded with spaces so the
// response stays well-formed, and the error reported.
func (w *Writer) LiteralFrom(r io.Reader, n int64, binary bool) error {
	if binary {
		w.Byte('~')
	} else {
		r = nulReplacer{r}
	}
	w.Byte('{')
	w.Number(uint64(n))
	w.Raw("}\r\n")
	if w.err != nil {
		return w.err
	}
	c, err := io.Copy(w.buf(), io.LimitReader(r, n))
	for ; c < n && w.err == nil; c++ {
		w.err = w.buf().WriteByte(' ')
	}
	if w.err != nil {
		return w.err
	}
	return err
}
