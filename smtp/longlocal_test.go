package smtp

import (
	"net/netip"
	"strings"
	"testing"
)

// A local part over RFC 5321's 64 octets is taken, as by Postfix, which
// has no such limit: the SRS0 sender of a forwarder, a VERP bounce
// address. A recipient of ours is looked up and, unknown, gets 550 5.1.1,
// not a syntax error; a foreign one is relayed. The 256-octet path still
// bounds both (501).
func TestLongLocalPart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	srs := "SRS0=Hx3f=TT=a-rather-long-domain.example.com=" + strings.Repeat("first.last", 5) + "@forwarder.example"
	verp := "list-bounces+" + strings.Repeat("subscriber", 6) + "=example.net@lists.example.org"
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<"+srs+">", "250 2.1.0")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 2.1.5")
	c.cmd("RCPT TO:<"+strings.Repeat("b", 70)+"@mailbox.example>", "550 5.1.1")
	c.cmd("RCPT TO:<"+verp+">", "250 2.1.5") // relayed: from mynetworks
	c.cmd("DATA", "354 ")
	c.cmd("Subject: long\r\n\r\nbody\r\n.", "250 ")
	q := e.queue.all()
	if len(q) != 1 || q[0].from != srs || len(q[0].rcpts) != 1 || q[0].rcpts[0] != verp {
		t.Fatalf("queued %+v", q)
	}
	c.cmd("MAIL FROM:<"+strings.Repeat("a", 249)+"@x.com>", "501 5.1.7") // a path of 257
	c.cmd("MAIL FROM:<"+strings.Repeat("a", 248)+"@x.com>", "250 2.1.0") // 256
	c.cmd("RCPT TO:<"+strings.Repeat("b", 239)+"@mailbox.example>", "501 5.1.3")
	c.cmd("RCPT TO:<"+strings.Repeat("b", 238)+"@mailbox.example>", "550 5.1.1")
}
