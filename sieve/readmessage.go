// Reading a message for a run: its header within bounds, where its fields are, its size.

package sieve

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/emersion/go-message/textproto"
)

// Message is what a script sees of a message: its header, its size and
// (for the body test) its body.
type Message struct {
	Header textproto.Header
	// Size in octets with LF line ends: the message as delivery stores it
	// in the maildir, and as Dovecot's LDA, fed by Postfix with LF line
	// ends, gives it to Pigeonhole's size test.
	Size int64
	// Body is the body as read (after the empty line) with LF line ends,
	// at most the limit
	// given to ReadMessageLimit (DefaultMaxBody for ReadMessage);
	// BodyTruncated says a longer body was cut there. Size always counts
	// the whole message.
	Body          []byte
	BodyTruncated bool
	// layout is where ReadMessage found the header's fields; nil for a
	// Message made otherwise.
	layout *headerLayout
	// src is what ReadMessageAt read, read again for the fields of the
	// header past what a script sees (deleteheader); nil from ReadMessage.
	src io.ReaderAt
}

// ReadMessage reads a message (LF or CRLF line ends), keeping its header,
// the first DefaultMaxBody octets of its body, and measuring its size.
func ReadMessage(r io.Reader) (*Message, error) {
	return ReadMessageLimit(r, DefaultMaxBody)
}

// ReadMessageAt is ReadMessage of the size octets of src, which a run
// reads again (never whole: one field at a time) when a deleteheader
// reaches the fields of the header past what a script sees: src must not
// change while the Message is used. Without it (ReadMessage), deleteheader
// counts and deletes only the fields a script sees.
func ReadMessageAt(src io.ReaderAt, size int64) (*Message, error) {
	m, err := ReadMessage(io.NewSectionReader(src, 0, size))
	if err != nil {
		return nil, err
	}
	m.src = src
	return m, nil
}

// ReadMessageLimit is ReadMessage keeping at most maxBody octets of the
// body (0 keeps none: a script with a body test then sees an empty body).
func ReadMessageLimit(r io.Reader, maxBody int) (*Message, error) {
	cr := &lfCounter{r: r}
	br := bufio.NewReader(cr)
	hs, err := scanHeader(br, maxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message header: %w", err)
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(hs.block)))
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message header: %w", err)
	}
	var body bytes.Buffer
	if _, err := io.Copy(&body, io.LimitReader(br, int64(max(maxBody, 0)))); err != nil {
		return nil, fmt.Errorf("sieve: reading the message body: %w", err)
	}
	rest, err := io.Copy(io.Discard, br)
	if err != nil {
		return nil, fmt.Errorf("sieve: reading the message body: %w", err)
	}
	// LF line ends, as Dovecot's LDA fed by Postfix sees the body (and
	// as Size counts it): body :raw :is gives the same answer whether the
	// message came with CRLF or LF.
	b := bytes.ReplaceAll(body.Bytes(), []byte("\r\n"), []byte("\n"))
	m := &Message{Header: h, Size: cr.n, Body: b, BodyTruncated: rest > 0, layout: &hs.layout}
	m.layout.total = cr.raw
	if h.Len() != len(m.layout.spans) {
		// the fields are not numbered as the parser numbers them: the
		// edits cannot be placed in the message (HeaderEdit.Pieces)
		m.layout = nil
	}
	return m, nil
}

// maxHeaderBytes bounds the header a script sees: the fields past it are
// read and skipped. A parsed field costs far more than its octets, and a
// 10 MB header of one-word fields cost hundreds of megabytes for any
// client of port 25 writing to a user with a script. Real headers are a
// few kilobytes.
const maxHeaderBytes = 1 << 20

// maxHeaderFields bounds the fields a script sees the same way: go-message
// spends about 500 octets on each, so a megabyte of "X: y" lines (130,000
// fields) cost 65 MB. A long-travelled list message has a few hundred.
const maxHeaderFields = 5000

// headerLayout is where ReadMessage found the header in what it read:
// editheader's edits are applied to the message itself (HeaderEdit.Pieces),
// fields the script did not see included.
type headerLayout struct {
	spans []fieldSpan // the fields a script sees, in order: octets in the input
	end   int64       // where the header's fields end: its empty line, or the input's end
	// unseen is where the fields past what a script sees start (end when
	// it sees them all)
	unseen int64
	noEOL  bool  // the header's last line has no line end (the input ends there)
	total  int64 // octets read
}

// fieldSpan is a field's octets [start, end), its folded lines and line
// ends included.
type fieldSpan struct{ start, end int64 }

type headerScan struct {
	block  []byte
	layout headerLayout
}

// scanHeader reads the header section from br, up to and including the
// empty line that ends it (or the end of the message), and returns its
// first fields up to about max octets and maxHeaderFields fields, whole,
// ended by an empty line, and where each of them is in the input. A
// field that would pass either bound is left out with every field after
// it. A field without a name the parser reads (namedField) is left out
// of the block too, but counts within the bounds and stays in the
// message where it is, as the fields past them do.
func scanHeader(br *bufio.Reader, max int) (*headerScan, error) {
	hs := &headerScan{}
	var block []byte
	var pos int64
	full, fields := false, 0
	fieldAt := -1        // where the last field kept starts in block
	var fieldStart int64 // and in the input
	hs.layout.unseen = -1
	numbered := false // the last field kept has a span
	// cuts are the fields without a name, [from, to) in block; cutFrom
	// is where the one being read starts, -1 when the field is named
	var cuts [][2]int
	cutFrom := -1
	for {
		start, lb := pos, len(block)
		room := max - lb
		if full {
			room = 0
		}
		// one line, kept in block while it fits
		var head [2]byte
		n, eol, dropped := 0, false, false
		for {
			frag, err := br.ReadSlice('\n')
			if n < 2 {
				copy(head[n:], frag)
			}
			n += len(frag)
			pos += int64(len(frag))
			if !dropped {
				if n > room {
					block, dropped = block[:lb], true
				} else {
					block = append(block, frag...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			eol = err == nil
			break
		}
		if n == 0 || (n == 1 && head[0] == '\n') || (n == 2 && eol && head[0] == '\r') {
			block = block[:lb]
			hs.layout.end = start
			break
		}
		// a folded line first of all continues no field: Dovecot's
		// parser reads it as a field of its own
		cont := (head[0] == ' ' || head[0] == '\t') && fields > 0
		switch {
		case full:
		case !cont:
			if cutFrom >= 0 {
				cuts = append(cuts, [2]int{cutFrom, lb})
				cutFrom = -1
			}
			fields++
			if fields > maxHeaderFields || dropped {
				full = true
				block = block[:lb]
				hs.layout.unseen = start
				break
			}
			fieldAt, fieldStart, numbered = lb, start, false
			if namedField(block[lb:]) {
				hs.layout.spans = append(hs.layout.spans, fieldSpan{start, pos})
				numbered = true
			} else {
				cutFrom = lb
			}
		case dropped:
			// a folded line that does not fit: the whole field is left out
			full = true
			hs.layout.unseen = start
			if fieldAt >= 0 {
				hs.layout.unseen = fieldStart
				block = block[:fieldAt]
				if numbered {
					hs.layout.spans = hs.layout.spans[:len(hs.layout.spans)-1]
				}
			}
		default:
			if numbered {
				hs.layout.spans[len(hs.layout.spans)-1].end = pos
			}
		}
		if !eol {
			hs.layout.end, hs.layout.noEOL = pos, true
			break
		}
	}
	if hs.layout.unseen < 0 {
		hs.layout.unseen = hs.layout.end
	}
	if cutFrom >= 0 {
		cuts = append(cuts, [2]int{cutFrom, len(block)})
	}
	block = cutOut(block, cuts)
	if len(block) > 0 && block[len(block)-1] != '\n' {
		block = append(block, '\r', '\n')
	}
	hs.block = append(block, '\r', '\n')
	return hs, nil
}

// namedField says whether the field whose first line is line has a name
// textproto.ReadHeader reads (printable ASCII before a colon, white space
// after it aside, on a line that is no folded line), which it numbers
// (ReadHeader fails on any other, or skips it when the name is empty).
// No script can name another: deleteheader never reaches it, a test never
// sees it, and an edit keeps it where it is, as it keeps the fields past
// what a script sees. Dovecot's parser reads one without a colon or with
// an empty name as a field without a name, which Pigeonhole 2.3.19's
// editheader aborts on (an assertion, body_offset > 0, in
// edit_mail_headers_parse) and 2.3.21's drops from an edited copy when
// the edit happened to parse the header (a deleteheader, or a test after
// an addheader; after an addheader alone it is kept): no rule worth
// following, so it is kept, as the sender wrote it.
func namedField(line []byte) bool {
	if len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
		return false
	}
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return len(name) > 0
}

// cutOut is block without the ranges cuts (in order, each clipped to
// block), in place.
func cutOut(block []byte, cuts [][2]int) []byte {
	if len(cuts) == 0 {
		return block
	}
	out, at := block[:0], 0
	for _, c := range cuts {
		from, to := min(c[0], len(block)), min(c[1], len(block))
		out = append(out, block[at:from]...)
		at = max(at, to)
	}
	return append(out, block[at:]...)
}

// lfCounter counts the octets read, a CR before an LF not counted.
type lfCounter struct {
	r      io.Reader
	n      int64
	raw    int64 // every octet
	lastCR bool
}

func (c *lfCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.raw += int64(n)
	for _, b := range p[:n] {
		if b == '\n' && c.lastCR {
			c.n--
		}
		c.lastCR = b == '\r'
		c.n++
	}
	return n, err
}
