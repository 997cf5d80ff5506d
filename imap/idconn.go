package imap

import (
	"bytes"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ID (RFC 2971) is answered here, below go-imap's imapserver, which has no
// hook for it: Thunderbird, iOS Mail and Outlook send it right after
// connecting and some give up on the BAD (or, before login, the BYE) the
// library answers to an unknown command.
//
// idConn sits between the network (or TLS) connection and the library. It
// watches the client's byte stream, following command lines and literals,
// and takes out complete "tag ID ..." command lines, answering them itself.
// Everything else goes through unchanged. The answer is written only when
// the library has consumed every byte before the ID line and asked for more:
// the library then waits for a command and has flushed every response of the
// previous ones (imapserver flushes at each CRLF), so nothing interleaves.
// The line after IDLE (DONE) and after an AUTHENTICATE without initial
// response are never taken, and after STARTTLS the stream is TLS records:
// idConn then only passes bytes through.

const (
	// maxIDLine bounds an ID command line held back while waiting for its
	// end (RFC 2971 §3.3: at most 30 pairs of a 30-octet field and a
	// 1024-octet value — a longer line is passed on to the library).
	maxIDLine = 8 << 10
	// maxHead bounds what is held at a line start before deciding whether
	// it is an ID command: a tag and a command name.
	maxHead = 128
	// idWriteTimeout is the library's own respWriteTimeout, and
	// bigWriteTimeout its literalWriteTimeout, used for writes over
	// bigWrite bytes.
	idWriteTimeout  = 30 * time.Second
	bigWriteTimeout = 5 * time.Minute
	bigWrite        = 64 << 10
	// closeFlushTimeout bounds the last flush on Close (BYE, LOGOUT's OK)
	// so that shutdown is not held by a client that stopped reading.
	closeFlushTimeout = 2 * time.Second
	// maxOutBuf is how much output is gathered before a write.
	maxOutBuf = 32 << 10
)

// idReply is what the server says about itself: the name only (a version
// would help attackers more than clients).
const idReply = "* ID (\"name\" \"courriel\")\r\n"

type idConn struct {
	net.Conn

	held []byte // read but not yet given to the library; nil when empty
	err  error  // read error to return once held is drained

	lit         int64 // literal bytes still to pass through
	midLine     bool  // inside a line already being passed through
	tail        [24]byte
	tailN       int
	skipNext    bool // the next line is not a command (DONE, a SASL reply)
	passthrough bool // after STARTTLS: nothing is inspected any more
	// Effects of the current command, applied when its last line ends.
	endSkip, endPassthrough bool

	// Output coalescing. imapserver flushes its writer after every
	// response line, which costs a TLS record and a system call per
	// message of a FETCH 1:*. Writes are gathered instead and sent when
	// the library next reads (it then waits for the client, so everything
	// it said must be out), when the buffer fills, and on Close. While a
	// read is blocked — IDLE, whose updates come from another goroutine,
	// or a BYE at shutdown — writes go out at once. Write deadlines are
	// set here, for every real write; the library's are ignored.
	wmu     sync.Mutex
	caps    capRewriter // guarded by wmu: adds ID to capability lists
	plainTx atomic.Bool // set at STARTTLS: output is TLS records from then on
	out     []byte      // guarded by wmu; nil when empty
	reading bool        // guarded by wmu: a Read is in progress
	closed  bool        // guarded by wmu
}

func newIDConn(c net.Conn) *idConn { return &idConn{Conn: c} }

func (c *idConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	err := c.flushAllLocked(idWriteTimeout)
	c.reading = err == nil
	c.wmu.Unlock()
	if err != nil {
		return 0, err
	}
	defer func() {
		c.wmu.Lock()
		c.reading = false
		c.wmu.Unlock()
	}()
	return c.read(p)
}

func (c *idConn) read(p []byte) (int, error) {
	for {
		if len(c.held) == 0 {
			c.held = nil // an idle connection keeps no buffer of ours
			if c.err != nil {
				err := c.err
				c.err = nil
				return 0, err
			}
			if c.passthrough {
				return c.Conn.Read(p)
			}
			n, err := c.Conn.Read(p)
			if n == 0 {
				return 0, err
			}
			rel, idLine := c.scan(p[:n], len(p))
			if idLine == nil && rel == n {
				return n, err
			}
			c.held = append(make([]byte, 0, max(n-rel, 512)), p[rel:n]...)
			c.err = err
			if rel > 0 {
				return rel, nil
			}
			continue
		}
		rel, idLine := c.scan(c.held, len(p))
		if idLine != nil && rel == 0 {
			if err := c.answer(idLine); err != nil {
				return 0, err
			}
			c.held = c.held[len(idLine):]
			continue
		}
		if rel > 0 {
			n := copy(p, c.held[:rel])
			c.held = c.held[n:]
			return n, nil
		}
		// An ID candidate line is incomplete: read more of it.
		if c.err != nil {
			// The peer stopped mid-line: give the library what there is.
			n := copy(p, c.held)
			c.held = c.held[n:]
			c.midLine = true
			return n, nil
		}
		if len(c.held) == cap(c.held) {
			c.held = append(c.held, make([]byte, 1024)...)[:len(c.held)]
		}
		n, err := c.Conn.Read(c.held[len(c.held):cap(c.held)])
		c.held = c.held[:len(c.held)+n]
		c.err = err
	}
}

// scan advances over b and returns how many bytes may go to the library
// now (at most limit). When an ID command line starts at the returned
// offset, it is returned too: the caller answers it once everything before
// it has been consumed. A line start that might be an ID command is held
// until it can be decided (the offset then stops before it).
func (c *idConn) scan(b []byte, limit int) (release int, idLine []byte) {
	i := 0
	for i < len(b) && i < limit {
		if c.passthrough {
			return min(len(b), limit), nil
		}
		if c.lit > 0 {
			k := int64(min(len(b), limit) - i)
			k = min(k, c.lit)
			i += int(k)
			c.lit -= k
			continue
		}
		if !c.midLine {
			if c.skipNext {
				c.skipNext = false
				c.startLine()
				continue
			}
			line, decided := c.decide(b[i:])
			if !decided {
				return i, nil
			}
			if line != nil {
				return i, line
			}
			c.startLine()
			continue
		}
		// Inside a line: pass it through up to its end.
		end := min(len(b), limit)
		j := bytes.IndexByte(b[i:end], '\n')
		if j < 0 {
			c.addTail(b[i:end])
			i = end
			continue
		}
		c.addTail(b[i : i+j+1])
		i += j + 1
		c.endLine()
	}
	return min(i, limit), nil
}

func (c *idConn) startLine() {
	c.midLine = true
	c.tailN = 0
}

func (c *idConn) addTail(b []byte) {
	if len(b) >= len(c.tail) {
		c.tailN = copy(c.tail[:], b[len(b)-len(c.tail):])
		return
	}
	if c.tailN+len(b) > len(c.tail) {
		drop := c.tailN + len(b) - len(c.tail)
		copy(c.tail[:], c.tail[drop:c.tailN])
		c.tailN -= drop
	}
	c.tailN += copy(c.tail[c.tailN:], b)
}

// endLine runs at the end of a line: a literal announced at its end
// ("{n}", "{n+}", "~{n}" — RFC 9051 §4.3, RFC 7888) continues the command,
// otherwise the command is over.
func (c *idConn) endLine() {
	c.midLine = false
	if n, ok := trailingLiteral(c.tail[:c.tailN]); ok {
		c.lit = n
		c.midLine = true // the line goes on after the literal
		c.tailN = 0
		return
	}
	c.skipNext, c.passthrough = c.endSkip, c.endPassthrough
	if c.passthrough {
		c.plainTx.Store(true)
	}
	c.endSkip, c.endPassthrough = false, false
}

// trailingLiteral parses "{digits}\r\n" or "{digits+}\r\n" at the end of t.
func trailingLiteral(t []byte) (int64, bool) {
	t, ok := bytes.CutSuffix(t, []byte("}\r\n"))
	if !ok {
		return 0, false
	}
	t = bytes.TrimSuffix(t, []byte("+"))
	k := bytes.LastIndexByte(t, '{')
	if k < 0 || k == len(t)-1 {
		return 0, false
	}
	var n int64
	for _, d := range t[k+1:] {
		if d < '0' || d > '9' {
			return 0, false
		}
		if n > 1<<40 {
			return 1 << 62, true // absurd: everything after passes through
		}
		n = n*10 + int64(d-'0')
	}
	return n, true
}

// decide looks at the start of a command line. It returns decided false
// when more bytes are needed, and the whole line when it is an ID command
// to answer here. Otherwise it notes what the command means for the lines
// after it (IDLE, AUTHENTICATE, STARTTLS).
func (c *idConn) decide(b []byte) (line []byte, decided bool) {
	head := b[:min(len(b), maxHead)]
	sp := bytes.IndexByte(head, ' ')
	if sp < 0 {
		return nil, len(b) >= maxHead || bytes.IndexByte(head, '\n') >= 0
	}
	rest := head[sp+1:]
	e := bytes.IndexAny(rest, " \r\n")
	if e < 0 {
		return nil, len(b) >= maxHead
	}
	tag, name := head[:sp], strings.ToUpper(string(rest[:e]))
	switch name {
	case "IDLE":
		c.endSkip = true
	case "STARTTLS":
		c.endPassthrough = true
	case "AUTHENTICATE":
		// Without an initial response (RFC 4959) the client's next line
		// answers the challenge: the line is held until it is whole.
		nl := bytes.IndexByte(b[:min(len(b), maxIDLine)], '\n')
		if nl < 0 && len(b) < maxIDLine {
			return nil, false
		}
		c.endSkip = nl < 0 || bytes.Count(bytes.TrimRight(b[:nl], "\r"), []byte(" ")) < 3
	}
	if name != "ID" || !validTag(tag) {
		return nil, true
	}
	nl := bytes.IndexByte(b[:min(len(b), maxIDLine)], '\n')
	if nl < 0 {
		return nil, len(b) >= maxIDLine
	}
	l := b[:nl+1]
	if _, lit := trailingLiteral(l); lit {
		return nil, true // the library answers that one
	}
	return l, true
}

// validTag: RFC 9051 tag = 1*<any ASTRING-CHAR except "+">.
func validTag(t []byte) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for _, ch := range t {
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`(){%*"\+`, ch) >= 0 {
			return false
		}
	}
	return true
}

// answer writes the reply to one ID command line.
func (c *idConn) answer(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	tag := string(line[:sp])
	args := bytes.TrimSuffix(bytes.TrimSuffix(line[sp+1+len("ID"):], []byte("\n")), []byte("\r"))
	var reply string
	if validIDArgs(args) {
		reply = idReply + tag + " OK ID completed\r\n"
	} else {
		reply = tag + " BAD Invalid ID arguments\r\n"
	}
	_, err := c.Write([]byte(reply))
	return err
}

// Write gathers output; see the fields of idConn.
func (c *idConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	n := len(p)
	if c.plainTx.Load() {
		// After STARTTLS: raw TLS records; what was held goes first.
		if held := c.caps.drain(); held != nil {
			p = append(held, p...)
		}
	} else {
		p = c.caps.process(p)
	}
	if _, err := c.writeBuffered(p); err != nil {
		return 0, err
	}
	return n, nil
}

// writeBuffered gathers p into the output buffer or writes it. wmu held.
func (c *idConn) writeBuffered(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !c.reading && len(c.out)+len(p) <= maxOutBuf {
		if c.out == nil {
			c.out = make([]byte, 0, 4096)
		}
		c.out = append(c.out, p...)
		return len(p), nil
	}
	if err := c.flushLocked(idWriteTimeout); err != nil {
		return 0, err
	}
	if !c.reading && len(p) < maxOutBuf {
		c.out = append(make([]byte, 0, maxOutBuf), p...)
		return len(p), nil
	}
	return c.writeLocked(p)
}

func (c *idConn) writeLocked(p []byte) (int, error) {
	d := idWriteTimeout
	if len(p) > bigWrite {
		d = bigWriteTimeout
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	n, err := c.Conn.Write(p)
	_ = c.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

// flushAllLocked sends everything, an unfinished line held by the
// capability rewriter included: the server is about to wait for the client.
func (c *idConn) flushAllLocked(d time.Duration) error {
	if held := c.caps.drain(); held != nil {
		c.out = append(c.out, held...)
	}
	return c.flushLocked(d)
}

func (c *idConn) flushLocked(d time.Duration) error {
	if len(c.out) == 0 {
		return nil
	}
	_ = c.Conn.SetWriteDeadline(time.Now().Add(d))
	_, err := c.Conn.Write(c.out)
	_ = c.Conn.SetWriteDeadline(time.Time{})
	c.out = nil
	return err
}

// SetWriteDeadline is ignored: Write sets its own (see idConn).
func (c *idConn) SetWriteDeadline(time.Time) error { return nil }

// SetDeadline keeps only the read deadline (see SetWriteDeadline).
func (c *idConn) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// Close sends what is gathered (a BYE, LOGOUT's OK), briefly, then closes.
// When a write is under way (a client that stopped reading), closing the
// connection under it is what ends it: Close does not wait for the lock.
func (c *idConn) Close() error {
	if c.wmu.TryLock() {
		if !c.closed {
			_ = c.flushAllLocked(closeFlushTimeout)
			c.closed = true
		}
		c.wmu.Unlock()
	}
	return c.Conn.Close()
}

// validIDArgs checks RFC 2971's syntax: SP ( "(" string SP nstring
// *(SP string SP nstring) ")" / nil ), strings quoted (literals never get
// here).
func validIDArgs(a []byte) bool {
	if len(a) == 0 || a[0] != ' ' {
		return false
	}
	a = a[1:]
	if len(a) == 3 && strings.EqualFold(string(a), "NIL") {
		return true
	}
	if len(a) < 2 || a[0] != '(' || a[len(a)-1] != ')' {
		return false
	}
	a = a[1 : len(a)-1]
	pairs := 0
	for len(a) > 0 {
		if pairs > 0 {
			if a[0] != ' ' {
				return false
			}
			a = a[1:]
		}
		var ok bool
		if a, ok = skipQuoted(a); !ok || len(a) == 0 || a[0] != ' ' {
			return false
		}
		a = a[1:]
		if len(a) >= 3 && strings.EqualFold(string(a[:3]), "NIL") {
			a = a[3:]
		} else if a, ok = skipQuoted(a); !ok {
			return false
		}
		pairs++
	}
	return pairs > 0
}

// skipQuoted skips one quoted string (RFC 9051 quoted: no CR, LF or NUL,
// backslash escapes only '"' and '\').
func skipQuoted(a []byte) ([]byte, bool) {
	if len(a) == 0 || a[0] != '"' {
		return a, false
	}
	for i := 1; i < len(a); i++ {
		switch a[i] {
		case '"':
			return a[i+1:], true
		case '\\':
			if i+1 >= len(a) || (a[i+1] != '"' && a[i+1] != '\\') {
				return a, false
			}
			i++
		case '\r', '\n', 0:
			return a, false
		}
	}
	return a, false
}
