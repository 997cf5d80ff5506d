package smtp

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"courriel/delivery"
)

// spoolBuf holds a message while it is received: in memory up to a
// threshold, then in a file of the spool directory that has no name (so a
// crash leaves nothing behind) and holds at most limit bytes. It is only a
// buffer: durability is the Deliverer's and the Queue's business.
type spoolBuf struct {
	dir       string
	threshold int64
	limit     int64

	mem  []byte
	f    *os.File // nil while the message is in memory
	size int64
}

func newSpoolBuf(dir string, threshold, limit int64) *spoolBuf {
	return &spoolBuf{dir: dir, threshold: threshold, limit: limit}
}

// write appends p; errTooLarge once the message would pass the limit.
func (b *spoolBuf) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if b.size+int64(len(p)) > b.limit {
		return errTooLarge
	}
	if b.f == nil && b.size+int64(len(p)) <= b.threshold {
		b.mem = append(b.mem, p...)
		b.size += int64(len(p))
		return nil
	}
	if b.f == nil {
		f, err := createUnnamed(b.dir)
		if err != nil {
			return fmt.Errorf("spooling the message: %w", err)
		}
		b.f = f
		if _, err := f.Write(b.mem); err != nil {
			return fmt.Errorf("spooling the message: %w", err)
		}
		b.mem = nil
	}
	if _, err := b.f.Write(p); err != nil {
		return fmt.Errorf("spooling the message: %w", err)
	}
	b.size += int64(len(p))
	return nil
}

// spooled says whether the message went to a file.
func (b *spoolBuf) spooled() bool { return b.f != nil }

// content is the message so far; valid until close.
func (b *spoolBuf) content() delivery.Content {
	if b.f != nil {
		return io.NewSectionReader(b.f, 0, b.size)
	}
	return delivery.MemContent(b.mem)
}

// close drops the message (the file has no name: closing frees it).
func (b *spoolBuf) close() {
	if b.f != nil {
		b.f.Close()
		b.f = nil
	}
	b.mem = nil
}

// createUnnamed opens a file in dir that has no name: O_TMPFILE where the
// file system has it, else a file removed as soon as it is created.
func createUnnamed(dir string) (*os.File, error) {
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err == nil {
		return os.NewFile(uintptr(fd), dir+"/(incoming)"), nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EINVAL) {
		return nil, &os.PathError{Op: "open O_TMPFILE", Path: dir, Err: err}
	}
	f, err := os.CreateTemp(dir, ".incoming-")
	if err != nil {
		return nil, err
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// textFilter checks a message's text as it streams by and passes it on,
// a bare LF made CRLF (BareNewlineNormalize) or refused. A bare CR and a
// NUL are always refused: a bare CR is what lax next hops take for a line
// end ("<CR>.<CR>" smuggling), and RFC 6152 §3 allows no NUL in 8-bit text.
// Line length is not checked: message text has no line limit, only the
// message size.
type textFilter struct {
	reject bool // a bare LF is refused, not normalised
	cr     bool // the last byte seen was a CR
	bareLF int  // bare LFs normalised, for the log
}

var crlf = []byte("\r\n")

// write passes p to out, checked, in as few pieces as there are bare LFs.
func (f *textFilter) write(p []byte, out func([]byte) error) error {
	run := 0 // p[run:] is not passed on yet
	for i, c := range p {
		if f.cr {
			f.cr = false
			if c != '\n' {
				return errBareNewline
			}
			continue
		}
		switch c {
		case 0:
			return errNUL
		case '\r':
			f.cr = true
		case '\n':
			if f.reject {
				return errBareNewline
			}
			if err := out(p[run:i]); err != nil {
				return err
			}
			if err := out(crlf); err != nil {
				return err
			}
			run = i + 1
			f.bareLF++
		}
	}
	return out(p[run:])
}

// end checks the end of the message: a CR there is bare.
func (f *textFilter) end() error {
	if f.cr {
		return errBareNewline
	}
	return nil
}

// edited is a message as the header scan asked it changed (headerInfo):
// the fields of dropFields cut out, and the empty line a message lacks
// between its header and its body added where the body starts, as
// Postfix's cleanup adds it, so that what follows is stored, signed and
// relayed as a body instead of folded into the last field. The content
// itself, spooled or in memory, is never copied.
type edited struct {
	c    delivery.Content
	segs []segment
	size int64
}

// segment is n octets of c from off, or lit.
type segment struct {
	off, n int64
	lit    []byte
}

// edit returns c with the ranges drops (ascending, disjoint) removed and
// insert placed at offset at, which is not before the last range (at < 0:
// nothing inserted); c itself when there is nothing to change.
func edit(c delivery.Content, drops [][2]int64, at int64, insert []byte) delivery.Content {
	if len(drops) == 0 && at < 0 {
		return c
	}
	e := &edited{c: c}
	keep := func(from, to int64) {
		if to > from {
			e.segs = append(e.segs, segment{off: from, n: to - from})
			e.size += to - from
		}
	}
	pos := int64(0)
	for _, d := range drops {
		keep(pos, d[0])
		pos = d[1]
	}
	if at >= 0 {
		at = max(at, pos)
		keep(pos, at)
		e.segs = append(e.segs, segment{n: int64(len(insert)), lit: insert})
		e.size += int64(len(insert))
		pos = at
	}
	keep(pos, c.Size())
	return e
}

func (e *edited) Size() int64 { return e.size }

func (e *edited) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	var base int64 // where the segment starts in e
	for _, s := range e.segs {
		if n == len(p) {
			return n, nil
		}
		if off+int64(n) >= base+s.n {
			base += s.n
			continue
		}
		in := off + int64(n) - base // offset within the segment
		want := min(int64(len(p)-n), s.n-in)
		if s.lit != nil {
			n += copy(p[n:n+int(want)], s.lit[in:])
		} else {
			m, err := e.c.ReadAt(p[n:n+int(want)], s.off+in)
			n += m
			if int64(m) < want {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
		}
		base += s.n
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// joined is a trace header and a message as one delivery.Content, without
// copying the message.
type joined struct {
	head []byte
	body delivery.Content
}

func (j joined) Size() int64 { return int64(len(j.head)) + j.body.Size() }

func (j joined) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	if off < int64(len(j.head)) {
		n = copy(p, j.head[off:])
		if n == len(p) {
			return n, nil
		}
	}
	boff := off + int64(n) - int64(len(j.head))
	m, err := j.body.ReadAt(p[n:], boff)
	return n + m, err
}
