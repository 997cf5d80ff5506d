package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// reportEndpoint is a domain's HTTPS report endpoint on loopback.
type reportEndpoint struct {
	srv    *httptest.Server
	mu     sync.Mutex
	status int
	posts  []post
}

type post struct {
	method, ctype, path string
	body                []byte
}

func newReportEndpoint(t *testing.T, cert tls.Certificate) *reportEndpoint {
	e := &reportEndpoint{status: http.StatusOK}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		e.mu.Lock()
		e.posts = append(e.posts, post{r.Method, r.Header.Get("Content-Type"), r.URL.Path, b})
		status := e.status
		e.mu.Unlock()
		w.WriteHeader(status)
	}))
	e.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *reportEndpoint) set(status int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.status = status
}

func (e *reportEndpoint) received() []post {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.posts)
}

// RFC 8460 §3, §5.4: the report POSTed gzipped to the https: rua, the
// endpoint's certificate verified, a failed POST retried with backoff for
// 24 hours, an untrusted endpoint never sent the report.
func TestReportOverHTTPS(t *testing.T) {
	ca := testenv.NewCA(t)
	other := testenv.NewCA(t) // nobody trusts it
	good := newReportEndpoint(t, ca.IssueCertificate(t, "reports.example.test"))
	untrusted := newReportEndpoint(t, other.IssueCertificate(t, "reports.bad.test"))
	dns := testenv.StartDNS(t,
		`_smtp._tls.example.test. TXT "v=TLSRPTv1; rua=https://reports.example.test/v1/tlsrpt"`,
		`_smtp._tls.bad.test. TXT "v=TLSRPTv1; rua=https://reports.bad.test/"`)
	targets := map[string]string{
		"reports.example.test:443": good.srv.Listener.Addr().String(),
		"reports.bad.test:443":     untrusted.srv.Listener.Addr().String(),
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		to, ok := targets[addr]
		if !ok {
			return nil, errors.New("unexpected endpoint " + addr)
		}
		return (&net.Dialer{}).DialContext(ctx, network, to)
	}
	now := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	var mails int
	dir := t.TempDir()
	rec, err := New(Options{
		Dir: dir, Hostname: "mail.ours.test", Resolver: dnsResolver(dns.Addr),
		Send:    func(context.Context, string, []string, []byte) error { mails++; return nil },
		RootCAs: ca.Pool(), DialContext: dial, PostTimeout: 5 * time.Second,
		Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	rec.Record(Result{PolicyDomain: "example.test", PolicyType: PolicyTLSA, PolicyStrings: []string{"3 1 1 aa"}, ReceivingMX: "mx.example.test"})
	rec.Record(Result{PolicyDomain: "example.test", PolicyType: PolicyTLSA, PolicyStrings: []string{"3 1 1 aa"}, ReceivingMX: "mx.example.test", Failure: TLSAInvalid, FailureReason: "no match"})
	rec.Record(Result{PolicyDomain: "bad.test", PolicyType: PolicyNotFound})
	ctx := context.Background()

	// The next day, the endpoint is down: nothing lost, a retry kept.
	good.set(http.StatusServiceUnavailable)
	now = now.Add(24 * time.Hour)
	rec.SendDue(ctx)
	if n := len(good.received()); n != 1 {
		t.Fatalf("%d POSTs on the first try, want 1", n)
	}
	pending := func() int {
		names, _ := filepath.Glob(filepath.Join(dir, postDir, "*.json"))
		return len(names)
	}
	if pending() != 2 {
		t.Fatalf("%d POSTs kept for a retry, want 2 (example.test and bad.test)", pending())
	}
	if _, err := os.Stat(filepath.Join(dir, "2026-12-05.json")); err == nil {
		t.Errorf("the day's counts are still there: its reports were handed over")
	}
	// Not again before the backoff.
	good.set(http.StatusOK)
	now = now.Add(time.Minute)
	rec.SendDue(ctx)
	if n := len(good.received()); n != 1 {
		t.Fatalf("retried before the backoff: %d POSTs", n)
	}
	now = now.Add(postFirstRetry)
	rec.SendDue(ctx)
	got := good.received()
	if len(got) != 2 {
		t.Fatalf("%d POSTs after the backoff, want 2", len(got))
	}
	p := got[1]
	if p.method != http.MethodPost || p.ctype != "application/tlsrpt+gzip" || p.path != "/v1/tlsrpt" {
		t.Errorf("POST %s %s with %q", p.method, p.path, p.ctype)
	}
	zr, err := gzip.NewReader(bytes.NewReader(p.body))
	if err != nil {
		t.Fatalf("body not gzipped: %v", err)
	}
	js, _ := io.ReadAll(zr)
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatalf("body: %v\n%s", err, js)
	}
	if len(rep.Policies) != 1 || rep.Policies[0].Policy.Domain != "example.test" || rep.Policies[0].Summary.Success != 1 || rep.Policies[0].Summary.Failure != 1 ||
		rep.DateRange.Start != "2026-12-05T00:00:00Z" || !strings.HasSuffix(rep.ReportID, "@mail.ours.test") {
		t.Errorf("report %s", js)
	}
	if mails != 0 {
		t.Errorf("%d reports mailed, the records have no mailto:", mails)
	}
	// The untrusted endpoint never got the report; it is dropped after 24 hours.
	if n := len(untrusted.received()); n != 0 {
		t.Errorf("the endpoint with an untrusted certificate received %d POSTs", n)
	}
	if pending() != 1 {
		t.Fatalf("%d POSTs kept, want only bad.test's", pending())
	}
	for range 20 {
		now = now.Add(3 * time.Hour)
		rec.SendDue(ctx)
	}
	if pending() != 0 || len(untrusted.received()) != 0 {
		t.Errorf("after 24 hours: %d kept, %d received", pending(), len(untrusted.received()))
	}
	if len(good.received()) != 2 {
		t.Errorf("example.test's report POSTed again: %d", len(good.received()))
	}
}

// Without Options.DialContext, report endpoints on our own networks are
// refused: a domain's record must not make the server POST to them.
func TestReportEndpointNotPublic(t *testing.T) {
	ca := testenv.NewCA(t)
	ep := newReportEndpoint(t, ca.IssueCertificate(t, "127.0.0.1"))
	rec, err := New(Options{Dir: t.TempDir(), Hostname: "mail.ours.test", Send: func(context.Context, string, []string, []byte) error { return nil }, RootCAs: ca.Pool(), PostTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = rec.postOnce(context.Background(), &pendingPost{URL: ep.srv.URL + "/", Body: []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "not public") || len(ep.received()) != 0 {
		t.Fatalf("POST to loopback: %v, %d received", err, len(ep.received()))
	}
}

// One SendDue makes at most postsPerRun POSTs; the rest wait for the next.
func TestReportPostsBounded(t *testing.T) {
	ca := testenv.NewCA(t)
	ep := newReportEndpoint(t, ca.IssueCertificate(t, "reports.example.test"))
	dir := t.TempDir()
	rec, err := New(Options{
		Dir: dir, Hostname: "mail.ours.test", Send: func(context.Context, string, []string, []byte) error { return nil },
		RootCAs: ca.Pool(), PostTimeout: 5 * time.Second,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, ep.srv.Listener.Addr().String())
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range postsPerRun + 5 {
		b, _ := json.Marshal(&pendingPost{URL: "https://reports.example.test/", Domain: "example.test", Day: "2026-12-05", Body: []byte("x"), First: time.Now()})
		if err := os.WriteFile(filepath.Join(dir, postDir, "p"+strconv.Itoa(i)+".json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rec.SendDue(context.Background())
	if n := len(ep.received()); n != postsPerRun {
		t.Fatalf("%d POSTs in one call, want %d", n, postsPerRun)
	}
	rec.SendDue(context.Background())
	if n := len(ep.received()); n != postsPerRun+5 {
		t.Fatalf("%d POSTs after two calls, want %d", n, postsPerRun+5)
	}
}
