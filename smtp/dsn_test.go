package smtp

import (
	"slices"
	"strings"
	"testing"

	"courriel/delivery/queue"
)

// TestDSNParameterSyntax: RFC 3461's parameters, every malformed case with
// its reply (501 5.5.4, as Postfix's smtpd), and the well-formed ones, in
// one session (more refusals than MaxErrors allows by default).
func TestDSNParameterSyntax(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MaxErrors = 1000 })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	if !slices.Contains(c.last, "250-DSN") {
		t.Fatalf("EHLO does not offer DSN: %q", c.last)
	}
	long := strings.Repeat("a", 101)
	for _, tc := range []struct{ params, want string }{
		{"RET=PARTIAL", "501 5.5.4 Bad RET parameter syntax"},
		{"RET=FULL RET=HDRS", "501 5.5.4 Duplicate RET parameter"},
		{"ENVID=" + long, "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=a+0D+0AInjected:+20x", "501 5.5.4 Bad ENVID parameter syntax"}, // CR LF decoded
		{"ENVID=a+0", "501 5.5.4 Bad ENVID parameter syntax"},                  // truncated hex
		{"ENVID=a+2b", "501 5.5.4 Bad ENVID parameter syntax"},                 // lower-case hex
		{"ENVID=a+ZZ", "501 5.5.4 Bad ENVID parameter syntax"},
		{"ENVID=\x01x", "501 5.5.4 Bad ENVID parameter syntax"},    // a control character, not encoded
		{"ENVID=\xc3\xa9", "501 5.5.4 Bad ENVID parameter syntax"}, // 8-bit
		{"ENVID=a+C3+A9", "501 5.5.4 Bad ENVID parameter syntax"},  // 8-bit once decoded
		{"ENVID=a ENVID=b", "501 5.5.4 Duplicate ENVID parameter"},
		{"RET=hdrs ENVID=" + strings.Repeat("b", 100), "250 2.1.0"},
	} {
		c.cmd("MAIL FROM:<s@foreign.example> "+tc.params, tc.want)
	}
	for _, tc := range []struct{ params, want string }{
		{"NOTIFY=", "501 5.5.4"}, // no value: not even a parameter
		{"NOTIFY=NEVER,SUCCESS", "501 5.5.4 NOTIFY=NEVER cannot be combined"},
		{"NOTIFY=DELAY,NEVER", "501 5.5.4 NOTIFY=NEVER cannot be combined"},
		{"NOTIFY=SUCCESS,SUCCESS", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=SUCCESS,", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=ALWAYS", "501 5.5.4 Bad NOTIFY parameter syntax"},
		{"NOTIFY=SUCCESS NOTIFY=FAILURE", "501 5.5.4 Duplicate NOTIFY parameter"},
		{"ORCPT=x@y", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=;x@y", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc+38;x@y", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;x+0D+0AX:y@y", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;x+00@y", "501 5.5.4 Bad ORCPT parameter syntax"},
		{"ORCPT=rfc822;" + strings.Repeat("x", 492) + "@y", "250 2.1.5"}, // 501 octets: dropped, as Postfix takes it
		{"ORCPT=rfc822;a@b ORCPT=rfc822;c@d", "501 5.5.4 Duplicate ORCPT parameter"},
		{"NOTIFY=never ORCPT=rfc822;" + strings.Repeat("x", 491) + "@y", "250 2.1.5"}, // 500 octets
		{"NOTIFY=delay,Success,FAILURE ORCPT=RFC822;a+2Bb@c", "250 2.1.5"},
	} {
		c.cmd("RCPT TO:<alice@mailbox.example> "+tc.params, tc.want)
	}
	c.cmd("QUIT", "221 ")
}

// TestDSNOfferedWithAQueue: DSN is in EHLO and its parameters taken where
// a queue can send the notifications; without one (or on the Cluster
// listener) it is not offered and its parameters are not implemented.
func TestDSNOfferedWithAQueue(t *testing.T) {
	t.Parallel()
	for _, withQueue := range []bool{true, false} {
		e := newEnv(t, Inbound, func(o *Options) {
			if !withQueue {
				o.Queue = nil
			}
		})
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		if slices.Contains(c.last, "250-DSN") != withQueue {
			t.Fatalf("queue %v: EHLO %q", withQueue, c.last)
		}
		want := map[bool]string{true: "250 ", false: "555 5.5.4"}[withQueue]
		c.cmd("MAIL FROM:<s@foreign.example> RET=FULL", want)
		c.cmd("RSET", "250 ")
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
		c.cmd("RCPT TO:<alice@mailbox.example> NOTIFY=SUCCESS", want)
	}
}

// FuzzDSNParams: whatever a client sends, a value the parsers take is
// printable US-ASCII within RFC 3461's bounds, and what the queue accepts.
func FuzzDSNParams(f *testing.F) {
	for _, s := range []string{"abc", "a+2Bb", "a+0D+0A", "+", "a+0", "rfc822;x@y", "rfc822;", ";x", "x+00y", "\xc3\xa9", "NEVER,SUCCESS", "success,Delay"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if e, ok := parseEnvID(v); ok && (!queue.ValidEnvID(e) || strings.ContainsAny(e, "\r\n\x00") || len(e) > 100) {
			t.Fatalf("ENVID %q taken as %q", v, e)
		}
		if o, ok := parseORcpt(v, true); ok && (!queue.ValidORcpt(o) || strings.ContainsAny(o, "\r\n\x00") || len(o) > 500) {
			t.Fatalf("ORCPT %q taken as %q", v, o)
		}
		if n, why := parseNotify(v); why == "" && queue.CanonicalNotify(n) != n {
			t.Fatalf("NOTIFY %q taken as %q", v, n)
		}
		if d, ok := decodeXtext(v); ok && !strings.Contains(v, "+") && d != v {
			t.Fatalf("xtext %q decoded as %q", v, d)
		}
	})
}

// TestDSNTravelsToTheQueue: the parameters go into the queue's envelope:
// RET and ENVID decoded, NOTIFY and ORCPT per copy, an alias expanded with
// NOTIFY=SUCCESS reported as such (its copies then without SUCCESS, as
// Postfix's cleanup), and a lone local copy with NOTIFY=SUCCESS is queued,
// not stored alone, so that the success DSN is owed by an entry written
// before the 250.
func TestDSNTravelsToTheQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example> RET=HDRS ENVID=QQ+2B1", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig+2Balice@x.example", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: one\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 {
		t.Fatalf("NOTIFY=SUCCESS to one local copy: %d messages queued, want it through the queue", len(q))
	}
	m := q[0].every
	if m.Ret != queue.RetHdrs || m.EnvID != "QQ+1" {
		t.Errorf("RET %q ENVID %q, want HDRS and QQ+1", m.Ret, m.EnvID)
	}
	if r := m.Recipients[0]; r.Notify != "SUCCESS,FAILURE" || r.ORcpt != "rfc822;orig+alice@x.example" {
		t.Errorf("alice: NOTIFY %q ORCPT %q", r.Notify, r.ORcpt)
	}
	if d := e.deliv.copies(); d["alice@mailbox.example"] != 1 {
		t.Errorf("copies %v", d)
	}

	// Without NOTIFY=SUCCESS, the lone copy is stored directly, as before.
	c.cmd("MAIL FROM:<s@foreign.example> RET=FULL", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example> NOTIFY=FAILURE,DELAY", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: two\r\n\r\nbody\r\n.", "250 ")
	if n := len(e.queue.all()); n != 1 {
		t.Errorf("NOTIFY without SUCCESS to one local copy: queued (%d), want it stored directly", n)
	}

	// An alias: "expanded" for it, its copies without SUCCESS; a relayed
	// recipient keeps its parameters.
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<team@hosted.example> NOTIFY=SUCCESS,DELAY", "250 ")
	c.cmd("RCPT TO:<fwd@hosted.example> NOTIFY=SUCCESS", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: three\r\n\r\nbody\r\n.", "250 ")
	q = e.queue.all()
	if len(q) != 2 {
		t.Fatalf("%d messages queued, want 2", len(q))
	}
	m = q[1].every
	got := map[string]string{}
	for _, r := range m.Recipients {
		got[r.Addr] = r.Notify
	}
	want := map[string]string{"carol@remote.example": "DELAY", "dave@remote.example": "NEVER",
		"alice@mailbox.example": "DELAY", "bob@mailbox.example": "DELAY"}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("NOTIFY of %s = %q, want %q (all: %v)", a, got[a], n, got)
		}
	}
	var exp []string
	for _, r := range m.Expanded {
		exp = append(exp, r.Addr+" "+r.Action+" "+r.Notify)
	}
	if strings.Join(exp, ",") != "team@hosted.example expanded SUCCESS,DELAY,fwd@hosted.example expanded SUCCESS" {
		t.Errorf("expansions: %q", exp)
	}
}

// TestDSNORcptUTF8: an ORCPT of RFC 6533's utf-8 type. Without SMTPUTF8
// on MAIL only its 7-bit form (utf-8-addr-xtext, \x{HEX} escapes) is
// taken; with SMTPUTF8 raw UTF-8 too (utf-8-addr-unitext). A malformed
// value gets 501 5.5.4; an accepted one reaches the queue's envelope in
// the canonical 7-bit form, whichever form the client sent.
func TestDSNORcptUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	bad := []string{
		`ORCPT=utf-8;jörg@x.example`,          // raw UTF-8 needs SMTPUTF8
		`ORCPT=utf-8;j\x{F6}rg`,               // no address
		`ORCPT=utf-8;j\x{F6rg@x.example`,      // unterminated escape
		`ORCPT=utf-8;j\x{ZZ}rg@x.example`,     // not hex
		`ORCPT=utf-8;j\x{D800}rg@x.example`,   // a surrogate
		`ORCPT=utf-8;j\x{110000}rg@x.example`, // past U+10FFFF
		`ORCPT=utf-8;j\x{0}rg@x.example`,      // NUL, and one digit
		`ORCPT=utf-8;j\x{0A}rg@x.example`,     // a control
		`ORCPT=utf-8;j\x{41}rg@x.example`,     // 'A' is a QCHAR: no escape for it
		`ORCPT=utf-8;j\x{00F6}rg@x.example`,   // leading zeros
		`ORCPT=utf-8;j\rg@x.example`,          // a lone backslash
		`ORCPT=utf-8;j+F6rg@x.example`,        // '+' is not a QCHAR (no xtext hex here)
	}
	good := map[string]string{
		`ORCPT=utf-8;j\x{F6}rg@x.example`:             `utf-8;j\x{F6}rg@x.example`,
		`ORCPT=UTF-8;j\x{f6}rg@x.example`:             `UTF-8;j\x{F6}rg@x.example`,
		`ORCPT=utf-8;\x{1F600}\x{20}\x{2B}@x.example`: `utf-8;\x{1F600}\x{20}\x{2B}@x.example`,
		`ORCPT=utf-8;bob@x.example`:                   `utf-8;bob@x.example`,
	}
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	for _, p := range bad {
		c.cmd("RCPT TO:<alice@mailbox.example> "+p, "501 5.5.4 Bad ORCPT parameter syntax")
	}
	for p := range good {
		c.cmd("RCPT TO:<alice@mailbox.example> NOTIFY=SUCCESS "+p, "250 2.1.5")
		c.cmd("DATA", "354 ")
		c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
		q := e.queue.all()
		if got := q[len(q)-1].every.Recipients[0].ORcpt; got != good[p] {
			t.Errorf("%s: ORCPT kept as %q, want %q", p, got, good[p])
		}
		c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	}
	c.cmd("RSET", "250 ")

	// With SMTPUTF8: raw UTF-8 as well, the same value once kept.
	c.cmd("MAIL FROM:<s@foreign.example> SMTPUTF8", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example> ORCPT=utf-8;j\xc3\xb6rg@x.example", "250 2.1.5")
	c.cmd("RCPT TO:<alice@mailbox.example> ORCPT=utf-8;j\xf6rg@x.example", "501 5.5.4")                             // not UTF-8
	c.cmd("RCPT TO:<alice@mailbox.example> ORCPT=utf-8;j\xc2\x85rg@x.example", "501 5.5.4")                         // U+0085, a C1 control
	c.cmd("RCPT TO:<alice@mailbox.example> ORCPT=rfc822;j\xc3\xb6rg@x.example", "501 5.5.4")                        // rfc822 is xtext: ASCII
	c.cmd("RCPT TO:<bob@mailbox.example> NOTIFY=SUCCESS ORCPT=utf-8;\xc3\xa9quipe+x\\x{F6}@x.example", "501 5.5.4") // '+' raw
	c.cmd("RCPT TO:<bob@mailbox.example> NOTIFY=SUCCESS ORCPT=utf-8;\xc3\xa9quipe\\x{2B}x\\x{F6}@x.example", "250 2.1.5")
	// 200 octets sent, 600 once written as escapes: past RFC 3461's 500,
	// the ORCPT is dropped, not the recipient.
	c.cmd("RCPT TO:<fwd@hosted.example> ORCPT=utf-8;"+strings.Repeat("\xc3\xa9", 100)+"@x.example", "250 2.1.5")
	// Past 500 as sent: dropped as well (Postfix takes it).
	c.cmd("RCPT TO:<bob@mailbox.example> ORCPT=rfc822;"+strings.Repeat("b", 900)+"@x.example", "250 2.1.5")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	got := map[string]string{}
	for _, r := range q[len(q)-1].every.Recipients {
		got[r.Addr] = r.ORcpt
	}
	if got["alice@mailbox.example"] != `utf-8;j\x{F6}rg@x.example` || got["bob@mailbox.example"] != `utf-8;\x{E9}quipe\x{2B}x\x{F6}@x.example` ||
		got["dave@remote.example"] != "" || len(got) != 3 {
		t.Errorf("ORCPTs kept: %q", got)
	}
}
