package queue

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"courriel/internal/testenv"
)

// relayZone is the DNS of the nexthop tests: relay.test has two MX hosts
// and an address of its own, each on a loopback address the test dialer
// sends to a sink.
var relayZone = []string{
	"relay.test. MX 10 mx1.relay.test.",
	"relay.test. MX 20 mx2.relay.test.",
	"relay.test. A 127.0.0.13",
	"mx1.relay.test. A 127.0.0.11",
	"mx2.relay.test. A 127.0.0.12",
	"plain.test. A 127.0.0.13",
	"nullmx.test. MX 0 .",
	"badmx.test. MX 10 gone.badmx.test.",
	"away.test. MX 10 mx1.elsewhere.test.",
	"mx1.elsewhere.test. A 127.0.0.11",
}

// nexthopEnv is a queue whose relayhost or static route is under test:
// the test DNS server answers its lookups, and its dialer sends each
// address of relayZone to that host's sink, noting the ports dialled.
type nexthopEnv struct {
	dns      *testenv.DNS
	sinks    map[string]*sink // "mx1", "mx2", "host"
	o        Options
	bounces  *bounces
	mu       sync.Mutex
	dialled  []string        // "ip:port" in order, guarded by mu
	refusing map[string]bool // the sinks whose address refuses connections
}

func newNexthopEnv(t *testing.T, refusing ...string) *nexthopEnv {
	t.Helper()
	e := &nexthopEnv{dns: testenv.StartDNS(t, relayZone...), sinks: map[string]*sink{}, bounces: newBounces(), refusing: map[string]bool{}}
	for _, name := range refusing {
		e.refusing[name] = true
	}
	byIP := map[string]string{"127.0.0.11": "mx1", "127.0.0.12": "mx2", "127.0.0.13": "host"}
	for _, name := range byIP {
		e.sinks[name] = newSink(t, sinkOptions{})
	}
	// A real "connection refused" (testenv.RefusingAddr).
	closed := testenv.RefusingAddr(t)
	e.o = baseOptions(t, t.TempDir(), newClock())
	e.o.Resolver = NewResolver(e.dns.Addr)
	e.o.Bounce = e.bounces.fn
	e.o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		e.mu.Lock()
		e.dialled = append(e.dialled, addr)
		e.mu.Unlock()
		ip, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		name, ok := byIP[ip]
		if !ok {
			return nil, errors.New("connection refused (test dialer: " + addr + ")")
		}
		target := e.sinks[name].addr
		if e.refusing[name] {
			target = closed
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	return e
}

// received names the sink that got the message, "" when none did.
func (e *nexthopEnv) received() string {
	got := ""
	for name, s := range e.sinks {
		if _, n := s.counts(); n > 0 {
			got += name
		}
	}
	return got
}

// Postfix's nexthop semantics, for the relayhost and a static route alike:
// "host" and "host:port" look up host's MX records and try those hosts in
// preference order (on the port given), host's own addresses when it has
// no MX; "[host]" is the host itself. A relayhost that does not resolve
// defers (Postfix: "relayhost configuration problem", 4.3.5) where a
// route bounces, as Postfix's transport_maps nexthop does.
func TestNexthopMXLookup(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		nexthop  string
		refusing []string // sinks refusing connections
		servfail string   // a name whose lookups fail for now
		// Delivered: the sink that gets it and the log's relay=.
		wantSink, wantRelay string
		// Not delivered: the relayhost's deferral status, and the route's
		// status (bounced when routeBounce).
		relayStatus, routeStatus string
		routeBounce              bool
		wantText                 string // in the recorded reply or the bounce
		// The whole nexthop is remembered dead, under its own key
		// (Postfix: per nexthop), not per MX host.
		wantDead bool
	}{
		{name: "the preferred MX host", nexthop: "relay.test",
			wantSink: "mx1", wantRelay: "relay=mx1.relay.test[127.0.0.11]:25"},
		{name: "the second MX host when the first refuses connections", nexthop: "relay.test", refusing: []string{"mx1"},
			wantSink: "mx2", wantRelay: "relay=mx2.relay.test[127.0.0.12]:25"},
		{name: "no MX: the host's own address", nexthop: "plain.test",
			wantSink: "host", wantRelay: "relay=plain.test[127.0.0.13]:25"},
		{name: "brackets: the host itself, its MX ignored", nexthop: "[relay.test]",
			wantSink: "host", wantRelay: "relay=relay.test[127.0.0.13]:25"},
		{name: "a port without brackets: the MX hosts on that port", nexthop: "relay.test:2525",
			wantSink: "mx1", wantRelay: "relay=mx1.relay.test[127.0.0.11]:2525"},
		{name: "brackets and a port: the host on that port", nexthop: "[Relay.Test.]:2525",
			wantSink: "host", wantRelay: "relay=relay.test[127.0.0.13]:2525"},
		{name: "MX lookup fails for now: deferred", nexthop: "relay.test", servfail: "relay.test",
			relayStatus: "4.4.3", routeStatus: "4.4.3", wantText: "MX lookup for relay.test failed"},
		{name: "an MX host's address lookup fails for now: the next MX host", nexthop: "relay.test", servfail: "mx1.relay.test",
			wantSink: "mx2", wantRelay: "relay=mx2.relay.test[127.0.0.12]:25"},
		{name: "no such name", nexthop: "nosuch.test",
			relayStatus: "4.3.5", routeStatus: "5.4.4", routeBounce: true, wantText: "host or domain name not found: nosuch.test"},
		{name: "no such name in brackets", nexthop: "[nosuch.test]:587",
			relayStatus: "4.3.5", routeStatus: "5.4.4", routeBounce: true, wantText: "host or domain name not found: nosuch.test"},
		{name: "null MX", nexthop: "nullmx.test",
			relayStatus: "4.3.5", routeStatus: "5.4.4", routeBounce: true, wantText: "null MX"},
		{name: "the only MX host does not exist", nexthop: "badmx.test",
			relayStatus: "4.3.5", routeStatus: "5.4.4", routeBounce: true, wantText: "MX host not found: gone.badmx.test"},
		{name: "every MX host refuses: deferred", nexthop: "relay.test:2525", refusing: []string{"mx1", "mx2"},
			relayStatus: "4.4.1", routeStatus: "4.4.1", wantText: "mx2.relay.test[127.0.0.12]:2525", wantDead: true},
	}
	for _, tc := range cases {
		for _, kind := range []string{"relayhost", "route"} {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				e := newNexthopEnv(t, tc.refusing...)
				if tc.servfail != "" {
					e.dns.ServFail(tc.servfail)
				}
				if kind == "relayhost" {
					e.o.Relayhost = &Relayhost{Addr: tc.nexthop}
				} else {
					e.o.Routes = map[string]string{"example.test": tc.nexthop}
				}
				h := start(t, e.o)
				id := h.enqueue("alice@local.test", "bob@example.test")
				if tc.wantSink != "" {
					h.waitUntil("the queue is empty", h.empty)
					if got := e.received(); got != tc.wantSink {
						t.Fatalf("delivered to %q, want %q\n%s", got, tc.wantSink, h.logs.String())
					}
					if !hasLine(h.logs.String(), "msg=delivery", tc.wantRelay, `status="sent`) {
						t.Errorf("no delivery line with %s:\n%s", tc.wantRelay, h.logs.String())
					}
					return
				}
				status := tc.relayStatus
				if kind == "route" {
					status = tc.routeStatus
				}
				if kind == "route" && tc.routeBounce {
					report := recv(t, e.bounces.got, "the bounce")
					rep := parseDSN(t, report)
					if got := rep.rcpts[0].Get("Status"); got != status {
						t.Errorf("bounce Status = %q, want %q", got, status)
					}
					if !strings.Contains(string(report), tc.wantText) {
						t.Errorf("bounce lacks %q:\n%s", tc.wantText, report)
					}
					h.waitUntil("the queue is empty", h.empty)
					return
				}
				h.waitJob()
				m, _, err := h.q.Show(id)
				if err != nil {
					t.Fatal(err)
				}
				if r := m.Recipients[0]; r.State != StatePending || r.Status != status || !strings.Contains(r.Reply, tc.wantText) {
					t.Errorf("recipient = %+v, want pending with %s and %q", r, status, tc.wantText)
				}
				if got := e.received(); got != "" || e.bounces.count() != 0 {
					t.Errorf("delivered to %q, %d bounces; want neither", got, e.bounces.count())
				}
				key := "relay"
				if kind == "route" {
					key = "route:" + tc.nexthop
				}
				if tc.wantDead && !hasLine(h.logs.String(), "deliveries to it suspended", "destination="+key+" ") {
					t.Errorf("the destination %s is not remembered dead:\n%s", key, h.logs.String())
				}
				if status == "4.3.5" && !hasLine(h.logs.String(), "relayhost configuration problem") {
					t.Errorf("no warning about the relayhost in the log:\n%s", h.logs.String())
				}
			})
		}
	}
}

// Under verify, an MX host that an MX lookup nobody validated gave for a
// relayhost or route is checked against the nexthop, as Postfix's
// "secure" level checks it (nexthop, dot-nexthop), not against the name
// DNS gave: whoever forges relay.test's MX to their own host, with a
// certificate a public CA gave them for it, gets neither the message nor
// the relayhost's password.
func TestNexthopMXHostVerifiedAgainstNexthop(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, tc := range []struct {
		name, nexthop, sink string
		certFor             []string
		wantSent            bool
	}{
		{"an MX host under the nexthop", "relay.test", "mx1", []string{"mx1.relay.test"}, true},
		{"a certificate for the nexthop itself", "away.test", "mx1", []string{"away.test"}, true},
		{"a wildcard under the nexthop", "away.test", "mx1", []string{"*.away.test"}, true},
		{"an MX host elsewhere, with a valid certificate for its own name", "away.test", "mx1", []string{"mx1.elsewhere.test"}, false},
		{"brackets: the host itself, by its own name", "[relay.test]", "host", []string{"relay.test"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newNexthopEnv(t)
			e.sinks[tc.sink] = newSink(t, sinkOptions{startTLS: ca.serverConfig(t, tc.certFor...), user: "relayuser", password: "s3cret"})
			e.o.Relayhost = &Relayhost{Addr: tc.nexthop, Username: "relayuser", Password: "s3cret"}
			e.o.TLSPolicy = PolicyVerify
			e.o.RootCAs = ca.pool
			h := start(t, e.o)
			id := h.enqueue("alice@local.test", "bob@example.test")
			if tc.wantSent {
				h.waitUntil("the queue is empty", h.empty)
				if got := e.sinks[tc.sink].transactions(); len(got) != 1 || !got[0].tls || got[0].user != "relayuser" {
					t.Errorf("transactions = %+v; want one over TLS as relayuser", got)
				}
				return
			}
			h.waitJob()
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Status != "4.7.5" {
				t.Errorf("recipient = %+v, want pending with 4.7.5", r)
			}
			if got := e.sinks[tc.sink].transactions(); len(got) != 0 {
				t.Errorf("the forged MX host got %+v", got)
			}
		})
	}
}
