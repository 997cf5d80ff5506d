package monitor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// fromLoopback makes a test request come from 127.0.0.1 (httptest's
// default peer, 192.0.2.1, is not trusted).
func fromLoopback(r *http.Request) *http.Request {
	r.RemoteAddr = "127.0.0.1:40000"
	return r
}

// Metrics and the health check's detail reach trusted networks only
// (loopback unless configured); the health status and autoconfig reach
// everyone.
func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	secret := errors.New("directory: ldap://ldap.internal:389 bind as cn=reader,dc=example,dc=org: connection refused")
	opts := func(trusted []netip.Prefix) Options {
		return Options{
			Metrics: NewMetrics(), Health: func(context.Context) error { return secret }, Trusted: trusted,
			Hostname: "mail.example.net", IsHostedDomain: func(context.Context, string) (bool, error) { return true, nil },
		}
	}
	lan := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, tc := range []struct {
		name    string
		trusted []netip.Prefix
		peer    string
		ok      bool // sees metrics and the detail
	}{
		{"default: IPv4 loopback", nil, "127.0.0.1:5000", true},
		{"default: other loopback address", nil, "127.1.2.3:5000", true},
		{"default: IPv6 loopback", nil, "[::1]:5000", true},
		{"default: IPv4-mapped loopback", nil, "[::ffff:127.0.0.1]:5000", true},
		{"default: the internet", nil, "192.0.2.1:5000", false},
		{"default: IPv6 internet", nil, "[2001:db8::1]:5000", false},
		{"default: LAN", nil, "10.1.2.3:5000", false},
		{"configured LAN", lan, "10.1.2.3:5000", true},
		{"configured LAN: loopback no longer implied", lan, "127.0.0.1:5000", false},
		{"configured: outside", lan, "11.0.0.1:5000", false},
		{"unparsable peer", nil, "@unix", false},
		{"empty list: nobody", []netip.Prefix{}, "127.0.0.1:5000", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := Handler(opts(tc.trusted))
			get := func(path string) (int, string) {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.RemoteAddr = tc.peer
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code, rec.Body.String()
			}
			code, body := get("/metrics")
			if tc.ok && (code != 200 || !strings.Contains(body, "courriel_deliveries_total")) {
				t.Errorf("/metrics from %s: %d, want 200 and the metrics", tc.peer, code)
			}
			if !tc.ok && (code != 403 || strings.Contains(body, "courriel_")) {
				t.Errorf("/metrics from %s: %d %q, want 403 and nothing", tc.peer, code, body)
			}
			code, body = get("/healthz")
			if code != 503 {
				t.Errorf("/healthz from %s: %d, want 503 for everyone", tc.peer, code)
			}
			if leaks := strings.Contains(body, "ldap.internal") || strings.Contains(body, "cn=reader"); leaks != tc.ok {
				t.Errorf("/healthz from %s: %q (detail shown: %v, want %v)", tc.peer, body, leaks, tc.ok)
			}
			if !tc.ok && body != "unavailable\n" {
				t.Errorf("/healthz from %s: %q, want the bare status", tc.peer, body)
			}
			if code, body := get("/mail/config-v1.1.xml?emailaddress=u%40example.com"); code != 200 || !strings.Contains(body, "mail.example.net") {
				t.Errorf("autoconfig from %s: %d, want 200 for everyone", tc.peer, code)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name       string
		check      func(context.Context) error
		wantCode   int
		wantBody   string // exact, when set
		wantPrefix string // when set
	}{
		{name: "nil is healthy", check: nil, wantCode: 200, wantBody: "ok\n"},
		{name: "healthy", check: func(context.Context) error { return nil }, wantCode: 200, wantBody: "ok\n"},
		{name: "unhealthy", check: func(context.Context) error { return errors.New("directory: ldap://ldap:389 unreachable") },
			wantCode: 503, wantBody: "directory: ldap://ldap:389 unreachable\n"},
		{name: "one line", check: func(context.Context) error { return errors.New("a\r\nb\x00c") },
			wantCode: 503, wantBody: "a  b c\n"},
		{name: "bounded", check: func(context.Context) error { return errors.New(long) },
			wantCode: 503, wantPrefix: strings.Repeat("x", maxHealthText) + "...\n"},
		{name: "empty error text", check: func(context.Context) error { return errors.New("") },
			wantCode: 503, wantBody: "unhealthy\n"},
		{name: "context is bounded", wantCode: 200, wantBody: "ok\n", check: func(ctx context.Context) error {
			dl, ok := ctx.Deadline()
			if !ok {
				return errors.New("no deadline")
			}
			if time.Until(dl) > healthTimeout {
				return errors.New("deadline beyond the health timeout")
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := Handler(Options{Health: tc.check})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, fromLoopback(httptest.NewRequest(http.MethodGet, "/healthz", nil)))
			if rec.Code != tc.wantCode {
				t.Errorf("status %d, want %d (body %q)", rec.Code, tc.wantCode, rec.Body.String())
			}
			body := rec.Body.String()
			if tc.wantBody != "" && body != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
			if tc.wantPrefix != "" && body != tc.wantPrefix {
				t.Errorf("body of %d bytes, want %d", len(body), len(tc.wantPrefix))
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}

// A client that hangs up does not cancel the check the next requests
// share: they would all read its cancellation as the directory failing.
func TestHealthCanceled(t *testing.T) {
	t.Parallel()
	h := Handler(Options{Health: func(ctx context.Context) error { return ctx.Err() }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, fromLoopback(httptest.NewRequest(http.MethodGet, "/healthz", nil).WithContext(ctx)))
	if rec.Code != http.StatusOK {
		t.Errorf("check after a canceled request: %d %q", rec.Code, rec.Body.String())
	}
}

func TestMethods(t *testing.T) {
	t.Parallel()
	h := Handler(Options{
		Metrics:        NewMetrics(),
		Hostname:       "mail.example.net",
		IsHostedDomain: func(context.Context, string) (bool, error) { return true, nil },
	})
	paths := []string{
		"/metrics", "/healthz", "/nonexistent",
		"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=a@example.com",
		"/mail/config-v1.1.xml?emailaddress=a@example.com",
		"/autodiscover/autodiscover.xml",
	}
	for _, p := range paths {
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(method, p, strings.NewReader("body")))
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s = %d, want 405", method, p, rec.Code)
			}
			if got := rec.Header().Get("Allow"); got != "GET, HEAD" {
				t.Errorf("%s %s: Allow %q", method, p, got)
			}
		}
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/metrics", 200},
		{"HEAD", "/metrics", 200},
		{"GET", "/healthz", 200},
		{"HEAD", "/healthz", 200},
		{"GET", paths[3], 200},
		{"HEAD", paths[4], 200},
		{"GET", "/nonexistent", 404},
		{"GET", "/autodiscover/autodiscover.xml", 404}, // not served, see doc.go
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, fromLoopback(httptest.NewRequest(tc.method, tc.path, nil)))
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
		if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s: no X-Content-Type-Options: nosniff", tc.method, tc.path)
		}
	}
}

func TestNewServerTimeouts(t *testing.T) {
	t.Parallel()
	s := NewServer("127.0.0.1:0", http.NotFoundHandler())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": s.ReadHeaderTimeout,
		"ReadTimeout":       s.ReadTimeout,
		"WriteTimeout":      s.WriteTimeout,
		"IdleTimeout":       s.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s unset", name)
		}
	}
	if s.WriteTimeout <= scrapeTimeout {
		t.Errorf("WriteTimeout %v does not exceed the scrape timeout %v", s.WriteTimeout, scrapeTimeout)
	}
	if s.MaxHeaderBytes <= 0 || s.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes %d", s.MaxHeaderBytes)
	}
	if s.Addr != "127.0.0.1:0" || s.Handler == nil {
		t.Errorf("Addr %q, Handler %v", s.Addr, s.Handler)
	}
}

// The whole listener over a real socket: NewServer + Handler.
func TestServerEndToEnd(t *testing.T) {
	t.Parallel()
	m := NewMetrics()
	m.ConnOpened("smtp")
	h := Handler(Options{
		Metrics:        m,
		Hostname:       "mail.example.net",
		IsHostedDomain: func(_ context.Context, d string) (bool, error) { return d == "example.com", nil },
	})
	srv := NewServer("127.0.0.1:0", h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, `courriel_connections_total{listener="smtp"} 1`) {
		t.Errorf("/metrics: %d", code)
	}
	if code, body := get("/mail/config-v1.1.xml?emailaddress=u%40example.com"); code != 200 || !strings.Contains(body, "<hostname>mail.example.net</hostname>") {
		t.Errorf("autoconfig: %d %q", code, body)
	}
	hostile := "%3Cscript%3E" + strings.Repeat("a", 10_000) + "%40example.com"
	code, body := get("/mail/config-v1.1.xml?emailaddress=" + hostile)
	if code != 404 || strings.Contains(body, "<script>") || strings.Contains(body, "aaaa") {
		t.Errorf("hostile 10 KB address: %d %q", code, body)
	}
	// Past MaxHeaderBytes: refused by net/http before the handler.
	if code, _ := get("/healthz?x=" + strings.Repeat("a", 64<<10)); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB request line: %d, want 431", code)
	}
}

// /healthz is public: one directory check answers it for a second, and a
// failure is logged when it starts, not at every request.
func TestHealthChecksAreShared(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	var calls int
	var fail bool
	var logs bytes.Buffer
	h := &healthHandler{
		check: func(context.Context) error {
			calls++
			if fail {
				return errors.New("ldap down")
			}
			return nil
		},
		log: slog.New(slog.NewTextHandler(&logs, nil)),
		now: func() time.Time { return now },
	}
	get := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		return rec.Code
	}
	for range 50 {
		if code := get(); code != http.StatusOK {
			t.Fatalf("status %d", code)
		}
	}
	if calls != 1 {
		t.Errorf("%d checks for 50 requests within a second, want 1", calls)
	}
	fail = true
	now = now.Add(2 * time.Second)
	for range 50 {
		if code := get(); code != http.StatusServiceUnavailable {
			t.Fatalf("status %d with the directory down", code)
		}
	}
	if n := strings.Count(logs.String(), "health check failed"); calls != 2 || n != 1 {
		t.Errorf("%d checks, %d failure lines; want 2 and 1", calls, n)
	}
	fail = false
	now = now.Add(2 * time.Second)
	if code := get(); code != http.StatusOK || !strings.Contains(logs.String(), "health check passes again") {
		t.Errorf("after recovery: status %d, log:\n%s", code, logs.String())
	}
}
