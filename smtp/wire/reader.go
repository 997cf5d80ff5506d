package wire

import (
	"bytes"
	"errors"
	"io"
	"net"
)

// ErrLineTooLong is returned by ReadLine for a line longer than the limit.
// The rest of that line is still unread: the caller closes the connection.
var ErrLineTooLong = errors.New("smtp/wire: command line too long")

// minBuffer is what a Reader holds at least; a command line must fit in
// the buffer whole, so it is at least the line limit.
const minBuffer = 4096

// Reader reads what an SMTP client sends: command lines (bounded), DATA
// text (unbounded lines, dot-unstuffed, up to <CRLF>.<CRLF>) and BDAT
// chunks (counted octets). It holds one buffer: a client that pipelines
// commands leaves them there, Buffered says so, and nothing is read from
// the source while a whole line is already buffered.
//
// Before every read from the source, Reader calls the wait function given
// to NewReader: the read may block until the client sends more, and the
// client may be waiting for our replies (RFC 2920 §3.2).
type Reader struct {
	src     io.Reader
	wait    func() error
	maxLine int

	buf        []byte
	start, end int   // buf[start:end] is read and not yet consumed
	err        error // from src, returned once the buffer is empty
}

// NewReader reads from src, lines of at most maxLine octets (CRLF
// included). wait, if not nil, runs before every read from src; its error
// stops the read.
func NewReader(src io.Reader, maxLine int, wait func() error) *Reader {
	return &Reader{src: src, wait: wait, maxLine: maxLine}
}

// BufferSize is the size of the buffer a Reader of lines of at most
// maxLine octets reads into (see Lend).
func BufferSize(maxLine int) int { return max(minBuffer, maxLine) }

// Lend gives r buf, of BufferSize, to read into instead of allocating one:
// a connection a second costs a buffer a second otherwise. Before any read.
func (r *Reader) Lend(buf []byte) {
	if r.buf == nil && len(buf) == BufferSize(r.maxLine) {
		r.buf = buf
	}
}

// Return gives back the buffer r reads into, when it is of BufferSize,
// for another Reader's Lend; r must not be used after it. nil otherwise.
func (r *Reader) Return() []byte {
	buf := r.buf
	r.buf, r.start, r.end = nil, 0, 0
	if len(buf) != BufferSize(r.maxLine) {
		return nil
	}
	return buf
}

// SetSource makes r read from src, discarding what is buffered (STARTTLS:
// what the client sent in clear after the command must never be taken as
// sent inside TLS, CVE-2011-0411). It returns how many octets it dropped.
func (r *Reader) SetSource(src io.Reader) int {
	n := r.end - r.start
	r.src, r.start, r.end, r.err = src, 0, 0, nil
	return n
}

// Buffered says how many octets the client sent that are not consumed yet.
func (r *Reader) Buffered() int { return r.end - r.start }

// Peek returns at most n of the octets Buffered counts, without consuming
// them; valid until the next call on r.
func (r *Reader) Peek(n int) []byte { return r.buf[r.start:min(r.end, r.start+max(n, 0))] }

// Poll reads once from the source into the buffer, without the wait
// function, and returns how many octets it added. Meant for a source whose
// read deadline has passed: it then gives only what it holds already (a
// *tls.Conn, records it read from the socket before they were asked for).
// A read that fails without data (a timeout) changes nothing.
func (r *Reader) Poll() int {
	if r.buf == nil {
		r.buf, r.start, r.end = make([]byte, BufferSize(r.maxLine)), 0, 0
	}
	if r.err != nil {
		return 0
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		return 0
	}
	n, err := r.src.Read(r.buf[r.end:])
	r.end += n
	var ne net.Error
	if n > 0 && !(errors.As(err, &ne) && ne.Timeout()) {
		r.err = err
	}
	return n
}

// fill reads more from the source into the buffer, at least one octet or
// an error.
func (r *Reader) fill() error {
	if r.start == r.end && r.err != nil {
		err := r.err
		r.err = nil
		return err
	}
	if r.buf == nil || (r.start == r.end && len(r.buf) > BufferSize(r.maxLine)) {
		// A buffer grown for what followed a message (unread) is not
		// kept for the life of an idle connection.
		r.buf, r.start, r.end = make([]byte, BufferSize(r.maxLine)), 0, 0
	}
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		return errors.New("smtp/wire: buffer full") // callers never let this happen
	}
	if r.wait != nil {
		if err := r.wait(); err != nil {
			return err
		}
	}
	n, err := r.src.Read(r.buf[r.end:])
	r.end += n
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	r.err = err // returned once what came with it is consumed
	return nil
}

// ReadLine returns the next line without its line ending (CRLF, or LF
// alone as net/textproto accepts). The slice is valid until the next call
// on r. A line longer than the limit gives ErrLineTooLong without being
// held in memory whole.
func (r *Reader) ReadLine() ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(r.buf[r.start+scanned:r.end], '\n'); i >= 0 {
			n := scanned + i + 1
			if n > r.maxLine {
				return nil, ErrLineTooLong
			}
			line := r.buf[r.start : r.start+n-1]
			r.start += n
			return bytes.TrimSuffix(line, []byte{'\r'}), nil
		}
		scanned = r.end - r.start
		if scanned >= r.maxLine {
			return nil, ErrLineTooLong
		}
		if r.start == r.end && r.err != nil {
			return nil, r.fill()
		}
		if err := r.fill(); err != nil {
			if errors.Is(err, io.EOF) && r.end > r.start {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// readRaw copies what is buffered into p, or when nothing is, reads from
// the source straight into p (a message is not copied through the buffer).
func (r *Reader) readRaw(p []byte) (int, error) {
	if r.start < r.end {
		n := copy(p, r.buf[r.start:r.end])
		r.start += n
		return n, nil
	}
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	if r.wait != nil {
		if err := r.wait(); err != nil {
			return 0, err
		}
	}
	n, err := r.src.Read(p)
	if n > 0 {
		r.err = err
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}

// unread puts p back in front of the buffer: what the client sent after
// the end of a message belongs to the commands that follow.
func (r *Reader) unread(p []byte) {
	if len(p) == 0 {
		return
	}
	pending := r.end - r.start
	if r.buf == nil || len(r.buf) < len(p)+pending {
		nb := make([]byte, max(minBuffer, r.maxLine, len(p)+pending))
		r.end = copy(nb[len(p):], r.buf[r.start:r.end]) + len(p)
		r.buf, r.start = nb, 0
	} else if r.start >= len(p) {
		r.start -= len(p)
	} else {
		copy(r.buf[len(p):], r.buf[r.start:r.end])
		r.start, r.end = 0, len(p)+pending
	}
	copy(r.buf[r.start:], p)
}

// DataReader returns the reader of one DATA message: the text the client
// sends after the 354 reply, dot-unstuffed (RFC 5321 §4.5.2), up to and
// without the <CRLF>.<CRLF> that ends it, where it returns io.EOF. Only
// that sequence ends it (or ".<CRLF>" at the very start): not <LF>.<LF>,
// <CR>.<CR> or any other line ending, so nothing the client means as text
// can become a command (SMTP smuggling). Lines have no length limit; the
// caller bounds the message. Bytes after the end stay buffered for
// ReadLine.
func (r *Reader) DataReader() *DataReader {
	return &DataReader{r: r}
}

// DataReader is the dot-unstuffing reader of one DATA message.
type DataReader struct {
	r        *Reader
	state    dotState
	done     bool
	consumed int64 // octets as sent, stuffing and end included
}

// dotState is where the unstuffer is in the current line.
type dotState uint8

const (
	lineStart dotState = iota // at the start of a line (after CRLF, or the first octet)
	lineDot                   // a '.' began the line: dropped (dot-stuffing)
	lineDotCR                 // ".<CR>" began the line: end of data if LF follows
	inLineCR                  // a CR inside a line: a line ending if LF follows
	inLine                    // anywhere else
)

// Read implements io.Reader.
func (d *DataReader) Read(p []byte) (int, error) {
	if d.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := d.r.readRaw(p)
		if n == 0 {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		out, used, end := d.unstuff(p[:n])
		d.consumed += int64(used)
		if end {
			d.done = true
			d.r.unread(p[used:n])
			if out == 0 {
				return 0, io.EOF
			}
			return out, nil
		}
		if out > 0 {
			return out, nil
		}
		// Only a stuffing dot came (or ".<CR>"): read on.
	}
}

// Discard reads and drops the rest of the message, at most limit octets
// as sent; it reports whether it reached the end. Errors are the source's.
func (d *DataReader) Discard(limit int64) (bool, error) {
	var buf [4096]byte
	for limit > 0 {
		n, err := d.r.readRaw(buf[:min(int64(len(buf)), limit)])
		if n == 0 {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return false, err
		}
		limit -= int64(n)
		_, used, end := d.unstuff(buf[:n])
		d.consumed += int64(used)
		if end {
			d.done = true
			d.r.unread(buf[used:n])
			return true, nil
		}
	}
	return d.done, nil
}

// Consumed is how many octets of the message were read as sent: with
// the stuffing dots, and the end of data once it was read.
func (d *DataReader) Consumed() int64 { return d.consumed }

// Done says whether the end of data was read.
func (d *DataReader) Done() bool { return d.done }

// unstuff removes stuffing dots from p in place, stopping after an end of
// data. It returns the length of the text left at the start of p, how many
// octets of p it consumed, and whether it found the end. The text never
// grows, so writing behind the reading position is safe. Text between line
// starts that begin with a dot is copied in runs.
func (d *DataReader) unstuff(p []byte) (out, used int, end bool) {
	crlfDot := [...]byte{'\r', '\n', '.'} // where a stuffing dot can be
	w, i := 0, 0
	for i < len(p) {
		c := p[i]
		switch d.state {
		case lineStart:
			if c == '.' {
				d.state = lineDot
				i++
				continue
			}
		case inLineCR:
			if c == '\n' {
				p[w] = c
				w, i = w+1, i+1
				d.state = lineStart
				continue
			}
		case lineDot:
			i++
			if c == '\r' {
				d.state = lineDotCR
				continue
			}
			d.state = inLine
			p[w] = c
			w++
			continue
		case lineDotCR:
			i++
			if c == '\n' {
				d.state = lineStart
				return w, i, true
			}
			// ".<CR>x" at the start of a line: the dot is stuffing and
			// the CR is dropped with it (as go-smtp did), so the text
			// keeps no bare CR from it.
			d.state = inLine
			if c == '\r' {
				d.state = inLineCR
			}
			p[w] = c
			w++
			continue
		}
		// Text: up to the next line that begins with a dot.
		k := bytes.Index(p[i:], crlfDot[:])
		if k < 0 {
			// The state from the run's last octets, before the copy
			// (which may write over them).
			run := p[i:]
			switch n := len(run); {
			case run[n-1] == '\r':
				d.state = inLineCR
			case run[n-1] == '\n' && n >= 2 && run[n-2] == '\r':
				d.state = lineStart
			default:
				d.state = inLine
			}
			w += copy(p[w:], run)
			return w, len(p), false
		}
		w += copy(p[w:], p[i:i+k+2])
		i += k + 3
		d.state = lineDot
	}
	return w, i, false
}

// ChunkReader returns the reader of the n octets of a BDAT chunk
// (RFC 3030), taken as they are. It returns io.EOF after them.
func (r *Reader) ChunkReader(n int64) *ChunkReader {
	return &ChunkReader{r: r, left: n}
}

// ChunkReader reads one BDAT chunk.
type ChunkReader struct {
	r    *Reader
	left int64
}

// Read implements io.Reader.
func (c *ChunkReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.readRaw(p)
	c.left -= int64(n)
	if n == 0 && errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Left is how many octets of the chunk are not read yet.
func (c *ChunkReader) Left() int64 { return c.left }

// Discard reads and drops the rest of the chunk, at most limit octets; it
// reports whether it reached the end of the chunk.
func (c *ChunkReader) Discard(limit int64) (bool, error) {
	var buf [4096]byte
	for c.left > 0 && limit > 0 {
		n, err := c.Read(buf[:min(int64(len(buf)), limit)])
		limit -= int64(n)
		if err != nil && c.left > 0 {
			return false, err
		}
	}
	return c.left == 0, nil
}
