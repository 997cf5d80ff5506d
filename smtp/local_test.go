package smtp

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newLocalEnv is a Local server on a Unix socket in a temporary
// directory; dial it with dialLocal.
func newLocalEnv(t *testing.T, mutate func(*Options)) (*env, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	e := newEnvOn(t, Local, mutate, func(ln net.Listener) net.Listener {
		ln.Close()
		u, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		return u
	})
	return e, sock
}

func dialLocal(t *testing.T, sock string) *raw {
	t.Helper()
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, conn: c, r: bufio.NewReader(c)}
	r.expect("220 ")
	return r
}

// TestLocalSubmission: the Local socket's client is trusted as Postfix's
// pickup trusts postdrop: no STARTTLS, no AUTH, a relay to a foreign
// domain and a sender of ours that has an owner (refused on port 25
// without a login) are accepted; the message gets a Received: naming the
// peer's uid from its credentials, and the Date, Message-ID and From it
// lacks.
func TestLocalSubmission(t *testing.T) {
	t.Parallel()
	e, sock := newLocalEnv(t, nil)
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	ehlo := strings.Join(c.last, "\n")
	for _, no := range []string{"STARTTLS", "AUTH"} {
		if strings.Contains(ehlo, no) {
			t.Errorf("EHLO offers %s on the local socket:\n%s", no, ehlo)
		}
	}
	for _, want := range []string{"8BITMIME", "SMTPUTF8", "SIZE " + strconv.Itoa(DefaultMaxMessageBytes)} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, ehlo)
		}
	}
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@remote.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: cron\r\n\r\nout of disk\r\n.\r\n")
	c.expect("250 ")
	c.cmd("QUIT", "221 ")

	q := e.queue.all()
	if len(q) != 1 || len(q[0].rcpts) != 1 || q[0].rcpts[0] != "someone@remote.example" || len(q[0].local) != 1 {
		t.Fatalf("queued %+v", q)
	}
	if q[0].from != "alice@mailbox.example" {
		t.Errorf("sender %q", q[0].from)
	}
	msg := string(q[0].data)
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	wantReceived := "Received: from local (uid " + strconv.Itoa(os.Getuid())
	if !strings.HasPrefix(head, wantReceived) {
		t.Errorf("want %q on top, got:\n%s", wantReceived, head)
	}
	if !strings.Contains(head, "\tby mx.test (courriel) id ") {
		t.Errorf("Received: lacks by/id:\n%s", head)
	}
	for _, f := range []string{"\r\nDate: ", "\r\nMessage-ID: <", "\r\nFrom: <alice@mailbox.example>\r\n"} {
		if !strings.Contains(head, f) {
			t.Errorf("header lacks %q:\n%s", f, head)
		}
	}
	if n := e.deliv.copies(); n["bob@mailbox.example"] != 1 {
		t.Errorf("local copies %v", n)
	}
}

// TestLocalReceivedForOne: a single recipient is named in the trace
// field (the loop check reads it), and the From a message has is kept.
func TestLocalReceivedForOne(t *testing.T) {
	t.Parallel()
	e, sock := newLocalEnv(t, nil)
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("From: Cron Daemon <root@mx.test>\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
	c.expect("250 ")
	got := e.deliv.all()
	if len(got) != 1 {
		t.Fatalf("stored %d", len(got))
	}
	head, _, _ := strings.Cut(string(got[0].msg.Header)+string(got[0].body), "\r\n\r\n")
	if !strings.Contains(head, "\r\n\tfor <alice@mailbox.example>;") {
		t.Errorf("Received: lacks for <...>:\n%s", head)
	}
	if strings.Count(head, "From:") != 1 {
		t.Errorf("From: added beside the message's:\n%s", head)
	}
}

// TestLocalLimits: the message size and recipient limits apply on the
// local socket as on the others, and a refused message stores nothing.
func TestLocalLimits(t *testing.T) {
	t.Parallel()
	e, sock := newLocalEnv(t, func(o *Options) { o.MaxMessageBytes = 1000; o.MaxRecipients = 2 })
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test> SIZE=5000", "552 5.3.4")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<x@remote.example>", "250 ")
	c.cmd("RCPT TO:<y@remote.example>", "452 4.5.3")
	c.cmd("DATA", "354 ")
	c.send("Subject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 200) + ".\r\n")
	c.expect("552 5.3.4")
	if q, d := e.queue.all(), e.deliv.all(); len(q) != 0 || len(d) != 0 {
		t.Fatalf("refused message stored: queued %d, delivered %d", len(q), len(d))
	}
}

// TestLocalNeedsPeerCredentials: a Local server whose client has no peer
// credentials (here a TCP connection) refuses it before the greeting.
func TestLocalNeedsPeerCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Local, nil)
	c := e.dialNoGreet(t)
	c.expect("421 4.7.0")
	if !c.closed() {
		t.Fatal("connection left open")
	}
}
