package smtp

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"courriel/delivery/queue"
)

// TestLocalRefusedRecipientsBounce: on the Local socket a recipient the
// other listeners refuse for good is accepted and queued as failed, for a
// bounce to the sender, while the others get the message (Postfix's
// pickup); NOTIFY=NEVER is kept for it. A message whose every recipient
// is refused is accepted too. A temporary refusal stays one. Port 25
// still refuses the unknown recipient.
func TestLocalRefusedRecipientsBounce(t *testing.T) {
	t.Parallel()
	e, sock := newLocalEnv(t, func(o *Options) { o.MaxErrors = 3 })
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<NOBODY@mailbox.example>", "250 ") // the same one again: one bounce
	c.cmd("RCPT TO:<ghost>", "250 ")                  // unqualified: @myhostname, unknown
	c.cmd("RCPT TO:<quiet@mailbox.example> NOTIFY=NEVER", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: cron\r\n\r\nout of disk\r\n.\r\n")
	c.expect("250 ")

	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("queued %d messages, want 1", len(q))
	}
	failed := map[string]queue.Recipient{}
	for _, r := range q[0].every.Recipients {
		if r.State == queue.StateFailed {
			failed[r.Addr] = r
		}
	}
	if len(failed) != 3 {
		t.Fatalf("failed recipients %+v, want nobody@, ghost@ and quiet@", failed)
	}
	for _, a := range []string{"nobody@mailbox.example", "ghost@mx.test", "quiet@mailbox.example"} {
		r, ok := failed[a]
		if !ok || r.Status != "5.1.1" || !strings.Contains(r.Reply, "550 5.1.1") {
			t.Errorf("%s: %+v", a, r)
		}
	}
	if q[0].every.Recipients[len(q[0].every.Recipients)-1].Addr != "alice@mailbox.example" {
		t.Errorf("the local copy is not last: %+v", q[0].every.Recipients)
	}
	if n := e.deliv.copies(); n["alice@mailbox.example"] != 1 {
		t.Errorf("local copies %v", n)
	}
	for _, r := range q[0].every.Recipients {
		if r.Addr == "quiet@mailbox.example" && r.Notify != queue.NotifyNever {
			t.Errorf("NOTIFY=NEVER lost: %+v", r)
		}
	}

	// Every recipient refused: accepted all the same, to bounce.
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: lost\r\n\r\nb\r\n.\r\n")
	c.expect("250 ")
	if q := e.queue.all(); len(q) != 2 || len(q[1].local)+len(q[1].rcpts) != 0 || len(q[1].every.Recipients) != 1 || q[1].every.Recipients[0].State != queue.StateFailed {
		t.Fatalf("all refused: queued %+v", q)
	}

	// A temporary refusal (the directory down) stays a refusal: sendmail
	// keeps the message in the maildrop for a later try.
	c.cmd("QUIT", "221 ")
	c = dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	e.dir.setDown(true)
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "451 4.3.0")
	e.dir.setDown(false)
	c.cmd("RSET", "250 ")

	// An address the queue could not write in a DSN is still refused.
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd(`RCPT TO:<"a b"@>`, "5")
	c.cmd("QUIT", "221 ")

	// Port 25 is unchanged.
	in := newEnv(t, Inbound, nil)
	r := in.dialRaw(t)
	r.cmd("EHLO client.example", "250 ")
	r.cmd("MAIL FROM:<x@remote.example>", "250 ")
	r.cmd("RCPT TO:<nobody@mailbox.example>", "550 5.1.1")
}

// TestLocalWithoutQueueRefuses: without a queue nothing can bounce, and
// an unknown recipient is refused as before.
func TestLocalWithoutQueueRefuses(t *testing.T) {
	t.Parallel()
	_, sock := newLocalEnv(t, func(o *Options) { o.Queue = nil })
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "550 5.1.1")
}

// TestDialLocal: the pickup's connection is a Local session whose client
// is the uid it names (the maildrop file's owner): the Received: field
// names that uid, not the server's, and the limits apply.
func TestDialLocal(t *testing.T) {
	t.Parallel()
	e, _ := newLocalEnv(t, func(o *Options) { o.MaxMessageBytes = 1000 })
	nc, err := e.srv.DialLocal(LocalPeer{UID: 4242, GID: 4343, Source: "1.2.0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	c := &raw{t: t, conn: nc, r: bufio.NewReader(nc)}
	c.expect("220 ")
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<x@remote.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: big\r\n\r\n" + strings.Repeat("0123456789\r\n", 120) + ".\r\n")
	c.expect("552 5.3.4")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<x@remote.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.send("Subject: x\r\n\r\nb\r\n.\r\n")
	c.expect("250 ")
	c.cmd("QUIT", "221 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	if want := "Received: from local (uid 4242)\r\n"; !strings.HasPrefix(string(q[0].data), want) {
		t.Errorf("want %q on top:\n%s", want, q[0].data)
	}
	if os.Getuid() == 4242 {
		t.Error("the test's uid must differ from the peer's")
	}

	// After Shutdown: no more.
	in := newEnv(t, Inbound, nil)
	if _, err := in.srv.DialLocal(LocalPeer{UID: 1}); err == nil {
		t.Error("DialLocal on port 25's server")
	}
	e.srv.Shutdown(t.Context())
	if _, err := e.srv.DialLocal(LocalPeer{UID: 1}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("after Shutdown: %v", err)
	}
}

// TestLocalRefusedCountTowardTheLimit: the refused recipients the local
// socket accepts to bounce are recipients of the queue's entry too: past
// MaxRecipients (copies and refused together) RCPT is answered 452 4.5.3,
// so the entry never holds more than the queue loads after a restart.
func TestLocalRefusedCountTowardTheLimit(t *testing.T) {
	t.Parallel()
	e, sock := newLocalEnv(t, func(o *Options) { o.MaxRecipients = 3 })
	c := dialLocal(t, sock)
	c.cmd("EHLO localhost", "250 ")
	c.cmd("MAIL FROM:<root@mx.test>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "250 ")
	// An alias of 3 copies no longer fits beside the refused one.
	c.cmd("RCPT TO:<team@hosted.example>", "452 4.5.3")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	// Nor does one more refused recipient.
	c.cmd("RCPT TO:<ghost@mailbox.example>", "452 4.5.3")
	c.cmd("DATA", "354 ")
	c.send("Subject: cron\r\n\r\nb\r\n.\r\n")
	c.expect("250 ")
	q := e.queue.all()
	if len(q) != 1 || len(q[0].every.Recipients) != 3 {
		t.Fatalf("queued %+v, want one entry of 3 recipients", q)
	}
	c.cmd("QUIT", "221 ")
}
