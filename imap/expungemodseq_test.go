package imap

import (
	"fmt"
	"strings"
	"testing"
)

// TestExpungeHighestModSeq: after ENABLE QRESYNC, EXPUNGE and UID
// EXPUNGE answer the folder's HIGHESTMODSEQ in their tagged OK, as
// Dovecot 2.3 does, the value a STATUS gives next (a client keeps it for
// its next resync); without QRESYNC, CONDSTORE alone included, the OK
// has no code, as Dovecot's.
func TestExpungeHighestModSeq(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		enable string
		code   bool
	}{
		{"QRESYNC", true},
		{"CONDSTORE", false},
		{"", false},
	} {
		t.Run(c.enable, func(t *testing.T) {
			e := newEnv(t)
			for i := 1; i <= 3; i++ {
				e.deliver(fmt.Sprintf("170000000%d.M1P1.host", i), "Subject: x\n\nbody\n")
			}
			r := loggedIn(t, e)
			if c.enable != "" {
				r.cmd("e", "ENABLE "+c.enable)
			}
			r.cmd("s", "SELECT INBOX")
			for _, cmd := range []string{"EXPUNGE", "UID EXPUNGE 2"} {
				r.cmd("d", `STORE 1 +FLAGS.SILENT (\Deleted)`)
				got := last(r.cmd("x", cmd))
				status := r.cmd("st", "STATUS INBOX (HIGHESTMODSEQ)")[0]
				want := "x OK Expunge completed"
				if c.code {
					n := strings.TrimSuffix(strings.TrimPrefix(status, `* STATUS "INBOX" (HIGHESTMODSEQ `), ")")
					want = "x OK [HIGHESTMODSEQ " + n + "] Expunge completed"
				}
				if got != want {
					t.Errorf("%s: %q, want %q (then %q)", cmd, got, want, status)
				}
			}
		})
	}
}
