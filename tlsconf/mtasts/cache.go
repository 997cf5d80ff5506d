package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"courriel/internal/atomicfile"
)

// TXTResolver is the DNS the cache needs; *net.Resolver is one.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Options configures a Cache.
type Options struct {
	// Dir keeps one file per domain (created if missing, mode 0700): the
	// policy and the TXT id it was fetched under.
	Dir      string
	Resolver TXTResolver
	// RootCAs verify the policy host's certificate; nil: the system pool.
	RootCAs *x509.CertPool
	// DialContext opens the HTTPS connections; nil: a net.Dialer. Tests
	// point mta-sts.DOMAIN:443 at a loopback server with it.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// FetchTimeout bounds one policy fetch, connection included; default
	// 60 s (RFC 8461 §3.3 suggests a minute).
	FetchTimeout time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// Cache answers the MTA-STS policy of a domain, from memory, then disk,
// then the network. It is safe for concurrent use; one domain is fetched by
// one caller at a time.
type Cache struct {
	o      Options
	client *http.Client

	mu       sync.Mutex
	mem      map[string]*Policy       // guarded by mu; bounded by memEntries
	inflight map[string]chan struct{} // guarded by mu: a domain being looked up
	failed   map[string]time.Time     // guarded by mu: when a fetch last failed; bounded by memEntries
	// refetched: the policy id a Refetch last asked the host about, and
	// when; guarded by mu, bounded by memEntries.
	refetched map[string]refetchMark
}

type refetchMark struct {
	id string
	at time.Time
}

const (
	memEntries = 10000
	// A policy whose remaining life is under this share of its max_age is
	// fetched again even when the TXT id has not changed (RFC 8461 §5.1
	// asks senders to refresh before expiry).
	refreshShare = 4
	// A policy host that failed is not asked again for this long: each
	// delivery attempt to the domain would otherwise wait for it.
	fetchRetry = 5 * time.Minute
	// Refetch asks the policy host again about a policy id at most this
	// often: a domain whose policy refuses its MX hosts would otherwise
	// cost a fetch per delivery attempt.
	refetchEvery = 10 * time.Minute
)

// New opens (or creates) the cache directory.
func New(o Options) (*Cache, error) {
	if o.Dir == "" {
		return nil, errors.New("mta-sts: Options.Dir is empty")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("mta-sts: cache directory: %w", err)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	dial := o.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: o.FetchTimeout}
		dial = d.DialContext
	}
	tr := &http.Transport{
		Proxy:                  nil, // the policy host is asked directly
		DialContext:            dial,
		TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    o.FetchTimeout,
		ResponseHeaderTimeout:  o.FetchTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		DisableCompression:     true,
		MaxIdleConns:           0,
		DisableKeepAlives:      true,
	}
	c := &Cache{
		o: o,
		client: &http.Client{
			Transport: tr,
			Timeout:   o.FetchTimeout,
			// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return errors.New("redirect refused (RFC 8461 §3.3)")
			},
		},
		mem:      map[string]*Policy{},
		inflight: map[string]chan struct{}{},
		failed:   map[string]time.Time{},

		refetched: map[string]refetchMark{},
	}
	return c, nil
}

// Result is what Get found for a domain.
type Result struct {
	// Policy is the policy to apply; nil when the domain has none (or none
	// could be had and none is cached). Mode none is returned as nil too.
	Policy *Policy
	// Err says why no policy or only the cached one is applied: a TXT
	// lookup or a fetch that failed, an invalid policy. TLSRPT reports it
	// (sts-policy-fetch-error, sts-policy-invalid).
	Err error
	// Cached: the policy came from the cache without a fetch this time.
	Cached bool
}

// FetchError is a policy that could not be had over HTTPS.
type FetchError struct {
	Domain string
	Err    error
	// Invalid: the body was fetched but is not a valid policy.
	Invalid bool
	// WebPKI: the policy host's certificate did not verify.
	WebPKI bool
}

func (e *FetchError) Error() string {
	return "mta-sts policy of " + e.Domain + ": " + e.Err.Error()
}
func (e *FetchError) Unwrap() error { return e.Err }

// Get returns the policy to apply to mail for domain.
func (c *Cache) Get(ctx context.Context, domain string) Result {
	return c.lookup(ctx, domain, false)
}

// Refetch is Get for a policy that has just refused every MX host of the
// domain: RFC 8461 §5.1 (and §10.2's advice on changing MX hosts) has the
// sender check for an updated policy before deferring, since the domain
// may have moved its MX hosts and published a new policy whose TXT id the
// resolver's cache still hides. The policy host is asked even when the TXT
// id has not changed, at most once per policy id every refetchEvery (and
// not while it failed recently); otherwise the cached policy is returned.
// Result.Cached is false only when a new policy was fetched.
func (c *Cache) Refetch(ctx context.Context, domain string) Result {
	return c.lookup(ctx, domain, true)
}

func (c *Cache) lookup(ctx context.Context, domain string, force bool) Result {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if !ValidDomain(domain) {
		return Result{}
	}
	// One lookup per domain at a time: the others wait for its outcome
	// and then read the cache.
	for {
		c.mu.Lock()
		ch, busy := c.inflight[domain]
		if !busy {
			ch = make(chan struct{})
			c.inflight[domain] = ch
			c.mu.Unlock()
			break
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Result{Policy: c.valid(domain), Err: ctx.Err(), Cached: true}
		}
	}
	defer func() {
		c.mu.Lock()
		close(c.inflight[domain])
		delete(c.inflight, domain)
		c.mu.Unlock()
	}()
	if force {
		cached := c.valid(domain)
		if cached == nil {
			return c.get(ctx, domain, false)
		}
		now := c.o.Now()
		c.mu.Lock()
		last, seen := c.refetched[domain]
		due := !seen || last.id != cached.ID || now.Sub(last.at) >= refetchEvery || now.Before(last.at)
		if due {
			if len(c.refetched) >= memEntries {
				clear(c.refetched)
			}
			c.refetched[domain] = refetchMark{id: cached.ID, at: now}
		}
		c.mu.Unlock()
		if !due {
			return Result{Policy: applicable(cached), Cached: true}
		}
	}
	return c.get(ctx, domain, force)
}

// get looks the TXT id up and fetches the policy when it changed, the
// cached one nears expiry, or force is set.
func (c *Cache) get(ctx context.Context, domain string, force bool) Result {
	cached := c.valid(domain)
	txts, err := c.o.Resolver.LookupTXT(ctx, "_mta-sts."+domain)
	var id string
	if err == nil {
		id, err = ParseRecord(txts)
	}
	var dnsErr *net.DNSError
	switch {
	case err != nil && (errors.Is(err, ErrNoRecord) || errors.As(err, &dnsErr) && dnsErr.IsNotFound):
		// RFC 8461 §5.1: without a record a cached policy still applies
		// until it expires (a record removed is not a policy withdrawn).
		return Result{Policy: applicable(cached), Cached: cached != nil}
	case err != nil:
		return Result{Policy: applicable(cached), Err: fmt.Errorf("mta-sts TXT of %s: %w", domain, err), Cached: cached != nil}
	}
	now := c.o.Now()
	if !force && cached != nil && cached.ID == id && cached.Expires().Sub(now) > cached.MaxAge/refreshShare {
		return Result{Policy: applicable(cached), Cached: true}
	}
	c.mu.Lock()
	last, recent := c.failed[domain]
	c.mu.Unlock()
	if recent && now.Sub(last) < fetchRetry && now.Sub(last) >= 0 {
		return Result{Policy: applicable(cached), Err: &FetchError{Domain: domain, Err: errors.New("policy host failed recently, not asked again yet")}, Cached: cached != nil}
	}
	p, err := c.fetch(ctx, domain)
	if err != nil {
		c.o.Logger.Warn("MTA-STS policy fetch failed", "domain", domain, "cached", cached != nil, "err", err)
		c.mu.Lock()
		if len(c.failed) >= memEntries {
			clear(c.failed)
		}
		c.failed[domain] = now
		c.mu.Unlock()
		return Result{Policy: applicable(cached), Err: err, Cached: cached != nil}
	}
	c.mu.Lock()
	delete(c.failed, domain)
	// A policy just fetched counts as asked again: Refetch waits
	// refetchEvery before asking about it.
	if len(c.refetched) >= memEntries {
		clear(c.refetched)
	}
	c.refetched[domain] = refetchMark{id: id, at: now}
	c.mu.Unlock()
	p.ID, p.Fetched = id, now
	c.store(domain, p)
	c.o.Logger.Info("MTA-STS policy fetched", "domain", domain, "id", id, "mode", string(p.Mode), "max_age", int64(p.MaxAge/time.Second))
	return Result{Policy: applicable(p)}
}

// applicable hides mode none: nothing to apply.
func applicable(p *Policy) *Policy {
	if p == nil || p.Mode == ModeNone {
		return nil
	}
	return p
}

// fetch gets and parses the policy over HTTPS.
func (c *Cache) fetch(ctx context.Context, domain string) (*Policy, error) {
	fail := func(err error) (*Policy, error) { return nil, &FetchError{Domain: domain, Err: err} }
	ctx, cancel := context.WithTimeout(ctx, c.o.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://mta-sts."+domain+"/.well-known/mta-sts.txt", nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("User-Agent", "courriel")
	resp, err := c.client.Do(req)
	if err != nil {
		fe := &FetchError{Domain: domain, Err: err}
		var ve *tls.CertificateVerificationError
		var he x509.HostnameError
		var ua x509.UnknownAuthorityError
		var ce x509.CertificateInvalidError
		fe.WebPKI = errors.As(err, &ve) || errors.As(err, &he) || errors.As(err, &ua) || errors.As(err, &ce)
		return nil, fe
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail(fmt.Errorf("HTTP status %d", resp.StatusCode))
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return fail(fmt.Errorf("content type %.60q is not text/plain", resp.Header.Get("Content-Type")))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicyBytes+1))
	if err != nil {
		return fail(err)
	}
	if len(body) > MaxPolicyBytes {
		return fail(fmt.Errorf("policy larger than %d bytes", MaxPolicyBytes))
	}
	p, err := Parse(body)
	if err != nil {
		return nil, &FetchError{Domain: domain, Err: err, Invalid: true}
	}
	return p, nil
}

// valid returns the cached policy of domain (memory, else disk) while it
// has not expired.
func (c *Cache) valid(domain string) *Policy {
	c.mu.Lock()
	p, ok := c.mem[domain]
	c.mu.Unlock()
	if !ok {
		p = c.load(domain)
		if p != nil {
			c.remember(domain, p)
		}
	}
	if p == nil || !c.o.Now().Before(p.Expires()) {
		return nil
	}
	return p
}

func (c *Cache) remember(domain string, p *Policy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.mem) >= memEntries {
		for k := range c.mem { // arbitrary tenth: the disk still has them
			if len(c.mem) < memEntries*9/10 {
				break
			}
			delete(c.mem, k)
		}
	}
	c.mem[domain] = p
}

// cacheFile is the on-disk form of a policy.
type cacheFile struct {
	ID      string    `json:"id"`
	Fetched time.Time `json:"fetched"`
	Mode    Mode      `json:"mode"`
	MX      []string  `json:"mx"`
	MaxAge  int64     `json:"max_age"`
}

func (c *Cache) path(domain string) string {
	return filepath.Join(c.o.Dir, domain+".json") // domain checked by ValidDomain
}

func (c *Cache) load(domain string) *Policy {
	b, err := os.ReadFile(c.path(domain))
	if err != nil || len(b) > 2*MaxPolicyBytes {
		return nil
	}
	var f cacheFile
	if err := json.Unmarshal(b, &f); err != nil {
		c.o.Logger.Warn("MTA-STS cache file unreadable, ignored", "domain", domain, "err", err)
		return nil
	}
	// Re-checked as if fetched: the file is ours, but a damaged one must not
	// become a policy that was never published.
	var sb strings.Builder
	fmt.Fprintf(&sb, "version: STSv1\nmode: %s\nmax_age: %d\n", f.Mode, f.MaxAge)
	for _, mx := range f.MX {
		sb.WriteString("mx: " + mx + "\n")
	}
	p, err := Parse([]byte(sb.String()))
	if err != nil {
		return nil
	}
	p.ID, p.Fetched = f.ID, f.Fetched
	return p
}

// store writes the policy to disk (a temporary file renamed over the old
// one) and to memory. A write that fails is logged: the policy still
// applies from memory.
func (c *Cache) store(domain string, p *Policy) {
	c.remember(domain, p)
	b, _ := json.Marshal(cacheFile{ID: p.ID, Fetched: p.Fetched.UTC(), Mode: p.Mode, MX: p.MX, MaxAge: int64(p.MaxAge / time.Second)})
	if err := atomicfile.Write(c.path(domain), b, 0o600); err != nil {
		c.o.Logger.Warn("MTA-STS policy not cached on disk", "domain", domain, "err", err)
	}
}
