package smtp

import (
	"fmt"
	"slices"
	"testing"

	"courriel/directory"
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
	if r.Entry == nil || r.Entry.Home != "/var/vmail/alice" || !slices.Equal(r.Entry.Addresses, []string{"alice@mailbox.example"}) || r.Entry.Login != "alice" {
		t.Errorf("alice's copy carries %+v, want the entry RCPT found", r.Entry)
	}
}

// TestRcptClassifiesOnce: RCPT hands the class it found for the
// recipient's domain (which decided on relaying) to the resolution, which
// then does not ask the directory for it again.
func TestRcptClassifiesOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	c.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<info@hosted.example>", "250 ")
	c.cmd("RCPT TO:<nobody@hosted.example>", "550 ")
	want := []string{
		fmt.Sprint("alice@mailbox.example ", directory.DomainMailbox),
		fmt.Sprint("info@hosted.example ", directory.DomainHosted),
		fmt.Sprint("nobody@hosted.example ", directory.DomainHosted),
	}
	if got := e.dir.resolved(); !slices.Equal(got, want) {
		t.Errorf("resolved %q, want %q", got, want)
	}
}
