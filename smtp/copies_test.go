package smtp

import "testing"

// TestTooManyCopies: every copy of a transaction must fit one queue entry
// (MaxRecipients), counted after alias expansion at RCPT, so that DATA
// never meets a transaction the queue refuses after copies were stored.
func TestTooManyCopies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		max   int
		rcpts []string // the last one gets want
		want  string
	}{
		// team expands to alice, bob and carol@remote.example: 3 copies.
		{"an alias too large alone", 2, []string{"team@hosted.example"}, "550 5.5.3"},
		{"an alias that no longer fits", 2, []string{"bob@mailbox.example", "team@hosted.example"}, "452 4.5.3"},
		{"a foreign address that no longer fits", 3, []string{"team@hosted.example", "x@foreign.example"}, "452 4.5.3"},
		{"a copy already there costs nothing", 3, []string{"team@hosted.example", "info@hosted.example"}, "250 "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, Submission, func(o *Options) { o.MaxRecipients = tc.max })
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.startTLS(e.ctls)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 ")
			c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
			last := len(tc.rcpts) - 1
			for _, r := range tc.rcpts[:last] {
				c.cmd("RCPT TO:<"+r+">", "250 ")
			}
			c.cmd("RCPT TO:<"+tc.rcpts[last]+">", tc.want)
		})
	}
}
