package smtp

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"courriel/cluster"
	"courriel/directory"
)

// The seed's reject_sender_login_mismatch (smtpd_recipient_restrictions)
// refuses, at RCPT, a client of port 25 that did not log in and uses a
// sender the directory gives an owner (Postfix's
// reject_unauth_sender_login_mismatch, its exact text), after the relay
// check and before the recipient's lookup; nothing is stored.
func TestUnauthOwnedSender(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "553 5.7.1 <alice@mailbox.example>: Sender address rejected: not logged in")
	c.cmd("RCPT TO:<nobody@mailbox.example>", "553 5.7.1 <alice@mailbox.example>: Sender address rejected: not logged in")
	c.cmd("RCPT TO:<someone@foreign.example>", "554 5.7.1") // relay restrictions come first
	c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
	c.cmd("RSET", "250 ")
	// Any spelling the directory matches; an alias of the user's too.
	for _, from := range []string{"Alice@Mailbox.Example", "info@hosted.example", `"x@y"@mailbox.example`} {
		c.cmd("MAIL FROM:<"+from+">", "250 ")
		c.cmd("RCPT TO:<bob@mailbox.example>", "553 5.7.1 <")
		c.cmd("RSET", "250 ")
	}
	// No owner, or the null sender: as before.
	c.cmd("MAIL FROM:<sender@remote.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RSET", "250 ")
	// A foreign address an alias of ours forwards to: the seed's sender
	// query gives it an owner (maildrop=%s), but it is not ours to guard;
	// its owner writes from their own provider.
	c.cmd("MAIL FROM:<dave@remote.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: bounce\r\n\r\nbody\r\n.", "250 ")
	if got := e.deliv.copies(); len(got) != 1 {
		t.Fatalf("copies %v, want the null sender's only", got)
	}
	for _, a := range e.dir.resolved() {
		if strings.HasPrefix(a, "nobody@") {
			t.Errorf("%q looked up: the sender's refusal comes before the recipient's lookup", a)
		}
	}
}

// MyNetworks may relay, but the seed lists nothing that permits it before
// reject_sender_login_mismatch: a host of mynetworks sending as one of our
// users must log in. A client that logged in on port 25 uses what it owns.
func TestUnauthOwnedSenderMyNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "553 5.7.1 <alice@mailbox.example>: Sender address rejected: not logged in")
	c.cmd("RCPT TO:<bob@mailbox.example>", "553 5.7.1")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<app@remote.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "250 ")
	c.cmd("RSET", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "250 ")
}

// A directory that cannot say whether the sender has an owner, or
// whether its domain is ours, defers (451 4.3.0), never refuses; the next
// RCPT asks again.
func TestUnauthOwnedSenderDirectoryDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<unavail@hosted.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "451 4.3.0")
	c.cmd("RCPT TO:<alice@mailbox.example>", "451 4.3.0")
	c.cmd("RSET", "250 ")
	c.cmd("MAIL FROM:<x@down.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "451 4.3.0")
}

// AllowUnauthOwnedSender (smtp.reject_unauth_sender_login_mismatch =
// false) keeps the authenticated half only.
func TestUnauthOwnedSenderAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, func(o *Options) { o.AllowUnauthOwnedSender = true })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
}

// fakeMailboxes finds the fake directory's maildrops, homed on node "b".
type fakeMailboxes struct{}

func (fakeMailboxes) Mailbox(_ context.Context, addr string) (*directory.Mailbox, error) {
	if strings.EqualFold(addr, "bob@mailbox.example") {
		mb := *mbox("bob").Mailbox
		mb.Node = "b"
		return &mb, nil
	}
	return nil, directory.ErrNotFound
}

// The Cluster listener is another node handing over what its client sent
// (that node checked the client): after the cluster login, a sender the
// directory gives an owner is taken as any other.
func TestClusterHopOwnedSender(t *testing.T) {
	t.Parallel()
	cl, err := cluster.New(cluster.Options{Self: "b", Secret: []byte("a-secret-of-the-cluster"),
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1", IMAP: "127.0.0.1:1"}, "b": {SMTP: "127.0.0.1:1", IMAP: "127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Cluster, func(o *Options) {
		o.ClusterNodes, o.Mailboxes, o.TLSConfig = cl, fakeMailboxes{}, nil
	})
	c := e.dialRaw(t)
	c.cmd("EHLO nodea.test", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth(cluster.ClusterLogin, "a-secret-of-the-cluster"), "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("Subject: hop\r\n\r\nbody\r\n.", "250 ")
	if got := e.deliv.copies(); len(got) != 1 {
		t.Fatalf("copies %v, want bob's", got)
	}
}

// TestAuthSenderNotOwned: the seed's reject_sender_login_mismatch for a
// client that logged in (Postfix's reject_auth_sender_login_mismatch) is
// in smtpd_recipient_restrictions, so with smtpd_delay_reject = yes
// Postfix takes MAIL and refuses each RCPT: "553 5.7.1 <sender>: Sender
// address rejected: not owned by user <login>", after the relay check
// (which a logged-in client passes) and before the recipient's lookup (an
// unknown recipient gets the same 553, not 550). A sender nobody owns is
// refused too; <> is not. Nothing is stored or queued; a directory
// failure defers (451 4.3.0) and is asked again at the next RCPT.
func TestAuthSenderNotOwned(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{Submissions, Submission, Inbound} {
		e := newEnv(t, k, nil)
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		if k != Submissions {
			c.startTLS(e.ctls)
			c.cmd("EHLO client.example", "250 ")
		}
		c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
		for _, from := range []string{"bob@mailbox.example", "someone@elsewhere.example"} {
			want := "553 5.7.1 <" + from + ">: Sender address rejected: not owned by user alice"
			c.cmd("MAIL FROM:<"+from+">", "250 2.1.0")
			c.cmd("RCPT TO:<bob@mailbox.example>", want)
			c.cmd("RCPT TO:<nobody@mailbox.example>", want)
			c.cmd("RCPT TO:<friend@foreign.example>", want)
			c.cmd("DATA", "554 5.5.1 Error: no valid recipients")
			c.cmd("RSET", "250 ")
		}
		c.cmd("MAIL FROM:<unavail@hosted.example>", "250 ")
		c.cmd("RCPT TO:<bob@mailbox.example>", "451 4.3.0")
		c.cmd("RCPT TO:<bob@mailbox.example>", "451 4.3.0")
		c.cmd("RSET", "250 ")
		if n := len(e.deliv.all()) + len(e.queue.all()); n != 0 {
			t.Errorf("kind %v: %d messages stored or queued", k, n)
		}
		for _, a := range e.dir.resolved() {
			if strings.HasPrefix(a, "nobody@") {
				t.Errorf("kind %v: %q looked up: the sender's refusal comes before the recipient's lookup", k, a)
			}
		}
		// Its own addresses, in any spelling the directory matches, and <>.
		for _, from := range []string{"Alice@Mailbox.Example", "info@hosted.example", ""} {
			c.cmd("MAIL FROM:<"+from+">", "250 ")
			c.cmd("RCPT TO:<bob@mailbox.example>", "250 2.1.5")
			c.cmd("RCPT TO:<friend@foreign.example>", "250 2.1.5")
			c.cmd("DATA", "354 ")
			c.cmd("Subject: t\r\n\r\nbody\r\n.", "250 ")
		}
		if d, q := len(e.deliv.all()), len(e.queue.all()); d != 3 || q != 3 {
			t.Errorf("kind %v: %d stored, %d queued; want 3 and 3", k, d, q)
		}
	}
}
