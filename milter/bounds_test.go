package milter

import (
	"fmt"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

// runChanges sends a small message through one milter whose end of
// message makes eom's changes, with the policy and Spool given.
func runChanges(t *testing.T, policy Policy, sp Spool, eom func(gomilter.Modifier)) *Result {
	t.Helper()
	addr, _ := serveRecorder(t, nil, eom)
	c, err := NewChain([]Config{{Address: addr, DefaultAction: policy}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	t.Cleanup(s.Close)
	s.Mail("a@example.net", "Q")
	s.Rcpt("b@example.org")
	res := s.Message(strings.NewReader("Subject: hi\r\n\r\nbody\r\n"), sp)
	t.Cleanup(res.Close)
	return res
}

// A milter's header changes are bounded as they arrive (the library would
// keep them all in memory): past the bound the milter has failed, its
// default action answers, and with the accept policy the message goes on
// unchanged, filed as junk if the milter said so among its changes.
func TestHeaderChangesBounded(t *testing.T) {
	val := strings.Repeat("v", 60<<10)
	flood := func(spamAt int) func(gomilter.Modifier) {
		return func(m gomilter.Modifier) {
			for i := 0; i < 300; i++ {
				if i == spamAt {
					m.AddHeader("X-Spam", "Yes")
				}
				m.AddHeader("X-Junk", val)
			}
		}
	}
	res := runChanges(t, Tempfail, Spool{}, flood(-1))
	if res.Reply == nil || res.Reply.Code != 451 {
		t.Errorf("tempfail policy: Result %+v, want 451", res.Verdict)
	}
	for _, spamAt := range []int{0, 200} { // passed on, or read past the bound
		res = runChanges(t, Accept, Spool{}, flood(spamAt))
		if res.Reply != nil || res.Modified || res.Header != nil || len(stored(t, res)) > 1<<10 {
			t.Errorf("accept policy: Result %+v with %d header bytes, want the message unchanged", res.Verdict, len(res.Header))
		}
		if !res.Junk || res.JunkReason != "X-Spam: Yes" {
			t.Errorf("spam flag at %d: junk %v (%q), want the verdict kept", spamAt, res.Junk, res.JunkReason)
		}
	}
}

// So are the number of changes and of recipients added (a directory
// lookup each).
func TestChangeCountsBounded(t *testing.T) {
	for name, eom := range map[string]func(gomilter.Modifier){
		"changes": func(m gomilter.Modifier) {
			for i := 0; i < maxChanges+1; i++ {
				m.DeleteRecipient("<x@example.org>")
			}
		},
		"recipients": func(m gomilter.Modifier) {
			for i := 0; i < maxAddRcpts+1; i++ {
				m.AddRecipient(fmt.Sprintf("<r%d@example.org>", i), "")
			}
		},
	} {
		res := runChanges(t, Accept, Spool{}, eom)
		if res.Reply != nil || res.Modified || len(res.AddRcpts)+len(res.DelRcpts) != 0 {
			t.Errorf("%s: Result %+v, %d added, %d removed: want none", name, res.Verdict, len(res.AddRcpts), len(res.DelRcpts))
		}
	}
	// Within the bounds, all of them.
	res := runChanges(t, Accept, Spool{}, func(m gomilter.Modifier) {
		for i := 0; i < maxAddRcpts; i++ {
			m.AddRecipient(fmt.Sprintf("<r%d@example.org>", i), "")
		}
	})
	if len(res.AddRcpts) != maxAddRcpts {
		t.Errorf("%d recipients added, want %d", len(res.AddRcpts), maxAddRcpts)
	}
}

// Changes that would make the message larger than Spool.MaxMessage (what
// the caller's queue accepts) are the milter's failure too, and none of
// them is made.
func TestMessageGrowthBounded(t *testing.T) {
	grow := func(m gomilter.Modifier) {
		m.AddHeader("X-First", "kept?")
		for i := 0; i < 10; i++ {
			m.AddHeader("X-Pad", strings.Repeat("p", 4<<10))
		}
		m.Quarantine("bad")
	}
	sp := Spool{MaxMessage: 16 << 10}
	res := runChanges(t, Tempfail, sp, grow)
	if res.Reply == nil || res.Reply.Code != 451 {
		t.Errorf("tempfail policy: Result %+v, want 451", res.Verdict)
	}
	res = runChanges(t, Accept, sp, grow)
	if res.Reply != nil || res.Modified || res.Header != nil {
		t.Errorf("accept policy: Result %+v, header %q: want the message unchanged", res.Verdict, res.Header)
	}
	if !res.Junk || res.JunkReason != "quarantine: bad" {
		t.Errorf("junk %v (%q), want the quarantine kept", res.Junk, res.JunkReason)
	}
	// Within the bound, the changes are made.
	res = runChanges(t, Tempfail, Spool{MaxMessage: 64 << 10}, grow)
	if res.Reply != nil || !strings.Contains(string(res.Header), "X-First: kept?\r\n") {
		t.Errorf("Result %+v, header %q", res.Verdict, res.Header)
	}
}

// A replaced body past Spool.Limit is a bound passed like the others: with
// the accept policy the message goes on unchanged, but the verdict the
// milter gave before it (a quarantine, X-Spam: Yes) is kept, not lost
// with the body.
func TestReplacedBodyTooLargeKeepsVerdict(t *testing.T) {
	res := runChanges(t, Accept, Spool{Limit: 100 << 10}, func(m gomilter.Modifier) {
		m.Quarantine("virus")
		m.AddHeader("X-Spam", "Yes")
		m.ReplaceBody(strings.NewReader(strings.Repeat("x", 200<<10)))
	})
	if res.Reply != nil || res.Modified || res.BodyReplaced || res.Header != nil {
		t.Errorf("Result %+v, want the message unchanged", res)
	}
	if !res.Junk || res.JunkReason != "quarantine: virus" {
		t.Errorf("junk %v (%q), want the quarantine kept", res.Junk, res.JunkReason)
	}
}
