package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"courriel/internal/xtext"
)

// sendmailTimeout bounds each exchange with the server (the server's own
// command timeout is 5 minutes; storing a message may take a while).
const sendmailTimeout = 5 * time.Minute

// smtpReply is one SMTP reply: its code and the text of its lines.
type smtpReply struct {
	code  int
	lines []string
}

func (r smtpReply) String() string {
	return strconv.Itoa(r.code) + " " + strings.Join(r.lines, " / ")
}

// localClient is the SMTP client side of sendmail on the local socket.
type localClient struct {
	conn net.Conn
	r    *bufio.Reader
	// ended: the end of the message was sent; the server may store it.
	ended bool
}

func (c *localClient) reply() (smtpReply, error) {
	c.conn.SetReadDeadline(time.Now().Add(sendmailTimeout))
	var r smtpReply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("reading the server's reply: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, fmt.Errorf("bad reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 200 || code > 599 {
			return r, fmt.Errorf("bad reply %q", line)
		}
		r.code = code
		text := ""
		if len(line) > 4 {
			text = line[4:]
		}
		r.lines = append(r.lines, text)
		if len(line) == 3 || line[3] != '-' {
			return r, nil
		}
	}
}

func (c *localClient) cmd(line string) (smtpReply, error) {
	c.conn.SetWriteDeadline(time.Now().Add(sendmailTimeout))
	if _, err := c.conn.Write([]byte(line + "\r\n")); err != nil {
		return smtpReply{}, fmt.Errorf("writing to the server: %w", err)
	}
	return c.reply()
}

// replyExit is the exit status of a refusal, as Postfix's sendmail
// would exit for it: 4xx EX_TEMPFAIL (send again later), an unknown or
// bad recipient EX_NOUSER, any other 5xx EX_UNAVAILABLE.
func replyExit(r smtpReply, rcpt bool) int {
	switch {
	case r.code >= 400 && r.code < 500:
		return exTempFail
	case r.code >= 500 && rcpt && len(r.lines) > 0 && strings.HasPrefix(r.lines[0], "5.1."):
		return exNoUser
	case r.code >= 500:
		return exUnavailable
	}
	return exSoftware
}

// sendLocal hands the message to the server on the local socket at path,
// or, for the pickup, on a connection DialLocal made. A server that is not
// running, or a 4xx, is exit 75 (EX_TEMPFAIL): the caller then leaves the
// message in the maildrop, or tries the maildrop file again later. A
// recipient refused fails the whole message (RSET, nothing sent to the
// others); courriel's own server refuses none for good on this path (it
// bounces them), so that is another server's or a bad address.
// When ctx ends (SIGTERM, SIGINT) the connection is closed: exit 75, the
// mail not sent, or not known to be sent once its end went out.
func sendLocal(ctx context.Context, path string, a *sendmailArgs, login, fullName string, msg []byte) error {
	// serve refuses such a directory: a socket there is not its own but
	// anyone's, who would receive the message.
	if fi, err := os.Stat(filepath.Dir(path)); err == nil && fi.Mode().Perm()&0o022 != 0 {
		return exitf(exConfig, "%s: its directory is writable by others (mode %v): the socket may be anyone's; mail NOT sent", path, fi.Mode().Perm())
	}
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "unix", path)
	if ctx.Err() != nil {
		if err == nil {
			conn.Close()
		}
		return interrupted(ctx)
	}
	if err != nil {
		return exitf(exTempFail, "cannot reach the courriel server at %s (is courriel serve running?): %v; mail NOT sent", path, err)
	}
	defer conn.Close()
	c := &localClient{conn: conn, r: bufio.NewReader(conn)}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	err = c.send(a, login, fullName, msg)
	if err != nil && ctx.Err() != nil {
		if c.ended {
			return exitf(exTempFail, "interrupted (%v) waiting for the server's answer; mail NOT known to be sent", context.Cause(ctx))
		}
		return interrupted(ctx)
	}
	return err
}

// send is the exchange of sendLocal on c.
func (c *localClient) send(a *sendmailArgs, login, fullName string, msg []byte) error {
	conn := c.conn
	notSent := func(code int, what string, r smtpReply) error {
		c.cmd("QUIT")
		return exitf(code, "%s: %s; mail NOT sent", what, r)
	}
	greet, err := c.reply()
	if err != nil {
		return exitf(exTempFail, "%v; mail NOT sent", err)
	}
	if greet.code != 220 {
		return exitf(replyExit(greet, false), "the server refused the connection: %s; mail NOT sent", greet)
	}
	host, _, _ := strings.Cut(greet.lines[0], " ")
	ehlo, err := c.cmd("EHLO localhost")
	if err != nil {
		return exitf(exTempFail, "%v; mail NOT sent", err)
	}
	if ehlo.code != 250 {
		return notSent(replyExit(ehlo, false), "EHLO", ehlo)
	}
	ext := map[string]string{}
	for _, l := range ehlo.lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}

	sender := ""
	switch {
	case !a.fromSet:
		sender = qualify(login, host)
	case a.from != "" && a.from != "<>":
		sender = qualify(a.from, host)
	}
	p, err := prepareMessage(msg, a, sender, fullName, host)
	if err != nil {
		return exitf(exDataErr, "%v; mail NOT sent", err)
	}
	if len(p.rcpts) == 0 {
		c.cmd("QUIT")
		return exitf(exUsage, "no recipient addresses found in the message header; mail NOT sent")
	}
	for _, addr := range append([]string{sender}, p.rcpts...) {
		if !envelopeSafe(addr) {
			c.cmd("QUIT")
			return exitf(exDataErr, "bad address %q; mail NOT sent", addr)
		}
	}

	mailCmd := "MAIL FROM:<" + sender + ">"
	if _, ok := ext["SIZE"]; ok {
		mailCmd += " SIZE=" + strconv.Itoa(len(p.data))
	}
	if _, ok := ext["8BITMIME"]; ok && !isASCIIBytes(p.data) {
		mailCmd += " BODY=8BITMIME"
	}
	if _, ok := ext["SMTPUTF8"]; ok && (!isASCIIBytes([]byte(sender+strings.Join(p.rcpts, ""))) || !isASCIIBytes(headerOf(p.data))) {
		mailCmd += " SMTPUTF8"
	}
	_, dsn := ext["DSN"]
	if dsn && a.ret != "" {
		mailCmd += " RET=" + a.ret
	}
	if dsn && a.envid != "" {
		mailCmd += " ENVID=" + xtext.Encode(a.envid)
	}
	// The recipients go in as many transactions as the server asks: a
	// 452 4.5.3 (too many recipients) for one of them after others were
	// taken ends this transaction there and the rest go in the next, as
	// RFC 5321 §4.5.3.1.10 says a client does; Postfix's pickup has no
	// recipient limit, courriel's queue entries have one.
	rest, sent := p.rcpts, 0
	partial := func(err error) error {
		if sent == 0 {
			return err
		}
		var ee *exitError
		errors.As(err, &ee)
		return &partialError{exitError: &exitError{code: ee.code, err: fmt.Errorf("sent to %d recipients, not to the %d others: %w", sent, len(rest), ee.err)},
			sender: sender, data: p.data, rest: rest}
	}
	for {
		r, err := c.cmd(mailCmd)
		if err != nil {
			return partial(exitf(exTempFail, "%v; mail NOT sent", err))
		}
		if r.code != 250 {
			return partial(notSent(replyExit(r, false), "sender <"+sender+"> refused", r))
		}
		worst, failed, n := 0, []string(nil), 0
		for _, rcpt := range rest {
			line := "RCPT TO:<" + rcpt + ">"
			if dsn && a.notify != "" {
				line += " NOTIFY=" + a.notify
			}
			r, err := c.cmd(line)
			if err != nil {
				return partial(exitf(exTempFail, "%v; mail NOT sent", err))
			}
			if r.code == 452 && n > 0 && len(failed) == 0 && len(r.lines) > 0 && strings.HasPrefix(r.lines[0], "4.5.3") {
				break // the rest in the next transaction
			}
			n++
			if r.code != 250 && r.code != 251 {
				failed = append(failed, "<"+rcpt+">: "+r.String())
				// A temporary failure wins: the caller may try again.
				if code := replyExit(r, true); worst != exTempFail {
					worst = code
				}
			}
		}
		if len(failed) > 0 {
			c.cmd("RSET")
			c.cmd("QUIT")
			return partial(exitf(worst, "recipient refused: %s; mail NOT sent", strings.Join(failed, "; ")))
		}
		r, err = c.cmd("DATA")
		if err != nil {
			return partial(exitf(exTempFail, "%v; mail NOT sent", err))
		}
		if r.code != 354 {
			return partial(notSent(replyExit(r, false), "DATA", r))
		}
		conn.SetWriteDeadline(time.Now().Add(sendmailTimeout))
		if err := stuffDots(conn, p.data); err != nil {
			return partial(exitf(exTempFail, "writing the message: %v; mail NOT sent", err))
		}
		c.ended = true
		r, err = c.reply()
		if err != nil {
			// The server may have stored it: it answers 250 only once it
			// has. Without that answer it is not known to be sent.
			return partial(exitf(exTempFail, "%v; mail NOT known to be sent", err))
		}
		if r.code != 250 {
			return partial(notSent(replyExit(r, false), "message refused", r))
		}
		sent += n
		if rest = rest[n:]; len(rest) == 0 {
			break
		}
		c.ended = false
	}
	c.cmd("QUIT")
	return nil
}

// partialError is the failure of a message that went to some of its
// recipients (the server split it, 452 4.5.3) but not to rest: what is
// left to send is data (the prepared message) from sender to rest, and
// no more.
type partialError struct {
	*exitError
	sender string
	data   []byte
	rest   []string
}

func (e *partialError) Unwrap() error { return e.exitError }

// envelopeSafe: an address that can go between < and > in a command as
// it is (no spaces, controls or brackets that would end or add one).
func envelopeSafe(addr string) bool {
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c <= ' ' || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

func isASCIIBytes(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// headerOf is a CRLF message's header block.
func headerOf(msg []byte) []byte {
	if i := strings.Index(string(msg), "\r\n\r\n"); i >= 0 {
		return msg[:i]
	}
	return msg
}
