package imap

import "bytes"

// RFC 2971 §3.2: a server that answers ID advertises it. The library builds
// its capability list from a fixed set, so capRewriter adds " ID" to the
// capability lists in the server's output: "* CAPABILITY ..." lines and
// "[CAPABILITY ...]" response codes (greeting, LOGIN/AUTHENTICATE OK). It
// follows lines and literals ({n} at a line end) so that message data is
// never touched; a line longer than maxCapLine is passed on unread.
type capRewriter struct {
	hold    []byte // the start of the current line, held until its end
	lit     int64  // literal bytes still to pass through
	midLine bool   // inside a line already passed through (no rewriting)
	tail    [24]byte
	tailN   int
}

// maxCapLine bounds a held line; capability lines are far shorter.
const maxCapLine = 8 << 10

// process returns p with the capability lists it completes rewritten; bytes
// of an unfinished line may be held back until a later call.
func (r *capRewriter) process(p []byte) []byte {
	var out []byte
	for len(p) > 0 {
		switch {
		case r.lit > 0:
			n := min(int64(len(p)), r.lit)
			out = append(out, p[:n]...)
			p, r.lit = p[n:], r.lit-n
			if r.lit == 0 {
				r.midLine, r.tailN = true, 0 // the line goes on after the literal
			}
		case r.midLine:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				r.addTail(p)
				out = append(out, p...)
				p = nil
				continue
			}
			r.addTail(p[:i+1])
			out = append(out, p[:i+1]...)
			p = p[i+1:]
			r.endLine(r.tail[:r.tailN])
		default:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				r.hold = append(r.hold, p...)
				p = nil
				if len(r.hold) > maxCapLine {
					r.addTail(r.hold)
					out = append(out, r.hold...)
					r.hold, r.midLine = r.hold[:0], true
				}
				continue
			}
			line := append(r.hold, p[:i+1]...)
			p = p[i+1:]
			out = append(out, addIDCap(line)...)
			r.hold = r.hold[:0]
			r.tailN = 0
			r.endLine(line)
		}
	}
	return out
}

func (r *capRewriter) addTail(b []byte) {
	if len(b) >= len(r.tail) {
		r.tailN = copy(r.tail[:], b[len(b)-len(r.tail):])
		return
	}
	if r.tailN+len(b) > len(r.tail) {
		keep := len(r.tail) - len(b)
		copy(r.tail[:], r.tail[r.tailN-keep:r.tailN])
		r.tailN = keep
	}
	r.tailN += copy(r.tail[r.tailN:], b)
}

// endLine: a literal announced at the line end continues the response.
func (r *capRewriter) endLine(line []byte) {
	r.midLine = false
	if n, ok := trailingLiteral(line); ok {
		r.lit = n
	}
}

// drain returns the held start of an unfinished line, unchanged, and
// passes the rest of that line through: output must not wait for a line
// end that may never come before the server reads again.
func (r *capRewriter) drain() []byte {
	if len(r.hold) == 0 {
		return nil
	}
	out := append([]byte(nil), r.hold...)
	r.addTail(r.hold)
	r.hold, r.midLine = r.hold[:0], true
	return out
}

var (
	capLinePrefix = []byte("* CAPABILITY ")
	capCode       = []byte("[CAPABILITY ")
)

// addIDCap adds " ID" to a capability list in one complete response line.
func addIDCap(line []byte) []byte {
	if bytes.HasPrefix(line, capLinePrefix) {
		end := bytes.LastIndex(line, []byte("\r\n"))
		if end < 0 || bytes.Contains(line, []byte(" ID\r\n")) {
			return line
		}
		return append(append(append([]byte(nil), line[:end]...), " ID"...), line[end:]...)
	}
	// A status response: "* OK [CAPABILITY ...] text" or "tag OK [CAPABILITY
	// ...] text"; the code must follow the tag, so that text inside a
	// message's envelope or body structure is never touched.
	i := bytes.Index(line, capCode)
	if i < 0 {
		return line
	}
	if before, ok := bytes.CutSuffix(line[:i], []byte(" OK ")); !ok || len(before) == 0 || bytes.ContainsAny(before, " \"(") {
		return line
	}
	j := bytes.IndexByte(line[i:], ']')
	if j < 0 {
		return line
	}
	j += i
	return append(append(append([]byte(nil), line[:j]...), " ID"...), line[j:]...)
}
