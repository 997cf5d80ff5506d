package wire

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
)

// Limits bound what one command may cost.
type Limits struct {
	// MaxLine bounds the bytes of one command outside its literals; past
	// it the connection must close (a fatal LimitError), the rest unread.
	MaxLine    int
	MaxLiteral int64 // one literal of a command other than APPEND
	MaxDepth   int   // nesting of parenthesised lists
	MaxRanges  int   // ranges in one sequence set
	// MaxLiterals bounds the literal bytes one command (APPEND's message
	// aside) holds in memory, however many literals it has.
	MaxLiterals int64
}

// DefaultLimits are Dovecot's orders of magnitude: a 64 KiB command line
// (enough for ID's RFC 2971 maximum of 30 pairs of 1,024 octets).
func DefaultLimits() Limits {
	return Limits{MaxLine: 64 << 10, MaxLiteral: 64 << 10, MaxDepth: 64, MaxRanges: 10000, MaxLiterals: 1 << 20}
}

// SyntaxError is a malformed command: answered BAD, the session unchanged.
type SyntaxError struct{ Msg string }

func (e *SyntaxError) Error() string { return e.Msg }

// LimitError is a command over one of the limits. Fatal is set when the
// client already sent (or is sending) bytes we will not read: a
// non-synchronising literal over the limit; the connection must close
// after the reply. TooBig asks for the TOOBIG response code (RFC 4469).
type LimitError struct {
	Msg    string
	TooBig bool
	Fatal  bool
}

func (e *LimitError) Error() string { return e.Msg }

func syntaxf(format string, args ...any) error {
	return &SyntaxError{Msg: fmt.Sprintf(format, args...)}
}

// bufSize is the read buffer, taken from a pool only while bytes are
// pending.
const bufSize = 4096

// Buffers lends read buffers and write buffers to the connections of one
// server, so that only connections with bytes in flight hold one. The
// zero value is ready to use; a nil *Buffers gives each connection its
// own buffers for good.
type Buffers struct {
	read, write sync.Pool
}

func (b *Buffers) getRead() *[]byte {
	if b != nil {
		if p, ok := b.read.Get().(*[]byte); ok {
			return p
		}
	}
	buf := make([]byte, bufSize)
	return &buf
}

func (b *Buffers) putRead(p *[]byte) {
	if b != nil {
		b.read.Put(p)
	}
}

// Reader tokenizes commands from src. Continue, when set, is called before
// the bytes of a synchronising literal are read: it sends "+".
type Reader struct {
	src      io.Reader
	buf      *[]byte
	r, w     int
	one      [1]byte
	lineLen  int
	inLit    int64 // literal bytes left to hand out through LiteralReader
	litTotal int64 // literal bytes of this command read into strings
	depth    int
	eol      bool // the command's last line ended (CRLF consumed, no literal follows)
	Limits   Limits
	Continue func() error
	pool     *Buffers
}

// NewReader returns a Reader over src with DefaultLimits(), borrowing its
// buffer from pool (nil: a buffer of its own, kept).
func NewReader(src io.Reader, pool *Buffers) *Reader {
	return &Reader{src: src, Limits: DefaultLimits(), pool: pool}
}

// SetSource replaces the byte source (STARTTLS, COMPRESS); pending
// buffered bytes must have been consumed.
func (r *Reader) SetSource(src io.Reader) { r.src = src }

// Buffered is the number of bytes read from the source but not consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// TakeBuffered consumes and returns a copy of the bytes read from the
// source but not consumed: what a client sent ahead before its session
// was handed to another server.
func (r *Reader) TakeBuffered() []byte {
	if r.r >= r.w {
		return nil
	}
	b := append([]byte(nil), (*r.buf)[r.r:r.w]...)
	r.r = r.w
	return b
}

// Release gives the buffer back to the pool when it holds nothing: an
// idle connection then waits on the socket with no buffer.
func (r *Reader) Release() {
	if r.buf != nil && r.r == r.w && r.pool != nil {
		r.pool.putRead(r.buf)
		r.buf = nil
		r.r, r.w = 0, 0
	}
}

// fill reads more bytes. With no buffer it first waits for one byte in a
// field of the Reader, so that the wait itself holds no buffer.
func (r *Reader) fill() error {
	if r.r < r.w {
		return nil
	}
	if r.buf == nil {
		n, err := r.src.Read(r.one[:])
		if n == 0 {
			if err == nil {
				err = io.ErrNoProgress
			}
			return err
		}
		r.buf = r.pool.getRead()
		(*r.buf)[0] = r.one[0]
		r.r, r.w = 0, 1
		return nil
	}
	r.r, r.w = 0, 0
	for range 100 {
		n, err := r.src.Read(*r.buf)
		if n > 0 {
			r.w = n
			return nil
		}
		if err != nil {
			return err
		}
	}
	return io.ErrNoProgress
}

// Begin starts a new command: line counters are reset.
func (r *Reader) Begin() {
	r.eol = false
	r.litTotal = 0
	r.lineLen = 0
	r.depth = 0
}

// Peek returns the next byte without consuming it.
func (r *Reader) Peek() (byte, error) {
	if err := r.fill(); err != nil {
		return 0, err
	}
	return (*r.buf)[r.r], nil
}

// ReadByte consumes one byte of the command line.
func (r *Reader) ReadByte() (byte, error) {
	if err := r.fill(); err != nil {
		return 0, err
	}
	c := (*r.buf)[r.r]
	r.r++
	r.lineLen++
	if r.overLine() {
		return 0, errLineTooLong()
	}
	return c, nil
}

// overLine reports whether the command's bytes outside literals went past
// Limits.MaxLine.
func (r *Reader) overLine() bool { return r.Limits.MaxLine > 0 && r.lineLen > r.Limits.MaxLine }

// errLineTooLong is the end of a connection whose command line went past
// Limits.MaxLine: the rest of the line is not read, since the client may
// send it without end (a line of 200 MiB, or a COMPRESS stream inflating
// to GiBs), and nothing it holds deserves an answer. Dovecot's words.
func errLineTooLong() error { return &LimitError{Msg: "Too long argument.", Fatal: true} }

// Expect consumes c or fails with a syntax error naming what.
func (r *Reader) Expect(c byte, what string) error {
	b, err := r.Peek()
	if err != nil {
		return err
	}
	if b != c {
		return syntaxf("Expected %s", what)
	}
	_, err = r.ReadByte()
	return err
}

// SP consumes one space.
func (r *Reader) SP() error { return r.Expect(' ', "space") }

// Is reports whether the next byte is c, consuming it if so.
func (r *Reader) Is(c byte) (bool, error) {
	b, err := r.Peek()
	if err != nil {
		return false, err
	}
	if b != c {
		return false, nil
	}
	_, err = r.ReadByte()
	return true, err
}

// AtEOL reports whether the line ends here (CR or LF next).
func (r *Reader) AtEOL() (bool, error) {
	b, err := r.Peek()
	if err != nil {
		return false, err
	}
	return b == '\r' || b == '\n', nil
}

// CRLF consumes the end of the command line (a bare LF is accepted, as
// Dovecot does).
func (r *Reader) CRLF() error {
	b, err := r.Peek()
	if err != nil {
		return err
	}
	if b == '\r' {
		if _, err := r.ReadByte(); err != nil {
			return err
		}
		b, err = r.Peek()
		if err != nil {
			return err
		}
	}
	if b != '\n' {
		return syntaxf("Expected end of command")
	}
	_, err = r.ReadByte()
	r.eol = err == nil
	return err
}

// Character classes of RFC 9051 §9.
func isAtomSpecial(c byte) bool {
	return c <= 0x20 || c >= 0x7f || c == '(' || c == ')' || c == '{' || c == '%' || c == '*' || c == '"' || c == '\\' || c == ']'
}

// IsAtomChar is ATOM-CHAR.
func IsAtomChar(c byte) bool { return !isAtomSpecial(c) }

// IsAStringChar is ASTRING-CHAR: ATOM-CHAR or "]".
func IsAStringChar(c byte) bool { return !isAtomSpecial(c) || c == ']' }

// IsTagChar is an ASTRING-CHAR except "+".
func IsTagChar(c byte) bool { return IsAStringChar(c) && c != '+' }

// IsListChar adds list-wildcards to ASTRING-CHAR.
func IsListChar(c byte) bool { return IsAStringChar(c) || c == '%' || c == '*' }

// Token reads one or more bytes of class ok.
func (r *Reader) Token(ok func(byte) bool, what string) (string, error) {
	var b []byte
	for {
		c, err := r.Peek()
		if err != nil {
			return "", err
		}
		if !ok(c) {
			break
		}
		if _, err := r.ReadByte(); err != nil {
			return "", err
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "", syntaxf("Expected %s", what)
	}
	return string(b), nil
}

// Atom reads an atom.
func (r *Reader) Atom() (string, error) { return r.Token(IsAtomChar, "atom") }

// Number reads a number (RFC 9051 number: up to 2^32-1).
func (r *Reader) Number() (uint32, error) {
	n, err := r.Number64()
	if err != nil {
		return 0, err
	}
	if n > 0xffffffff {
		return 0, syntaxf("Number too large")
	}
	return uint32(n), nil
}

// Number64 reads a number64 (up to 2^63-1).
func (r *Reader) Number64() (uint64, error) {
	s, err := r.Token(func(c byte) bool { return c >= '0' && c <= '9' }, "number")
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, syntaxf("Number too large")
	}
	return n, nil
}

// Quoted reads a quoted string (the opening quote next).
func (r *Reader) Quoted() (string, error) {
	if err := r.Expect('"', "quoted string"); err != nil {
		return "", err
	}
	var b []byte
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '"':
			return string(b), nil
		case '\\':
			c, err = r.ReadByte()
			if err != nil {
				return "", err
			}
			if c != '"' && c != '\\' {
				return "", syntaxf("Invalid escape in quoted string")
			}
		case '\r', '\n':
			return "", syntaxf("Line ends inside a quoted string")
		case 0:
			return "", syntaxf("NUL in quoted string")
		}
		b = append(b, c)
	}
}

// LiteralInfo describes a literal's header.
type LiteralInfo struct {
	Size    int64
	NonSync bool // {n+}
	Binary  bool // ~{n}
}

// LiteralHeader reads "{n}", "{n+}" or (with binaryOK) "~{n}" and the
// CRLF after it, checks the size against max (0: Limits.MaxLiteral) and,
// for a synchronising literal within the limit, calls Continue. Over the
// limit, a synchronising literal's bytes are never asked for (a
// LimitError); a non-synchronising one makes the LimitError fatal.
func (r *Reader) LiteralHeader(max int64, binaryOK bool) (LiteralInfo, error) {
	return r.LiteralHeaderCheck(max, binaryOK, nil)
}

// LiteralHeaderCheck is LiteralHeader with a last check before "+" is
// sent (APPEND: does the mailbox exist?). When check fails, a
// synchronising literal is never asked for and a non-synchronising one is
// left for Discard to skip.
func (r *Reader) LiteralHeaderCheck(max int64, binaryOK bool, check func(LiteralInfo) error) (LiteralInfo, error) {
	var li LiteralInfo
	if ok, err := r.Is('~'); err != nil {
		return li, err
	} else if ok {
		if !binaryOK {
			return li, syntaxf("literal8 not allowed here")
		}
		li.Binary = true
	}
	if err := r.Expect('{', "literal"); err != nil {
		return li, err
	}
	n, err := r.Number64()
	if err != nil {
		return li, err
	}
	li.Size = int64(n)
	if li.NonSync, err = r.Is('+'); err != nil {
		return li, err
	}
	if err := r.Expect('}', "}"); err != nil {
		return li, err
	}
	if err := r.CRLF(); err != nil {
		return li, err
	}
	r.eol = false
	if max == 0 {
		max = r.Limits.MaxLiteral
	}
	if max > 0 && li.Size > max {
		// A synchronising literal's line is over: the client waits.
		r.eol = !li.NonSync
		return li, &LimitError{Msg: "Literal too large", TooBig: true, Fatal: li.NonSync}
	}
	if check != nil {
		if err := check(li); err != nil {
			if li.NonSync {
				r.inLit = li.Size
			} else {
				r.eol = true
			}
			return li, err
		}
	}
	if !li.NonSync && r.Continue != nil {
		if err := r.Continue(); err != nil {
			return li, err
		}
	}
	r.inLit = li.Size
	return li, nil
}

// Read hands out the bytes of the current literal (after LiteralHeader);
// io.EOF at its end.
func (r *Reader) Read(p []byte) (int, error) {
	if r.inLit <= 0 {
		return 0, io.EOF
	}
	if err := r.fill(); err != nil {
		if errors.Is(err, io.EOF) {
			// Cut short. The source's error stays in the chain: its
			// caller may have marked it (imap tells the client's
			// connection errors from storage errors that way).
			err = fmt.Errorf("%w (%w)", io.ErrUnexpectedEOF, err)
		}
		return 0, err
	}
	n := copy(p, (*r.buf)[r.r:r.w])
	if int64(n) > r.inLit {
		n = int(r.inLit)
	}
	r.r += n
	r.inLit -= int64(n)
	return n, nil
}

// LiteralLeft is how many bytes of the current literal are unread.
func (r *Reader) LiteralLeft() int64 { return r.inLit }

// SkipLiteral discards the rest of the current literal.
func (r *Reader) SkipLiteral() error {
	_, err := io.Copy(io.Discard, readerOnly{r})
	return err
}

type readerOnly struct{ io.Reader }

// literalString reads a whole literal (within the limit) as a string.
func (r *Reader) literalString(binaryOK bool) (string, bool, error) {
	li, err := r.LiteralHeaderCheck(0, binaryOK, func(li LiteralInfo) error {
		if r.Limits.MaxLiterals > 0 && r.litTotal+li.Size > r.Limits.MaxLiterals {
			return &LimitError{Msg: "Too much literal data in one command", TooBig: true}
		}
		return nil
	})
	if err != nil {
		return "", false, err
	}
	r.litTotal += li.Size
	b := make([]byte, li.Size)
	if _, err := io.ReadFull(readerOnly{r}, b); err != nil {
		return "", false, err
	}
	return string(b), li.Binary, nil
}

// String reads a quoted string or a literal.
func (r *Reader) String() (string, error) {
	c, err := r.Peek()
	if err != nil {
		return "", err
	}
	switch c {
	case '"':
		return r.Quoted()
	case '{':
		s, _, err := r.literalString(false)
		return s, err
	}
	return "", syntaxf("Expected string")
}

// AString reads an astring: atom (with "]"), quoted string or literal.
func (r *Reader) AString() (string, error) {
	c, err := r.Peek()
	if err != nil {
		return "", err
	}
	if c == '"' || c == '{' {
		return r.String()
	}
	return r.Token(IsAStringChar, "string")
}

// NString reads an nstring; ok is false for NIL.
func (r *Reader) NString() (s string, ok bool, err error) {
	c, err := r.Peek()
	if err != nil {
		return "", false, err
	}
	if c == 'N' || c == 'n' {
		a, err := r.Atom()
		if err != nil {
			return "", false, err
		}
		if !equalFold(a, "NIL") {
			return "", false, syntaxf("Expected string or NIL")
		}
		return "", false, nil
	}
	s, err = r.String()
	return s, err == nil, err
}

// ListMailbox reads a list-mailbox: list-chars or a string.
func (r *Reader) ListMailbox() (string, error) {
	c, err := r.Peek()
	if err != nil {
		return "", err
	}
	if c == '"' || c == '{' {
		return r.String()
	}
	return r.Token(IsListChar, "mailbox pattern")
}

// List reads "(" elem *(SP elem) ")" (or "()" when empty is allowed),
// calling elem for each element.
func (r *Reader) List(allowEmpty bool, elem func() error) error {
	if err := r.Expect('(', "("); err != nil {
		return err
	}
	r.depth++
	if r.Limits.MaxDepth > 0 && r.depth > r.Limits.MaxDepth {
		return &LimitError{Msg: "Too deeply nested"}
	}
	defer func() { r.depth-- }()
	if ok, err := r.Is(')'); err != nil || ok {
		if ok && !allowEmpty {
			return syntaxf("Empty list")
		}
		return err
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		c, err := r.ReadByte()
		if err != nil {
			return err
		}
		switch c {
		case ')':
			return nil
		case ' ':
		default:
			return syntaxf("Expected space or ) in list")
		}
	}
}

// Enter counts one more level of nesting for grammars that nest without
// List (SEARCH's NOT and OR); Leave undoes it.
func (r *Reader) Enter() error {
	r.depth++
	if r.Limits.MaxDepth > 0 && r.depth > r.Limits.MaxDepth {
		return &LimitError{Msg: "Too deeply nested"}
	}
	return nil
}

// Leave ends a level begun by Enter.
func (r *Reader) Leave() { r.depth-- }

// Discard skips the rest of a command after an error: up to the end of
// the line, skipping the bytes of non-synchronising literals on the way;
// a line ending in a synchronising literal ends the command (the client
// waits for a "+" it will not get). What it skips counts against
// Limits.MaxLine as what was read: past it, or at a non-synchronising
// literal over the limit, nothing more is read and the error says the
// connection must close.
func (r *Reader) Discard() error {
	if r.eol {
		return nil
	}
	if r.inLit > 0 {
		if err := r.SkipLiteral(); err != nil {
			return err
		}
	}
	var tail [24]byte
	tn := 0
	for {
		if err := r.fill(); err != nil {
			return err
		}
		c := (*r.buf)[r.r]
		r.r++
		r.lineLen++
		if r.overLine() {
			return errLineTooLong()
		}
		if c != '\n' {
			if tn == len(tail) {
				copy(tail[:], tail[1:])
				tn--
			}
			tail[tn] = c
			tn++
			continue
		}
		t := string(tail[:tn])
		if len(t) > 0 && t[len(t)-1] == '\r' {
			t = t[:len(t)-1]
		}
		n, nonSync, ok := literalAtEnd(t)
		if !ok || !nonSync {
			r.eol = true
			return nil
		}
		if n > r.Limits.MaxLiteral*16+(1<<20) {
			return &LimitError{Msg: "Literal too large", TooBig: true, Fatal: true}
		}
		r.inLit = n
		if err := r.SkipLiteral(); err != nil {
			return err
		}
		tn = 0
	}
}

// literalAtEnd recognises "{n}" or "{n+}" at the end of s.
func literalAtEnd(s string) (n int64, nonSync, ok bool) {
	if len(s) < 3 || s[len(s)-1] != '}' {
		return 0, false, false
	}
	s = s[:len(s)-1]
	if s[len(s)-1] == '+' {
		nonSync = true
		s = s[:len(s)-1]
	}
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == 0 || i == len(s) || s[i-1] != '{' {
		return 0, false, false
	}
	v, err := strconv.ParseInt(s[i:], 10, 63)
	if err != nil {
		return 0, false, false
	}
	return v, nonSync, true
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 32
		}
		if 'a' <= y && y <= 'z' {
			y -= 32
		}
		if x != y {
			return false
		}
	}
	return true
}

// NumRange is a range of a sequence set; 0 stands for "*".
type NumRange struct{ Lo, Hi uint32 }

// NumSet is a parsed sequence-set. Saved marks "$" (RFC 5182).
type NumSet struct {
	Ranges []NumRange
	Saved  bool
}

// SeqSet reads a sequence-set (or "$").
func (r *Reader) SeqSet() (NumSet, error) {
	var s NumSet
	if ok, err := r.Is('$'); err != nil || ok {
		s.Saved = ok
		return s, err
	}
	num := func() (uint32, error) {
		if ok, err := r.Is('*'); err != nil || ok {
			return 0, err
		}
		n, err := r.Number()
		if err != nil {
			return 0, syntaxf("Invalid sequence set")
		}
		if n == 0 {
			return 0, syntaxf("Invalid sequence set: 0 is not a message number")
		}
		return n, nil
	}
	for {
		lo, err := num()
		if err != nil {
			return s, err
		}
		hi := lo
		if ok, err := r.Is(':'); err != nil {
			return s, err
		} else if ok {
			if hi, err = num(); err != nil {
				return s, err
			}
		}
		if r.Limits.MaxRanges > 0 && len(s.Ranges) >= r.Limits.MaxRanges {
			return s, &LimitError{Msg: "Sequence set too large"}
		}
		s.Ranges = append(s.Ranges, NumRange{lo, hi})
		if ok, err := r.Is(','); err != nil || !ok {
			return s, err
		}
	}
}
