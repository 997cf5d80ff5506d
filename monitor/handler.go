package monitor

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	// healthTimeout bounds one health check: a monitoring probe that waits
	// longer has already decided the service is down.
	healthTimeout = 5 * time.Second
	// lookupTimeout bounds the hosted-domain lookup of an autoconfig request.
	lookupTimeout = 5 * time.Second
	// maxAutoconfigLookups bounds the hosted-domain lookups of autoconfig
	// requests in flight (more get a 503 without a lookup): anyone may ask
	// for any domain, on the LDAP connections RCPT and AUTH wait for.
	maxAutoconfigLookups = 2
	// scrapeTimeout bounds one /metrics response (promhttp answers 503 past it).
	scrapeTimeout = 10 * time.Second
	// maxScrapes bounds concurrent /metrics requests (more get a 503).
	maxScrapes = 4
	// maxHealthText bounds the error text a failing /healthz returns.
	maxHealthText = 1024

	defaultIMAPPort       = 993 // RFC 8314 §7.3: imaps
	defaultSubmissionPort = 587 // RFC 6409 §3.1: submission
)

// Options configures Handler. The zero value serves only /healthz (always
// ok); each other endpoint needs its fields.
type Options struct {
	// Metrics is served at /metrics; nil answers 404 there.
	Metrics *Metrics

	// Health reports whether courriel can do its work (e.g. the directory
	// answers). It gets a context bounded to 5 s and must honour it. nil means
	// always healthy. Its error text is shown to trusted clients only (it may
	// name the directory's URL and bind DN); others get the status alone.
	Health func(ctx context.Context) error

	// Trusted are the client networks that may read /metrics and the
	// detail of a failing /healthz; nil means loopback only (127.0.0.0/8,
	// ::1). Others get 403 at /metrics and a bare status at /healthz;
	// autoconfig is public. The address is the TCP peer's: put no proxy in
	// front unless it is itself untrusted.
	Trusted []netip.Prefix

	// Hostname is the IMAP and SMTP server name mail clients should connect
	// to (the name on the TLS certificate). Empty disables autoconfig.
	Hostname string
	// Services are the listeners autoconfig describes: each that is on
	// (port > 0), in the order clients should prefer them. nil means the
	// standard ports, IMAPS on 993 and submission on 587.
	Services *Services
	// IsHostedDomain says whether a (lower-case, syntactically valid) domain
	// is one of ours; autoconfig answers 404 for the others and 503 when it
	// fails. nil disables autoconfig, so the listener never describes a
	// domain it does not serve.
	IsHostedDomain func(ctx context.Context, domain string) (bool, error)

	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
}

// Services are the mail listeners of the server, by port; 0 is off.
type Services struct {
	IMAPS       int // implicit TLS (RFC 8314), preferred
	IMAP        int // STARTTLS
	Submissions int // implicit TLS, preferred (RFC 8314 §3.3)
	Submission  int // STARTTLS
}

// Handler returns the HTTP handler of the monitoring listener:
//
//	/metrics                                      Prometheus text format (trusted clients; 403 for others)
//	/healthz                                      200 "ok" or 503 and the error (the error for trusted clients only)
//	/.well-known/autoconfig/mail/config-v1.1.xml  Thunderbird autoconfig
//	/mail/config-v1.1.xml                         the same, for autoconfig.<domain>
//
// Every endpoint answers GET and HEAD only; other methods get 405.
func Handler(o Options) http.Handler {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	trusted := newTrusted(o.Trusted)
	mux := http.NewServeMux()
	if reg := o.Metrics.Registry(); reg != nil {
		mux.Handle("/metrics", trusted.only(promhttp.HandlerFor(reg, promhttp.HandlerOpts{
			ErrorLog: promLogger{log},
			// A broken collector must not hide every other metric.
			ErrorHandling:       promhttp.ContinueOnError,
			MaxRequestsInFlight: maxScrapes,
			Timeout:             scrapeTimeout,
		})))
	}
	mux.Handle("/healthz", &healthHandler{check: o.Health, trusted: trusted, log: log, now: time.Now})
	if o.Hostname != "" && o.IsHostedDomain != nil {
		svc := Services{IMAPS: defaultIMAPPort, Submission: defaultSubmissionPort}
		if o.Services != nil {
			svc = *o.Services
		}
		ac := &autoconfig{hostname: o.Hostname, services: svc, isHosted: o.IsHostedDomain, log: log,
			lookups: make(chan struct{}, maxAutoconfigLookups)}
		mux.Handle("/.well-known/autoconfig/mail/config-v1.1.xml", ac)
		mux.Handle("/mail/config-v1.1.xml", ac)
	}
	return methodGuard{next: mux}
}

// NewServer returns an *http.Server for the monitoring listener with every
// timeout set, so that slow or idle clients cannot hold connections open
// (the zero http.Server waits forever). Start it with ListenAndServe or
// Serve and stop it with Shutdown.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Above scrapeTimeout, so promhttp's own 503 reaches the client.
		WriteTimeout: scrapeTimeout + 5*time.Second,
		IdleTimeout:  60 * time.Second,
		// Requests here are a path and a short query; 16 KiB is plenty (the
		// library adds 4 KiB of slack) and refuses header floods with 431.
		MaxHeaderBytes: 16 << 10,
	}
}

// methodGuard refuses every method but GET and HEAD: the listener only
// reads, so nothing else is meaningful (RFC 9110 §15.5.6: 405 with Allow).
type methodGuard struct{ next http.Handler }

func (g methodGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	g.next.ServeHTTP(w, r)
}

// healthCacheTTL is how long one check answers /healthz: the endpoint is
// public, and each check is a directory search on the pool mail lookups
// use.
const healthCacheTTL = time.Second

type healthHandler struct {
	check   func(ctx context.Context) error // nil: always healthy
	trusted trustedNets
	log     *slog.Logger
	now     func() time.Time

	mu      sync.Mutex // held during a check: callers meanwhile wait and share it
	checked time.Time  // when err was found; zero: never
	err     error
}

// result is the health, checked at most once every healthCacheTTL; a
// change is logged once, not every failing request.
func (h *healthHandler) result(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.checked.IsZero() && h.now().Sub(h.checked) < healthCacheTTL {
		return h.err
	}
	// Not the request's cancellation: a client that hangs up must not
	// make the next ones see a failure.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	err := h.check(ctx)
	switch {
	case err != nil && (h.err == nil || h.checked.IsZero()):
		h.log.Warn("health check failed", "err", err)
	case err == nil && h.err != nil:
		h.log.Info("health check passes again")
	}
	h.checked, h.err = h.now(), err
	return err
}

func (h *healthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if h.check != nil {
		if err := h.result(r.Context()); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			if !h.trusted.contains(r) {
				// The status is what a load balancer needs; the cause
				// may name the directory's URL and bind DN.
				_, _ = io.WriteString(w, "unavailable\n")
				return
			}
			_, _ = io.WriteString(w, healthText(err)+"\n")
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

// trustedNets are the networks allowed to read metrics and health detail.
type trustedNets []netip.Prefix

// newTrusted is Options.Trusted with its default: loopback.
func newTrusted(p []netip.Prefix) trustedNets {
	if p == nil {
		return trustedNets{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	return slices.Clone(p)
}

// contains reports whether the request's TCP peer is trusted.
func (t trustedNets) contains(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// only serves next to trusted clients and 403 to the others.
func (t trustedNets) only(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !t.contains(r) {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// healthText is err's text made fit for a plain-text body: one line, valid
// UTF-8, bounded (it may carry strings from the directory).
func healthText(err error) string {
	s := strings.ToValidUTF8(err.Error(), "?")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > maxHealthText {
		s = strings.ToValidUTF8(s[:maxHealthText], "") + "..."
	}
	if s == "" {
		s = "unhealthy"
	}
	return s
}

// promLogger adapts slog to promhttp's Println-style error log.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error("metrics: serving /metrics", "err", strings.TrimSpace(fmt.Sprintln(v...)))
}
