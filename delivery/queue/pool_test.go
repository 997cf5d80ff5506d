package queue

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deliverSerially enqueues n one-recipient messages, each after the one
// before was delivered, so that each can only reuse what the last left.
func deliverSerially(t *testing.T, h *harness, s *sink, n int) {
	t.Helper()
	for i := range n {
		h.enqueue("alice@local.test", "bob@remote.test")
		recv(t, s.delivs, "delivery "+string(rune('1'+i)))
		h.waitUntil("the queue is empty", h.empty)
	}
}

func TestConnectionReusedAcrossMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		reuse     int           // ConnectionReuseLimit
		cacheTime time.Duration // ConnectionCacheTime
		waitIdle  bool          // wait until the sink sees the connection closed between messages
		n         int
		wantConns int
	}{
		{name: "serial messages share one connection", n: 5, wantConns: 1},
		{name: "a connection carries at most the reuse limit", reuse: 2, n: 5, wantConns: 3},
		{name: "an idle connection is closed after the cache time", cacheTime: 20 * time.Millisecond, waitIdle: true, n: 3, wantConns: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": s.addr}
			o.Dialer = nil
			o.ConnectionReuseLimit = tc.reuse
			o.ConnectionCacheTime = cmp.Or(tc.cacheTime, time.Minute) // a slow machine must not expire it
			h := start(t, o)
			for range tc.n {
				h.enqueue("alice@local.test", "bob@remote.test")
				recv(t, s.delivs, "a delivery")
				h.waitUntil("the queue is empty", h.empty)
				if tc.waitIdle {
					waitFor(t, "the idle connection to be closed", func() bool { return s.openConns() == 0 })
				}
			}
			conns, txs := s.counts()
			if conns != tc.wantConns || txs != tc.n {
				t.Errorf("%d connections, %d transactions; want %d and %d", conns, txs, tc.wantConns, tc.n)
			}
		})
	}
}

// waitFor polls cond, bounded.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestDestinationConnectionLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inData, most := 0, 0
	s := newSink(t, sinkOptions{data: func(int) error {
		mu.Lock()
		inData++
		most = max(most, inData)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // let the others pile up
		mu.Lock()
		inData--
		mu.Unlock()
		return nil
	}})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.DestinationConcurrency = 2
	h := start(t, o)
	const n = 20
	for range n {
		h.enqueue("alice@local.test", "bob@remote.test")
	}
	h.waitUntil("the queue is empty", h.empty)
	conns, txs := s.counts()
	if txs != n || conns > 2 {
		t.Errorf("%d connections for %d transactions; want at most 2 connections and %d transactions", conns, txs, n)
	}
	if most > 2 {
		t.Errorf("%d transactions at once, want at most 2", most)
	}
}

func TestSeveralDestinationsInParallel(t *testing.T) {
	t.Parallel()
	// a's DATA completes only once b's has started: a queue that
	// delivered one destination after the other would never finish.
	bStarted := make(chan struct{})
	a := newSink(t, sinkOptions{data: func(int) error {
		select {
		case <-bStarted:
			return nil
		case <-time.After(20 * time.Second):
			return errors.New("b never started")
		}
	}})
	b := newSink(t, sinkOptions{data: func(int) error { close(bStarted); return nil }})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"a.test": a.addr, "b.test": b.addr}
	o.Dialer = nil
	h := start(t, o)
	h.enqueue("alice@local.test", "x@a.test")
	h.enqueue("alice@local.test", "y@b.test")
	h.waitUntil("the queue is empty", h.empty)
	if _, n := a.counts(); n != 1 {
		t.Errorf("a got %d transactions, want 1", n)
	}
}

// scriptServer is an SMTP server for the pipelining tests. With PIPELINING
// it answers a group of commands only once the group's last command (DATA)
// has arrived, as RFC 2920 lets it: a client that waited for each reply
// would stall. RCPT and MAIL replies come from the maps by address.
type scriptServer struct {
	addr       string
	pipelining bool
	rcpt       map[string]string // address → reply; default 250
	mail       map[string]string // sender → reply; default 250
	// extra, when set, is a reply sent after the reply to each final
	// dot, in the same write: one reply too many.
	extra string
	// dot, when set, is the reply to each final dot; default 250.
	dot string

	mu     sync.Mutex
	conns  int
	groups [][]string // commands answered together, in order
	txs    [][]string // recipients of each message accepted
}

func newScriptServer(t *testing.T, pipelining bool, mail, rcpt map[string]string) *scriptServer {
	t.Helper()
	return newScriptServerExtra(t, pipelining, mail, rcpt, "")
}

// newScriptServerExtra is newScriptServer with scriptServer.extra.
func newScriptServerExtra(t *testing.T, pipelining bool, mail, rcpt map[string]string, extra string) *scriptServer {
	t.Helper()
	return newScriptServerWith(t, &scriptServer{pipelining: pipelining, rcpt: rcpt, mail: mail, extra: extra})
}

// newScriptServerWith starts s, whose addr it sets.
func newScriptServerWith(t *testing.T, s *scriptServer) *scriptServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			wg.Go(func() { s.serve(c) })
		}
	})
	return s
}

func (s *scriptServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	w.WriteString("220 script.test ESMTP\r\n")
	w.Flush()
	var group, replies, rcpts []string
	mailOK := false
	answer := func() {
		for _, l := range replies {
			w.WriteString(l + "\r\n")
		}
		w.Flush()
		s.mu.Lock()
		s.groups = append(s.groups, group)
		s.mu.Unlock()
		group, replies = nil, nil
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, ":")
		verb = strings.ToUpper(strings.Fields(verb + " x")[0])
		group = append(group, line)
		reply := "250 2.0.0 ok"
		switch verb {
		case "EHLO":
			reply = "250-script.test\r\n250-8BITMIME\r\n250 SIZE 100000"
			if s.pipelining {
				reply = "250-script.test\r\n250-PIPELINING\r\n250 SIZE 100000"
			}
		case "MAIL":
			rcpts = nil
			r, refused := s.mail[addrOf(arg)]
			if refused {
				reply = r
			}
			mailOK = !refused
		case "RCPT":
			if !mailOK {
				reply = "503 5.5.1 MAIL first"
			} else if r, ok := s.rcpt[addrOf(arg)]; ok {
				reply = r
			} else {
				rcpts = append(rcpts, addrOf(arg))
			}
		case "RSET":
			rcpts, mailOK = nil, false
		case "DATA":
			reply = "354 go on"
			if len(rcpts) == 0 {
				reply = "554 5.5.1 no valid recipients"
			}
		case "QUIT":
			reply = "221 bye"
		}
		replies = append(replies, reply)
		if s.pipelining && verb != "DATA" && verb != "EHLO" && verb != "QUIT" {
			continue // the group goes on
		}
		answer()
		if verb == "QUIT" {
			return
		}
		if verb != "DATA" || len(rcpts) == 0 {
			continue
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if l == ".\r\n" {
				break
			}
		}
		if s.dot != "" {
			rcpts, mailOK = nil, false
			w.WriteString(s.dot + "\r\n")
			w.Flush()
			continue
		}
		s.mu.Lock()
		s.txs = append(s.txs, rcpts)
		s.mu.Unlock()
		rcpts, mailOK = nil, false
		w.WriteString("250 2.0.0 queued\r\n")
		if s.extra != "" {
			w.WriteString(s.extra + "\r\n")
		}
		w.Flush()
	}
}

func addrOf(arg string) string {
	a, _, _ := strings.Cut(strings.TrimPrefix(arg, "<"), ">")
	return a
}

func (s *scriptServer) snapshot() (conns int, groups, txs [][]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, slices.Clone(s.groups), slices.Clone(s.txs)
}

func TestPipeliningWithMixedReplies(t *testing.T) {
	t.Parallel()
	rcptReplies := map[string]string{
		"full@remote.test":  "452 4.2.2 mailbox full",
		"bad@remote.test":   "550 5.1.1 no such user",
		"bad2@remote.test":  "550 5.1.1 no such user",
		"later@remote.test": "450 4.2.0 greylisted",
	}
	mailReplies := map[string]string{"refused@local.test": "451 4.7.1 sender refused for now"}
	type want struct {
		state  State
		code   int
		status string
	}
	cases := []struct {
		name   string
		from   string
		rcpts  []string
		want   map[string]want
		wantTx []string // recipients of the one accepted transaction; nil: none
	}{
		{
			name:  "some RCPTs refused: the others get the message",
			from:  "alice@local.test",
			rcpts: []string{"ok1@remote.test", "full@remote.test", "bad@remote.test", "ok2@remote.test"},
			want: map[string]want{
				"ok1@remote.test":  {StateDelivered, 250, "2.0.0"},
				"full@remote.test": {StatePending, 452, "4.2.2"},
				"bad@remote.test":  {StateFailed, 550, "5.1.1"},
				"ok2@remote.test":  {StateDelivered, 250, "2.0.0"},
			},
			wantTx: []string{"ok1@remote.test", "ok2@remote.test"},
		},
		{
			name:  "every RCPT refused: no data sent",
			from:  "alice@local.test",
			rcpts: []string{"later@remote.test", "bad2@remote.test"},
			want: map[string]want{
				"later@remote.test": {StatePending, 450, "4.2.0"},
				"bad2@remote.test":  {StateFailed, 550, "5.1.1"},
			},
		},
		{
			name:  "MAIL refused: every recipient deferred",
			from:  "refused@local.test",
			rcpts: []string{"ok1@remote.test", "ok2@remote.test"},
			want: map[string]want{
				"ok1@remote.test": {StatePending, 451, "4.7.1"},
				"ok2@remote.test": {StatePending, 451, "4.7.1"},
			},
		},
	}
	for _, pipelining := range []bool{true, false} {
		for _, tc := range cases {
			name := tc.name + map[bool]string{true: " (pipelined)", false: " (one command at a time)"}[pipelining]
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				srv := newScriptServer(t, pipelining, mailReplies, rcptReplies)
				o := baseOptions(t, t.TempDir(), newClock())
				o.Routes = map[string]string{"remote.test": srv.addr}
				o.Dialer = nil
				o.ConnectionCacheTime = time.Minute
				b := newBounces()
				o.Bounce = b.fn
				h := start(t, o)
				id, err := h.q.Enqueue(t.Context(), tc.from, tc.rcpts, []byte(testMessage))
				if err != nil {
					t.Fatal(err)
				}
				h.waitJob()
				m, _, err := h.q.Show(id)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range m.Recipients {
					w := tc.want[r.Addr]
					if r.State != w.state || r.Code != w.code || r.Status != w.status || r.Attempts != 1 {
						t.Errorf("%s: %s %d %s after %d attempts; want %s %d %s after 1", r.Addr, r.State, r.Code, r.Status, r.Attempts, w.state, w.code, w.status)
					}
				}
				// The same connection, reset, carries the next message.
				h.enqueue("alice@local.test", "next@remote.test")
				h.waitJob()
				conns, groups, txs := srv.snapshot()
				wantTxs := [][]string{{"next@remote.test"}}
				if tc.wantTx != nil {
					wantTxs = [][]string{tc.wantTx, {"next@remote.test"}}
				}
				if conns != 1 || !slices.EqualFunc(txs, wantTxs, slices.Equal) {
					t.Errorf("%d connections, transactions %q; want 1 connection, %q", conns, txs, wantTxs)
				}
				// How the commands travelled: the last group is the
				// next message's, RSET first.
				last := groups[len(groups)-1]
				if pipelining {
					if len(last) != 4 || last[0] != "RSET" || !strings.HasPrefix(last[1], "MAIL FROM:<alice@local.test>") || last[3] != "DATA" {
						t.Errorf("last group = %q, want RSET, MAIL, RCPT, DATA in one", last)
					}
					first := groups[1] // after EHLO
					if len(first) != len(tc.rcpts)+2 {
						t.Errorf("first group = %q, want MAIL, %d RCPTs and DATA in one", first, len(tc.rcpts))
					}
				} else {
					for _, g := range groups {
						if len(g) != 1 {
							t.Errorf("group %q: commands sent before the reply to the last", g)
						}
					}
					if !slices.ContainsFunc(groups, func(g []string) bool { return g[0] == "RSET" }) {
						t.Errorf("no RSET before the next message: %q", groups)
					}
				}
			})
		}
	}
}

func TestCachedConnectionClosedByServerIsReplaced(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.ConnectionCacheTime = time.Minute
	h := start(t, o)
	deliverSerially(t, h, s, 1)
	if n := s.dropAll(); n != 1 {
		t.Fatalf("the sink closed %d connections, want 1", n)
	}
	id := h.enqueue("alice@local.test", "carol@remote.test", "dave@remote.test")
	got := recv(t, s.delivs, "the delivery on a new connection")
	h.waitUntil("the queue is empty", h.empty)
	if conns, txs := s.counts(); conns != 2 || txs != 2 || len(got.rcpts) != 2 {
		t.Errorf("%d connections, %d transactions, last to %q; want 2, 2, both recipients", conns, txs, got.rcpts)
	}
	logs := h.logs.String()
	if strings.Contains(logs, "deferred") {
		t.Errorf("the lost cached connection was recorded as a failed attempt:\n%s", logs)
	}
	if n := strings.Count(logs, "queue_id="+id+" to="); n != 2 || strings.Count(logs, `status="sent`) != 3 {
		t.Errorf("want one sent line per recipient:\n%s", logs)
	}
}

func TestTLSAndAuthKeptOnReusedConnection(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	cases := []struct {
		name     string
		sink     sinkOptions
		policy   Policy
		relay    bool
		wantUser string
	}{
		{name: "STARTTLS verified", sink: sinkOptions{startTLS: ca.serverConfig(t, "127.0.0.1")}, policy: PolicyVerify},
		{name: "relayhost with implicit TLS and AUTH", sink: sinkOptions{implicitTLS: ca.serverConfig(t, "127.0.0.1"), user: "relayuser", password: "s3cret"}, policy: PolicyVerify, relay: true, wantUser: "relayuser"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, tc.sink)
			o := baseOptions(t, t.TempDir(), newClock())
			o.Dialer = nil
			o.ConnectionCacheTime = time.Minute
			o.TLSPolicy = tc.policy
			o.RootCAs = ca.pool
			if tc.relay {
				o.Relayhost = &Relayhost{Addr: s.addr, ImplicitTLS: true, Username: "relayuser", Password: "s3cret"}
			} else {
				o.Routes = map[string]string{"remote.test": s.addr}
			}
			h := start(t, o)
			deliverSerially(t, h, s, 3)
			txs := s.transactions()
			if conns, _ := s.counts(); conns != 1 || len(txs) != 3 {
				t.Fatalf("%d connections, %d transactions; want 1 and 3", conns, len(txs))
			}
			for i, tx := range txs {
				if !tx.tls || tx.user != tc.wantUser {
					t.Errorf("transaction %d: tls=%v user=%q; want TLS as %q", i, tx.tls, tx.user, tc.wantUser)
				}
			}
		})
	}
}

func TestDeadDestination(t *testing.T) {
	t.Parallel()
	// A server that greets with 421, as one that is overloaded does.
	busy := newOddServer(t, "421 4.3.2 too busy, come back later", func(int, string) string { return "" })
	cases := []struct {
		name    string
		down    func(ctx context.Context) (net.Conn, error)
		wantDSN string
	}{
		{"connection refused", func(context.Context) (net.Conn, error) {
			return nil, errors.New("connection refused (test dialer)")
		}, "4.4.1"},
		{"421 at the greeting", func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", busy.addr)
		}, "4.3.2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{})
			var up atomic.Bool
			var dials atomic.Int32
			clock := newClock()
			o := baseOptions(t, t.TempDir(), clock)
			o.Routes = map[string]string{"remote.test": "192.0.2.1:25"}
			o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				if !up.Load() {
					return tc.down(ctx)
				}
				var d net.Dialer
				return d.DialContext(ctx, network, s.addr)
			}
			h := start(t, o)
			const n = 5
			var ids []string
			for i := range n {
				ids = append(ids, h.enqueue("alice@local.test", "u"+string(rune('a'+i))+"@remote.test"))
			}
			attempted := func(k int) func() bool {
				return func() bool {
					for _, id := range ids {
						m, _, err := h.q.Show(id)
						if err != nil || m.Recipients[0].Attempts != k {
							return false
						}
					}
					return true
				}
			}
			check := func(round, wantDials, wantWarn int) {
				t.Helper()
				h.waitUntil("every message tried", attempted(round))
				if got := int(dials.Load()); got != wantDials {
					t.Errorf("round %d: %d dials, want %d: a dead destination is dialled once, not once per message", round, got, wantDials)
				}
				suspended := 0
				for _, id := range ids {
					m, _, _ := h.q.Show(id)
					r := m.Recipients[0]
					if r.State != StatePending || r.Status != tc.wantDSN {
						t.Errorf("round %d: %+v, want pending with %s", round, r, tc.wantDSN)
					}
					if strings.HasPrefix(r.Reply, "delivery temporarily suspended: ") {
						suspended++
					}
				}
				if suspended != n-1 {
					t.Errorf("round %d: %d messages deferred as suspended, want %d", round, suspended, n-1)
				}
				if got := strings.Count(h.logs.String(), "destination not responding"); got != wantWarn {
					t.Errorf("round %d: %d log lines about the dead destination, want %d", round, got, wantWarn)
				}
			}
			check(1, 1, 1)
			// After the dead period (MinBackoff), one probe again.
			clock.Advance(301 * time.Second)
			h.q.wake()
			check(2, 2, 2)
			// Back up: the next round delivers everything.
			up.Store(true)
			clock.Advance(601 * time.Second)
			h.q.wake()
			h.waitUntil("the queue is empty", h.empty)
			if _, txs := s.counts(); txs != n {
				t.Errorf("%d transactions, want %d", txs, n)
			}
			if got := strings.Count(h.logs.String(), "destination reachable again"); got != 1 {
				t.Errorf("%d log lines saying the destination is back, want 1", got)
			}
		})
	}
}

func TestShutdownWithCachedConnections(t *testing.T) {
	t.Parallel()
	idle := newSink(t, sinkOptions{})
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	busy := newSink(t, sinkOptions{data: func(int) error {
		entered <- struct{}{}
		<-block
		return nil
	}})
	t.Cleanup(func() { close(block) })
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": idle.addr, "busy.test": busy.addr}
	o.Dialer = nil
	o.ConnectionCacheTime = time.Hour // only the shutdown closes it
	h := start(t, o)
	deliverSerially(t, h, idle, 1)
	id := h.enqueue("alice@local.test", "bob@busy.test")
	recv(t, entered, "the blocked DATA")
	if idle.openConns() != 1 {
		t.Fatalf("%d connections open to the idle sink, want the cached one", idle.openConns())
	}
	h.close()
	waitFor(t, "the cached connection to be closed", func() bool { return idle.openConns() == 0 })
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	m, _, err := q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	// Cut after its final dot: an attempt of unknown outcome.
	if r := m.Recipients[0]; r.State != StatePending || r.Attempts != 1 || !strings.Contains(r.Reply, "may have been delivered") {
		t.Errorf("after shutdown: %+v, want pending after one attempt of unknown outcome", r)
	}
}

func TestWhatMakesADestinationDead(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		mx        []*net.MX
		ips       map[string][]string
		policy    Policy
		wantDials int // for three messages sent together
		wantDead  bool
	}{
		{
			name: "one MX refuses, the next works: alive",
			mx:   []*net.MX{{Host: "mx1.remote.test.", Pref: 10}, {Host: "mx2.remote.test.", Pref: 20}},
			ips:  map[string][]string{"mx1.remote.test": {"127.0.0.2"}, "mx2.remote.test": {"127.0.0.1"}},
			// mx1 refused once per new connection, mx2 then connects.
			wantDials: -1,
		},
		{
			name:      "every MX refuses: dead",
			mx:        []*net.MX{{Host: "mx1.remote.test.", Pref: 10}, {Host: "mx2.remote.test.", Pref: 20}},
			ips:       map[string][]string{"mx1.remote.test": {"127.0.0.2"}, "mx2.remote.test": {"127.0.0.3"}},
			wantDials: 2,
			wantDead:  true,
		},
		{
			name:      "TLS required but not offered: not dead, each message tries",
			mx:        []*net.MX{{Host: "mx1.remote.test.", Pref: 10}},
			ips:       map[string][]string{"mx1.remote.test": {"127.0.0.1"}},
			policy:    PolicyEncrypt,
			wantDials: 3,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Resolver = &fakeResolver{mx: map[string][]*net.MX{"remote.test": tc.mx}, ips: tc.ips}
			o.TLSPolicy = cmp.Or(tc.policy, PolicyNone)
			var dials atomic.Int32
			sinkDial := dialTo(s.addr)
			o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return sinkDial(ctx, network, addr)
			}
			h := start(t, o)
			for range 3 {
				h.enqueue("alice@local.test", "bob@remote.test")
			}
			for range 3 {
				h.waitJob()
			}
			if tc.wantDials >= 0 {
				if got := int(dials.Load()); got != tc.wantDials {
					t.Errorf("%d dials, want %d", got, tc.wantDials)
				}
			} else if _, txs := s.counts(); txs != 3 {
				t.Errorf("%d transactions, want 3", txs)
			}
			if dead := strings.Contains(h.logs.String(), "destination not responding"); dead != tc.wantDead {
				t.Errorf("marked dead: %v, want %v", dead, tc.wantDead)
			}
		})
	}
}

// A server that answers the final dot twice leaves a reply unread in the
// session: reused, every later reply would be read one command late (the
// next message's recipient accepted taken for refused, the one refused
// taken for accepted). The session is closed instead, and the next message
// gets its own replies on a new one.
func TestExtraReplyAfterDataNotReused(t *testing.T) {
	t.Parallel()
	srv := newScriptServerExtra(t, false, nil, map[string]string{"later@remote.test": "450 4.2.0 greylisted"}, "250 2.0.0 extra")
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": srv.addr}
	o.Dialer = nil
	o.ConnectionCacheTime = time.Minute
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	h.enqueue("alice@local.test", "first@remote.test")
	h.waitJob()
	id := h.enqueue("alice@local.test", "later@remote.test", "bob@remote.test")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]State{"later@remote.test": StatePending, "bob@remote.test": StateDelivered}
	for _, r := range m.Recipients {
		if r.State != want[r.Addr] {
			t.Errorf("%s: %s (%d %s), want %s", r.Addr, r.State, r.Code, r.Reply, want[r.Addr])
		}
	}
	conns, _, txs := srv.snapshot()
	if wantTxs := [][]string{{"first@remote.test"}, {"bob@remote.test"}}; conns != 2 || !slices.EqualFunc(txs, wantTxs, slices.Equal) {
		t.Errorf("%d connections, transactions %q; want 2, %q", conns, txs, wantTxs)
	}
	if b.count() != 0 {
		t.Errorf("%d DSNs sent, want none", b.count())
	}
}

// unread finds what a server sent between transactions without waiting:
// bytes in the socket, and the server's close.
func TestUnreadFindsBytesWaiting(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	srv := recv(t, accepted, "the connection")
	defer srv.Close()
	s := &session{conn: c, r: bufio.NewReaderSize(c, 4096)}
	if s.unread() {
		t.Fatal("unread on a quiet connection")
	}
	srv.Write([]byte("250 2.0.0 extra\r\n"))
	waitFor(t, "the extra reply to be seen", s.unread)
	if s.r.Buffered() != 0 {
		t.Error("unread consumed what it found")
	}

	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
	}()
	s2 := &session{conn: c2, r: bufio.NewReaderSize(c2, 4096)}
	waitFor(t, "the server's close to be seen", s2.unread)
}

// A hostile server's endless multi-line greeting or EHLO reply (each line
// within go-smtp's line limit) is read only up to maxSetupRead: the
// attempt then fails for now, at once, instead of growing memory until the
// command timeout.
func TestEndlessSetupReplyBounded(t *testing.T) {
	t.Parallel()
	line := "-" + strings.Repeat("x", 1500) + "\r\n"
	for _, stage := range []string{"greeting", "EHLO"} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			t.Cleanup(func() { l.Close(); wg.Wait() })
			wg.Go(func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					wg.Go(func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(time.Minute))
						if stage == "EHLO" {
							c.Write([]byte("220 evil.test ESMTP\r\n"))
							if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
								return
							}
						}
						code := map[string]string{"greeting": "220", "EHLO": "250"}[stage]
						chunk := []byte(strings.Repeat(code+line, 40))
						for range 100000 { // ~6 GB: "endless"
							if _, err := c.Write(chunk); err != nil {
								return
							}
						}
					})
				}
			})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": l.Addr().String()}
			o.Dialer = nil
			o.CommandTimeout = time.Hour // only the bound ends the attempt
			h := start(t, o)
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if r := m.Recipients[0]; r.State != StatePending || !strings.Contains(r.Reply, "exceed 64 KiB") {
				t.Errorf("%s %q, want pending, the setup replies too long", r.State, r.Reply)
			}
		})
	}
}

// tarpit is a server that accepts connections and then, per connection,
// does what serve does (nothing by default: no greeting) until the test
// ends. It counts the connections and those still open.
type tarpit struct {
	addr        string
	conns, open atomic.Int32
}

func newTarpit(t *testing.T, serve func(c net.Conn)) *tarpit {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tarpit{addr: l.Addr().String()}
	done := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(done); l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tp.conns.Add(1)
			tp.open.Add(1)
			wg.Go(func() {
				defer tp.open.Add(-1)
				defer c.Close()
				if serve != nil {
					serve(c)
				}
				// Until the client closes it, or the test ends.
				go func() { <-done; c.Close() }()
				io.Copy(io.Discard, c)
			})
		}
	})
	return tp
}

// A destination that accepts connections and never greets holds one
// delivery slot (its probe), not every one: the jobs waiting for it give
// theirs back, and a message to another destination is delivered while
// the tarpit's connection is still open, long before its timeout.
func TestTarpitDoesNotStopOtherDestinations(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t, nil)
	good := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"slow.test": tp.addr, "good.test": good.addr}
	o.Dialer = nil
	o.Concurrency = 5
	o.DestinationConcurrency = 5
	o.CommandTimeout = time.Hour // the probe never ends within the test
	h := start(t, o)
	for range 12 {
		h.enqueue("alice@local.test", "x@slow.test")
	}
	busy := func() int {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		n := 0
		for _, e := range h.q.entries {
			if e.busy {
				n++
			}
		}
		return n
	}
	// The probe is under way and every slot was given out at least once.
	waitFor(t, "the probe and the jobs behind it", func() bool { return tp.conns.Load() == 1 && busy() >= o.Concurrency })
	h.enqueue("alice@local.test", "y@good.test")
	recv(t, good.delivs, "the delivery to good.test")
	if c, open := tp.conns.Load(), tp.open.Load(); c != 1 || open != 1 {
		t.Errorf("tarpit: %d connections, %d open at the good delivery; want 1 probe, still open", c, open)
	}
	// Past the jobs allowed to wait for it, the tarpit's messages were
	// postponed, not tried: nothing recorded.
	for _, s := range mustList(t, h) {
		if r := s.Recipients[0]; r.Attempts != 0 && r.Addr == "x@slow.test" {
			t.Errorf("%s: %d attempts recorded (%s), want none", s.ID, r.Attempts, r.Reply)
		}
	}
}

// STARTTLS accepted, then a handshake that never comes: the timeout makes
// the destination dead, as a refused connection does, so the jobs behind
// the probe share its failure and nobody connects again until the dead
// period ends: one connection for all the destination's messages.
func TestHangingTLSHandshakeMakesDestinationDead(t *testing.T) {
	t.Parallel()
	tp := newTarpit(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		c.Write([]byte("220 hang.test ESMTP\r\n"))
		for range 10 {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
			case "EHLO":
				c.Write([]byte("250-hang.test\r\n250 STARTTLS\r\n"))
			case "STARTTLS":
				c.Write([]byte("220 go ahead\r\n"))
				return // and never shake hands
			default:
				c.Write([]byte("250 ok\r\n"))
			}
		}
	})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.TLSPolicy = PolicyEncrypt
	o.Routes = map[string]string{"hang.test": tp.addr}
	o.Dialer = nil
	o.CommandTimeout = 200 * time.Millisecond
	h := start(t, o)
	const n = 30
	ids := map[string]bool{}
	for range n {
		ids[h.enqueue("alice@local.test", "x@hang.test")] = true
	}
	tried := func() int {
		k := 0
		for _, s := range mustList(t, h) {
			if ids[s.ID] && s.Recipients[0].Attempts > 0 {
				k++
			}
		}
		return k
	}
	waitFor(t, "the destination marked dead", func() bool {
		return strings.Contains(h.logs.String(), "destination not responding")
	})
	// The postponed messages come back (the clock stays inside the dead
	// period, MinBackoff) and are deferred without a dial.
	clock.Advance(postponeDelay + time.Second)
	h.q.wake()
	h.waitUntil("every message tried once", func() bool { return tried() == n })
	if c := tp.conns.Load(); c != 1 {
		t.Errorf("%d connections to the hanging host, want 1 (the probe)", c)
	}
}

// A 452 to MAIL or to the final dot is the server's storage, not its
// recipient limit: the recipients are deferred with backoff as for any
// 4xx, not sent again at once on the same connection (only a RCPT's 452
// is, in the next transaction).
func TestStorage452DeferredNotRetriedAtOnce(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		srv  *scriptServer
	}{
		{"452 to MAIL", &scriptServer{mail: map[string]string{"alice@local.test": "452 4.3.1 insufficient system storage"}}},
		{"452 to the final dot", &scriptServer{dot: "452 4.3.1 insufficient system storage"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newScriptServerWith(t, tc.srv)
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": srv.addr}
			o.Dialer = nil
			h := start(t, o)
			id := h.enqueue("alice@local.test", "bob@remote.test", "carol@remote.test")
			h.waitJob()
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range m.Recipients {
				if r.State != StatePending || r.Code != 452 || r.Attempts != 1 || !r.NextAttempt.After(o.Now()) {
					t.Errorf("%s: %s %d after %d attempts, next %v; want pending 452 after 1, later", r.Addr, r.State, r.Code, r.Attempts, r.NextAttempt)
				}
			}
			_, groups, _ := srv.snapshot()
			mails := 0
			for _, g := range groups {
				for _, c := range g {
					if strings.HasPrefix(c, "MAIL") {
						mails++
					}
				}
			}
			if mails != 1 {
				t.Errorf("%d MAIL commands, want 1: %q", mails, groups)
			}
		})
	}
}

// nextHost's second session, asked for when the destination has as many
// jobs waiting as its limit, is refused without its message being
// parked: the job is not postponed (it ends with its first host's
// answers), and a parked id of it took the wake-up that the next job to
// stop waiting owes a message really postponed (its due time then
// waited postponeDelay), and made its own next run due at once.
func TestSecondSessionNotParked(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	o.DestinationConcurrency = 1
	o.ConnectionCacheTime = time.Minute
	o.ConnectionReuseLimit = 10
	o.MinBackoff = time.Minute
	c := newConnCache(o, slog.New(slog.DiscardHandler))
	var mu sync.Mutex
	var woken []string
	c.unpark = func(id string) {
		mu.Lock()
		woken = append(woken, id)
		mu.Unlock()
	}
	slots := make(chan struct{}, 10)
	job := func() context.Context {
		return context.WithValue(t.Context(), slotKey{}, &jobSlot{ch: slots})
	}
	const key = "mx:remote.test"
	// Job a has the destination's one session.
	_, probe, f := c.get(job(), "a", key, false, true)
	if f != nil {
		t.Fatal(f.text)
	}
	client, server := net.Pipe()
	defer server.Close()
	s := &session{conn: client, raw: client, stop: func() bool { return true }, closing: true}
	c.dialed(key, probe, s, nil)
	// Job b waits for it: the destination's limit of waiters.
	bDone := make(chan *failure, 1)
	go func() {
		_, probe, f := c.get(job(), "b", key, false, true)
		if f == nil {
			c.dialed(key, probe, nil, nil)
		}
		bDone <- f
	}()
	for waiters := 0; waiters == 0; {
		time.Sleep(time.Millisecond)
		c.mu.Lock()
		waiters = c.dests[key].waiters
		c.mu.Unlock()
	}
	// Job c's second session for what its first host deferred.
	if _, _, f := c.get(job(), "c", key, true, false); f == nil {
		t.Fatal("second session given past the limit of waiters")
	} else if f.postpone {
		t.Errorf("second session: %s, want refused, not postponed", f.text)
	}
	c.mu.Lock()
	parked := slices.Clone(c.dests[key].parked)
	c.mu.Unlock()
	if len(parked) != 0 {
		t.Errorf("parked %q, want none", parked)
	}
	c.release(key, s)
	if f := <-bDone; f != nil {
		t.Fatalf("job b: %s", f.text)
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(woken, "c") {
		t.Errorf("woken %q: c, never postponed, took a wake-up", woken)
	}
}
