package milter

import (
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// The milters of a chain share one MessageBudget for a message: once it
// is spent the message gets 451 whatever their policies (the client's
// wait for the reply would end before ours), and the milters left are not
// asked.
func TestChainBudgetSpent(t *testing.T) {
	var mu sync.Mutex
	t0, off := time.Unix(1e9, 0), time.Duration(0)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return t0.Add(off) }
	first, _ := serveRecorder(t, nil, func(gomilter.Modifier) {
		mu.Lock()
		off += MessageBudget // this milter took all the time there was
		mu.Unlock()
	})
	second, events := serveRecorder(t, nil, nil)
	c, err := NewChain([]Config{{Address: first, DefaultAction: Accept}, {Address: second, DefaultAction: Accept}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.now = now
	wantBudgetSpent(t, c)
	for _, e := range events() {
		if strings.HasPrefix(e, "eom") {
			t.Errorf("the second milter was asked after the budget was spent: %q", events())
		}
	}
}

// A milter that does not answer within what is left of the budget fails
// the message with 451 even with the accept policy (its own ContentTimeout
// is longer).
func TestChainBudgetEndsHangingMilter(t *testing.T) {
	release := make(chan struct{})
	addr, _ := serveRecorder(t, nil, func(gomilter.Modifier) { <-release })
	t.Cleanup(func() { close(release) }) // before the server's Close
	c, err := NewChain([]Config{{Address: addr, DefaultAction: Accept, ContentTimeout: 10 * time.Second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.budget = 200 * time.Millisecond
	wantBudgetSpent(t, c)
}

// wantBudgetSpent sends one message through c and wants it refused with
// 451 4.3.0, the answer of a spent budget.
func wantBudgetSpent(t *testing.T, c *Chain) {
	t.Helper()
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	s.Mail("a@example.net", "Q")
	s.Rcpt("b@example.org")
	res := s.Message(strings.NewReader("Subject: hi\r\n\r\nbody\r\n"), Spool{})
	defer res.Close()
	if res.Reply == nil || res.Reply.Code != 451 || res.Reply.Status != "4.3.0" {
		t.Errorf("Result %+v, want 451 4.3.0", res.Verdict)
	}
}
