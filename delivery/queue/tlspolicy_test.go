package queue

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/internal/testenv"
	"courriel/tlsconf/dane"
	"courriel/tlsconf/mtasts"
	"courriel/tlsconf/tlsrpt"
)

// The receiver's policies end to end: a real DNS server on loopback (MX,
// A, TXT, TLSA, answering with the AD bit as a validating resolver does),
// a real HTTPS server for the MTA-STS policy with a test CA given through
// the options, and the SMTP sink with a certificate that matches or not.

// stsServer serves https://mta-sts.<domain>/.well-known/mta-sts.txt.
type stsServer struct {
	srv  *httptest.Server
	mu   sync.Mutex
	body string // "" answers 503
}

func newSTSServer(t *testing.T, ca *testCA, body string) *stsServer {
	t.Helper()
	ss := &stsServer{body: body}
	ss.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ss.mu.Lock()
		body := ss.body
		ss.mu.Unlock()
		if body == "" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(body))
	}))
	ss.srv.TLS = ca.serverConfig(t, "mta-sts.example.test")
	ss.srv.StartTLS()
	t.Cleanup(ss.srv.Close)
	return ss
}

func (ss *stsServer) set(body string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.body = body
}

// tlsReports collects what the queue reports for TLSRPT.
type tlsReports struct {
	mu  sync.Mutex
	got []tlsrpt.Result
}

func (r *tlsReports) Record(x tlsrpt.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, x)
}

func (r *tlsReports) find(kind tlsrpt.PolicyType, failure tlsrpt.ResultType) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.got {
		if x.PolicyType != kind || x.Failure != failure || x.PolicyDomain != "example.test" {
			continue
		}
		switch failure {
		case "", tlsrpt.CertificateHostMismatch, tlsrpt.CertificateNotTrusted, tlsrpt.TLSAInvalid, tlsrpt.StartTLSNotSupported:
			// A session's outcome names both ends.
			if x.SendingIP != "127.0.0.1" || x.ReceivingIP != "127.0.0.1" || x.ReceivingMX != "mx.example.test" {
				continue
			}
		}
		return true
	}
	return false
}

type receiverEnv struct {
	t       *testing.T
	dns     *testenv.DNS
	sts     *stsServer
	reports *tlsReports
	o       Options
	stsDir  string
}

const (
	stsEnforce = "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"
	stsTesting = "version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 86400\n"
)

// newReceiverEnv sets up example.test with one MX, mx.example.test at
// 127.0.0.1 (the dialer sends port 25 there to the sink), and a queue with
// DANE and MTA-STS on and the default policy may.
func newReceiverEnv(t *testing.T, ca *testCA, s *sink, stsBody string, records ...string) *receiverEnv {
	t.Helper()
	base := []string{
		"example.test. MX 10 mx.example.test.",
		"mx.example.test. A 127.0.0.1",
	}
	if stsBody != "" {
		base = append(base, `_mta-sts.example.test. TXT "v=STSv1; id=1"`)
	}
	e := &receiverEnv{t: t, dns: testenv.StartDNS(t, append(base, records...)...), reports: &tlsReports{}}
	e.dns.Validating()
	e.sts = newSTSServer(t, ca, stsBody)
	e.stsDir = t.TempDir()
	e.o = baseOptions(t, t.TempDir(), newClock())
	e.o.Resolver = NewResolver(e.dns.Addr)
	e.o.DANE = dane.NewResolver(e.dns.Addr)
	e.o.TLSPolicy = PolicyMay
	e.o.RootCAs = ca.pool
	e.o.Dialer = dialTo(s.addr)
	e.o.TLSReport = e.reports
	e.o.MTASTS = e.stsCache(t, ca)
	return e
}

// stsCache is an MTA-STS cache on the env's directory (a new one is a
// restart).
func (e *receiverEnv) stsCache(t *testing.T, ca *testCA) *mtasts.Cache {
	t.Helper()
	target := e.sts.srv.Listener.Addr().String()
	c, err := mtasts.New(mtasts.Options{
		Dir: e.stsDir,
		Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, e.dns.Addr)
		}},
		RootCAs: ca.pool,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != "mta-sts.example.test:443" {
				return nil, errors.New("unexpected policy host " + addr)
			}
			return (&net.Dialer{}).DialContext(ctx, network, target)
		},
		FetchTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// leafConfig is a server config whose chain is leaf then the CA (DANE-TA
// needs the anchor sent), with the leaf for names.
func leafConfig(t *testing.T, ca *testCA, names ...string) (*tls.Config, *x509.Certificate) {
	t.Helper()
	cfg := ca.serverConfig(t, names...)
	cfg.Certificates[0].Certificate = append(cfg.Certificates[0].Certificate, ca.cert.Raw)
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return cfg, leaf
}

func tlsaRecord(usage, selector, mtype int, b []byte) string {
	return tlsaAt("mx.example.test", usage, selector, mtype, b)
}

func tlsaAt(host string, usage, selector, mtype int, b []byte) string {
	h := sha256.Sum256(b)
	return "_25._tcp." + host + ". TLSA " + string(rune('0'+usage)) + " " + string(rune('0'+selector)) + " " + string(rune('0'+mtype)) + " " + hex.EncodeToString(h[:])
}

// viaCNAME makes mx.example.test a CNAME of real.host.test (127.0.0.1).
func viaCNAME(e *receiverEnv) {
	e.dns.Remove("mx.example.test")
	e.dns.Set(e.t, "mx.example.test. CNAME real.host.test.", "real.host.test. A 127.0.0.1")
}

// recordSNI makes cfg note the SNI each client sends.
func recordSNI(cfg *tls.Config, got *sync.Map) *tls.Config {
	cfg = cfg.Clone()
	cfg.GetConfigForClient = func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		got.Store(h.ServerName, true)
		return nil, nil
	}
	return cfg
}

// deliverOnce runs one message and returns the sink's transactions and, when
// nothing was delivered, the recipient's recorded reply and status.
func deliverOnce(t *testing.T, o Options, s *sink) (txs []tx, reply, status string, logs string) {
	t.Helper()
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@example.test")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if errors.Is(err, ErrNotFound) || err == nil && m.Recipients[0].State == StateDelivered {
		return s.transactions(), "", "", h.logs.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	r := m.Recipients[0]
	return s.transactions(), r.Reply, r.Status, h.logs.String()
}

func TestReceiverTLSPolicies(t *testing.T) {
	t.Parallel()
	ca := newCA(t)    // the web PKI of the test: MTA-STS certificates
	other := newCA(t) // a CA nobody trusts
	good, goodLeaf := leafConfig(t, ca, "mx.example.test")
	wrongName, _ := leafConfig(t, ca, "elsewhere.test")
	untrusted, untrustedLeaf := leafConfig(t, other, "mx.example.test")
	realHost, _ := leafConfig(t, other, "real.host.test")
	var sniReal, sniMX sync.Map

	cases := []struct {
		name     string
		sink     sinkOptions
		sts      string
		records  []string
		prepare  func(e *receiverEnv)
		wantSent bool
		wantTLS  bool
		wantWhy  string // in the log (sent) or the recorded reply (deferred)
		status   string
		report   tlsrpt.PolicyType
		failure  tlsrpt.ResultType
		sni      *sync.Map // where the sink noted the SNI it was sent
		wantSNI  string
	}{
		{name: "mta-sts enforce, good certificate: delivered with TLS", sink: sinkOptions{startTLS: good}, sts: stsEnforce,
			wantSent: true, wantTLS: true, wantWhy: "mta-sts enforce", report: tlsrpt.PolicySTS},
		{name: "mta-sts enforce, certificate for another name: deferred", sink: sinkOptions{startTLS: wrongName}, sts: stsEnforce,
			wantWhy: "mta-sts enforce", status: "4.7.5", report: tlsrpt.PolicySTS, failure: tlsrpt.CertificateHostMismatch},
		{name: "mta-sts enforce, untrusted certificate: deferred", sink: sinkOptions{startTLS: untrusted}, sts: stsEnforce,
			wantWhy: "mta-sts enforce", status: "4.7.5", report: tlsrpt.PolicySTS, failure: tlsrpt.CertificateNotTrusted},
		{name: "mta-sts enforce, no STARTTLS: deferred, never in clear", sink: sinkOptions{}, sts: stsEnforce,
			wantWhy: "mta-sts enforce", status: "4.7.4", report: tlsrpt.PolicySTS, failure: tlsrpt.StartTLSNotSupported},
		{name: "mta-sts enforce, MX not listed: deferred", sink: sinkOptions{startTLS: good}, sts: strings.Replace(stsEnforce, "mx.example.test", "other.example.test", 1),
			wantWhy: "not listed in the MTA-STS policy", status: "4.7.5", report: tlsrpt.PolicySTS, failure: tlsrpt.ValidationFailure},
		{name: "mta-sts testing, bad certificate: delivered and reported", sink: sinkOptions{startTLS: wrongName}, sts: stsTesting,
			wantSent: true, wantTLS: true, wantWhy: "mta-sts testing", report: tlsrpt.PolicySTS, failure: tlsrpt.CertificateHostMismatch},
		{name: "dane-ee match: delivered though no CA vouches", sink: sinkOptions{startTLS: untrusted},
			records:  []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantTLS: true, wantWhy: "dane", report: tlsrpt.PolicyTLSA},
		{name: "dane-ee mismatch: deferred", sink: sinkOptions{startTLS: good},
			records: []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantWhy: "dane", status: "4.7.5", report: tlsrpt.PolicyTLSA, failure: tlsrpt.TLSAInvalid},
		{name: "dane-ee, no STARTTLS: deferred", sink: sinkOptions{},
			records: []string{tlsaRecord(3, 1, 1, goodLeaf.RawSubjectPublicKeyInfo)},
			wantWhy: "dane", status: "4.7.4", report: tlsrpt.PolicyTLSA, failure: tlsrpt.StartTLSNotSupported},
		{name: "dane-ta: delivered", sink: sinkOptions{startTLS: untrusted},
			records:  []string{tlsaRecord(2, 0, 1, other.cert.Raw)},
			wantSent: true, wantTLS: true, wantWhy: "dane", report: tlsrpt.PolicyTLSA},
		{name: "dane-ta, leaf for another name: deferred", sink: sinkOptions{startTLS: wrongName},
			records: []string{tlsaRecord(2, 0, 1, ca.cert.Raw)},
			wantWhy: "dane", status: "4.7.5", report: tlsrpt.PolicyTLSA, failure: tlsrpt.TLSAInvalid},
		{name: "dane beats mta-sts: DANE-EE match with a certificate MTA-STS would refuse", sink: sinkOptions{startTLS: untrusted}, sts: stsEnforce,
			records:  []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantTLS: true, wantWhy: "dane", report: tlsrpt.PolicyTLSA},
		{name: "insecure MX: no DANE, the default may delivers", sink: sinkOptions{startTLS: good},
			records:  []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			prepare:  func(e *receiverEnv) { e.dns.Insecure("example.test") },
			wantSent: true, wantTLS: true, wantWhy: "default may"},
		{name: "only PKIX usages: unauthenticated TLS required", sink: sinkOptions{},
			records: []string{tlsaRecord(1, 1, 1, goodLeaf.RawSubjectPublicKeyInfo)},
			wantWhy: "no usable TLSA", status: "4.7.4", report: tlsrpt.PolicyTLSA, failure: tlsrpt.StartTLSNotSupported},
		{name: "only PKIX usages, untrusted certificate: delivered encrypted", sink: sinkOptions{startTLS: untrusted},
			records:  []string{tlsaRecord(0, 1, 1, goodLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantTLS: true, wantWhy: "no usable TLSA", report: tlsrpt.PolicyTLSA},
		{name: "TLSA lookup fails: host not used", sink: sinkOptions{startTLS: good},
			prepare: func(e *receiverEnv) { e.dns.ServFail("_25._tcp.mx.example.test") },
			wantWhy: "TLSA lookup", status: "4.7.5", report: tlsrpt.PolicyTLSA, failure: tlsrpt.DNSSECInvalid},
		{name: "dane through a CNAME: TLSA at the target, SNI the target", sink: sinkOptions{startTLS: recordSNI(realHost, &sniReal)},
			records: []string{tlsaAt("real.host.test", 2, 0, 1, other.cert.Raw)}, prepare: viaCNAME,
			wantSent: true, wantTLS: true, wantWhy: "dane (real.host.test)", report: tlsrpt.PolicyTLSA, sni: &sniReal, wantSNI: "real.host.test"},
		{name: "dane through a CNAME: no TLSA at the target, the MX name's", sink: sinkOptions{startTLS: recordSNI(untrusted, &sniMX)},
			records: []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)}, prepare: viaCNAME,
			wantSent: true, wantTLS: true, wantWhy: "dane (mx.example.test)", report: tlsrpt.PolicyTLSA, sni: &sniMX, wantSNI: "mx.example.test"},
		{name: "admin policy wins over DANE", sink: sinkOptions{startTLS: good},
			records:  []string{tlsaRecord(3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			prepare:  func(e *receiverEnv) { e.o.TLSPolicies = map[string]Policy{"Example.Test": PolicyEncrypt} },
			wantSent: true, wantTLS: true, wantWhy: "admin policy encrypt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, tc.sink)
			e := newReceiverEnv(t, ca, s, tc.sts, tc.records...)
			if tc.prepare != nil {
				tc.prepare(e)
			}
			txs, reply, status, logs := deliverOnce(t, e.o, s)
			if !tc.wantSent {
				if len(txs) != 0 {
					t.Fatalf("sent %d transactions, want none", len(txs))
				}
				if status != tc.status || !strings.Contains(reply, tc.wantWhy) {
					t.Errorf("deferred with %s %q, want %s and %q", status, reply, tc.status, tc.wantWhy)
				}
			} else {
				if len(txs) != 1 || txs[0].tls != tc.wantTLS {
					t.Fatalf("transactions %+v, want one with tls=%v", txs, tc.wantTLS)
				}
				if !hasLine(logs, "msg=delivery", `tls="TLS 1.3 (`, tc.wantWhy) {
					t.Errorf("no delivery line with TLS 1.3 and %q in\n%s", tc.wantWhy, logs)
				}
			}
			if tc.sni != nil {
				if _, ok := tc.sni.Load(tc.wantSNI); !ok {
					t.Errorf("SNI %q not sent", tc.wantSNI)
				}
			}
			if tc.report != "" && !e.reports.find(tc.report, tc.failure) {
				t.Errorf("no TLSRPT result %s/%q in %+v", tc.report, tc.failure, e.reports.got)
			}
		})
	}
}

// A cached MTA-STS policy holds across a restart while the policy host is
// down: enforce still refuses a bad certificate.
func TestMTASTSCachedPolicyAcrossRestart(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	good, _ := leafConfig(t, ca, "mx.example.test")
	wrongName, _ := leafConfig(t, ca, "elsewhere.test")

	s := newSink(t, sinkOptions{startTLS: good})
	e := newReceiverEnv(t, ca, s, stsEnforce)
	if txs, reply, _, _ := deliverOnce(t, e.o, s); len(txs) != 1 {
		t.Fatalf("first delivery: %d transactions, reply %q", len(txs), reply)
	}

	// The policy host goes down, the TXT id changes (a fetch is due), and
	// the MX now shows a certificate for another name.
	e.sts.set("")
	e.dns.Remove("_mta-sts.example.test")
	e.dns.Set(t, `_mta-sts.example.test. TXT "v=STSv1; id=2"`)
	bad := newSink(t, sinkOptions{startTLS: wrongName})
	o := e.o
	o.Dir = t.TempDir()
	o.Dialer = dialTo(bad.addr)
	o.MTASTS = e.stsCache(t, ca) // a restart: only the disk remembers
	txs, reply, status, _ := deliverOnce(t, o, bad)
	if len(txs) != 0 || status != "4.7.5" || !strings.Contains(reply, "mta-sts enforce") {
		t.Fatalf("with the cached policy: %d transactions, %s %q", len(txs), status, reply)
	}
	if !e.reports.find(tlsrpt.PolicySTS, tlsrpt.STSPolicyFetchError) && !e.reports.find(tlsrpt.PolicySTS, tlsrpt.CertificateHostMismatch) {
		t.Errorf("nothing reported: %+v", e.reports.got)
	}
}

// hasLine reports whether one line of logs holds every part.
func hasLine(logs string, parts ...string) bool {
	for line := range strings.SplitSeq(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// RFC 8461 §5.1: a cached enforce policy that lists none of the domain's
// MX hosts is fetched again before the message is deferred; the policy
// host's new policy (same TXT id: a resolver's cache may still hide the
// new one) lets the message go.
func TestMTASTSRefetchBeforeDeferring(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	good, _ := leafConfig(t, ca, "mx.example.test")
	old := strings.Replace(stsEnforce, "mx.example.test", "old-mx.example.test", 1)
	for _, tc := range []struct{ name, newPolicy, wantWhy string }{
		{"the new policy lists the MX", stsEnforce, "mta-sts enforce (example.test)"},
		{"the policy is withdrawn (mode none)", "version: STSv1\nmode: none\nmax_age: 86400\n", "default may"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t, sinkOptions{startTLS: good})
			e := newReceiverEnv(t, ca, s, old)
			if res := e.o.MTASTS.Get(context.Background(), "example.test"); res.Policy == nil || res.Policy.Match("mx.example.test") {
				t.Fatalf("old policy not cached: %+v", res)
			}
			e.o.MTASTS = e.stsCache(t, ca) // a restart: the policy comes from the disk, fetched a while ago
			e.sts.set(tc.newPolicy)        // the domain moved its MX and updated its policy
			txs, reply, status, logs := deliverOnce(t, e.o, s)
			if len(txs) != 1 || !txs[0].tls {
				t.Fatalf("not delivered after the policy changed: %d transactions, %s %q\n%s", len(txs), status, reply, logs)
			}
			if !hasLine(logs, "MTA-STS policy updated after it refused every MX host") || !hasLine(logs, "msg=delivery", tc.wantWhy) {
				t.Errorf("logs do not show the refetch and the delivery under the new policy (%q):\n%s", tc.wantWhy, logs)
			}
		})
	}

	// A policy fetched just now that lists another MX: deferred, the host
	// not asked again at once.
	s2 := newSink(t, sinkOptions{startTLS: good})
	e2 := newReceiverEnv(t, ca, s2, old)
	txs, reply, status, _ := deliverOnce(t, e2.o, s2)
	if len(txs) != 0 || status != "4.7.5" || !strings.Contains(reply, "not listed in the MTA-STS policy") {
		t.Fatalf("with the policy unchanged: %d transactions, %s %q", len(txs), status, reply)
	}
}

// DANE for a static route and the relayhost, with Options.DANERoutes
// (Postfix: smtp_tls_security_level = dane with a [relayhost]): the TLSA
// records at _PORT._tcp.NAME authenticate the host when its address
// records are validated; without DANERoutes, or with an unsigned name,
// the default level applies.
func TestDANEForRoutes(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	other := newCA(t)
	good, _ := leafConfig(t, ca, "relay.example.test")
	untrusted, untrustedLeaf := leafConfig(t, other, "relay.example.test")
	relayA := "relay.example.test. A 127.0.0.1"
	relayMX := "relay.example.test. MX 10 mx.relay.example.test."
	mxOfRelayA := "mx.relay.example.test. A 127.0.0.1"
	cases := []struct {
		name       string
		cert       *tls.Config
		records    []string
		relayhost  string // "": the static route
		route      string // "": relay.example.test:25
		daneRoutes bool
		insecure   bool
		wantSent   bool
		wantWhy    string
	}{
		{name: "route, DANE-EE match: delivered though no CA vouches", cert: untrusted, daneRoutes: true,
			records:  []string{relayA, tlsaAt("relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "dane (relay.example.test)"},
		{name: "route, DANE-EE mismatch: deferred", cert: good, daneRoutes: true,
			records: []string{relayA, tlsaAt("relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantWhy: "dane (relay.example.test)"},
		{name: "route, DANE-EE mismatch without dane_routes: the default may delivers", cert: good,
			records:  []string{relayA, tlsaAt("relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "default may"},
		{name: "route, unsigned name: no DANE, the default may delivers", cert: good, daneRoutes: true, insecure: true,
			records:  []string{relayA, tlsaAt("relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "default may"},
		{name: "relayhost on 587, DANE-TA match at _587._tcp: delivered", cert: untrusted, daneRoutes: true, relayhost: "relay.example.test:587",
			records:  []string{relayA, "_587._tcp." + strings.TrimPrefix(tlsaAt("relay.example.test", 2, 0, 1, other.cert.Raw), "_25._tcp.")},
			wantSent: true, wantWhy: "dane (relay.example.test)"},
		{name: "relayhost on 587, TLSA only at _25._tcp: no DANE", cert: good, daneRoutes: true, relayhost: "relay.example.test:587",
			records:  []string{relayA, tlsaAt("relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "default may"},
		// A nexthop without brackets: its MX hosts, DANE as for a
		// recipient domain's when the MX lookup is validated.
		{name: "route by MX, DANE-EE at the MX host: delivered", cert: untrusted, daneRoutes: true, route: "relay.example.test",
			records:  []string{relayMX, mxOfRelayA, tlsaAt("mx.relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "dane (mx.relay.example.test)"},
		{name: "route by MX, DANE-TA naming the nexthop only: delivered", cert: untrusted, daneRoutes: true, route: "relay.example.test",
			records:  []string{relayMX, mxOfRelayA, tlsaAt("mx.relay.example.test", 2, 0, 1, other.cert.Raw)},
			wantSent: true, wantWhy: "dane (mx.relay.example.test)"},
		{name: "relayhost by MX, DANE-EE mismatch at the MX host: deferred", cert: good, daneRoutes: true, relayhost: "relay.example.test",
			records: []string{relayMX, mxOfRelayA, tlsaAt("mx.relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantWhy: "dane (mx.relay.example.test)"},
		{name: "relayhost by MX, unsigned MX records: no DANE, the default may delivers", cert: good, daneRoutes: true, relayhost: "relay.example.test", insecure: true,
			records:  []string{relayMX, mxOfRelayA, tlsaAt("mx.relay.example.test", 3, 1, 1, untrustedLeaf.RawSubjectPublicKeyInfo)},
			wantSent: true, wantWhy: "default may"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{startTLS: tc.cert})
			e := newReceiverEnv(t, ca, s, "", tc.records...)
			if tc.insecure {
				e.dns.Insecure("relay.example.test")
			}
			e.o.DANERoutes = tc.daneRoutes
			switch {
			case strings.HasSuffix(tc.relayhost, ":587"):
				e.o.Relayhost = &Relayhost{Addr: tc.relayhost}
				e.o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
					if addr != "127.0.0.1:587" {
						return nil, errors.New("connection refused (test dialer)")
					}
					return (&net.Dialer{}).DialContext(ctx, network, s.addr)
				}
			case tc.relayhost != "":
				e.o.Relayhost = &Relayhost{Addr: tc.relayhost}
			default:
				e.o.Routes = map[string]string{"example.test": cmp.Or(tc.route, "relay.example.test:25")}
			}
			txs, reply, status, logs := deliverOnce(t, e.o, s)
			if !tc.wantSent {
				if len(txs) != 0 || status != "4.7.5" || !strings.Contains(reply, tc.wantWhy) {
					t.Fatalf("%d transactions, %s %q; want deferred 4.7.5 with %q", len(txs), status, reply, tc.wantWhy)
				}
				return
			}
			if len(txs) != 1 || !txs[0].tls {
				t.Fatalf("transactions %+v (reply %s %q), want one with TLS", txs, status, reply)
			}
			if !hasLine(logs, "msg=delivery", `tls="TLS 1.3 (`, tc.wantWhy) {
				t.Errorf("no delivery line with TLS 1.3 and %q in\n%s", tc.wantWhy, logs)
			}
		})
	}
}

// A DANE-TA leaf's subjectAltName matches as OpenSSL's X509_check_host
// (Postfix's) matches it: a wildcard only over two labels at least, so
// "*.test" names no host where Go's VerifyHostname took it for mx.test,
// and a CA trusted by a TLSA 2 x x record vouched for every host of a
// TLD. A DANE-EE record that matches the leaf needs no name.
func TestDANETAWildcardOverOneLabel(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	digest := func(b []byte) []byte { h := sha256.Sum256(b); return h[:] }
	ta := dane.Record{Usage: dane.UsageDANETA, Selector: dane.SelectorCert, MatchingType: dane.MatchSHA256, Data: digest(ca.cert.Raw)}
	for _, tc := range []struct {
		name string
		sans []string
		host string
		ee   bool // a DANE-EE record for the leaf too
		ok   bool
	}{
		{"*.test for mx.test", []string{"*.test"}, "mx.test", false, false},
		{"*.example.test for mx.example.test", []string{"*.example.test"}, "mx.example.test", false, true},
		{"*.example.test for a.b.example.test", []string{"*.example.test"}, "a.b.example.test", false, false},
		{"*.test. for mx.test", []string{"*.test."}, "mx.test", false, false},
		{"mx.test for mx.test", []string{"mx.test"}, "mx.test", false, true},
		{"*.test and mx.test for mx.test", []string{"*.test", "mx.test"}, "mx.test", false, true},
		{"*.test for mx.test, DANE-EE match", []string{"*.test"}, "mx.test", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, leaf := leafConfig(t, ca, tc.sans...)
			records := []dane.Record{ta}
			if tc.ee {
				records = append(records, dane.Record{Usage: dane.UsageDANEEE, Selector: dane.SelectorCert, MatchingType: dane.MatchSHA256, Data: digest(leaf.Raw)})
			}
			plan := &tlsPlan{level: PolicyEncrypt, dane: records, names: []string{tc.host}}
			cfg := (&Queue{}).tlsConfig(tc.host, plan, nil)
			err := cfg.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf, ca.cert}})
			if tc.ok && err != nil || !tc.ok && !errors.Is(err, dane.ErrNoMatch) {
				t.Errorf("VerifyConnection = %v, want ok %v (a refusal is dane.ErrNoMatch)", err, tc.ok)
			}
		})
	}
}
