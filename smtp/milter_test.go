package smtp

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"courriel/milter"
)

// hookMilter is a milter (the library's server side) for the hook's tests:
// it refuses RCPT refused@…, adds a header to every message, quarantines
// one whose Subject says so, and counts aborts.
type hookMilter struct {
	gomilter.NoOpMilter
	mu      *sync.Mutex
	aborts  *int
	subject string
}

func (m *hookMilter) RcptTo(rcpt, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.HasPrefix(rcpt, "bob@") {
		return gomilter.RejectWithCodeAndReason(550, "5.7.1 not bob")
	}
	return gomilter.RespContinue, nil
}

func (m *hookMilter) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if name == "Subject" {
		m.subject = value
	}
	return gomilter.RespContinue, nil
}

func (m *hookMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	mod.AddHeader("X-Milter", "seen")
	switch m.subject {
	case "junk":
		mod.Quarantine("test")
	case "envelope":
		mod.ChangeFrom("<>", "")
		mod.DeleteRecipient("<alice@mailbox.example>")
		mod.AddRecipient("<info@hosted.example>", "")    // alice again, through an alias
		mod.AddRecipient("<carol@remote.example>", "")   // no relay check for a milter
		mod.AddRecipient("<nobody@mailbox.example>", "") // unknown: dropped
	case "dsn":
		mod.AddRecipient("<carol@remote.example>", "")                                                    // defaults
		mod.AddRecipient("<dave@remote.example>", "NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Bd@x.example") // ADDRCPT_PAR
		mod.AddRecipient("<erin@remote.example>", "NOTIFY=NEVER FOO=bar ORCPT=rfc822;x+0Ay")              // unknown and bad: ignored
		mod.AddRecipient("<frank@remote.example>", "NOTIFY=ALWAYS =x")                                    // bad: ignored, added
	}
	m.subject = ""
	return gomilter.RespContinue, nil
}

func (m *hookMilter) Abort(gomilter.Modifier) error {
	m.mu.Lock()
	*m.aborts++
	m.mu.Unlock()
	m.subject = ""
	return nil
}

func newMilterEnv(t *testing.T) (*env, func() int) {
	t.Helper()
	var mu sync.Mutex
	aborts := 0
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &hookMilter{mu: &mu, aborts: &aborts} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	chain, err := milter.NewChain([]milter.Config{{Address: "inet:" + ln.Addr().String()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Inbound, func(o *Options) { o.Milters = chain })
	return e, func() int { mu.Lock(); defer mu.Unlock(); return aborts }
}

// DATA and BDAT go through the milters alike; the message stored is the
// one they changed, our Received first; a refused RCPT leaves the others.
func TestMilterHook(t *testing.T) {
	t.Parallel()
	e, _ := newMilterEnv(t)
	msg := "Subject: hi\r\n\r\nbody\r\n"
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")

	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "550 5.7.1 not bob")
	c.cmd("DATA", "354 ")
	c.cmd(msg+".", "250 ")

	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len("Subject: junk\r\n\r\nbody\r\n"), "Subject: junk\r\n\r\nbody\r\n"))
	c.expect("250 ")

	got := e.deliv.all()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	for i, d := range got {
		stored := string(d.msg.Header) + string(d.body)
		if !strings.HasPrefix(stored, "Received: from client.example") || !strings.Contains(stored, "\r\nX-Milter: seen\r\n\r\nbody\r\n") {
			t.Errorf("message %d stored as %q", i, stored)
		}
		if len(d.rcpts) != 1 || d.rcpts[0].Address != "alice@mailbox.example" {
			t.Errorf("message %d to %+v", i, d.rcpts)
		}
	}
	if f := got[0].rcpts[0].Folder; f != "" {
		t.Errorf("clean message filed in %q", f)
	}
	if f := got[1].rcpts[0].Folder; f != "Junk" {
		t.Errorf("quarantined message filed in %q, want Junk", f)
	}
}

// RSET ends the milters' transaction too.
func TestMilterAbortOnRset(t *testing.T) {
	t.Parallel()
	e, aborts := newMilterEnv(t)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nb\r\n.", "250 ")
	c.cmd("QUIT", "221 ")
	if n := aborts(); n < 1 {
		t.Errorf("%d aborts, want at least 1 (RSET)", n)
	}
	if n := len(e.deliv.all()); n != 1 {
		t.Errorf("%d deliveries", n)
	}
}

// Envelope changes: the sender, a recipient removed then added back through
// an alias (resolved by the directory), a foreign one queued without the
// relay check, an unknown one dropped.
func TestMilterEnvelope(t *testing.T) {
	t.Parallel()
	e, _ := newMilterEnv(t)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: envelope\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("%d queued, want 1", len(q))
	}
	if q[0].from != "" || strings.Join(q[0].rcpts, ",") != "carol@remote.example" ||
		len(q[0].local) != 1 || q[0].local[0].Address != "alice@mailbox.example" || q[0].local[0].OrigTo != "info@hosted.example" {
		t.Errorf("queued %+v", q[0])
	}
}

// TestMilterAddRcptDSN: a recipient a milter adds with SMFIR_ADDRCPT gets
// RFC 3461's defaults (no NOTIFY: failures and delays reported), one added
// with SMFIR_ADDRCPT_PAR its NOTIFY and ORCPT; any other argument, or a
// malformed one, is logged and ignored and the recipient added all the
// same, as Postfix's cleanup does.
func TestMilterAddRcptDSN(t *testing.T) {
	t.Parallel()
	e, _ := newMilterEnv(t)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example> NOTIFY=FAILURE", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: dsn\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("%d messages queued, want 1", len(q))
	}
	got := map[string]string{}
	for _, r := range q[0].every.Recipients {
		got[r.Addr] = r.Notify + "|" + r.ORcpt
	}
	want := map[string]string{
		"alice@mailbox.example": "FAILURE|",
		"carol@remote.example":  "|",
		"dave@remote.example":   "SUCCESS,DELAY|rfc822;orig+d@x.example",
		"erin@remote.example":   "NEVER|",
		"frank@remote.example":  "|",
	}
	for a, w := range want {
		if g, ok := got[a]; !ok || g != w {
			t.Errorf("%s: %q (present %v), want %q", a, g, ok, w)
		}
	}
}
