package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"courriel/directory"
)

// TestRcptReplies: one row per SPEC §3 RCPT situation, unauthenticated on
// port 25.
func TestRcptReplies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	e.dir.resolveHook = func(addr string) error {
		switch addr {
		case "weird@hosted.example":
			return errors.New("secret internal detail")
		case "huge@hosted.example":
			return fmt.Errorf("%w: more than 1000 addresses (at secret@hosted.example)", directory.ErrExpansionLimit)
		}
		return nil
	}
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	for _, tc := range []struct{ rcpt, want string }{
		{"alice@mailbox.example", "250 "},
		{"alice@MAILBOX.Example", "250 "},
		{"info@hosted.example", "250 "},
		{"nobody@mailbox.example", "550 5.1.1"},
		{"nobody@hosted.example", "550 5.1.1"},
		{"unavail@hosted.example", "451 4.3.0"},
		{"x@down.example", "451 4.3.0"},
		{"weird@hosted.example", "451 4.3.0 Temporary local problem"},
		{"huge@hosted.example", "451 4.6.0 Alias expansion error"},
		{"x@foreign.example", "554 5.7.1 Relay access denied"},
		{"a..b@mailbox.example", "501 5.1.3"},
		{".a@mailbox.example", "501 5.1.3"},
		{"alice@mailbox.example.", "250 "}, // the root's dot: the same domain
		{"a@mailbox.example..", "501 5.1.3"},
		{"a@mailbox..example", "501 5.1.3"},
		{"a@-mailbox.example", "501 5.1.3"},
		{strings.Repeat("a", 65) + "@mailbox.example", "550 5.1.1"},  // no local-part limit: looked up
		{strings.Repeat("a", 239) + "@mailbox.example", "501 5.1.3"}, // a path of 257
		{"alice@" + strings.Repeat("a", 64) + ".example", "501 5.1.3"},
		{"j\u00f6rg@mailbox.example", "553 5.6.7"},
	} {
		got := c.cmd("RCPT TO:<"+tc.rcpt+">", tc.want)
		if got[0] != '2' && !strings.Contains(got, "(id ") {
			t.Errorf("RCPT %s: no msg_id in %q", tc.rcpt, got)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("RCPT %s: internal error text leaked: %q", tc.rcpt, got)
		}
	}
}

// TestRelayBattery: every classic relay trick is refused with 554 5.7.1 and
// nothing is delivered or queued, whatever the domain class.
func TestRelayBattery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	tricks := []string{
		"<victim@foreign.example>",
		"<victim%foreign.example@mailbox.example>",
		"<victim%foreign.example@hosted.example>",
		"<foreign.example!victim@mailbox.example>",
		"<foreign.example!victim@hosted.example>",
		`<"victim@foreign.example"@mailbox.example>`,
		`<"victim@foreign.example"@hosted.example>`,
		`<"victim%foreign.example"@mailbox.example>`,
		"<@mailbox.example:victim@foreign.example>",
		"<@mailbox.example,@hosted.example:victim@foreign.example>",
		"<victim@[192.0.2.1]>",
		"<victim@[127.0.0.1]>",
		"<victim@[IPv6:::1]>",
		"<victim@foreign.example@mailbox.example>",
		"<victim@FOREIGN.example>",
	}
	for _, trick := range tricks {
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
		c.cmd("RCPT TO:"+trick, "554 5.7.1")
		c.send("DATA\r\n")
		if r := c.reply(); r[0] != '5' {
			t.Errorf("%s: DATA got %q", trick, r)
		}
		c.cmd("QUIT", "221 ")
	}
	if d, q := e.deliv.all(), e.queue.all(); len(d) != 0 || len(q) != 0 {
		t.Fatalf("relay battery delivered %d and queued %d", len(d), len(q))
	}
	// A source route to one of ours is ignored (RFC 5321 §4.1.1.3), which
	// is no relay: the mail stays here.
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	c.cmd("RCPT TO:<@foreign.example:alice@mailbox.example>", "250 ")
	if len(e.queue.all()) != 0 {
		t.Fatal("queued")
	}
}

func TestMyNetworksRelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@anything.example>", "250 ")
	c.cmd("RCPT TO:<x@foreign.example>", "250 ")
	// Routed local parts are relayed as given, as Postfix's
	// permit_mynetworks does (SPEC: 554 only when neither authenticated
	// nor from mynetworks): a client that may relay anything gains
	// nothing from them.
	c.cmd("RCPT TO:<x%y@foreign.example>", "250 ")
	c.cmd(`RCPT TO:<"x@y"@foreign.example>`, "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("\r\nhi\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("queued %d", len(q))
	}
	if got, want := q[0].rcpts, []string{"x@foreign.example", "x%y@foreign.example", `"x@y"@foreign.example`}; !slices.Equal(got, want) {
		t.Errorf("queued to %q, want %q", got, want)
	}
	// From elsewhere on port 25 they stay refused.
	other := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} })
	c = other.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@anything.example>", "250 ")
	c.cmd("RCPT TO:<x%y@foreign.example>", "554 5.7.1")
	c.cmd(`RCPT TO:<"x@y"@foreign.example>`, "554 5.7.1")
	// MyNetworks is for port 25 only: submission still needs AUTH.
	e587 := newEnv(t, Submissions, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	c = e587.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@anything.example>", "530 5.7.0 Authentication required")
}

// TestDuplicatesOneCopy: several RCPTs leading to one maildrop give one copy.
func TestDuplicatesOneCopy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	for _, r := range []string{"alice@mailbox.example", "info@hosted.example", "same@hosted.example",
		"ALICE@mailbox.example", "alice@mailbox.example", "team@hosted.example", "fwd@hosted.example", "team@hosted.example"} {
		c.cmd("RCPT TO:<"+r+">", "250 ")
	}
	c.cmd("DATA", "354 ")
	c.cmd("Subject: dup\r\n\r\nx\r\n.", "250 ")
	d := e.deliv.all()
	if len(d) != 1 {
		t.Fatalf("%d Deliver calls", len(d))
	}
	if n := e.deliv.copies(); len(n) != 2 || n["alice@mailbox.example"] != 1 || n["bob@mailbox.example"] != 1 {
		t.Errorf("copies: %v", n)
	}
	q := e.queue.all()
	if len(q) != 1 || fmt.Sprint(q[0].rcpts) != "[carol@remote.example dave@remote.example]" {
		t.Errorf("queued: %+v", q)
	}
	if !strings.Contains(string(q[0].data), "Received: ") || strings.Contains(string(d[0].msg.Header), "for <") {
		t.Errorf("queued data lacks Received, or a multi-recipient Received names one: %q", d[0].msg.Header)
	}
	if d[0].rcpts[0].OrigTo != "alice@mailbox.example" || d[0].rcpts[0].Maildir != "/var/vmail/alice/mailbox/" {
		t.Errorf("recipient: %+v", d[0].rcpts[0])
	}
}

func TestMixedKnownUnknown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "550 5.1.1")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<unavail@hosted.example>", "451 4.3.0")
	c.cmd("DATA", "354 ")
	c.cmd("\r\nx\r\n.", "250 ")
	if n := e.deliv.copies(); len(n) != 1 || n["bob@mailbox.example"] != 1 {
		t.Errorf("copies %v", n)
	}
}

// TestNoQueue: without an outbound queue, recipients that need it get 451
// at RCPT time, never a silent drop.
func TestNoQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, func(o *Options) { o.Queue = nil })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<x@foreign.example>", "451 4.3.0")
	c.cmd("RCPT TO:<fwd@hosted.example>", "451 4.3.0")
	c.cmd("RCPT TO:<team@hosted.example>", "451 4.3.0") // partly remote: all or nothing
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("\r\nx\r\n.", "250 ")
	if n := e.deliv.copies(); len(n) != 1 || n["bob@mailbox.example"] != 1 {
		t.Errorf("copies %v", n)
	}
}

func TestTooManyRecipients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxRecipients = 3 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	for range 3 {
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	}
	c.cmd("RCPT TO:<bob@mailbox.example>", "452 4.5.3")
}

// TestTooManyErrors: as Postfix's smtpd_hard_error_limit, the MaxErrors-th
// refusal is answered as it is, then 421 4.7.0 before the next command is
// read; an accepted message forgives the errors before it, so a list
// server with one stale recipient in every message goes on.
func TestTooManyErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxErrors = 5 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	for i := range 3 * 5 {
		c.cmd("MAIL FROM:<list@foreign.example>", "250 ")
		c.cmd("RCPT TO:<gone@mailbox.example>", "550 5.1.1")
		c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd(fmt.Sprintf("Subject: %d", i)+"\r\n\r\nx\r\n.", "250 ")
	}
	c.cmd("MAIL FROM:<sender@foreign.example>", "250 ")
	for range 5 {
		c.cmd("RCPT TO:<nobody@mailbox.example>", "550 5.1.1")
	}
	c.expect("421 4.7.0 mx.test Error: too many errors")
	if !c.closed() {
		t.Fatal("connection still open after too many errors")
	}
	if n := len(e.deliv.all()); n != 3*5 {
		t.Errorf("%d messages stored, want 15", n)
	}
}

// TestQuotedLocalPart: RFC 5321's Quoted-string local part, as Postfix
// takes it: RCPT TO:<"john doe"@…> is looked up in the directory in its
// external form (which the directory turns into Postfix's internal form),
// "john.doe"@… is john.doe@…, unknown ones get 550 5.1.1, what no address
// may hold 501 5.1.3; a relayed one goes to the queue quoted, as it must
// be sent, and so does a quoted sender.
func TestQuotedLocalPart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	var looked []string
	var mu sync.Mutex
	e.dir.resolveHook = func(addr string) error {
		mu.Lock()
		looked = append(looked, addr)
		mu.Unlock()
		return nil
	}
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd(`MAIL FROM:<"jane q"@foreign.example>`, "250 2.1.0")
	for _, tc := range []struct{ rcpt, want string }{
		{`"john doe"@mailbox.example`, "250 2.1.5"},
		{`"John Doe"@MAILBOX.example`, "250 2.1.5"},
		{`"john.doe"@mailbox.example`, "250 2.1.5"},
		{`"no body"@mailbox.example`, "550 5.1.1"},
		{`"no\ body"@mailbox.example`, "550 5.1.1"},
		{"\"a\tb\"@mailbox.example", "501 5.1.3"},
		{"\"a\x7fb\"@mailbox.example", "501 5.1.3"},
		{`"` + strings.Repeat("a", 62) + ` "@mailbox.example`, "550 5.1.1"},  // 65 octets quoted: no limit, looked up
		{`"` + strings.Repeat("a", 236) + ` "@mailbox.example`, "501 5.1.3"}, // a path of 257 quoted
		// Routed, from mynetworks: looked up as any other, as Postfix
		// does after permit_mynetworks (TestMyNetworksRelay; from
		// elsewhere they get 554).
		{`"x@y"@mailbox.example`, "550 5.1.1"},
		{`"x%y"@mailbox.example`, "550 5.1.1"},
		{`"x y"@remote.example`, "250 2.1.5"},
		{`"x\"y"@remote.example`, "250 2.1.5"},
		// What an envelope cannot hold, refused at RCPT rather than
		// failing the whole message after DATA.
		{`"a>b"@remote.example`, "501 5.1.3"},
		{`"a<b"@mailbox.example`, "501 5.1.3"},
	} {
		c.cmd("RCPT TO:<"+tc.rcpt+">", tc.want)
	}
	c.cmd("DATA", "354 ")
	c.cmd("Subject: q\r\n\r\nbody\r\n.", "250 ")
	mu.Lock()
	got := strings.Join(looked, " ")
	mu.Unlock()
	if !strings.Contains(got, `"john doe"@mailbox.example "John Doe"@mailbox.example john.doe@mailbox.example "no body"@mailbox.example "no body"@mailbox.example`) {
		t.Errorf("directory asked for %s", got)
	}
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("%d messages queued", len(q))
	}
	m := q[0].every
	var rcpts []string
	for _, r := range m.Recipients {
		rcpts = append(rcpts, r.Addr)
	}
	if m.From != `"jane q"@foreign.example` || !slices.Contains(rcpts, `"x y"@remote.example`) || !slices.Contains(rcpts, `"x\"y"@remote.example`) {
		t.Errorf("queued from %q to %q", m.From, rcpts)
	}
}
