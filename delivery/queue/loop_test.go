package queue

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"courriel/internal/testenv"
)

// loopZone is the DNS of the loop tests. mx.self.test is this host: the
// address of the listener that stands for our own (loopEnv.self).
var loopZone = []string{
	"mx.self.test. A 127.0.0.1",
	"mx1.other.test. A 127.0.0.31",
	"mx2.other.test. A 127.0.0.32",
	// We are the only MX host.
	"self.test. MX 10 mx.self.test.",
	// We are a backup MX host: the better one is used.
	"backup.test. MX 10 mx1.other.test.",
	"backup.test. MX 20 mx.self.test.",
	"backup.test. MX 30 mx2.other.test.",
	// We share the best preference with another host: both are dropped.
	"equal.test. MX 10 mx1.other.test.",
	"equal.test. MX 10 mx.self.test.",
	// Better MX hosts exist, without an address.
	"nobest.test. MX 10 gone.other.test.",
	"nobest.test. MX 20 mx.self.test.",
	// No MX: the domain's own address is ours.
	"implicit.test. A 127.0.0.1",
	// Hosts that are not us by address.
	"named.test. MX 10 mx1.other.test.",
	"named.test. MX 20 mx2.other.test.",
}

// loopEnv is a queue whose host is 127.0.0.1 (Options.LocalAddrs) and
// whose hostname is mta.test, with the test DNS above and a dialer that
// sends each address of the zone to its sink, on any port.
type loopEnv struct {
	sinks   map[string]*sink // by the zone's address
	o       Options
	bounces *bounces
	mu      sync.Mutex
	dialled []string // guarded by mu
}

func newLoopEnv(t *testing.T, opts map[string]sinkOptions) *loopEnv {
	t.Helper()
	dns := testenv.StartDNS(t, loopZone...)
	e := &loopEnv{sinks: map[string]*sink{}, bounces: newBounces()}
	for _, ip := range []string{"127.0.0.1", "127.0.0.31", "127.0.0.32"} {
		e.sinks[ip] = newSink(t, opts[ip])
	}
	self := netip.MustParseAddrPort(e.sinks["127.0.0.1"].addr).Addr() // the listener's own address
	e.o = baseOptions(t, t.TempDir(), newClock())
	e.o.Resolver = NewResolver(dns.Addr)
	e.o.Bounce = e.bounces.fn
	e.o.LocalAddrs = []netip.Addr{self}
	e.o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.mu.Lock()
		e.dialled = append(e.dialled, addr)
		e.mu.Unlock()
		ip, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		s, ok := e.sinks[ip]
		if !ok {
			return nil, errors.New("connection refused (test dialer: " + addr + ")")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, s.addr)
	}
	return e
}

// Postfix's smtp_find_self: an MX host at one of our addresses is this
// host; it and the hosts of equal or worse preference are dropped, and
// mail whose best MX host we are bounces ("loops back to myself", 5.4.6)
// instead of being sent to ourselves. Only SMTP to port 25 is checked.
func TestMailLoopsBackToMyself(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		rcpt   string
		route  string // Options.Routes["*"], if any
		relay  string // Options.Relayhost, if any
		wantTo string // the sink's address that gets the message; "" none
		// Not delivered: the status, bounced or (wantPending) deferred,
		// and the text.
		status, text string
		pending      bool
		down         string // the sink at this address refuses connections
	}{
		{name: "the only MX host is us", rcpt: "bob@self.test",
			status: "5.4.6", text: "mail for self.test loops back to myself"},
		{name: "a worse MX host is us: the better one is used", rcpt: "bob@backup.test", wantTo: "127.0.0.31"},
		// Neither we nor the hosts after us are tried: the better
		// host's failure stands.
		{name: "a worse MX host is us and the better one is down", rcpt: "bob@backup.test", down: "127.0.0.31",
			status: "4.4.1", text: "connect to mx1.other.test[127.0.0.31]:25", pending: true},
		{name: "an equally preferred MX host is us: neither is used", rcpt: "bob@equal.test",
			status: "5.4.6", text: "mail for equal.test loops back to myself"},
		{name: "better MX hosts have no address", rcpt: "bob@nobest.test",
			status: "4.4.4", text: "unable to find primary relay for nobest.test", pending: true},
		{name: "no MX: the domain's address is ours", rcpt: "bob@implicit.test",
			status: "5.4.6", text: "mail for implicit.test loops back to myself"},
		{name: "an address literal of ours", rcpt: "bob@[127.0.0.1]",
			status: "5.4.6", text: "mail for [127.0.0.1] loops back to myself"},
		{name: "a route to ourselves on port 25", rcpt: "bob@example.test", route: "[mx.self.test]",
			status: "5.4.6", text: "mail for mx.self.test loops back to myself"},
		{name: "a route to a service of ours on another port", rcpt: "bob@example.test", route: "[mx.self.test]:2525",
			wantTo: "127.0.0.1"},
		{name: "a route whose MX hosts include us", rcpt: "bob@example.test", route: "backup.test", wantTo: "127.0.0.31"},
		// Postfix: "relayhost configuration problem", the mail waits.
		{name: "a relayhost that is us", rcpt: "bob@example.test", relay: "[mx.self.test]",
			status: "4.3.5", text: "relayhost configuration problem: mail for mx.self.test loops back to myself", pending: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLoopEnv(t, nil)
			if tc.down != "" {
				delete(e.sinks, tc.down)
			}
			if tc.route != "" {
				e.o.Routes = map[string]string{"*": tc.route}
			}
			if tc.relay != "" {
				e.o.Relayhost = &Relayhost{Addr: tc.relay}
			}
			h := start(t, e.o)
			id := h.enqueue("alice@local.test", tc.rcpt)
			e.checkOutcome(t, h, id, tc.wantTo, tc.status, tc.text, tc.pending)
			if tc.wantTo != "127.0.0.1" {
				if c, _ := e.sinks["127.0.0.1"].counts(); c != 0 {
					t.Errorf("this host's own listener got %d connections, want none (dialled %v)", c, e.dialled)
				}
			}
		})
	}
}

// checkOutcome waits for the message id to be delivered to the sink at
// wantTo, or bounced with status and text, or (pending) deferred so.
func (e *loopEnv) checkOutcome(t *testing.T, h *harness, id, wantTo, status, text string, pending bool) {
	t.Helper()
	switch {
	case wantTo != "":
		h.waitUntil("the queue is empty", h.empty)
		for ip, s := range e.sinks {
			if _, n := s.counts(); (n > 0) != (ip == wantTo) {
				t.Errorf("the sink at %s got %d transactions; want the message at %s only\n%s", ip, n, wantTo, h.logs.String())
			}
		}
	case pending:
		h.waitJob()
		m, _, err := h.q.Show(id)
		if err != nil {
			t.Fatal(err)
		}
		if r := m.Recipients[0]; r.State != StatePending || r.Status != status || !strings.Contains(r.Reply, text) {
			t.Errorf("recipient = %+v, want pending with %s and %q", r, status, text)
		}
	default:
		rep := parseDSN(t, recv(t, e.bounces.got, "the bounce"))
		if got := rep.rcpts[0].Get("Status"); got != status {
			t.Errorf("bounce Status = %q, want %q", got, status)
		}
		if got := rep.rcpts[0].Get("Diagnostic-Code"); !strings.Contains(got, text) {
			t.Errorf("bounce Diagnostic-Code = %q, want %q", got, text)
		}
		h.waitUntil("the queue is empty", h.empty)
	}
	if wantTo == "" {
		for ip, s := range e.sinks {
			if _, n := s.counts(); n != 0 {
				t.Errorf("the sink at %s got %d transactions, want none", ip, n)
			}
		}
	}
}

// Postfix's smtp_proto.c: a server whose reply to EHLO names it as our
// own hostname is this host under another address (a NAT, a forgotten
// alias): 5.4.6 when it is the best MX host, 4.4.6 when a better one
// failed; a greeting alone with our name is only logged.
func TestMailLoopsBackByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		opts         map[string]sinkOptions
		rcpt         string
		wantTo       string
		status, text string
		pending      bool
		wantLog      string
	}{
		{name: "the best MX host says our name", rcpt: "bob@named.test",
			opts:   map[string]sinkOptions{"127.0.0.31": {greetAs: "mta.test", ehloAs: "MTA.test"}},
			status: "5.4.6", text: "mail for named.test loops back to myself", wantLog: "host replied to HELO/EHLO with my own hostname"},
		{name: "a worse MX host says our name, the better one is down", rcpt: "bob@named.test",
			opts:   map[string]sinkOptions{"127.0.0.32": {ehloAs: "mta.test"}},
			status: "4.4.6", text: "mail for named.test loops back to myself", pending: true},
		{name: "only the greeting says our name", rcpt: "bob@named.test",
			opts:   map[string]sinkOptions{"127.0.0.31": {greetAs: "mta.test"}},
			wantTo: "127.0.0.31", wantLog: "host greeted me with my own hostname"},
		{name: "another port is not checked", rcpt: "bob@example.test",
			opts:   map[string]sinkOptions{"127.0.0.31": {greetAs: "mta.test", ehloAs: "mta.test"}},
			wantTo: "127.0.0.31"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLoopEnv(t, tc.opts)
			e.o.LocalAddrs = nil // by name only
			if tc.rcpt == "bob@example.test" {
				e.o.Routes = map[string]string{"*": "[mx1.other.test]:2525"}
			}
			if tc.pending {
				// The better host refuses connections.
				delete(e.sinks, "127.0.0.31")
			}
			h := start(t, e.o)
			id := h.enqueue("alice@local.test", tc.rcpt)
			e.checkOutcome(t, h, id, tc.wantTo, tc.status, tc.text, tc.pending)
			if tc.wantLog != "" && !hasLine(h.logs.String(), tc.wantLog) {
				t.Errorf("no log line %q:\n%s", tc.wantLog, h.logs.String())
			}
		})
	}
}

// setupNames finds the names a server gives in its greeting and in its
// reply to EHLO (or HELO after EHLO was refused), among its first bytes.
func TestSetupNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		head        string
		greet, ehlo string
	}{
		{"220 mx.test ESMTP\r\n250-mx.test Hello\r\n250 PIPELINING\r\n", "mx.test", "mx.test"},
		{"220-mx.test ESMTP\r\n220-more\r\n220 end\r\n250 other.test\r\n", "mx.test", "other.test"},
		{"220 mx.test\r\n502 5.5.1 no EHLO\r\n250 helo.test\r\n", "mx.test", "helo.test"},
		{"220 mx.test\r\n250-", "mx.test", ""},
		{"220\r\n250\r\n", "", ""},
		{"", "", ""},
		{"220 a\r\nxy\r\n250 b\r\n", "a", ""},
	} {
		if g, e := setupNames([]byte(tc.head)); g != tc.greet || e != tc.ehlo {
			t.Errorf("setupNames(%q) = %q, %q; want %q, %q", tc.head, g, e, tc.greet, tc.ehlo)
		}
	}
}
