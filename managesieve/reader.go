package managesieve

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"courriel/sieve/scripts"
)

type tokKind uint8

const (
	tokString tokKind = iota
	tokNumber
	tokAtom
)

// token is one argument of a command.
type token struct {
	kind tokKind
	s    string // the string or atom; a number's digits
	n    uint64 // a number's value
}

// discardLimit bounds a refused script literal that is read and thrown
// away so the session can go on; a larger one closes the connection.
const discardLimit = 64 << 20

var errLineTooLong = &reply{msg: "Too long command line.", bye: true}

func (se *session) readByte() (byte, error) {
	c, err := se.br.ReadByte()
	if err != nil {
		return 0, err
	}
	se.lineLen++
	if se.lineLen > se.srv.opts.MaxLineLength {
		return 0, errLineTooLong
	}
	return c, nil
}

func (se *session) unreadByte() {
	_ = se.br.UnreadByte()
	se.lineLen--
}

// readCommand reads one command: its name (upper case; "" for an empty
// line) and arguments. A *syntaxError means the line was consumed and
// the session goes on; a *reply is a literal refused before it was read
// (the rest of the line consumed too); anything else ends the session.
func (se *session) readCommand() (string, []token, error) {
	se.lineLen = 0
	var name strings.Builder
	for {
		c, err := se.readByte()
		if err != nil {
			return "", nil, err
		}
		if isAtomChar(c) {
			if name.Len() >= 32 {
				return "", nil, se.syntax("", "Unknown command.")
			}
			name.WriteByte(c)
			continue
		}
		se.unreadByte()
		break
	}
	cmd := strings.ToUpper(name.String())
	if cmd == "" {
		c, err := se.readByte()
		if err != nil {
			return "", nil, err
		}
		if c == '\n' || c == '\r' && se.eatLF() {
			return "", nil, nil
		}
		return "", nil, se.syntax("", "Invalid command name.")
	}
	if cmd == "XCLIENT" {
		// Dovecot's form: KEY=VALUE atoms with '.', ':' and '=' in them.
		rest := se.readWhile(func(c byte) bool { return c != '\r' && c != '\n' }, 1024)
		if !se.eatLF() && !(se.eatCR() && se.eatLF()) {
			return "", nil, se.syntax(cmd, "Expected CRLF.")
		}
		return cmd, []token{{kind: tokAtom, s: rest}}, nil
	}
	args, err := se.readArgs(cmd)
	return cmd, args, err
}

func (se *session) eatCR() bool {
	c, err := se.readByte()
	if err == nil && c == '\r' {
		return true
	}
	if err == nil {
		se.unreadByte()
	}
	return false
}

func (se *session) eatLF() bool {
	c, err := se.readByte()
	if err == nil && c == '\n' {
		return true
	}
	if err == nil {
		se.unreadByte()
	}
	return false
}

func isAtomChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// syntax consumes the rest of the line and returns a *syntaxError, or the
// error that prevented reading it.
func (se *session) syntax(cmd, msg string) error {
	if err := se.skipLine(); err != nil {
		return err
	}
	return &syntaxError{msg: msg}
}

// readArgs reads arguments up to the end of the line.
func (se *session) readArgs(cmd string) ([]token, error) {
	var args []token
	var refused *reply
	for {
		c, err := se.readByte()
		if err != nil {
			return nil, err
		}
		switch {
		case c == '\n':
			return args, refusedOrNil(refused)
		case c == '\r':
			if !se.eatLF() {
				return nil, se.syntax(cmd, "Expected CRLF.")
			}
			return args, refusedOrNil(refused)
		case c == ' ':
			if len(args) >= 8 {
				return nil, se.syntax(cmd, "Too many arguments.")
			}
		case c == '"':
			s, err := se.readQuoted()
			if err != nil {
				return nil, err
			}
			args = append(args, token{kind: tokString, s: s})
		case c == '{':
			s, r, err := se.readLiteral(cmd, args)
			if err != nil {
				return nil, err
			}
			if r != nil && r.bye {
				return nil, r
			}
			if r != nil {
				refused = r
			}
			args = append(args, token{kind: tokString, s: s})
		case c >= '0' && c <= '9':
			se.unreadByte()
			d := se.readWhile(func(c byte) bool { return c >= '0' && c <= '9' }, 20)
			n, err := strconv.ParseUint(d, 10, 64)
			if err != nil {
				return nil, se.syntax(cmd, "Invalid number.")
			}
			args = append(args, token{kind: tokNumber, s: d, n: n})
		case isAtomChar(c):
			se.unreadByte()
			a := se.readWhile(isAtomChar, 64)
			args = append(args, token{kind: tokAtom, s: a})
		default:
			return nil, se.syntax(cmd, "Unexpected character.")
		}
	}
}

func refusedOrNil(r *reply) error {
	if r == nil {
		return nil
	}
	return r
}

func (se *session) readWhile(ok func(byte) bool, max int) string {
	var b strings.Builder
	for b.Len() <= max {
		c, err := se.br.ReadByte()
		if err != nil {
			break
		}
		if !ok(c) {
			_ = se.br.UnreadByte()
			break
		}
		se.lineLen++
		b.WriteByte(c)
	}
	return b.String()
}

// readQuoted reads a quoted string after its opening quote: \" and \\
// are the only escapes; CR, LF and NUL are not allowed (RFC 5804 §4).
func (se *session) readQuoted() (string, error) {
	var b strings.Builder
	for {
		c, err := se.readByte()
		if err != nil {
			return "", err
		}
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			c, err = se.readByte()
			if err != nil {
				return "", err
			}
			if c != '"' && c != '\\' {
				return "", se.syntax("", "Invalid escape in string.")
			}
		case '\r', '\n', 0:
			if c == '\r' || c == '\n' {
				se.unreadByte()
			}
			return "", se.syntax("", "String contains invalid character.")
		}
		b.WriteByte(c)
	}
}

// readLiteral reads {n} or {n+}, CRLF and n octets (ManageSieve has no
// continuation: the client sends the octets at once). A script literal
// (PUTSCRIPT's second argument, CHECKSCRIPT's first, after login) may be
// as large as the script size limit and is checked against the user's
// quota before it is read; when refused, its octets are read and thrown
// away and the *reply says why. Any other literal is small, and a larger
// one ends the session.
func (se *session) readLiteral(cmd string, args []token) (string, *reply, error) {
	d := se.readWhile(func(c byte) bool { return c >= '0' && c <= '9' }, 12)
	n, perr := strconv.ParseInt(d, 10, 64)
	c, err := se.readByte()
	if err != nil {
		return "", nil, err
	}
	if c == '+' {
		if c, err = se.readByte(); err != nil {
			return "", nil, err
		}
	}
	if perr != nil || c != '}' {
		return "", nil, se.syntax(cmd, "Invalid literal.")
	}
	if c, err = se.readByte(); err != nil {
		return "", nil, err
	}
	if c == '\r' {
		c, err = se.readByte()
		if err != nil {
			return "", nil, err
		}
	}
	if c != '\n' {
		return "", nil, se.syntax(cmd, "Expected CRLF after literal size.")
	}
	script := se.state == stateAuth && (cmd == "PUTSCRIPT" && len(args) == 1 || cmd == "CHECKSCRIPT" && len(args) == 0)
	var refuse *reply
	switch {
	case !script && n > maxSmallLiteral:
		return "", nil, &reply{msg: "Too long argument.", bye: true}
	case script && n > se.srv.opts.Limits.MaxScriptSize:
		refuse = quotaReply(&scripts.QuotaError{Kind: scripts.QuotaMaxSize, Limit: se.srv.opts.Limits.MaxScriptSize})
	case script && cmd == "PUTSCRIPT" && args[0].kind == tokString && scripts.ValidName(args[0].s) == nil:
		if err := se.store.HaveSpace(args[0].s, n); err != nil {
			var qe *scripts.QuotaError
			if !errors.As(err, &qe) {
				return "", nil, err
			}
			refuse = quotaReply(qe)
		}
	}
	_ = se.conn.SetReadDeadline(se.readDeadline(literalTimeout))
	if refuse != nil {
		if n > discardLimit {
			refuse.bye = true
			return "", refuse, nil
		}
		if _, err := io.CopyN(io.Discard, se.br, n); err != nil {
			return "", nil, err
		}
		return "", refuse, nil
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(se.br, buf); err != nil {
		return "", nil, err
	}
	return string(buf), nil, nil
}

// skipLine consumes the rest of a line, with the literals it announces.
func (se *session) skipLine() error {
	var tail []byte // the last few octets, to spot "{n}" or "{n+}" before CRLF
	for {
		c, err := se.readByte()
		if err != nil {
			return err
		}
		if c != '\n' {
			if c != '\r' {
				tail = append(tail, c)
				if len(tail) > 24 {
					tail = tail[len(tail)-24:]
				}
			}
			continue
		}
		n, ok := literalAtEnd(string(tail))
		if !ok {
			return nil
		}
		if n > discardLimit {
			return &reply{msg: "Too long argument.", bye: true}
		}
		_ = se.conn.SetReadDeadline(se.readDeadline(literalTimeout))
		if _, err := io.CopyN(io.Discard, se.br, n); err != nil {
			return err
		}
		tail = tail[:0]
	}
}

func literalAtEnd(s string) (int64, bool) {
	if !strings.HasSuffix(s, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(s, '{')
	if i < 0 {
		return 0, false
	}
	d := strings.TrimSuffix(s[i+1:len(s)-1], "+")
	n, err := strconv.ParseInt(d, 10, 64)
	return n, err == nil && n >= 0
}

func quotaReply(qe *scripts.QuotaError) *reply {
	switch qe.Kind {
	case scripts.QuotaMaxScripts:
		return no("QUOTA/MAXSCRIPTS", fmt.Sprintf("Script count quota exceeded (max %d scripts).", qe.Limit))
	case scripts.QuotaMaxStorage:
		return no("QUOTA/MAXSTORAGE", fmt.Sprintf("Script storage quota exceeded (max %d bytes).", qe.Limit))
	default:
		return no("QUOTA/MAXSIZE", fmt.Sprintf("Script is too large (max %d bytes).", qe.Limit))
	}
}
