package queue

import (
	"strings"
	"testing"
)

// TestQuotedLocalPartOnTheWire: an address whose local part needs quoting
// (RFC 5321 Quoted-string, kept so by smtp: "john doe"@x, and "x@y"@x,
// which smtp relays for an authenticated client) leaves quoted in MAIL and
// RCPT, byte for byte, as the next hop must read it; it goes to the host
// of the domain after its last '@', and a refused one is named so in the
// DSN, which goes to the quoted sender.
func TestQuotedLocalPartOnTheWire(t *testing.T) {
	t.Parallel()
	srv := newOddServer(t, "220 raw.test ESMTP", plainAnswer("8BITMIME", func(cmd string) string {
		if strings.Contains(cmd, `"no@such"`) {
			return "550 5.1.1 no such user"
		}
		return "250 2.0.0 ok"
	}))
	h, b := startOdd(t, srv, nil)
	h.enqueue(`"jane q"@local.test`, `"john doe"@remote.test`, `"a\"b"@remote.test`, `"x@y"@remote.test`)
	h.enqueue(`"x@y"@local.test`, `"no@such"@remote.test`, `"a@b c"@remote.test`)
	r := parseDSN(t, recv(t, b.got, "the DSN"))
	h.waitUntil("the queue is empty", h.empty)
	got := strings.Join(srv.commands(), "\n")
	for _, want := range []string{`MAIL FROM:<"jane q"@local.test>`, `RCPT TO:<"john doe"@remote.test>`, `RCPT TO:<"a\"b"@remote.test>`,
		`RCPT TO:<"x@y"@remote.test>`, `MAIL FROM:<"x@y"@local.test>`, `RCPT TO:<"no@such"@remote.test>`, `RCPT TO:<"a@b c"@remote.test>`} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q among the commands:\n%s", want, got)
		}
	}
	if to := r.header.Get("To"); to != `<"x@y"@local.test>` {
		t.Errorf("DSN To = %q", to)
	}
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Final-Recipient") != `rfc822; "no@such"@remote.test` {
		t.Errorf("DSN recipients %v", r.rcpts)
	}
}
