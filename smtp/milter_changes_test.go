package smtp

import (
	"net"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"courriel/milter"
)

// eomMilter makes the changes eom asks for at the end of each message.
type eomMilter struct {
	gomilter.NoOpMilter
	eom func(gomilter.Modifier)
}

func (m *eomMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	m.eom(mod)
	return gomilter.RespContinue, nil
}

// newEOMMilterEnv is an env whose one milter makes eom's changes, with
// the policy given; opt (when set) changes the Options further.
func newEOMMilterEnv(t *testing.T, policy milter.Policy, eom func(gomilter.Modifier), opt func(*Options)) *env {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter { return &eomMilter{eom: eom} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	chain, err := milter.NewChain([]milter.Config{{Address: "inet:" + ln.Addr().String(), DefaultAction: policy}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newEnv(t, Inbound, func(o *Options) {
		o.Milters = chain
		if opt != nil {
			opt(o)
		}
	})
}

// A milter's DELRCPT of an alias removes the copies it forwards outside
// too (fwd@hosted.example → dave@remote.example), not only local ones.
func TestMilterDelRcptAliasDropsItsForward(t *testing.T) {
	t.Parallel()
	e := newEOMMilterEnv(t, milter.Tempfail, func(m gomilter.Modifier) { m.DeleteRecipient("<fwd@hosted.example>") }, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	for _, m := range e.queue.all() {
		if strings.Contains(strings.Join(m.rcpts, ","), "dave@") {
			t.Errorf("the milter removed fwd@hosted.example, yet its forward is queued: %v", m.rcpts)
		}
	}
	got := e.deliv.all()
	if len(got) != 1 || len(got[0].rcpts) != 1 || got[0].rcpts[0].Address != "alice@mailbox.example" {
		t.Errorf("delivered %+v, want alice's copy alone", got)
	}

	// The alias alone: nothing is left to send, and nothing leaves.
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	if q := e.queue.all(); len(q) != 0 {
		t.Errorf("queued %d messages for a removed alias: %v", len(q), q[0].rcpts)
	}
}

// A recipient a milter adds past MaxRecipients is logged and ignored, not
// a 452 for the whole message (which every retry would get again), and
// the message goes to the recipients it has.
func TestMilterAddRcptPastLimitIgnored(t *testing.T) {
	t.Parallel()
	e := newEOMMilterEnv(t, milter.Tempfail, func(m gomilter.Modifier) {
		m.AddRecipient("<bob@mailbox.example>", "")
		m.AddRecipient("<fwd@hosted.example>", "")
	}, func(o *Options) { o.MaxRecipients = 1 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for i := 0; i < 2; i++ {
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	}
	got := e.deliv.all()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	for _, d := range got {
		if len(d.rcpts) != 1 || d.rcpts[0].Address != "alice@mailbox.example" {
			t.Errorf("delivered to %+v, want alice alone", d.rcpts)
		}
	}
	if q := e.queue.all(); len(q) != 0 {
		t.Errorf("%d queued, want none", len(q))
	}
}

// A milter cannot grow a message past what the queue accepts (a 552 then
// for a message sent within the limit): its changes that would are its
// failure, the default action answers (tempfail: 451; accept: the message
// as it came), and what is stored stays within MaxMessageBytes plus the
// room left for our trace fields.
func TestMilterGrowthBounded(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	pad := strings.Repeat("p", 15<<10)
	grow := func(m gomilter.Modifier) {
		for i := 0; i < 3; i++ { // each milter's own bound is 64 KiB
			m.AddHeader("X-Pad", pad)
		}
	}
	body := strings.Repeat(strings.Repeat("b", 76)+"\r\n", (limit-4<<10)/78)
	for _, tc := range []struct {
		policy milter.Policy
		reply  string
	}{{milter.Tempfail, "451 "}, {milter.Accept, "250 "}} {
		e := newEOMMilterEnv(t, tc.policy, grow, func(o *Options) { o.MaxMessageBytes = limit })
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd("Subject: x\r\n\r\n"+body+".", tc.reply)
		for _, d := range e.deliv.all() {
			stored := string(d.msg.Header) + string(d.body)
			if len(stored) > limit+milterGrowth || strings.Contains(stored, "X-Pad:") {
				t.Errorf("policy %v: stored %d bytes with the milter's changes, limit %d", tc.policy, len(stored), limit)
			}
		}
		if n := len(e.deliv.all()); (tc.reply == "250 ") != (n == 1) {
			t.Errorf("policy %v: %d deliveries", tc.policy, n)
		}
	}
}

// An alias a milter adds whose copies do not all fit is ignored too.
func TestMilterAddRcptAliasPastLimitIgnored(t *testing.T) {
	t.Parallel()
	e := newEOMMilterEnv(t, milter.Tempfail, func(m gomilter.Modifier) {
		m.AddRecipient("<team@hosted.example>", "") // alice, bob, carol@remote.example
	}, func(o *Options) { o.MaxRecipients = 2 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	got := e.deliv.all()
	if len(got) != 1 || len(got[0].rcpts) != 1 || got[0].rcpts[0].Address != "alice@mailbox.example" {
		t.Errorf("delivered %+v, want alice's copy alone", got)
	}
	if q := e.queue.all(); len(q) != 0 {
		t.Errorf("%d queued, want none", len(q))
	}
}
