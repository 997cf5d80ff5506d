package queue

import (
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

func TestDeliveredOnceThroughRoute(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@remote.test")
	got := recv(t, s.delivs, "the delivery")
	h.waitUntil("the queue is empty", h.empty)
	if got.from != "alice@local.test" || !slices.Equal(got.rcpts, []string{"bob@remote.test"}) {
		t.Errorf("envelope = %q → %q", got.from, got.rcpts)
	}
	if got.data != testMessage {
		t.Errorf("data = %q, want %q", got.data, testMessage)
	}
	if _, n := s.counts(); n != 1 {
		t.Errorf("%d transactions, want 1", n)
	}
	// One Postfix-style line: id, to=, relay=host[ip]:port, delay=, dsn=, status=sent (reply).
	host, port, _ := net.SplitHostPort(s.addr)
	want := regexp.MustCompile(`msg=delivery component=queue msg_id=` + id + ` queue_id=` + id + ` to=<bob@remote.test> relay=` +
		regexp.QuoteMeta(host+"["+host+"]:"+port) + ` delay=[0-9.]+ dsn=2\.0\.0 status="sent \(250 `)
	if !want.MatchString(h.logs.String()) {
		t.Errorf("no matching log line in:\n%s", h.logs.String())
	}
}

func TestTLSPolicies(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	other := newCA(t)
	// A server whose only TLS version the client refuses: STARTTLS is
	// offered but the handshake fails.
	broken := ca.serverConfig(t, "127.0.0.1")
	broken.MaxVersion = tls.VersionTLS11

	cases := []struct {
		name      string
		sink      sinkOptions
		policy    Policy
		roots     *tls.Config // nil: use ca
		wantSent  bool
		wantTLS   bool
		wantConns int
		wantDSN   string // status recorded when deferred
	}{
		{name: "verify with the right CA", sink: sinkOptions{startTLS: ca.serverConfig(t, "127.0.0.1")}, policy: PolicyVerify, wantSent: true, wantTLS: true, wantConns: 1},
		{name: "verify with the wrong CA defers", sink: sinkOptions{startTLS: other.serverConfig(t, "127.0.0.1")}, policy: PolicyVerify, wantConns: 1, wantDSN: "4.7.5"},
		{name: "verify with a certificate for another name defers", sink: sinkOptions{startTLS: ca.serverConfig(t, "other.test")}, policy: PolicyVerify, wantConns: 1, wantDSN: "4.7.5"},
		{name: "verify without STARTTLS defers", sink: sinkOptions{}, policy: PolicyVerify, wantConns: 1, wantDSN: "4.7.4"},
		{name: "encrypt without STARTTLS defers", sink: sinkOptions{}, policy: PolicyEncrypt, wantConns: 1, wantDSN: "4.7.4"},
		{name: "encrypt accepts an unverified certificate", sink: sinkOptions{startTLS: other.serverConfig(t, "x.test")}, policy: PolicyEncrypt, wantSent: true, wantTLS: true, wantConns: 1},
		{name: "may uses TLS when offered", sink: sinkOptions{startTLS: other.serverConfig(t, "x.test")}, policy: PolicyMay, wantSent: true, wantTLS: true, wantConns: 1},
		{name: "may sends in plain text without STARTTLS", sink: sinkOptions{}, policy: PolicyMay, wantSent: true, wantConns: 1},
		{name: "may falls back to plain text when TLS fails", sink: sinkOptions{startTLS: broken}, policy: PolicyMay, wantSent: true, wantConns: 2},
		{name: "none never starts TLS", sink: sinkOptions{startTLS: ca.serverConfig(t, "127.0.0.1")}, policy: PolicyNone, wantSent: true, wantConns: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, tc.sink)
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": s.addr}
			o.Dialer = nil
			o.TLSPolicy = tc.policy
			o.RootCAs = ca.pool
			h := start(t, o)
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			conns, txs := s.counts()
			if conns != tc.wantConns {
				t.Errorf("%d connections, want %d", conns, tc.wantConns)
			}
			if !tc.wantSent {
				if txs != 0 {
					t.Fatalf("%d transactions, want none", txs)
				}
				m, _, err := h.q.Show(id)
				if err != nil {
					t.Fatal(err)
				}
				r := m.Recipients[0]
				if r.State != StatePending || r.Attempts != 1 || r.Status != tc.wantDSN {
					t.Errorf("recipient = %+v, want pending after 1 attempt with %s", r, tc.wantDSN)
				}
				return
			}
			h.waitUntil("the queue is empty", h.empty)
			got := s.transactions()
			if len(got) != 1 || got[0].tls != tc.wantTLS {
				t.Errorf("transactions = %+v, want one with tls=%v", got, tc.wantTLS)
			}
		})
	}
}

func TestRetryAfter4xxThenDeliveredOnce(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(n int, _ string) error {
		if n == 0 {
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "try again later")
		}
		return nil
	}})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	t0 := clock.Now()
	id := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	if r.State != StatePending || r.Attempts != 1 || r.Code != 451 || r.Status != "4.3.0" ||
		!r.NextAttempt.Equal(t0.Add(300*time.Second)) {
		t.Fatalf("after the 451: %+v; want pending, retry at +300s", r)
	}
	if !strings.Contains(h.logs.String(), `status="deferred (451 4.3.0 try again later)"`) {
		t.Errorf("no deferred log line:\n%s", h.logs.String())
	}
	clock.Advance(301 * time.Second)
	h.q.wake()
	recv(t, s.delivs, "the retried delivery")
	h.waitUntil("the queue is empty", h.empty)
	if _, n := s.counts(); n != 1 {
		t.Errorf("%d transactions, want exactly 1", n)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 300*time.Second, 4000*time.Second
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{1, 300 * time.Second}, {2, 600 * time.Second}, {3, 1200 * time.Second}, {4, 2400 * time.Second}, {5, 4000 * time.Second}, {50, 4000 * time.Second}} {
		if got := backoff(tc.n, lo, hi); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestSeveralRecipientsOneConnectionOneTransaction(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	// Two domains with the same route share the connection too.
	o.Routes = map[string]string{"remote.test": s.addr, "other.test": s.addr}
	o.Dialer = nil
	h := start(t, o)
	h.enqueue("alice@local.test", "a@remote.test", "b@remote.test", "c@other.test")
	h.waitUntil("the queue is empty", h.empty)
	conns, txs := s.counts()
	got := s.transactions()
	if conns != 1 || txs != 1 || len(got[0].rcpts) != 3 {
		t.Errorf("%d connections, %d transactions (%+v); want 1, 1 with 3 RCPTs", conns, txs, got)
	}
}

func TestManyRecipientsSplitIntoTransactionsOnOneConnection(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	h := start(t, o)
	var rcpts []string
	for i := range rcptsPerTransaction + 5 {
		rcpts = append(rcpts, "u"+strconv.Itoa(i)+"@remote.test")
	}
	h.enqueue("alice@local.test", rcpts...)
	h.waitUntil("the queue is empty", h.empty)
	conns, txs := s.counts()
	if conns != 1 || txs != 2 {
		t.Errorf("%d connections, %d transactions; want 1 and 2", conns, txs)
	}
}

func TestRelayhostAuthPlainImplicitTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, tc := range []struct {
		name     string
		password string
		wantSent bool
	}{
		{"right password", "s3cret", true},
		{"wrong password defers, never bounces", "wrong", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{implicitTLS: ca.serverConfig(t, "127.0.0.1"), user: "relayuser", password: "s3cret"})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Relayhost = &Relayhost{Addr: s.addr, ImplicitTLS: true, Username: "relayuser", Password: tc.password}
			o.Dialer = nil
			o.TLSPolicy = PolicyVerify
			o.RootCAs = ca.pool
			b := newBounces()
			o.Bounce = b.fn
			h := start(t, o)
			id := h.enqueue("alice@local.test", "bob@far.example")
			h.waitJob()
			if !tc.wantSent {
				m, _, err := h.q.Show(id)
				if err != nil {
					t.Fatal(err)
				}
				if r := m.Recipients[0]; r.State != StatePending || r.Code != 535 || !strings.HasPrefix(r.Status, "4.") {
					t.Errorf("recipient = %+v, want pending after a 535 recorded as 4.x.x", r)
				}
				if b.count() != 0 {
					t.Error("a bounce was sent for a relayhost AUTH failure")
				}
				return
			}
			h.waitUntil("the queue is empty", h.empty)
			got := s.transactions()
			if len(got) != 1 || !got[0].tls || got[0].user != "relayuser" {
				t.Errorf("transactions = %+v; want one over TLS as relayuser", got)
			}
		})
	}
}

func TestRelayhostNeverSendsCredentialsInClear(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{}) // no TLS at all
	o := baseOptions(t, t.TempDir(), newClock())
	o.Relayhost = &Relayhost{Addr: s.addr, Username: "u", Password: "p"}
	o.Dialer = nil
	o.TLSPolicy = PolicyNone // even so
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@far.example")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.State != StatePending || r.Status != "4.7.4" {
		t.Errorf("recipient = %+v, want pending with 4.7.4", r)
	}
}

func TestMXResolution(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		res      *fakeResolver
		wantSent bool
		wantLog  string
		wantDSN  string // when not sent
		wantPerm bool
	}{
		{
			name: "lowest preference first, falling back to the next MX",
			res: &fakeResolver{
				mx:  map[string][]*net.MX{"remote.test": {{Host: "mx2.remote.test.", Pref: 20}, {Host: "mx1.remote.test.", Pref: 10}}},
				ips: map[string][]string{"mx1.remote.test": {"127.0.0.2"}, "mx2.remote.test": {"127.0.0.1"}},
			},
			wantSent: true,
			wantLog:  "relay=mx2.remote.test[127.0.0.1]:25",
		},
		{
			name:     "no MX: the domain's own address",
			res:      &fakeResolver{ips: map[string][]string{"remote.test": {"127.0.0.1"}}},
			wantSent: true,
			wantLog:  "relay=remote.test[127.0.0.1]:25",
		},
		{
			name:     "null MX bounces at once",
			res:      &fakeResolver{mx: map[string][]*net.MX{"remote.test": {{Host: ".", Pref: 0}}}},
			wantDSN:  "5.1.10",
			wantPerm: true,
		},
		{
			name:     "no such domain bounces",
			res:      &fakeResolver{},
			wantDSN:  "5.1.2",
			wantPerm: true,
		},
		{
			name:    "DNS failure defers",
			res:     &fakeResolver{err: &net.DNSError{Err: "server misbehaving", Name: "remote.test", IsTemporary: true}},
			wantDSN: "4.4.3",
		},
		{
			// Postfix: 5.4.4 when no host failed for now.
			name: "MX host that does not exist bounces",
			res: &fakeResolver{
				mx: map[string][]*net.MX{"remote.test": {{Host: "mx1.remote.test.", Pref: 10}}},
			},
			wantDSN:  "5.4.4",
			wantPerm: true,
		},
		{
			name: "MX host that does not exist, another down: defers",
			res: &fakeResolver{
				mx:  map[string][]*net.MX{"remote.test": {{Host: "mx1.remote.test.", Pref: 10}, {Host: "mx2.remote.test.", Pref: 20}}},
				ips: map[string][]string{"mx1.remote.test": {"192.0.2.1"}},
			},
			wantDSN: "4.4.4",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Resolver = tc.res
			o.Dialer = dialTo(s.addr) // 192.0.2.1 refuses
			b := newBounces()
			o.Bounce = b.fn
			h := start(t, o)
			id := h.enqueue("alice@local.test", "bob@remote.test")
			if tc.wantSent {
				recv(t, s.delivs, "the delivery")
				h.waitUntil("the queue is empty", h.empty)
				if !strings.Contains(h.logs.String(), tc.wantLog) {
					t.Errorf("log lacks %q:\n%s", tc.wantLog, h.logs.String())
				}
				return
			}
			if tc.wantPerm {
				report := recv(t, b.got, "the bounce")
				rep := parseDSN(t, report)
				if got := rep.rcpts[0].Get("Status"); got != tc.wantDSN {
					t.Errorf("Status = %q, want %q", got, tc.wantDSN)
				}
				h.waitUntil("the queue is empty", h.empty)
				return
			}
			h.waitJob()
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Status != tc.wantDSN {
				t.Errorf("recipient = %+v, want pending with %s", r, tc.wantDSN)
			}
			if _, n := s.counts(); n != 0 {
				t.Errorf("%d transactions, want none", n)
			}
		})
	}
}

func TestEqualPreferenceMXAreShuffled(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Resolver = &fakeResolver{mx: map[string][]*net.MX{"remote.test": {
		{Host: "a.remote.test.", Pref: 10}, {Host: "b.remote.test.", Pref: 10}, {Host: "z.remote.test.", Pref: 5},
	}}}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	seen := map[string]bool{}
	for range 200 {
		hops, f := q.resolve(t.Context(), q.routeFor("remote.test"))
		if f != nil {
			t.Fatal(f.text)
		}
		if hops[0].name != "z.remote.test" || len(hops) != 3 {
			t.Fatalf("hops = %+v, want z first", hops)
		}
		seen[hops[1].name] = true
	}
	if !seen["a.remote.test"] || !seen["b.remote.test"] {
		t.Errorf("equal-preference MX never reordered: %v", seen)
	}
}

// A host that greets with 5xx refuses to talk, it does not refuse the
// recipient: the message waits (and another MX is tried), as Postfix's
// smtp_skip_5xx_greeting has it, instead of bouncing at once.
func TestFiveHundredGreetingDefers(t *testing.T) {
	t.Parallel()
	hangUp := func(int, string) string { return "" }
	srv := newOddServer(t, "554 5.7.1 go away", hangUp)
	h, b := startOdd(t, srv, nil)
	id := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatalf("the message left the queue: %v", err)
	}
	if r := m.Recipients[0]; r.State != StatePending || r.Status != "4.7.1" {
		t.Errorf("recipient = %+v, want pending with 4.7.1", r)
	}
	select {
	case <-b.got:
		t.Error("a DSN for a host that would not talk")
	default:
	}
}

// A receiver that takes 3 RCPTs a transaction answers 452 4.5.3 to the
// rest: they follow in the next transactions at once (RFC 5321
// §4.5.3.1.10), not at the next retry minutes later.
func TestRecipientLimitOfTheReceiver(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcptLimit: 3})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	h := start(t, o)
	var rcpts []string
	for i := range 8 {
		rcpts = append(rcpts, fmt.Sprintf("u%d@remote.test", i))
	}
	h.enqueue("alice@local.test", rcpts...)
	var got []string
	for len(got) < len(rcpts) {
		tx := recv(t, s.delivs, "a transaction")
		if len(tx.rcpts) > 3 {
			t.Fatalf("a transaction of %d recipients past the limit", len(tx.rcpts))
		}
		got = append(got, tx.rcpts...)
	}
	slices.Sort(got)
	if !slices.Equal(got, rcpts) {
		t.Errorf("delivered to %v, want %v", got, rcpts)
	}
	h.waitUntil("the queue is empty", h.empty)
	if strings.Contains(h.logs.String(), "status=deferred") {
		t.Errorf("a recipient waited for a retry:\n%s", h.logs.String())
	}
}
