package smtp

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// fakeMetrics counts events by method and labels ("Transaction smtp accepted").
type fakeMetrics struct {
	mu sync.Mutex
	n  map[string]int // guarded by mu
}

func (m *fakeMetrics) add(parts ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[strings.Join(parts, " ")]++
}

func (m *fakeMetrics) counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.n)
}

func (m *fakeMetrics) ConnOpened(l string)       { m.add("ConnOpened", l) }
func (m *fakeMetrics) ConnClosed(l string)       { m.add("ConnClosed", l) }
func (m *fakeMetrics) Transaction(l, res string) { m.add("Transaction", l, res) }
func (m *fakeMetrics) Delivery(status string)    { m.add("Delivery", status) }
func (m *fakeMetrics) AuthFailure(l string)      { m.add("AuthFailure", l) }

func (m *fakeMetrics) get(key string) int { return m.counts()[key] }

// waitFor polls until key reaches n, for events that follow a client's
// close; bounded, it reports false if they never come.
func (m *fakeMetrics) waitFor(key string, n int) bool {
	for range 500 {
		if m.get(key) >= n {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// TestMetrics: one accepted message with two local copies, one DATA too
// big, one deferred by a temporary delivery error, two bad AUTHs and one
// connection refused by the per-address limit, counted through a real
// listener.
func TestMetrics(t *testing.T) {
	t.Parallel()
	m := &fakeMetrics{}
	e := newEnv(t, Inbound, func(o *Options) {
		o.Metrics = m
		o.MaxMessageBytes = 4000
		o.MaxConnsPerIP = 2
		// Set before the server starts, so its goroutines may read it.
		o.Deliverer.(*fakeDeliverer).fail = func(r delivery.Recipient) error {
			if r.OrigTo == "info@hosted.example" {
				return &delivery.Error{Temporary: true, Reason: "test", Err: errors.New("disk busy")}
			}
			return nil
		}
	})

	a := e.dialRaw(t)
	b := e.dialRaw(t)
	refused := e.dialNoGreet(t)
	if r := refused.reply(); !strings.HasPrefix(r, "421 4.7.0") {
		t.Fatalf("third connection: %q", r)
	}
	refused.closed()

	a.cmd("EHLO client.example", "250 ")
	a.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	a.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	a.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	a.cmd("DATA", "354 ")
	a.cmd("Subject: ok\r\n\r\nbody\r\n.", "250 ")

	a.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	a.cmd("RCPT TO:<alice@mailbox.example>", "250 ")
	a.cmd("DATA", "354 ")
	a.cmd(message(5000)+".", "552 5.3.4")

	a.cmd("MAIL FROM:<s@foreign.example>", "250 ")
	a.cmd("RCPT TO:<info@hosted.example>", "250 ")
	a.cmd("DATA", "354 ")
	a.cmd("Subject: later\r\n\r\nbody\r\n.", "451 ")
	a.cmd("QUIT", "221 ")
	a.closed()

	b.cmd("EHLO client.example", "250 ")
	b.startTLS(e.ctls)
	b.cmd("EHLO client.example", "250 ")
	b.cmd("AUTH PLAIN "+plainAuth("alice", "wrong"), "535 5.7.8")
	b.cmd("AUTH PLAIN "+plainAuth("nobody", "x"), "535 5.7.8")
	b.cmd("QUIT", "221 ")
	b.closed()

	// The server counts a close once it has seen it: wait for the three.
	if !m.waitFor("ConnClosed smtp", 3) {
		t.Fatalf("connections not all closed: %v", m.counts())
	}
	want := map[string]int{
		"ConnOpened smtp":           3,
		"ConnClosed smtp":           3,
		"Transaction smtp accepted": 1,
		"Transaction smtp rejected": 1,
		"Transaction smtp deferred": 1,
		// The two copies of the first message go through the queue's
		// Accept, which counts them (queue.Options.Attempted); the
		// single copy of the third is stored here, and counted here.
		"Delivery deferred": 1,
		"AuthFailure smtp":  2,
	}
	if got := m.counts(); !maps.Equal(got, want) {
		t.Errorf("metrics\n got %v\nwant %v", got, want)
	}
}

// TestMetricsListenerLabel: the label defaults from Kind and can be set.
func TestMetricsListenerLabel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind     Kind
		listener string
		want     string
	}{
		{Inbound, "", "smtp"},
		{Submission, "", "submission"},
		{Submissions, "", "submissions"},
		{Submissions, "smtps-alt", "smtps-alt"},
	} {
		t.Run(fmt.Sprintf("%v/%s", tc.kind, tc.listener), func(t *testing.T) {
			t.Parallel()
			m := &fakeMetrics{}
			e := newEnv(t, tc.kind, func(o *Options) { o.Metrics = m; o.Listener = tc.listener })
			c := e.dialRaw(t)
			c.cmd("QUIT", "221 ")
			c.closed()
			if !m.waitFor("ConnClosed "+tc.want, 1) {
				t.Fatalf("no ConnClosed %q: %v", tc.want, m.counts())
			}
			if got := m.get("ConnOpened " + tc.want); got != 1 {
				t.Errorf("ConnOpened %q = %d, want 1 (%v)", tc.want, got, m.counts())
			}
		})
	}
}

func TestTransactionResult(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		err    error
		want   string
		wantOK bool
	}{
		{"accepted", nil, resultAccepted, true},
		{"aborted BDAT", fmt.Errorf("reading message: %w", errDataReset), "", false},
		{"4xx", withID(replyTempFailure, "X"), resultDeferred, true},
		{"421", replyTooManyCmds, resultDeferred, true},
		{"552", replyTooLarge, resultRejected, true},
		{"554", replyBareNewline, resultRejected, true},
		{"raw error (conn sends 451)", errors.New("x"), resultDeferred, true},
	} {
		got, ok := transactionResult(tc.err)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("%s: got %q %v, want %q %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
}
