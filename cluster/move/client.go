package move

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"courriel/cluster"
)

// Timeouts of the dialogue with the new home node.
const (
	commandTimeout = time.Minute      // each command's reply
	stallTimeout   = 2 * time.Minute  // the stream making no progress
	importTimeout  = 15 * time.Minute // the import's reply (its writes and syncfs)
)

// SendImport hands the archive of login to the node's internal SMTP hop
// listener (cluster.Node.SMTP): EHLO, STARTTLS when c.TLS(host) is set,
// AUTH PLAIN as cluster.ClusterLogin with the shared secret, then
// XIMPORT <login> <octets>, 354, the octets, and the import's reply. nil
// only on 250: the home is durably in place there.
func SendImport(ctx context.Context, c *cluster.Cluster, node cluster.Node, login string, a *Archive) error {
	size, err := a.Size()
	if err != nil {
		return err
	}
	if node.SMTP == "" {
		return fmt.Errorf("move: node %s has no SMTP hop address", node.Name)
	}
	host, _, err := net.SplitHostPort(node.SMTP)
	if err != nil {
		return fmt.Errorf("move: node %s: %w", node.Name, err)
	}
	d := net.Dialer{Timeout: c.ConnectTimeout()}
	conn, err := d.DialContext(ctx, "tcp", node.SMTP)
	if err != nil {
		return fmt.Errorf("move: connect to %s (%s): %w", node.Name, node.SMTP, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := &hopSession{conn: conn, tp: textproto.NewConn(conn)}
	if err := s.hello(c.TLS(host), c.Self()); err != nil {
		return s.fail(ctx, err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + cluster.ClusterLogin + "\x00" + c.Secret()))
	if _, err := s.cmd(235, commandTimeout, "AUTH PLAIN %s", auth); err != nil {
		return s.fail(ctx, fmt.Errorf("AUTH: %w", err))
	}
	if _, err := s.cmd(354, commandTimeout, "XIMPORT %s %d", login, size); err != nil {
		return s.fail(ctx, fmt.Errorf("XIMPORT: %w", err))
	}
	bw := bufio.NewWriterSize(stallWriter{s.conn}, 64<<10) // s.conn: TLS after STARTTLS
	n, err := a.WriteTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil && n != size {
		err = fmt.Errorf("move: the archive has %d bytes, %d announced", n, size)
	}
	if err != nil {
		return s.fail(ctx, fmt.Errorf("sending the home: %w", err))
	}
	_ = s.conn.SetDeadline(time.Now().Add(importTimeout))
	if _, _, err := s.tp.ReadResponse(250); err != nil {
		return s.fail(ctx, fmt.Errorf("import: %w", err))
	}
	_, _ = s.cmd(221, 10*time.Second, "QUIT")
	return nil
}

type hopSession struct {
	conn net.Conn
	tp   *textproto.Conn
}

func (s *hopSession) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("move: %w", context.Cause(ctx))
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		return &ReplyError{Code: te.Code, Text: clean(te.Msg)}
	}
	return fmt.Errorf("move: %w", err)
}

// ReplyError is a refusal by the new home node: its SMTP reply.
type ReplyError struct {
	Code int
	Text string // control characters removed, bounded
}

func (e *ReplyError) Error() string {
	return "move: the new node answered " + strconv.Itoa(e.Code) + " " + e.Text
}

// Temporary says whether the node may accept later (4xx).
func (e *ReplyError) Temporary() bool { return e.Code/100 == 4 }

// clean keeps what a remote reply may show an admin: printable, bounded.
func clean(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 400 {
			b.WriteString("…")
			break
		}
		if r == '\n' {
			r = ' '
		}
		if r < 0x20 || r == 0x7f {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// hello reads the greeting, says EHLO, and upgrades to TLS when tlsConf
// is set (EHLO again after it, RFC 3207 §4.2).
func (s *hopSession) hello(tlsConf *tls.Config, self string) error {
	name := "courriel-move"
	if self != "" {
		name = self
	}
	_ = s.conn.SetDeadline(time.Now().Add(commandTimeout))
	if _, _, err := s.tp.ReadResponse(220); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	ext, err := s.cmd(250, commandTimeout, "EHLO %s", name)
	if err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if tlsConf == nil {
		return nil
	}
	if !hasExtension(ext, "STARTTLS") {
		return errors.New("the node does not offer STARTTLS, and cluster TLS is on")
	}
	if _, err := s.cmd(220, commandTimeout, "STARTTLS"); err != nil {
		return fmt.Errorf("STARTTLS: %w", err)
	}
	tc := tls.Client(s.conn, tlsConf)
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("TLS: %w", err)
	}
	s.conn, s.tp = tc, textproto.NewConn(tc)
	if _, err := s.cmd(250, commandTimeout, "EHLO %s", name); err != nil {
		return fmt.Errorf("EHLO after STARTTLS: %w", err)
	}
	return nil
}

func hasExtension(ehlo, name string) bool {
	for _, l := range strings.Split(ehlo, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], name) {
			return true
		}
	}
	return false
}

// cmd sends one command and reads its reply, which must have code want.
func (s *hopSession) cmd(want int, timeout time.Duration, format string, args ...any) (string, error) {
	_ = s.conn.SetDeadline(time.Now().Add(timeout))
	if err := s.tp.PrintfLine(format, args...); err != nil {
		return "", err
	}
	_, msg, err := s.tp.ReadResponse(want)
	return msg, err
}

// stallWriter gives each write of the stream stallTimeout: a slow disk
// at the other end is waited for, a dead one is not.
type stallWriter struct{ c net.Conn }

func (w stallWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(stallTimeout))
	return w.c.Write(p)
}
