package sieve

import (
	"fmt"
	"strings"
	"time"
)

// Limits bound what a script may cost; a zero field takes its default.
type Limits struct {
	MaxScriptSize   int // bytes of source (default 1 MiB)
	MaxNesting      int // blocks within blocks, and tests within tests (default 31, as Pigeonhole)
	MaxStringLength int // bytes of one string after unescaping (default 64 KiB)
	MaxActions      int // actions of one run (default 32, Pigeonhole's sieve_max_actions)
	MaxRedirects    int // redirect actions of one run (default 4; Pigeonhole's sieve_max_redirects is 1)
	// MaxNotifications bounds the notify actions of one run (default 4,
	// each to at most 8 recipients): a message must not fan out into
	// mail to many. Pigeonhole bounds them by sieve_max_actions only.
	MaxNotifications int
	// MaxRunWork bounds the work of one run, in units of about an octet
	// scanned (budget.go): default DefaultMaxRunWork. Past it the run
	// fails (ErrWorkLimit), the message kept in INBOX.
	MaxRunWork int64
	// MaxRunTime bounds the time of one run: default DefaultMaxRunTime,
	// Pigeonhole's sieve_max_cpu_time. Past it the run fails
	// (ErrTimeLimit), the message kept in INBOX.
	MaxRunTime time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxScriptSize <= 0 {
		l.MaxScriptSize = 1 << 20
	}
	if l.MaxNesting <= 0 {
		l.MaxNesting = 31
	}
	if l.MaxStringLength <= 0 {
		l.MaxStringLength = 64 << 10
	}
	if l.MaxActions <= 0 {
		l.MaxActions = 32
	}
	if l.MaxRedirects <= 0 {
		l.MaxRedirects = 4
	}
	if l.MaxNotifications <= 0 {
		l.MaxNotifications = 4
	}
	if l.MaxRunWork <= 0 {
		l.MaxRunWork = DefaultMaxRunWork
	}
	if l.MaxRunTime <= 0 {
		l.MaxRunTime = DefaultMaxRunTime
	}
	return l
}

// Error is a script error at a place in the source: what ManageSieve's
// CHECKSCRIPT and PUTSCRIPT show the user.
type Error struct {
	Line, Column int // 1-based; Column counts bytes
	Reason       string
	// Err is the cause of a run stopped by its limits or its context
	// (ErrWorkLimit, ErrTimeLimit, the context's error); nil otherwise.
	Err error
	// quiet: an unknown name reported at its first occurrence, not again
	quiet bool
}

func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Reason)
}

// Pos is a place in the source.
type Pos struct{ Line, Column int }

// ArgKind says what an argument is.
type ArgKind int

const (
	ArgStrings ArgKind = iota // a string or a string list
	ArgNumber
	ArgTag
)

// Arg is one argument of a command or test.
type Arg struct {
	Pos     Pos
	Kind    ArgKind
	Strings []string // ArgStrings
	List    bool     // ArgStrings written as [...]
	Number  uint64   // ArgNumber
	Tag     string   // ArgTag, lower case, without the colon
}

// Test is a test with its arguments and, for allof, anyof and not, its tests.
type Test struct {
	Pos      Pos
	Name     string // lower case
	Args     []Arg
	Tests    []*Test
	TestList bool // Tests written as ( ... )
}

// Command is a command with its arguments, its test (if, elsif) and its block.
type Command struct {
	Pos      Pos
	Name     string // lower case
	Args     []Arg
	Tests    []*Test // one for if/elsif
	TestList bool    // Tests written as ( ... )
	Block    []*Command
	HasBlock bool
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokTag
	tokNumber
	tokString
	tokPunct // one of [ ] ( ) , ; { }
)

type token struct {
	kind tokKind
	pos  Pos
	text string // identifier/tag (lower case), string value, punctuation
	num  uint64
}

type lexer struct {
	src       string
	off       int
	line, col int
	limits    Limits
	hashEOF   *Pos // where a hash comment ends the script without a newline
}

func (lx *lexer) errorf(p Pos, format string, args ...any) *Error {
	return &Error{Line: p.Line, Column: p.Column, Reason: fmt.Sprintf(format, args...)}
}

func (lx *lexer) pos() Pos { return Pos{lx.line, lx.col} }

func (lx *lexer) advance(n int) {
	for i := 0; i < n && lx.off < len(lx.src); i++ {
		if lx.src[lx.off] == '\n' {
			lx.line++
			lx.col = 1
		} else {
			lx.col++
		}
		lx.off++
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// skipSpace skips white space and both kinds of comment.
func (lx *lexer) skipSpace() *Error {
	for lx.off < len(lx.src) {
		c := lx.src[lx.off]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			lx.advance(1)
		case c == '#':
			for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
				lx.advance(1)
			}
			if lx.off == len(lx.src) {
				p := lx.pos()
				lx.hashEOF = &p
			}
		case c == '/' && strings.HasPrefix(lx.src[lx.off:], "/*"):
			start := lx.pos()
			end := strings.Index(lx.src[lx.off+2:], "*/")
			if end < 0 {
				return lx.errorf(start, "unterminated comment")
			}
			lx.advance(end + 4)
		default:
			return nil
		}
	}
	return nil
}

func (lx *lexer) next() (token, *Error) {
	if err := lx.skipSpace(); err != nil {
		return token{}, err
	}
	p := lx.pos()
	if lx.off >= len(lx.src) {
		return token{kind: tokEOF, pos: p}, nil
	}
	c := lx.src[lx.off]
	switch {
	case strings.IndexByte("[](),;{}", c) >= 0:
		lx.advance(1)
		return token{kind: tokPunct, pos: p, text: string(c)}, nil
	case c == '"':
		s, err := lx.quoted()
		return token{kind: tokString, pos: p, text: s}, err
	case c == ':':
		lx.advance(1)
		if lx.off >= len(lx.src) || !isIdentStart(lx.src[lx.off]) {
			return token{}, lx.errorf(p, "a tag needs a name after ':'")
		}
		id, err := lx.ident()
		if err != nil {
			err.Column = p.Column // the tag's colon
		}
		return token{kind: tokTag, pos: p, text: strings.ToLower(id)}, err
	case c >= '0' && c <= '9':
		n, err := lx.number(p)
		return token{kind: tokNumber, pos: p, num: n}, err
	case isIdentStart(c):
		id, err := lx.ident()
		if err != nil {
			return token{}, err
		}
		if strings.EqualFold(id, "text") && lx.off < len(lx.src) && lx.src[lx.off] == ':' {
			lx.advance(1)
			s, err := lx.multiline(p)
			return token{kind: tokString, pos: p, text: s}, err
		}
		return token{kind: tokIdent, pos: p, text: strings.ToLower(id)}, nil
	}
	return token{}, lx.errorf(p, "unexpected character %q", rune(c))
}

// maxIdentifier is Pigeonhole's longest identifier or tag name.
const maxIdentifier = 32

func (lx *lexer) ident() (string, *Error) {
	start, p := lx.off, lx.pos()
	for lx.off < len(lx.src) && isIdentChar(lx.src[lx.off]) {
		lx.advance(1)
	}
	if lx.off-start > maxIdentifier {
		return "", lx.errorf(p, "identifier longer than %d characters", maxIdentifier)
	}
	return lx.src[start:lx.off], nil
}

func (lx *lexer) number(p Pos) (uint64, *Error) {
	const max = ^uint64(0)
	var n uint64
	for lx.off < len(lx.src) && lx.src[lx.off] >= '0' && lx.src[lx.off] <= '9' {
		d := uint64(lx.src[lx.off] - '0')
		if n > (max-d)/10 {
			return 0, lx.errorf(p, "number too large")
		}
		n = n*10 + d
		lx.advance(1)
	}
	if lx.off < len(lx.src) {
		var shift uint
		switch lx.src[lx.off] | 0x20 {
		case 'k':
			shift = 10
		case 'm':
			shift = 20
		case 'g':
			shift = 30
		}
		if shift > 0 {
			if n > max>>shift {
				return 0, lx.errorf(p, "number too large")
			}
			n <<= shift
			lx.advance(1)
		}
	}
	if lx.off < len(lx.src) && isIdentChar(lx.src[lx.off]) {
		return 0, lx.errorf(lx.pos(), "unexpected character %q after a number", rune(lx.src[lx.off]))
	}
	return n, nil
}

// quoted reads "..." where \\ is \, \" is ", a backslash before any other
// character is dropped (RFC 5228 §2.4.2), and a bare LF becomes CRLF.
func (lx *lexer) quoted() (string, *Error) {
	start := lx.pos()
	lx.advance(1)
	var b strings.Builder
	for {
		if lx.off >= len(lx.src) {
			return "", lx.errorf(start, "unterminated string")
		}
		c := lx.src[lx.off]
		switch c {
		case '"':
			lx.advance(1)
			return b.String(), nil
		case '\\':
			if lx.off+1 >= len(lx.src) {
				return "", lx.errorf(start, "unterminated string")
			}
			c = lx.src[lx.off+1]
			lx.advance(1)
		case '\n':
			// Line ends in strings are CRLF, as in text: (and Pigeonhole).
			if b.Len() == 0 || b.String()[b.Len()-1] != '\r' {
				b.WriteByte('\r')
			}
		}
		b.WriteByte(c)
		lx.advance(1)
		if b.Len() > lx.limits.MaxStringLength {
			return "", lx.errorf(start, "string longer than %d bytes", lx.limits.MaxStringLength)
		}
	}
}

// multiline reads the rest of text: up to a line holding a single dot; a
// line starting with two dots loses one (dot-stuffing). Lines end in CRLF
// in the value whatever the file used, as Pigeonhole gives them.
func (lx *lexer) multiline(start Pos) (string, *Error) {
	for lx.off < len(lx.src) && (lx.src[lx.off] == ' ' || lx.src[lx.off] == '\t') {
		lx.advance(1)
	}
	if lx.off < len(lx.src) && lx.src[lx.off] == '#' {
		for lx.off < len(lx.src) && lx.src[lx.off] != '\n' {
			lx.advance(1)
		}
	}
	if lx.off < len(lx.src) && lx.src[lx.off] == '\r' {
		lx.advance(1)
	}
	if lx.off >= len(lx.src) || lx.src[lx.off] != '\n' {
		return "", lx.errorf(lx.pos(), "text: must be followed by the end of the line")
	}
	lx.advance(1)
	var b strings.Builder
	for {
		if lx.off >= len(lx.src) {
			return "", lx.errorf(start, "unterminated text: string (no line with a single dot)")
		}
		end := strings.IndexByte(lx.src[lx.off:], '\n')
		var line string
		if end < 0 {
			line = lx.src[lx.off:]
			end = len(line)
		} else {
			line = lx.src[lx.off : lx.off+end]
			end++
		}
		line = strings.TrimSuffix(line, "\r")
		lx.advance(end)
		if line == "." {
			return b.String(), nil
		}
		if strings.HasPrefix(line, "..") {
			line = line[1:] // dot-stuffing; Pigeonhole keeps the dot of ".x"
		}
		b.WriteString(line)
		b.WriteString("\r\n")
		if b.Len() > lx.limits.MaxStringLength {
			return "", lx.errorf(start, "string longer than %d bytes", lx.limits.MaxStringLength)
		}
	}
}

type parser struct {
	lx                    lexer
	tok                   token
	blockDepth, testDepth int
}

// Parse reads a script into its commands, checking only the grammar of
// RFC 5228 §8; Compile also checks what the commands mean.
func Parse(src []byte, limits Limits) ([]*Command, error) {
	cmds, _, err := parse(src, limits)
	return cmds, err
}

// parse is Parse, and where a hash comment ends the script without a
// newline (Pigeonhole's lexer warns of it), nil if none does.
func parse(src []byte, limits Limits) ([]*Command, *Pos, error) {
	limits = limits.withDefaults()
	if len(src) > limits.MaxScriptSize {
		return nil, nil, &Error{Line: 1, Column: 1, Reason: fmt.Sprintf("script larger than %d bytes", limits.MaxScriptSize)}
	}
	p := &parser{lx: lexer{src: string(src), line: 1, col: 1, limits: limits}}
	if err := p.next(); err != nil {
		return nil, p.lx.hashEOF, err
	}
	cmds, err := p.commands()
	if err != nil {
		return nil, p.lx.hashEOF, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.lx.hashEOF, p.unexpected("a command")
	}
	return cmds, p.lx.hashEOF, nil
}

func (p *parser) next() *Error {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) is(punct string) bool { return p.tok.kind == tokPunct && p.tok.text == punct }

func (p *parser) unexpected(want string) *Error {
	var got string
	switch p.tok.kind {
	case tokEOF:
		got = "end of script"
	case tokIdent:
		got = "identifier " + p.tok.text
	case tokTag:
		got = "tag :" + p.tok.text
	case tokNumber:
		got = "number"
	case tokString:
		got = "string"
	default:
		got = "'" + p.tok.text + "'"
	}
	return p.lx.errorf(p.tok.pos, "expected %s, found %s", want, got)
}

// enter counts one more level of blocks or of tests.
func (p *parser) enter(depth *int, what string) *Error {
	*depth++
	if *depth > p.lx.limits.MaxNesting {
		return p.lx.errorf(p.tok.pos, "%s nested deeper than %d", what, p.lx.limits.MaxNesting)
	}
	return nil
}

func (p *parser) commands() ([]*Command, *Error) {
	var cmds []*Command
	for p.tok.kind == tokIdent {
		c, err := p.command()
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, c)
	}
	return cmds, nil
}

func (p *parser) command() (*Command, *Error) {
	c := &Command{Pos: p.tok.pos, Name: p.tok.text}
	if err := p.next(); err != nil {
		return nil, err
	}
	args, tests, list, err := p.arguments()
	if err != nil {
		return nil, err
	}
	c.Args, c.Tests, c.TestList = args, tests, list
	switch {
	case p.is(";"):
		if err := p.next(); err != nil {
			return nil, err
		}
	case p.is("{"):
		if err := p.enter(&p.blockDepth, "blocks"); err != nil {
			return nil, err
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		block, err := p.commands()
		if err != nil {
			return nil, err
		}
		if !p.is("}") {
			return nil, p.unexpected("'}' or a command")
		}
		p.blockDepth--
		if err := p.next(); err != nil {
			return nil, err
		}
		c.Block, c.HasBlock = block, true
	default:
		return nil, p.unexpected("';' or '{' after command " + c.Name)
	}
	return c, nil
}

// arguments reads *argument [test / test-list].
func (p *parser) arguments() ([]Arg, []*Test, bool, *Error) {
	var args []Arg
	for {
		a, ok, err := p.argument()
		if err != nil {
			return nil, nil, false, err
		}
		if !ok {
			break
		}
		args = append(args, a)
	}
	switch {
	case p.tok.kind == tokIdent:
		t, err := p.test()
		if err != nil {
			return nil, nil, false, err
		}
		return args, []*Test{t}, false, nil
	case p.is("("):
		if err := p.next(); err != nil {
			return nil, nil, false, err
		}
		var tests []*Test
		for {
			if p.tok.kind != tokIdent {
				return nil, nil, false, p.unexpected("a test")
			}
			t, err := p.test()
			if err != nil {
				return nil, nil, false, err
			}
			tests = append(tests, t)
			if p.is(")") {
				break
			}
			if !p.is(",") {
				return nil, nil, false, p.unexpected("',' or ')' in a test list")
			}
			if err := p.next(); err != nil {
				return nil, nil, false, err
			}
		}
		if err := p.next(); err != nil {
			return nil, nil, false, err
		}
		return args, tests, true, nil
	}
	return args, nil, false, nil
}

func (p *parser) argument() (Arg, bool, *Error) {
	a := Arg{Pos: p.tok.pos}
	switch {
	case p.tok.kind == tokString:
		a.Kind, a.Strings = ArgStrings, []string{p.tok.text}
	case p.tok.kind == tokNumber:
		a.Kind, a.Number = ArgNumber, p.tok.num
	case p.tok.kind == tokTag:
		a.Kind, a.Tag = ArgTag, p.tok.text
	case p.is("["):
		a.Kind, a.List = ArgStrings, true
		for {
			if err := p.next(); err != nil {
				return a, false, err
			}
			if p.tok.kind != tokString {
				return a, false, p.unexpected("a string in a string list")
			}
			a.Strings = append(a.Strings, p.tok.text)
			if err := p.next(); err != nil {
				return a, false, err
			}
			if p.is("]") {
				break
			}
			if !p.is(",") {
				return a, false, p.unexpected("',' or ']' in a string list")
			}
		}
	default:
		return a, false, nil
	}
	return a, true, p.next()
}

func (p *parser) test() (*Test, *Error) {
	if err := p.enter(&p.testDepth, "tests"); err != nil {
		return nil, err
	}
	t := &Test{Pos: p.tok.pos, Name: p.tok.text}
	if err := p.next(); err != nil {
		return nil, err
	}
	args, tests, list, err := p.arguments()
	if err != nil {
		return nil, err
	}
	p.testDepth--
	t.Args, t.Tests, t.TestList = args, tests, list
	return t, nil
}
