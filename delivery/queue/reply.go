package queue

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// maxReplyLines bounds a multi-line reply; each line is bounded by the
// session's read buffer (RFC 5321 §4.5.3.1.5 allows 512 octets).
const maxReplyLines = 100

// send buffers one command line; reply sends what is buffered.
func (s *session) send(line string) {
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
}

// reply flushes the commands buffered and reads the next reply, within
// the command timeout.
func (s *session) reply() (int, string, error) {
	return s.replyWithin(s.cmdTimeout)
}

func (s *session) replyWithin(d time.Duration) (int, string, error) {
	s.conn.SetDeadline(time.Now().Add(d))
	if s.w.Buffered() > 0 {
		if err := s.w.Flush(); err != nil {
			return 0, "", err
		}
	}
	return s.readReply()
}

// readReply reads one reply: its code (the last line's), and its text
// with the lines joined by "\n" (the code and separator removed). An
// error means the connection can no longer be trusted: I/O, a timeout,
// or a malformed reply.
func (s *session) readReply() (code int, text string, err error) {
	var b strings.Builder
	for n := 0; n < maxReplyLines; n++ {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, "", errors.New("reply line too long")
		}
		if err != nil {
			return 0, "", err
		}
		l := strings.TrimRight(string(line), "\r\n")
		if len(l) < 3 || l[0] < '2' || l[0] > '5' || !isDigits(l[1:3]) || len(l) > 3 && l[3] != ' ' && l[3] != '-' {
			return 0, "", fmt.Errorf("malformed reply %q", printable(l, 100))
		}
		// RFC 5321 §4.2.1 wants one code on every line; a server
		// that changes it within a reply is understood as Postfix's
		// smtp(8) understands it: the last line's code is the reply's.
		// Failing the whole connection instead deferred every
		// recipient of the transaction, day after day, for one odd
		// reply.
		code, _ = strconv.Atoi(l[:3])
		if n > 0 {
			b.WriteByte('\n')
		}
		if len(l) > 4 && b.Len() < maxReplyText {
			b.WriteString(l[4:])
		}
		if len(l) == 3 || l[3] == ' ' {
			return code, b.String(), nil
		}
	}
	return 0, "", fmt.Errorf("reply longer than %d lines", maxReplyLines)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// replyError makes a reply the error go-smtp's client would have returned,
// for replyFailure: the enhanced code (RFC 2034) split off the text.
func replyError(code int, text string) *gosmtp.SMTPError {
	e := &gosmtp.SMTPError{Code: code, Message: text}
	first, rest, ok := strings.Cut(text, " ")
	if !ok {
		return e
	}
	parts := strings.Split(first, ".")
	if len(parts) != 3 {
		return e
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || len(p) > 3 {
			return e
		}
		e.EnhancedCode[i] = n
	}
	e.Message = strings.ReplaceAll(rest, "\n"+first+" ", "\n")
	return e
}
