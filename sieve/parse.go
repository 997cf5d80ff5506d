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
	// (ErrWorkLimit, ErrTimeLimit, the context's error), or the
	// DuplicateStore's error; nil otherwise.
	Err error
	// quiet: an unknown name reported at its first occurrence, not again
	quiet bool
	// fatal: a parse error the parser does not go on after (the lexer's,
	// a limit's)
	fatal bool
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
	// errs are the errors found, at most max of them (0: no bound), and
	// nerrs how many there were: as Pigeonhole's parser, it skips what
	// follows an error up to the end of the command or block
	// (recover) and goes on while more errors are allowed
	errs       []*Error
	max, nerrs int
}

// fail records a parse error.
func (p *parser) fail(e *Error) {
	if p.more() {
		p.errs = append(p.errs, e)
	}
	p.nerrs++
}

// more is Pigeonhole's sieve_errors_more_allowed.
func (p *parser) more() bool { return p.max <= 0 || p.nerrs < p.max }

// priority is a token's rank in Pigeonhole's error recovery
// (sieve_parser_recover): blocks, commands, test lists, string lists.
func priority(t token) int {
	if t.kind != tokPunct {
		return -1
	}
	switch t.text {
	case "{", "}":
		return 3
	case ";":
		return 2
	case "(", ")":
		return 1
	case "[", "]":
		return 0
	}
	return -1
}

// recover skips what is left of the structure an error is in, up to its
// end (";" or "}") as Pigeonhole's sieve_parser_recover: nested
// structures of the same rank are skipped whole, and one of a higher
// rank (or the end of the script) stops it, unrecovered (false), but a
// "{" ends a command (its block follows). The token is then the end.
func (p *parser) recover(end string) (bool, *Error) {
	begin := map[string]string{";": "", "}": "{"}[end]
	endPrio := priority(token{kind: tokPunct, text: end})
	nesting := 1
	for p.tok.kind != tokEOF && priority(p.tok) <= endPrio {
		switch {
		case begin != "" && p.is(begin):
			nesting++
		case p.is(end):
			nesting--
			if nesting == 0 {
				return true, nil
			}
		}
		if err := p.next(); err != nil {
			return false, err
		}
	}
	return end == ";" && p.is("{"), nil
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
	cmds, hashEOF, errs := parseAll(src, limits, 1)
	if len(errs) > 0 {
		return nil, hashEOF, errs[0]
	}
	return cmds, hashEOF, nil
}

// parseAll is parse with its errors, up to max of them (0: no bound):
// as Pigeonhole's parser, it goes on after an error in a command at the
// next command, or block, where it can; not after an error of the lexer
// or of a limit.
func parseAll(src []byte, limits Limits, max int) ([]*Command, *Pos, []*Error) {
	limits = limits.withDefaults()
	if len(src) > limits.MaxScriptSize {
		return nil, nil, []*Error{{Line: 1, Column: 1, Reason: fmt.Sprintf("script larger than %d bytes", limits.MaxScriptSize)}}
	}
	p := &parser{lx: lexer{src: string(src), line: 1, col: 1, limits: limits}, max: max}
	if err := p.next(); err != nil {
		p.fail(err)
		return nil, p.lx.hashEOF, p.errs
	}
	cmds, ok, err := p.commands()
	switch {
	case err != nil:
		p.fail(err)
	case ok && p.nerrs == 0 && p.tok.kind != tokEOF:
		p.fail(p.unexpected("a command"))
	}
	if p.nerrs > 0 {
		return nil, p.lx.hashEOF, p.errs
	}
	return cmds, p.lx.hashEOF, nil
}

// next reads the next token; an error of the lexer is fatal.
func (p *parser) next() *Error {
	t, err := p.lx.next()
	if err != nil {
		err.fatal = true
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
		e := p.lx.errorf(p.tok.pos, "%s nested deeper than %d", what, p.lx.limits.MaxNesting)
		e.fatal = true
		return e
	}
	return nil
}

// commands reads commands up to a token that is not an identifier. A
// command in error is recorded and skipped (recover), as in Pigeonhole's
// sieve_parse_commands; ok false: one could not be skipped (the parser
// is lost), err: a fatal error.
func (p *parser) commands() (cmds []*Command, ok bool, err *Error) {
	for p.tok.kind == tokIdent {
		if p.nerrs > 0 && !p.more() {
			ok, err := p.recover(";")
			return nil, ok, err
		}
		c, ok, err := p.command()
		if err != nil || !ok {
			return nil, ok, err
		}
		cmds = append(cmds, c)
	}
	return cmds, true, nil
}

// command reads a command; ok false: an error it could not recover from.
func (p *parser) command() (*Command, bool, *Error) {
	c := &Command{Pos: p.tok.pos, Name: p.tok.text}
	if err := p.next(); err != nil {
		return nil, false, err
	}
	args, tests, list, ok, err := p.arguments()
	if err != nil {
		return nil, false, err
	}
	if ok && !p.is(";") && !p.is("{") {
		p.fail(p.unexpected("';' or '{' after command " + c.Name))
		ok = false
	}
	if !ok {
		if ok, err := p.recover(";"); !ok || err != nil {
			return nil, false, err
		}
	}
	c.Args, c.Tests, c.TestList = args, tests, list
	switch {
	case p.is(";"):
		if err := p.next(); err != nil {
			return nil, false, err
		}
	case p.is("{"):
		if err := p.enter(&p.blockDepth, "blocks"); err != nil {
			return nil, false, err
		}
		if err := p.next(); err != nil {
			return nil, false, err
		}
		block, ok, err := p.commands()
		if err != nil {
			return nil, false, err
		}
		if ok && !p.is("}") {
			p.fail(p.unexpected("'}' or a command"))
			ok = false
		}
		if !ok {
			if ok, err := p.recover("}"); !ok || err != nil {
				return nil, false, err
			}
		}
		p.blockDepth--
		if err := p.next(); err != nil {
			return nil, false, err
		}
		c.Block, c.HasBlock = block, true
	}
	return c, true, nil
}

// arguments reads *argument [test / test-list], as Pigeonhole's
// sieve_parse_arguments: an error in a string list or a test list is
// recorded and the rest of the list skipped (recover) where it can be;
// ok false: the caller recovers; err: a fatal error.
func (p *parser) arguments() (args []Arg, tests []*Test, list, ok bool, err *Error) {
	for {
		if p.nerrs > 0 && !p.more() {
			return args, nil, false, false, nil
		}
		a, present, ok, err := p.argument()
		if err != nil {
			return nil, nil, false, false, err
		}
		if present {
			args = append(args, a)
		}
		if !ok {
			return args, nil, false, false, nil // recovery is the caller's
		}
		if !present {
			break
		}
	}
	switch {
	case p.tok.kind == tokIdent:
		t, ok, err := p.test()
		if err != nil {
			return nil, nil, false, false, err
		}
		return args, []*Test{t}, false, ok, nil
	case p.is("("):
		if err := p.next(); err != nil {
			return nil, nil, false, false, err
		}
		ok := true
		if p.tok.kind == tokIdent {
			t, tok, err := p.test()
			if err != nil {
				return nil, nil, false, false, err
			}
			tests = append(tests, t)
			if tok {
				for p.is(",") {
					if err := p.next(); err != nil {
						return nil, nil, false, false, err
					}
					if p.nerrs > 0 && !p.more() {
						ok, err = p.recover(")")
						break
					}
					if p.tok.kind != tokIdent {
						p.fail(p.unexpected("a test"))
						ok, err = p.recover(")")
						break
					}
					t, tok, err := p.test()
					if err != nil {
						return nil, nil, false, false, err
					}
					tests = append(tests, t)
					if !tok {
						ok, err = p.recover(")")
						break
					}
				}
			} else {
				ok, err = p.recover(")")
			}
		} else {
			p.fail(p.unexpected("a test"))
			ok, err = p.recover(")")
		}
		if err != nil {
			return nil, nil, false, false, err
		}
		if p.is(")") {
			if err := p.next(); err != nil {
				return nil, nil, false, false, err
			}
		} else {
			p.fail(p.unexpected("',' or ')' in a test list"))
			if ok, err = p.recover(")"); err != nil {
				return nil, nil, false, false, err
			}
			if ok {
				if err := p.next(); err != nil {
					return nil, nil, false, false, err
				}
			}
		}
		if len(tests) == 0 {
			// Pigeonhole gives up here ("failed to accept more tests").
			e := p.lx.errorf(p.tok.pos, "no test in the test list")
			e.fatal = true
			return nil, nil, false, false, e
		}
		return args, tests, true, ok, nil
	}
	return args, nil, false, true, nil
}

// argument reads an argument, if there is one (present); an error in a
// string list is recorded, the list skipped: ok false when it cannot be.
func (p *parser) argument() (a Arg, present, ok bool, err *Error) {
	a = Arg{Pos: p.tok.pos}
	switch {
	case p.tok.kind == tokString:
		a.Kind, a.Strings = ArgStrings, []string{p.tok.text}
	case p.tok.kind == tokNumber:
		a.Kind, a.Number = ArgNumber, p.tok.num
	case p.tok.kind == tokTag:
		a.Kind, a.Tag = ArgTag, p.tok.text
	case p.is("["):
		a.Kind, a.List = ArgStrings, true
		if err := p.next(); err != nil {
			return a, false, false, err
		}
		ok := true
		if p.tok.kind == tokString {
			a.Strings = append(a.Strings, p.tok.text)
			if err := p.next(); err != nil {
				return a, false, false, err
			}
			for p.is(",") {
				if err := p.next(); err != nil {
					return a, false, false, err
				}
				if p.nerrs > 0 && !p.more() {
					ok, err = p.recover("]")
					break
				}
				if p.tok.kind != tokString {
					p.fail(p.unexpected("a string in a string list"))
					ok, err = p.recover("]")
					break
				}
				a.Strings = append(a.Strings, p.tok.text)
				if err := p.next(); err != nil {
					return a, false, false, err
				}
			}
		} else {
			p.fail(p.unexpected("a string in a string list"))
			ok, err = p.recover("]")
		}
		if err != nil {
			return a, false, false, err
		}
		if p.is("]") {
			return a, true, ok, p.next()
		}
		p.fail(p.unexpected("',' or ']' in a string list"))
		if ok, err = p.recover("]"); err != nil || !ok {
			return a, true, false, err
		}
		return a, true, true, p.next()
	default:
		return a, false, true, nil
	}
	return a, true, true, p.next()
}

// test reads a test and its arguments; ok false: the caller recovers.
func (p *parser) test() (*Test, bool, *Error) {
	if err := p.enter(&p.testDepth, "tests"); err != nil {
		return nil, false, err
	}
	t := &Test{Pos: p.tok.pos, Name: p.tok.text}
	if err := p.next(); err != nil {
		return nil, false, err
	}
	args, tests, list, ok, err := p.arguments()
	if err != nil {
		return nil, false, err
	}
	p.testDepth--
	t.Args, t.Tests, t.TestList = args, tests, list
	return t, ok, nil
}
