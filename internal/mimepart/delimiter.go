package mimepart

import "bytes"

// MaxBoundary is how much of a boundary is compared: RFC 2046 §5.1.1
// allows 70 characters, and Dovecot compares the first 80 of a longer one
// (BOUNDARY_STRING_MAX_LEN), so that a line matching those 80 is a
// delimiter line there, and here.
const MaxBoundary = 80

// MaxDelimiter is the length of the longest Delimiter: "--" and
// MaxBoundary octets. A line reader that looks at this many octets of a
// line (and two more, for the close delimiter's "--") sees all Line needs.
const MaxDelimiter = 2 + MaxBoundary

// A Delimiter is what starts each delimiter line of one multipart: "--"
// and its boundary. Immutable.
type Delimiter struct {
	dash []byte // "--" boundary
}

// NewDelimiter returns the delimiter of boundary, the value of a
// multipart's boundary parameter, cut to MaxBoundary octets.
func NewDelimiter(boundary string) Delimiter {
	if len(boundary) > MaxBoundary {
		boundary = boundary[:MaxBoundary]
	}
	return Delimiter{dash: []byte("--" + boundary)}
}

// Line reports whether line, the octets of a line without its line break
// (LF, or CRLF), is a delimiter line of d, and whether it is the close
// delimiter. A line is a delimiter line when it starts with d, whatever
// follows (RFC 2046 §5.1.1: transport padding, or anything a sender put
// there); the close delimiter has "--" right after d.
func (d Delimiter) Line(line []byte) (delim, isClose bool) {
	if !bytes.HasPrefix(line, d.dash) {
		return false, false
	}
	return true, bytes.HasPrefix(line[len(d.dash):], []byte("--"))
}

// next finds the first delimiter line of d in body at or after from, a
// line start: where the line starts, where the line after it starts
// (len(body)+1 when the line has no line break), and whether it is the
// close delimiter. start is -1 when there is none.
func (d Delimiter) next(body []byte, from int) (start, after int, isClose bool) {
	for i := from; i <= len(body); {
		// The delimiter's bytes are looked for, not each line: a base64
		// attachment's lines are many and short.
		j := bytes.Index(body[i:], d.dash)
		if j < 0 {
			return -1, 0, false
		}
		j += i
		i = j + 1
		if j > 0 && body[j-1] != '\n' {
			continue
		}
		line, after := body[j:], len(body)+1
		if eol := bytes.IndexByte(line, '\n'); eol >= 0 {
			line, after = line[:eol], j+eol+1
			line = bytes.TrimSuffix(line, []byte("\r"))
		}
		if delim, isClose := d.Line(line); delim {
			return j, after, isClose
		}
	}
	return -1, 0, false
}

// breakBefore is the length of the line break that ends body[:i]: 2 for
// CRLF, 1 for a bare LF, 0 at the start of body.
func breakBefore(body []byte, i int) int {
	switch {
	case i >= 2 && body[i-1] == '\n' && body[i-2] == '\r':
		return 2
	case i >= 1 && body[i-1] == '\n':
		return 1
	}
	return 0
}
