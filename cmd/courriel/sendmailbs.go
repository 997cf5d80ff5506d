package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"courriel/smtp/wire"
)

// Limits of one sendmail -bs session: Postfix's smtpd_hard_error_limit
// (the session ends after so many errors) and its line_length_limit for
// command lines (a longer one ends the session too).
const (
	standaloneErrorLimit = 20
	standaloneMaxLine    = 2048
)

// runStandalone is sendmail -bs, Postfix's "stand-alone SMTP server mode":
// an SMTP session on stdin and stdout, as PHP's mailers (Symfony Mailer,
// and Laravel through it, whose default command is "sendmail -bs -i") and
// others speak to a local sendmail. Each message accepted goes where
// sendmail's own go (sendLocal, then the maildrop), and the reply to its
// DATA is 250 only once it is stored, queued or durably in the maildrop.
// The sender of MAIL FROM is used as -f would be: the server's Received
// field names the invoking user whatever it says. Recipients are checked
// by the server at the end of each message; one it refuses for good is
// bounced to the sender, as mail from sendmail is. No AUTH, STARTTLS or
// DSN: the client is a local program of the invoking user.
func runStandalone(ctx context.Context, a *sendmailArgs, paths sendmailDest, stdin io.Reader, stdout io.Writer) error {
	login, fullName := invokingUser()
	if a.fullName != "" {
		fullName = a.fullName
	}
	// myhostname, as Postfix's smtpd -S greets; the machine's name
	// when sendmail cannot know it.
	host := paths.hostname
	if host == "" {
		var err error
		if host, err = os.Hostname(); err != nil || host == "" {
			host = "localhost"
		}
	}
	s := &standaloneSession{ctx: ctx, a: a, paths: paths, login: login, fullName: fullName, host: host,
		in: bufio.NewReaderSize(stdin, inputBuffer), out: bufio.NewWriter(stdout)}
	done := make(chan error, 1)
	go func() { done <- s.run() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// A message being handed over is closed by sendLocal itself (ctx);
		// what the client sends next is not read.
		return interrupted(ctx)
	}
}

// standaloneSession is one sendmail -bs session.
type standaloneSession struct {
	ctx                   context.Context
	a                     *sendmailArgs
	paths                 sendmailDest
	login, fullName, host string
	in                    *bufio.Reader
	out                   *bufio.Writer
	w                     *wire.Writer

	// The transaction: MAIL seen (from), its recipients.
	mail  bool
	from  string
	rcpts []string

	errors int
}

func (s *standaloneSession) run() error {
	s.w = wire.NewWriter(s.out)
	s.w.Reply(220, wire.Enhanced{-1}, s.host+" ESMTP courriel (sendmail -bs)")
	for {
		// Replies to pipelined commands leave together, when the client
		// has nothing more buffered (RFC 2920 §3.2).
		if s.in.Buffered() == 0 {
			if err := s.flush(); err != nil {
				return err
			}
		}
		line, err := s.readCommand()
		if errors.Is(err, errLineTooLong) {
			s.w.Reply(500, wire.Enhanced{5, 5, 2}, "Error: line too long")
			s.flush()
			return exitf(exDataErr, "sendmail -bs: a command line longer than %d octets; session ended", standaloneMaxLine)
		}
		if err != nil {
			// The client went away without QUIT: what it sent and was
			// answered 250 is sent; a transaction left open is not.
			s.flush()
			return nil
		}
		verb, arg, err := wire.ParseCommand(line)
		if err != nil {
			s.fail(500, wire.Enhanced{5, 5, 2}, "Error: bad syntax")
		} else if quit := s.command(verb, arg); quit {
			return s.flush()
		}
		if s.errors >= standaloneErrorLimit {
			s.w.Reply(421, wire.Enhanced{4, 7, 0}, s.host+" Error: too many errors")
			s.flush()
			return exitf(exDataErr, "sendmail -bs: %d errors; session ended", s.errors)
		}
	}
}

// flush writes the replies held, stdout being the client.
func (s *standaloneSession) flush() error {
	if err := s.w.Flush(); err != nil {
		return exitf(exTempFail, "sendmail -bs: writing replies: %v", err)
	}
	if err := s.out.Flush(); err != nil {
		return exitf(exTempFail, "sendmail -bs: writing replies: %v", err)
	}
	return nil
}

var errLineTooLong = errors.New("line too long")

// readCommand reads one command line, without its line ending (LF or
// CRLF).
func (s *standaloneSession) readCommand() ([]byte, error) {
	var line []byte
	for {
		piece, err := s.in.ReadSlice('\n')
		line = append(line, piece...)
		if len(line) > standaloneMaxLine {
			return nil, errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
	}
}

// fail replies with an error, counted toward standaloneErrorLimit.
func (s *standaloneSession) fail(code int, ec wire.Enhanced, text string) {
	s.errors++
	s.w.Reply(code, ec, text)
}

func (s *standaloneSession) reset() {
	s.mail, s.from, s.rcpts = false, "", nil
}

// command answers one command; it says whether the session ends.
func (s *standaloneSession) command(verb, arg string) (quit bool) {
	switch verb {
	case "HELO":
		if arg == "" {
			s.fail(501, wire.Enhanced{5, 5, 4}, "Syntax: HELO hostname")
			return false
		}
		s.reset()
		s.w.Reply(250, wire.Enhanced{-1}, s.host)
	case "EHLO":
		if arg == "" {
			s.fail(501, wire.Enhanced{5, 5, 4}, "Syntax: EHLO hostname")
			return false
		}
		s.reset()
		s.w.Reply(250, wire.Enhanced{-1}, s.host+"\nPIPELINING\nSIZE "+strconv.Itoa(maxSendmailInput)+
			"\n8BITMIME\nSMTPUTF8\nENHANCEDSTATUSCODES")
	case "MAIL":
		s.mailCommand(arg)
	case "RCPT":
		s.rcptCommand(arg)
	case "DATA":
		s.dataCommand(arg)
	case "RSET":
		s.reset()
		s.w.Reply(250, wire.Enhanced{2, 0, 0}, "Ok")
	case "NOOP":
		s.w.Reply(250, wire.Enhanced{2, 0, 0}, "Ok")
	case "QUIT":
		s.w.Reply(221, wire.Enhanced{2, 0, 0}, "Bye")
		return true
	case "VRFY":
		s.fail(502, wire.Enhanced{5, 5, 1}, "VRFY command is disabled")
	default:
		s.fail(502, wire.Enhanced{5, 5, 2}, "Error: command not recognized")
	}
	return false
}

// standalonePath reads the path of MAIL or RCPT: the forms courriel's
// server takes, and a bare local part (www-data), qualified by sendLocal
// as on sendmail's command line.
func standalonePath(arg string, reverse bool) (addr string, params []wire.Param, err error) {
	var rest string
	if reverse && strings.HasPrefix(arg, "<>") {
		addr, rest, err = wire.ParseReversePath(arg)
	} else {
		addr, rest, err = wire.ParseForwardPath(arg)
	}
	if err != nil {
		return "", nil, err
	}
	if !envelopeSafe(addr) || (addr == "" && !reverse) {
		return "", nil, wire.ErrPath
	}
	params, err = wire.ParseParams(rest)
	return addr, params, err
}

func (s *standaloneSession) mailCommand(arg string) {
	if s.mail {
		s.fail(503, wire.Enhanced{5, 5, 1}, "Error: nested MAIL command")
		return
	}
	arg, ok := wire.CutPrefixFold(arg, "FROM:")
	if !ok {
		s.fail(501, wire.Enhanced{5, 5, 4}, "Syntax: MAIL FROM:<address>")
		return
	}
	addr, params, err := standalonePath(strings.TrimSpace(arg), true)
	if err != nil {
		s.fail(501, wire.Enhanced{5, 1, 7}, "Bad sender address syntax")
		return
	}
	for _, p := range params {
		switch p.Key {
		case "SIZE":
			n, err := strconv.ParseInt(p.Value, 10, 64)
			if err != nil || n < 0 {
				s.fail(501, wire.Enhanced{5, 5, 4}, "Bad message size syntax")
				return
			}
			if n > maxSendmailInput {
				s.fail(552, wire.Enhanced{5, 3, 4}, "Message size exceeds fixed limit")
				return
			}
		case "BODY", "SMTPUTF8":
			// sendLocal says again what the message needs.
		default:
			s.fail(555, wire.Enhanced{5, 5, 4}, "Unsupported option: "+p.Key)
			return
		}
	}
	s.mail, s.from = true, addr
	s.w.Reply(250, wire.Enhanced{2, 1, 0}, "Ok")
}

func (s *standaloneSession) rcptCommand(arg string) {
	if !s.mail {
		s.fail(503, wire.Enhanced{5, 5, 1}, "Error: need MAIL command")
		return
	}
	arg, ok := wire.CutPrefixFold(arg, "TO:")
	if !ok {
		s.fail(501, wire.Enhanced{5, 5, 4}, "Syntax: RCPT TO:<address>")
		return
	}
	addr, params, err := standalonePath(strings.TrimSpace(arg), false)
	if err != nil {
		s.fail(501, wire.Enhanced{5, 1, 3}, "Bad recipient address syntax")
		return
	}
	if len(params) > 0 {
		s.fail(555, wire.Enhanced{5, 5, 4}, "Unsupported option: "+params[0].Key)
		return
	}
	if len(s.rcpts) >= maxSendmailRecipients {
		s.fail(452, wire.Enhanced{4, 5, 3}, "Error: too many recipients")
		return
	}
	s.rcpts = append(s.rcpts, addr)
	s.w.Reply(250, wire.Enhanced{2, 1, 5}, "Ok")
}

func (s *standaloneSession) dataCommand(arg string) {
	switch {
	case arg != "":
		s.fail(501, wire.Enhanced{5, 5, 4}, "Syntax: DATA")
		return
	case !s.mail:
		s.fail(503, wire.Enhanced{5, 5, 1}, "Error: need MAIL command")
		return
	case len(s.rcpts) == 0:
		s.fail(503, wire.Enhanced{5, 5, 1}, "Error: need RCPT command")
		return
	}
	s.w.Reply(354, wire.Enhanced{-1}, "End data with <CR><LF>.<CR><LF>")
	if err := s.flush(); err != nil {
		s.reset()
		return
	}
	defer s.reset()
	msg, err := readSMTPData(s.in, maxSendmailInput)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return // the client went away: nothing sent, nothing to answer
	}
	if errors.Is(err, errMessageTooLarge) {
		s.fail(552, wire.Enhanced{5, 3, 4}, "Error: message file too big")
		return
	}
	if err != nil {
		return // stdin unreadable: the session ends at the next read
	}
	a := *s.a
	a.from, a.fromSet, a.rcpts, a.extract = s.from, true, s.rcpts, false
	err = sendLocal(s.ctx, s.paths.socket, &a, s.login, s.fullName, msg)
	var ee *exitError
	if s.ctx.Err() == nil && errors.As(err, &ee) && ee.code == exTempFail {
		err = dropMail(s.paths, &a, s.fullName, msg, err)
	}
	if err == nil {
		s.w.Reply(250, wire.Enhanced{2, 0, 0}, "Ok: queued")
		return
	}
	text := "Error: " + strings.TrimSuffix(strings.ReplaceAll(err.Error(), "\n", " "), "; mail NOT sent")
	if !errors.As(err, &ee) {
		ee = &exitError{code: exSoftware}
	}
	switch ee.code {
	case exTempFail, exConfig, exSoftware:
		s.w.Reply(451, wire.Enhanced{4, 3, 0}, text)
	case exNoUser:
		s.fail(550, wire.Enhanced{5, 1, 1}, text)
	default:
		s.fail(554, wire.Enhanced{5, 0, 0}, text)
	}
}
