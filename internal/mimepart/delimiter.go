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
