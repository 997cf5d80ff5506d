package smtp

import (
	"slices"
	"testing"
)

// TestRcptEntryCarried: the entry RCPT resolved (the home, the user's
// addresses) travels with the local copy to the deliverer, so that the
// Sieve filter storing it at DATA does not look the recipient up again.
func TestRcptEntryCarried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := startData(t, e)
	c.send("Subject: s\r\n\r\nb\r\n.\r\n")
	c.expect("250 ")
	d := e.deliv.all()
	if len(d) != 1 || len(d[0].rcpts) != 1 {
		t.Fatalf("delivered %+v, want alice's copy", d)
	}
	r := d[0].rcpts[0]
	if r.Entry == nil || r.Entry.Home != "/var/vmail/alice" || !slices.Equal(r.Entry.Addresses, []string{"alice@mailbox.example"}) {
		t.Errorf("alice's copy carries %+v, want the entry RCPT found", r.Entry)
	}
}
