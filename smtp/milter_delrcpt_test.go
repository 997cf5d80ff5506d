package smtp

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"courriel/milter"
)

// A milter's DELRCPT removes an envelope recipient as Postfix's does, its
// milters seeing the envelope before the aliases are expanded: a copy
// goes only when no remaining RCPT reaches it, and the one left owns it
// (orig_to, Delivered-To:, DSN parameters); an address that was no RCPT
// changes nothing.
func TestMilterDelRcptSharedCopies(t *testing.T) {
	t.Parallel()
	type remoteCopy struct {
		addr, origTo, notify, orcpt string
	}
	for _, tc := range []struct {
		name   string
		rcpts  []string // RCPT TO: values, parameters included
		del    []string
		local  map[string]string // stored copy → its OrigTo
		remote []remoteCopy      // queued for the outbound queue, in order
		trace  []string          // the remote copies' Delivered-To:
	}{
		{
			name:   "two aliases forwarding to one address, the first removed",
			rcpts:  []string{"fwd@hosted.example", "fwd2@hosted.example"},
			del:    []string{"fwd@hosted.example"},
			remote: []remoteCopy{{addr: "dave@remote.example", origTo: "fwd2@hosted.example"}},
			trace:  []string{"fwd2@hosted.example"},
		},
		{
			name:  "two aliases forwarding to one address, both removed",
			rcpts: []string{"fwd@hosted.example", "fwd2@hosted.example"},
			del:   []string{"fwd@hosted.example", "fwd2@hosted.example"},
		},
		{
			name:  "the copy left takes the remaining alias's DSN parameters",
			rcpts: []string{"fwd@hosted.example NOTIFY=NEVER", "fwd2@hosted.example NOTIFY=FAILURE ORCPT=rfc822;orig@x.example"},
			del:   []string{"fwd@hosted.example"},
			remote: []remoteCopy{{addr: "dave@remote.example", origTo: "fwd2@hosted.example",
				notify: "FAILURE", orcpt: "rfc822;orig@x.example"}},
			trace: []string{"fwd2@hosted.example"},
		},
		{
			name:   "an alias and the address it forwards to, the alias removed",
			rcpts:  []string{"fwd@hosted.example", "dave@remote.example"},
			del:    []string{"fwd@hosted.example"},
			remote: []remoteCopy{{addr: "dave@remote.example"}},
		},
		{
			name:  "two aliases expanding to one maildrop, the first removed",
			rcpts: []string{"info@hosted.example", "same@hosted.example"},
			del:   []string{"info@hosted.example"},
			local: map[string]string{"alice@mailbox.example": "same@hosted.example"},
		},
		{
			name:  "an alias and the maildrop's own address, the alias removed",
			rcpts: []string{"info@hosted.example", "alice@mailbox.example"},
			del:   []string{"info@hosted.example"},
			local: map[string]string{"alice@mailbox.example": "alice@mailbox.example"},
		},
		{
			name:  "the maildrop's own address and an alias, the address removed",
			rcpts: []string{"alice@mailbox.example", "info@hosted.example"},
			del:   []string{"alice@mailbox.example"},
			local: map[string]string{"alice@mailbox.example": "info@hosted.example"},
		},
		{
			name:  "an alias and the maildrop's own address, both removed",
			rcpts: []string{"info@hosted.example", "alice@mailbox.example"},
			del:   []string{"alice@mailbox.example", "info@hosted.example"},
		},
		{
			name:  "the maildrop an alias reached is no RCPT",
			rcpts: []string{"info@hosted.example", "bob@mailbox.example"},
			del:   []string{"alice@mailbox.example"},
			local: map[string]string{"alice@mailbox.example": "info@hosted.example", "bob@mailbox.example": "bob@mailbox.example"},
		},
		{
			name:   "the address an alias forwards to is no RCPT",
			rcpts:  []string{"fwd@hosted.example"},
			del:    []string{"dave@remote.example", "nobody@elsewhere.example"},
			remote: []remoteCopy{{addr: "dave@remote.example", origTo: "fwd@hosted.example"}},
			trace:  []string{"fwd@hosted.example"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEOMMilterEnv(t, milter.Tempfail, func(m gomilter.Modifier) {
				for _, a := range tc.del {
					m.DeleteRecipient("<" + a + ">")
				}
			}, func(o *Options) { o.MyNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<s@foreign.example>", "250 ")
			for _, r := range tc.rcpts {
				a, params, _ := strings.Cut(r, " ")
				c.cmd(strings.TrimSpace("RCPT TO:<"+a+"> "+params), "250 ")
			}
			c.cmd("DATA", "354 ")
			c.cmd("Subject: x\r\n\r\nbody\r\n.", "250 ")

			// The maildir: one copy per maildrop, with its original recipient.
			stored := map[string]string{}
			for _, d := range e.deliv.all() {
				for _, r := range d.rcpts {
					if _, dup := stored[r.Address]; dup {
						t.Errorf("%s stored twice", r.Address)
					}
					stored[r.Address] = r.OrigTo
				}
			}
			if len(stored) != len(tc.local) {
				t.Errorf("stored for %v, want %v", stored, tc.local)
			}
			for a, orig := range tc.local {
				if got, ok := stored[a]; !ok || got != orig {
					t.Errorf("copy for %s: stored %v, orig_to %q; want orig_to %q", a, ok, got, orig)
				}
			}

			// The queue: the remote copies' envelope.
			var got []remoteCopy
			var trace []string
			for _, m := range e.queue.remote() {
				for _, r := range m.env.Recipients {
					got = append(got, remoteCopy{r.Addr, r.OrigTo, r.Notify, r.ORcpt})
				}
				for _, l := range strings.Split(m.env.RemoteHeader, "\r\n") {
					if a, ok := strings.CutPrefix(l, "Delivered-To: "); ok {
						trace = append(trace, a)
					}
				}
			}
			if !slices.Equal(got, tc.remote) {
				t.Errorf("queued for %+v, want %+v", got, tc.remote)
			}
			if !slices.Equal(trace, tc.trace) {
				t.Errorf("Delivered-To: %q, want %q", trace, tc.trace)
			}
		})
	}
}
