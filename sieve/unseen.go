package sieve

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
)

// deleteheader reaches the whole header, as Pigeonhole's, though a script
// sees only its first fields (maxHeaderFields, maxHeaderBytes): the fields
// past them (the unseen part) are never held, but read again from the
// message (Message.src, ReadMessageAt) in a streaming pass, one field at
// a time, when a deleteheader needs them: to find the fields it deletes
// there (their count for :index and :last, the match variables, the
// size), and again when a copy is written (HeaderEdit.Pieces: a Piece with
// Drop). What deletes them is kept as rules (unseenDrop), not as the
// fields: every field of a name and value patterns, or one field found by
// :index, by its place in the message. Each pass is charged to the run's
// budget, and a pass when a copy is written costs no more than the last
// one the run made, so that the rules a run may make are bounded by its
// budget.
//
// A pass holds at most maxUnseenValue octets of a field. A longer one
// (unseenField.long) is deleted by every deleteheader of its name, value
// patterns or not, without its value matched, and sets no match
// variables; the run says so (Result.Notes). Pigeonhole matches the
// whole value, which a bounded pass cannot: matched on its first
// megabyte, a forged "X-Spam-Flag: <2 MiB of spaces>YES" (the value
// decodes to "YES") or "...<2 MiB>YES" survived an administrator's
// deleteheader :is (or :contains) "X-Spam-Flag" "YES", and any rule
// but deletion lets some forgery through. No such field is legitimate
// (RFC 5322 §2.1.1 lines are at most 998 octets; Postfix truncates a
// field at 100 KiB, header_size_limit), so deleting one a script named
// is the safe side. A deleteheader without value patterns deletes every
// field of the name, whatever its length, holding none.

// maxUnseenValue bounds what a pass holds of a field past the window for
// its value to be matched: the window's own bound.
const maxUnseenValue = maxHeaderBytes

// unseenDrop is a deleteheader's rule over the fields past the window.
type unseenDrop struct {
	name string // the field name, lower case
	// at: the one field, starting there in the input, that an :index
	// found; -1 for every field of the name whose value matches
	at       int64
	patterns []string // nil: every field of the name
	m        matcher  // without a budget; regexps compiled (res)
	res      map[string]*regexp.Regexp
}

func (d *unseenDrop) matcher(work *budget) matcher {
	m := d.m
	m.work = work
	if m.typ == "regex" {
		m.re = func(key string) *regexp.Regexp { return d.res[key] }
	}
	return m
}

// matches says whether the field's value matches one of the rule's
// patterns (a field too long to be held always does), and the match
// variables of the first one that does (:matches).
func (d *unseenDrop) matches(f *unseenField, work *budget) (bool, []string) {
	if f.long {
		return true, nil
	}
	m := d.matcher(work)
	value := f.value(work)
	for _, p := range d.patterns {
		if ok, caps := m.match(value, p); ok {
			return true, caps
		}
	}
	return false, nil
}

// unseenRules are the rules of an edit by field name, for a pass.
type unseenRules map[string][]*unseenDrop

func newUnseenRules(drops []*unseenDrop) unseenRules {
	rules := unseenRules{}
	for _, d := range drops {
		rules[d.name] = append(rules[d.name], d)
	}
	return rules
}

// names are the rules' names, each with whether a field of that name
// must be held (its value matched) to know whether the rules delete it.
func (rs unseenRules) names() map[string]scanName {
	names := map[string]scanName{}
	for n := range rs {
		names[n] = scanName{n, rs.wantsValue(n)}
	}
	return names
}

func (rs unseenRules) wantsValue(name string) bool {
	for _, d := range rs[name] {
		if d.at < 0 && d.patterns != nil {
			return true
		}
	}
	return false
}

// drops says whether the rules delete the field.
func (rs unseenRules) drops(f *unseenField, work *budget) bool {
	for _, d := range rs[f.lower] {
		switch {
		case d.at >= 0:
			if d.at == f.start {
				return true
			}
		case d.patterns == nil:
			return true
		default:
			if ok, _ := d.matches(f, work); ok {
				return true
			}
		}
	}
	return false
}

// unseenField is one field of the header past the window, as a pass
// reads it.
type unseenField struct {
	start, end int64 // its octets in the input, folds and line end included
	// lower is its name in lower case when it is one of the names the
	// pass looks for, "" otherwise
	lower  string
	lfSize int64  // its size with LF line ends, as the size test counts
	raw    []byte // its first maxUnseenValue octets, when wanted
	val    *string
	lf     bool // it ends with a line end
	// long: it is longer than maxUnseenValue octets, its value never
	// matched (every value pattern deletes it)
	long bool
}

// value is the field's value decoded, as deleteheader matches it.
func (f *unseenField) value(work *budget) string {
	if f.val == nil {
		s := strings.TrimRight(string(f.raw), "\r\n")
		s = strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n")
		work.spend(decodeCost * len(s))
		v := decodeHeader(fieldValue(s))
		f.val = &v
	}
	return *f.val
}

// fieldScanner reads the fields of [off, off+n) of src one at a time.
type fieldScanner struct {
	br  *bufio.Reader
	pos int64
	// names are the names (lower case) the pass looks for, each with
	// whether a field of that name is held (raw) for its value
	names map[string]scanName
	work  *budget // the run's, charged for the reading; nil after the run
	f     unseenField
	lbuf  []byte
}

func newFieldScanner(src io.ReaderAt, off, n int64, names map[string]scanName, work *budget) *fieldScanner {
	return &fieldScanner{br: bufio.NewReaderSize(io.NewSectionReader(src, off, n), 32<<10), pos: off, names: names, work: work}
}

// lookup is name (lower case) when it is one of the names the pass looks
// for, without allocating, and whether its fields are held.
func (s *fieldScanner) lookup(name []byte) (string, bool) {
	s.lbuf = s.lbuf[:0]
	for _, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		s.lbuf = append(s.lbuf, c)
	}
	n := s.names[string(s.lbuf)]
	return n.name, n.hold
}

// scanName is a name a pass looks for.
type scanName struct {
	name string // lower case
	hold bool   // its fields are held, their values matched
}

// next is the next field, io.EOF after the last. The field is valid until
// the next call.
func (s *fieldScanner) next() (*unseenField, error) {
	if _, err := s.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, err
	}
	f := &s.f
	*f = unseenField{start: s.pos, raw: f.raw[:0]}
	hold := false
	var last byte // the last octet read
	for line := 0; ; line++ {
		for frag := 0; ; frag++ {
			b, err := s.br.ReadSlice('\n')
			if line == 0 && frag == 0 && len(b) > 0 && b[0] != ' ' && b[0] != '\t' {
				if i := bytes.IndexByte(b, ':'); i >= 0 {
					f.lower, hold = s.lookup(bytes.Trim(b[:i], " \t"))
				}
			}
			s.pos += int64(len(b))
			f.lfSize += int64(len(b))
			if n := len(b); n > 0 && b[n-1] == '\n' && ((n > 1 && b[n-2] == '\r') || (n == 1 && frag > 0 && last == '\r')) {
				f.lfSize--
			}
			if len(b) > 0 {
				last = b[len(b)-1]
			}
			if hold && len(f.raw) < maxUnseenValue {
				f.raw = append(f.raw, b[:min(len(b), maxUnseenValue-len(f.raw))]...)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			break
		}
		nb, err := s.br.Peek(1)
		if err != nil || (nb[0] != ' ' && nb[0] != '\t') {
			break
		}
	}
	f.end = s.pos
	f.lf = last == '\n'
	f.long = f.end-f.start > maxUnseenValue
	// reading and splitting: a quarter of a unit an octet, and a few a field
	s.work.spend(int(f.end-f.start)/4 + 8)
	return f, nil
}

// FieldDrops are the deletions an edit makes among the fields past what a
// script sees: a Piece with Drop reads its octets without those fields.
type FieldDrops struct {
	rules unseenRules
	names map[string]scanName // rules.names()
	// eol: a line end is added after the last field kept when it has
	// none (the message ends there), for fields added after it
	eol bool
}

// Section is the piece's octets, read from src (the input ReadMessage or
// ReadMessageAt read): Data, the octets [Off, Off+Len) of src, or those
// without the fields Drop deletes, found as they are read (a pass over
// them for the size, another from the start whenever a read does not
// follow the one before: read it in order).
func (p Piece) Section(src io.ReaderAt) interface {
	io.ReaderAt
	Size() int64
} {
	switch {
	case p.Data != nil:
		return bytes.NewReader(p.Data)
	case p.Drop == nil:
		return io.NewSectionReader(src, p.Off, p.Len)
	}
	return &dropSection{src: src, off: p.Off, n: p.Len, d: p.Drop, size: -1}
}

// dropSection is a Piece with Drop, read.
type dropSection struct {
	src    io.ReaderAt
	off, n int64
	d      *FieldDrops

	mu   sync.Mutex
	size int64 // -1 until a pass has measured it
	// the read under way: the scanner, the part of a kept field not
	// read yet, what was read of the output
	sc        *fieldScanner
	from, to  int64
	out       int64
	lastLF    bool // the last octet kept is a line end
	tail      []byte
	done      bool
	keptAny   bool
	tailAdded bool
}

func (s *dropSection) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size < 0 {
		s.reset()
		var buf [1]byte
		for {
			if _, err := s.read(buf[:0], 1<<62); err != nil {
				break
			}
		}
		s.size = s.out
		s.sc = nil
	}
	return s.size
}

func (s *dropSection) reset() {
	s.sc = newFieldScanner(s.src, s.off, s.n, s.d.names, nil)
	s.from, s.to, s.out = 0, 0, 0
	s.lastLF, s.tail, s.done, s.keptAny, s.tailAdded = true, nil, false, false, false
}

// read skips skip octets of the output, then fills p: what it filled,
// io.EOF at the end.
func (s *dropSection) read(p []byte, skip int64) (int, error) {
	n := 0
	for skip > 0 || n < len(p) {
		if s.from == s.to && len(s.tail) == 0 {
			if s.done {
				return n, io.EOF
			}
			f, err := s.sc.next()
			if errors.Is(err, io.EOF) {
				s.done = true
				if s.d.eol && s.keptAny && !s.lastLF && !s.tailAdded {
					s.tail, s.tailAdded = []byte("\r\n"), true
				}
				continue
			}
			if err != nil {
				return n, err
			}
			if s.d.rules.drops(f, nil) {
				continue
			}
			s.from, s.to, s.keptAny, s.lastLF = f.start, f.end, true, f.lf
			continue
		}
		if len(s.tail) > 0 {
			k := len(s.tail)
			if skip > 0 {
				k = int(min(int64(k), skip))
				skip -= int64(k)
			} else {
				k = copy(p[n:], s.tail)
				n += k
			}
			s.tail = s.tail[k:]
			s.out += int64(k)
			continue
		}
		if skip > 0 {
			k := min(s.to-s.from, skip)
			s.from += k
			skip -= k
			s.out += k
			continue
		}
		want := p[n:min(len(p), n+int(min(s.to-s.from, int64(len(p)-n))))]
		k, err := s.src.ReadAt(want, s.from)
		n += k
		s.from += int64(k)
		s.out += int64(k)
		if k < len(want) {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return n, nil
}

func (s *dropSection) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("sieve: negative offset")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sc == nil || off < s.out {
		s.reset()
	}
	n, err := s.read(p, off-s.out)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}
