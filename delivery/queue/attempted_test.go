package queue

import (
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// attempts counts what Options.Attempted hears.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) observe(status string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[status]++
}

func (a *attempts) get() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.n)
}

// TestAttemptedCountsEveryOutcome: every attempt the queue records is
// heard once, by outcome: a remote recipient accepted (sent), refused
// with 4xx (deferred, then sent at its retry) and with 5xx (bounced),
// and a local copy whose attempt in Accept fails for now (deferred) and
// whose retry by the runner stores it (sent). The sender's DSN is no
// attempt of this message.
func TestAttemptedCountsEveryOutcome(t *testing.T) {
	t.Parallel()
	var later sync.Once
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		switch to {
		case "never@remote.test":
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "no such user")
		case "later@remote.test":
			var err error
			later.Do(func() { err = smtpErr(450, gosmtp.EnhancedCode{4, 2, 0}, "try again later") })
			return err
		}
		return nil
	}})
	clock := newClock()
	ls := newLocalStore(t)
	ls.after = func(call int, _ []delivery.Recipient, errs []error) {
		if call == 1 {
			errs[0] = &delivery.Error{Temporary: true, Reason: "simulated"}
		}
	}
	var seen attempts
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	o.Local = ls
	o.Bounce = newBounces().fn
	o.Attempted = seen.observe
	h := start(t, o)
	_, errs := h.accept([]string{"ok@remote.test", "later@remote.test", "never@remote.test"},
		[]delivery.Recipient{ls.rcpt("alice")}, []byte(testMessage))
	if errs[0] == nil {
		t.Fatal("the local copy's first attempt did not fail")
	}
	first := map[string]int{"sent": 1, "deferred": 2, "bounced": 1}
	h.waitUntil("the first attempts are heard", func() bool { return maps.Equal(seen.get(), first) })
	clock.Advance(time.Hour)
	if err := h.q.Flush(); err != nil {
		t.Fatal(err)
	}
	h.waitUntil("the queue is empty", h.empty)
	if want := map[string]int{"sent": 3, "deferred": 2, "bounced": 1}; !maps.Equal(seen.get(), want) {
		t.Errorf("attempts heard %v, want %v", seen.get(), want)
	}
	if _, n := s.counts(); n != 2 {
		t.Errorf("%d transactions at the server, want 2", n)
	}
	ls.oneCopy(t, "alice", []byte(testMessage))
}

// TestAttemptedNotForInterrupted: an attempt cut short by shutdown
// before its data is none (it is retried as if not tried): nothing is
// heard. (One cut after its final dot is a deferral: TestShutdown*.)
func TestAttemptedNotForInterrupted(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := newSink(t, sinkOptions{rcpt: func(int, string) error { <-release; return nil }})
	defer close(release)
	var seen attempts
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.Attempted = seen.observe
	h := start(t, o)
	h.enqueue("alice@local.test", "bob@remote.test")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		n := s.rcpts
		s.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no RCPT at the server within 20s")
		}
	}
	h.close()
	if got := seen.get(); len(got) != 0 {
		t.Errorf("attempts heard %v, want none", got)
	}
	if !strings.Contains(h.logs.String(), "delivery interrupted by shutdown") {
		t.Errorf("no interrupted attempt in the log:\n%s", h.logs.String())
	}
}

// waitData waits until the sink has read n messages' data (its reply to
// the final dot may still be on its way).
func (s *sink) waitData(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		got := s.datas
		s.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server read %d messages' data within 20s, want %d", got, n)
		}
	}
}
