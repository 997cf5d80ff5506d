package imap

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestMemBudget: bytes are granted in the order asked for (a small
// request does not pass a large one that waits), a request over the total
// waits for the whole budget, and a wait that runs out takes nothing and
// lets those behind it through.
func TestMemBudget(t *testing.T) {
	t.Parallel()
	b := newMemBudget(100)
	if got := b.acquire(60, 0, nil); got != 60 {
		t.Fatalf("first 60: %d", got)
	}
	if got := b.acquire(50, 0, nil); got != 0 {
		t.Fatalf("50 more without waiting: %d, want 0", got)
	}
	type grant struct {
		who string
		n   int64
	}
	grants := make(chan grant, 3)
	ask := func(who string, n int64, wait time.Duration) {
		go func() { grants <- grant{who, b.acquire(n, wait, nil)} }()
	}
	ask("large", 500, time.Minute) // over the total: the whole budget
	waitFor(t, "the large request queued", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 1 })
	ask("small", 10, time.Minute) // would fit now, but comes after
	waitFor(t, "the small request queued", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.queue) == 2 })
	select {
	case g := <-grants:
		t.Fatalf("%s granted %d before any release", g.who, g.n)
	default:
	}
	b.release(60)
	if g := <-grants; g != (grant{"large", 100}) {
		t.Fatalf("after the release: %+v, want the large request, the whole budget", g)
	}
	ask("timed out", 10, 10*time.Millisecond)
	if g := <-grants; g != (grant{"timed out", 0}) {
		t.Fatalf("a wait that ran out: %+v", g)
	}
	b.release(100)
	if g := <-grants; g != (grant{"small", 10}) {
		t.Fatalf("after the large one: %+v", g)
	}
	b.release(10)
	if n := b.inUse(); n != 0 {
		t.Errorf("in use at the end: %d", n)
	}
}

// TestMemBudgetSessions: what is still read whole into memory (here a
// message beyond the MIME scanner's bounds: a header over 1 MiB) waits
// for room in the server's budget, and past BufferedWait is answered NO
// [UNAVAILABLE]; with room it is served, and the budget is whole again
// after the command. FETCH of a section, BODYSTRUCTURE and SEARCH TEXT.
func TestMemBudgetSessions(t *testing.T) {
	t.Parallel()
	const total = 16 << 20
	e := newEnv(t, func(o *Options) {
		o.MaxBufferedBytes = total
		o.BufferedWait = 100 * time.Millisecond
	})
	// One header field of 1.5 MiB, folded: beyond maxScanHeader.
	fold := strings.Repeat("X-Long: "+strings.Repeat("y", 70)+"\n", 20000)
	msg := "Subject: big header\nContent-Type: multipart/mixed; boundary=b\n" + fold + "\n--b\n\nneedle part one\n--b--\n"
	e.deliver("1700000001.M1P1.test", msg)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	for _, c := range []struct{ cmd, ok string }{
		{"FETCH 1 (BODY.PEEK[1])", "* 1 FETCH (BODY[1] {15}"},
		{"FETCH 1 (BODYSTRUCTURE)", "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\""},
		{"SEARCH BODY needle", "* SEARCH 1"},
	} {
		t.Run(c.cmd, func(t *testing.T) {
			held := e.srv.mem.acquire(total, 0, nil)
			if held != total {
				t.Fatalf("the test could not take the budget: %d", held)
			}
			if got := last(r.cmd("x", c.cmd)); got != "x NO [UNAVAILABLE] Server busy, try again later" {
				t.Errorf("%s with the budget taken: %q", c.cmd, got)
			}
			e.srv.mem.release(held)
			lines := r.cmd("y", c.cmd)
			if !strings.HasPrefix(lines[0], c.ok) || !strings.HasPrefix(last(lines), "y OK") {
				t.Errorf("%s with room: %q", c.cmd, fmt.Sprintf("%.200q", lines))
			}
			if n := e.srv.mem.inUse(); n != 0 {
				t.Errorf("%d bytes of the budget held after %s", n, c.cmd)
			}
		})
	}
}
