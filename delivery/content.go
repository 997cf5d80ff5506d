package delivery

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Content is a message's bytes, in memory (MemContent, *bytes.Reader) or
// in a file (*io.SectionReader): read through ReadAt, so that copies
// written at the same time each read it on their own, and a large message
// need not be in memory at all.
type Content interface {
	io.ReaderAt
	Size() int64
}

// MemContent is a message in memory. Deliver reads it in place, where it
// copies any other Content through a buffer of its own first.
type MemContent []byte

func (m MemContent) Size() int64 { return int64(len(m)) }

func (m MemContent) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("MemContent.ReadAt: negative offset")
	}
	if off >= int64(len(m)) {
		return 0, io.EOF
	}
	n := copy(p, m[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// copyParts are the pieces of one stored copy, in file order. The prefix
// lines are built here from validated addresses; header and body are the
// message as received, converted from CRLF to LF while writing (what
// Postfix virtual(8) and Dovecot's LDA store).
type copyParts struct {
	prefix []byte    // "Return-Path: <from>\nDelivered-To: addr\n", already LF
	header []byte    // trace header lines, CRLF (or LF) terminated
	body   Content   // the message, CRLF line endings
	stats  bodyStats // of body, counted once per message (scanBody)
}

// bodyStats are what the S= and W= sizes need to know of a body.
type bodyStats struct {
	crlf int64 // CRLF pairs, each stored as one LF
	lf   int64 // every LF, bare or not: one line each
}

// readChunk is how much of a body is read at once, to count it or copy it.
const readChunk = 64 << 10

// scanBody counts a body's line endings, reading it once.
func scanBody(c Content) (bodyStats, error) {
	var st bodyStats
	if m, ok := c.(MemContent); ok {
		st.crlf = int64(bytes.Count(m, []byte("\r\n")))
		st.lf = int64(bytes.Count(m, []byte{'\n'}))
		return st, nil
	}
	r := io.NewSectionReader(c, 0, c.Size())
	buf := make([]byte, min(max(c.Size(), 1), readChunk))
	cr := false // the previous chunk ended with CR
	for {
		n, err := io.ReadFull(r, buf)
		p := buf[:n]
		if n > 0 {
			if cr && p[0] == '\n' {
				st.crlf++
			}
			st.crlf += int64(bytes.Count(p, []byte("\r\n")))
			st.lf += int64(bytes.Count(p, []byte{'\n'}))
			cr = p[n-1] == '\r'
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return st, nil
		default:
			return st, fmt.Errorf("reading the message: %w", err)
		}
	}
}

// errBadAddress: an envelope address cannot be written into a header line.
var errBadAddress = errors.New("address contains control characters")

// validAddress refuses what would break or inject header lines. go-smtp
// already refuses CR/LF in addresses, and the directory's maildrop is
// normally clean, but both are untrusted here: a bare CR or LF would let the
// sender append headers above the trace fields.
func validAddress(a string) error {
	for i := 0; i < len(a); i++ {
		if c := a[i]; c < ' ' || c == 0x7f {
			return errBadAddress
		}
	}
	return nil
}

// buildPrefix returns the lines the final delivery adds, in Postfix's
// virtual(8) order (mail_copy): Return-Path (RFC 5321 §4.4; "<>" for the
// null sender), X-Original-To, the address the message was sent to before
// aliases (users sort by it, Thunderbird's filters and Sieve scripts
// among them), and Delivered-To, the maildrop.
func buildPrefix(from, origTo, to string) []byte {
	if origTo == "" || validAddress(origTo) != nil {
		origTo = to
	}
	b := make([]byte, 0, 60+len(from)+len(origTo)+len(to))
	b = append(b, "Return-Path: <"...)
	b = append(b, from...)
	b = append(b, ">\nX-Original-To: "...)
	b = append(b, origTo...)
	b = append(b, "\nDelivered-To: "...)
	b = append(b, to...)
	b = append(b, '\n')
	return b
}

// lfSize is the length of p once every CRLF is written as LF.
func lfSize(p []byte) int64 {
	return int64(len(p) - bytes.Count(p, []byte("\r\n")))
}

// sizes returns the size on disk (LF) and the size with every line ending
// as CRLF (Dovecot's W=, the IMAP RFC822.SIZE, RFC 3501 §6.4.5).
func (c *copyParts) sizes() (size, wsize int64) {
	size = int64(len(c.prefix)) + lfSize(c.header) + c.body.Size() - c.stats.crlf
	// CRLF→LF keeps one '\n' per line, and a bare LF already counts once:
	// every '\n' on disk is one CRLF for an IMAP client.
	lines := int64(bytes.Count(c.prefix, []byte{'\n'})+bytes.Count(c.header, []byte{'\n'})) + c.stats.lf
	return size, size + lines
}

// writeTo writes the copy, size bytes once converted (sizes), to w with LF
// line endings. A lone CR (not before LF) is kept as is. The buffer fits the
// copy up to 64 KiB: one write(2) for a typical message, and no 64 KiB
// allocation to clear for a 4 KiB one.
func (c *copyParts) writeTo(w io.Writer, size int64) error {
	return c.writeBuffered(bufio.NewWriterSize(w, int(min(max(size, 512), copyBuffer))))
}

// copyBuffer is the largest buffer a copy is written through.
const copyBuffer = 64 << 10

// writeBuffered is writeTo through bw, flushed at the end.
func (c *copyParts) writeBuffered(bw *bufio.Writer) error {
	if _, err := bw.Write(c.prefix); err != nil {
		return err
	}
	if err := writeLF(bw, c.header); err != nil {
		return err
	}
	if err := writeLFFrom(bw, c.body); err != nil {
		return err
	}
	return bw.Flush()
}

// writeLFFrom writes body to w with every CRLF replaced by LF, a chunk at a
// time; a CRLF split between two chunks is one LF too.
func writeLFFrom(w *bufio.Writer, body Content) error {
	size := body.Size()
	if size == 0 {
		return nil
	}
	if m, ok := body.(MemContent); ok {
		return writeLF(w, m) // a final lone CR is kept, as below
	}
	r := io.NewSectionReader(body, 0, size)
	buf := make([]byte, min(size, readChunk))
	var read int64
	cr := false // a CR held back from the end of the previous chunk
	for read < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-read)])
		read += int64(n)
		if err != nil {
			return fmt.Errorf("reading the message: %w", err)
		}
		p := buf[:n]
		if cr {
			cr = false
			if p[0] != '\n' {
				if err := w.WriteByte('\r'); err != nil {
					return err
				}
			}
			// A CRLF across the chunks: the LF starting p is written as it is.
		}
		if p[len(p)-1] == '\r' && read < size {
			cr, p = true, p[:len(p)-1]
		}
		if err := writeLF(w, p); err != nil {
			return err
		}
	}
	return nil
}

// writeLF writes p to w with every CRLF replaced by LF.
func writeLF(w *bufio.Writer, p []byte) error {
	for len(p) > 0 {
		i := bytes.Index(p, []byte("\r\n"))
		if i < 0 {
			_, err := w.Write(p)
			return err
		}
		if _, err := w.Write(p[:i]); err != nil {
			return err
		}
		if err := w.WriteByte('\n'); err != nil {
			return err
		}
		p = p[i+2:]
	}
	return nil
}
