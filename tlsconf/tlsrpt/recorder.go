package tlsrpt

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"courriel/internal/atomicfile"
)

// TXTResolver is the DNS the reporter needs; *net.Resolver is one.
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Options configures a Recorder.
type Options struct {
	// Dir keeps one file per UTC day not yet reported (created if
	// missing, mode 0700).
	Dir string
	// Hostname names the submitter (organization-name, the report's
	// From domain, TLS-Report-Submitter).
	Hostname string
	// From is the reports' sender address; default noreply-tlsrpt@Hostname.
	From string
	// Contact is the report's contact-info; default postmaster@Hostname.
	Contact  string
	Resolver TXTResolver
	// Send hands a report to the queue (envelope sender "", as for other
	// automatic reports, so that nothing bounces back to us).
	Send func(ctx context.Context, from string, to []string, msg []byte) error
	// RootCAs verify the certificates of https: report endpoints; nil:
	// the system pool.
	RootCAs *x509.CertPool
	// DialContext opens the HTTPS connections to report endpoints; nil: a
	// dialer that refuses addresses that are not public (loopback,
	// private, link-local…): a domain's record must not make us POST to
	// our own network. Tests point it at a loopback server.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// PostTimeout bounds one HTTPS POST, connection included; default 60 s.
	PostTimeout time.Duration
	Logger      *slog.Logger
	Now         func() time.Time
}

// Bounds on what one day may hold: a hostile stream of domains or failure
// reasons costs at most this much memory and report size.
const (
	maxPolicies     = 10000
	maxDetails      = 100
	maxReason       = 300
	maxRUA          = 5
	maxPolicyString = 64
	maxURI          = 512
	maxPostReply    = 64 << 10
	// RFC 8460 §5.4: a failed delivery SHOULD be retried for up to 24 hours
	// after the first attempt, with exponential backoff.
	postRetryFor   = 24 * time.Hour
	postFirstRetry = 15 * time.Minute
	// postsPerRun bounds the POSTs of one SendDue (one a minute under
	// Run); the rest wait for the next.
	postsPerRun = 20
)

// Recorder aggregates session outcomes per UTC day and policy, and sends
// the reports of past days.
type Recorder struct {
	o      Options
	client *http.Client

	mu    sync.Mutex
	days  map[string]*day // by "2006-01-02"; guarded by mu
	dirty bool            // guarded by mu
}

// day is one UTC day's aggregate, as kept on disk.
type day struct {
	Policies map[string]*policyAgg `json:"policies"`
	// Done: the policy domains whose report went out (queued, POSTed or
	// kept for a POST retry), so that a day retried after a failure with
	// another domain reports none twice.
	Done []string `json:"done,omitempty"`
}

type policyAgg struct {
	Domain  string             `json:"domain"`
	Type    PolicyType         `json:"type"`
	Strings []string           `json:"strings,omitempty"`
	MXHosts []string           `json:"mx_hosts,omitempty"`
	Success int64              `json:"success"`
	Failure int64              `json:"failure"`
	Details map[string]*detail `json:"details,omitempty"`
}

type detail struct {
	ResultType  ResultType `json:"result-type"`
	SendingIP   string     `json:"sending-mta-ip,omitempty"`
	ReceivingMX string     `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string     `json:"receiving-ip,omitempty"`
	Count       int64      `json:"failed-session-count"`
	Reason      string     `json:"failure-reason-code,omitempty"`
}

// New opens the directory and loads the days recorded before a restart.
func New(o Options) (*Recorder, error) {
	if o.Dir == "" || o.Hostname == "" || o.Send == nil {
		return nil, errors.New("tlsrpt: Options.Dir, Hostname and Send are required")
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	if o.From == "" {
		o.From = "noreply-tlsrpt@" + o.Hostname
	}
	if o.Contact == "" {
		o.Contact = "postmaster@" + o.Hostname
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.PostTimeout <= 0 {
		o.PostTimeout = 60 * time.Second
	}
	dial := o.DialContext
	if dial == nil {
		d := &net.Dialer{Timeout: o.PostTimeout, ControlContext: publicOnly}
		dial = d.DialContext
	}
	if err := os.MkdirAll(filepath.Join(o.Dir, postDir), 0o700); err != nil {
		return nil, fmt.Errorf("tlsrpt: %w", err)
	}
	r := &Recorder{o: o, days: map[string]*day{}}
	r.client = &http.Client{
		Transport: &http.Transport{
			Proxy:                  nil,
			DialContext:            dial,
			TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    o.PostTimeout,
			ResponseHeaderTimeout:  o.PostTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
		},
		Timeout: o.PostTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirect not followed")
		},
	}
	names, _ := filepath.Glob(filepath.Join(o.Dir, "????-??-??.json"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		var d day
		if err := json.Unmarshal(b, &d); err != nil || d.Policies == nil {
			o.Logger.Warn("TLSRPT day file unreadable, ignored", "file", n, "err", err)
			continue
		}
		r.days[strings.TrimSuffix(filepath.Base(n), ".json")] = &d
	}
	return r, nil
}

// Record counts one session outcome under today's date.
func (r *Recorder) Record(x Result) {
	if x.PolicyDomain == "" {
		return
	}
	if x.PolicyType == "" {
		x.PolicyType = PolicyNotFound
	}
	if len(x.PolicyStrings) > maxPolicyString {
		x.PolicyStrings = x.PolicyStrings[:maxPolicyString]
	}
	key := strings.ToLower(x.PolicyDomain) + "|" + string(x.PolicyType) + "|" + strings.Join(x.PolicyStrings, "\n")
	today := r.o.Now().UTC().Format(time.DateOnly)
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.days[today]
	if d == nil {
		d = &day{Policies: map[string]*policyAgg{}}
		r.days[today] = d
	}
	p := d.Policies[key]
	if p == nil {
		if len(d.Policies) >= maxPolicies {
			return
		}
		p = &policyAgg{Domain: strings.ToLower(x.PolicyDomain), Type: x.PolicyType, Strings: x.PolicyStrings}
		d.Policies[key] = p
	}
	r.dirty = true
	// mx-host (RFC 8460 §4.4): an MTA-STS policy's mx patterns, the MX
	// hosts seen for a TLSA policy.
	if p.MXHosts == nil && x.PolicyType == PolicySTS {
		for _, l := range x.PolicyStrings {
			if mx, ok := strings.CutPrefix(l, "mx: "); ok {
				p.MXHosts = append(p.MXHosts, mx)
			}
		}
	}
	if x.ReceivingMX != "" && x.PolicyType == PolicyTLSA && !slices.Contains(p.MXHosts, x.ReceivingMX) && len(p.MXHosts) < 10 {
		p.MXHosts = append(p.MXHosts, x.ReceivingMX)
	}
	if x.Failure == "" {
		p.Success++
		return
	}
	p.Failure++
	reason := x.FailureReason
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	dk := string(x.Failure) + "|" + x.SendingIP + "|" + x.ReceivingMX + "|" + x.ReceivingIP + "|" + reason
	if p.Details == nil {
		p.Details = map[string]*detail{}
	}
	dt := p.Details[dk]
	if dt == nil {
		if len(p.Details) >= maxDetails {
			return // still counted in the summary
		}
		dt = &detail{ResultType: x.Failure, SendingIP: x.SendingIP, ReceivingMX: x.ReceivingMX, ReceivingIP: x.ReceivingIP, Reason: reason}
		p.Details[dk] = dt
	}
	dt.Count++
}

// Flush writes the days recorded since the last flush to disk.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return nil
	}
	files := map[string][]byte{}
	for name, d := range r.days {
		b, err := json.Marshal(d)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		files[name] = b
	}
	r.dirty = false
	r.mu.Unlock()
	var first error
	for name, b := range files {
		if err := atomicfile.Write(filepath.Join(r.o.Dir, name+".json"), b, 0o600); err != nil && first == nil {
			first = fmt.Errorf("tlsrpt: %w", err)
		}
	}
	return first
}

// Run flushes every minute and, after a UTC day is over, sends its
// reports, until ctx is done (then it flushes once more).
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := r.Flush(); err != nil {
			r.o.Logger.Warn("TLSRPT counts not saved", "err", err)
		}
		r.SendDue(ctx)
		select {
		case <-ctx.Done():
			if err := r.Flush(); err != nil {
				r.o.Logger.Warn("TLSRPT counts not saved", "err", err)
			}
			return
		case <-t.C:
		}
	}
}

// SendDue sends the reports of every day before today and forgets them,
// and retries the HTTPS POSTs that are due. A report that cannot be
// handed to the queue is retried at the next call.
func (r *Recorder) SendDue(ctx context.Context) {
	defer r.retryPosts(ctx)
	today := r.o.Now().UTC().Format(time.DateOnly)
	r.mu.Lock()
	var due []string
	for name := range r.days {
		if name < today {
			due = append(due, name)
		}
	}
	r.mu.Unlock()
	slices.Sort(due)
	for _, name := range due {
		r.mu.Lock()
		d := r.days[name]
		r.mu.Unlock()
		if err := r.sendDay(ctx, name, d); err != nil {
			r.o.Logger.Warn("TLSRPT reports not sent, will retry", "day", name, "err", err)
			continue
		}
		r.mu.Lock()
		delete(r.days, name)
		r.mu.Unlock()
		if err := os.Remove(filepath.Join(r.o.Dir, name+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.o.Logger.Warn("TLSRPT day file not removed", "day", name, "err", err)
		}
	}
}

// sendDay sends one report per policy domain of a day that publishes a
// TLSRPT record: by mail to its mailto: URIs (through the queue), by HTTPS
// POST to its https: URIs (a POST that fails is kept on disk and retried,
// RFC 8460 §5.4). A domain without a record is skipped; a DNS failure or a
// queue refusal fails the day (retried later, domains done kept).
func (r *Recorder) sendDay(ctx context.Context, name string, d *day) error {
	start, err := time.Parse(time.DateOnly, name)
	if err != nil {
		return nil // not ours: forgotten
	}
	byDomain := map[string][]*policyAgg{}
	r.mu.Lock()
	for _, p := range d.Policies {
		if !slices.Contains(d.Done, p.Domain) {
			byDomain[p.Domain] = append(byDomain[p.Domain], p)
		}
	}
	r.mu.Unlock()
	domains := make([]string, 0, len(byDomain))
	for dom := range byDomain {
		domains = append(domains, dom)
	}
	slices.Sort(domains)
	for _, dom := range domains {
		rua, err := r.lookupRUA(ctx, dom)
		if err != nil {
			return err
		}
		if len(rua.Mailto)+len(rua.HTTPS) > 0 {
			gz, id, err := r.buildJSON(start, byDomain[dom])
			if err != nil {
				return err
			}
			if len(rua.Mailto) > 0 {
				msg := r.buildMessage(dom, start, id, gz, rua.Mailto)
				if err := r.o.Send(ctx, "", rua.Mailto, msg); err != nil {
					return fmt.Errorf("tlsrpt: report for %s: %w", dom, err)
				}
				r.o.Logger.Info("TLSRPT report sent", "domain", dom, "day", name, "to", strings.Join(rua.Mailto, ","))
			}
			// POSTs wait on disk for retryPosts, which bounds how many
			// one call makes: slow endpoints cannot hold the day up.
			for i, u := range rua.HTTPS {
				now := r.o.Now().UTC()
				b, _ := json.Marshal(&pendingPost{URL: u, Domain: dom, Day: name, Body: gz, First: now, Next: now})
				if err := atomicfile.Write(filepath.Join(r.o.Dir, postDir, fmt.Sprintf("%s!%s!%d.json", name, fileSafe(dom), i)), b, 0o600); err != nil {
					return fmt.Errorf("tlsrpt: report for %s: %w", dom, err)
				}
			}
		}
		r.mu.Lock()
		d.Done = append(d.Done, dom)
		r.dirty = true
		r.mu.Unlock()
	}
	return nil
}

// fileSafe keeps a domain usable in a file name whatever it holds.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, strings.ToLower(s))
}

// postDir, under Options.Dir, keeps the HTTPS POSTs to retry.
const postDir = "post"

// pendingPost is one report to POST, as kept on disk until it is sent or
// postRetryFor has passed since the first attempt.
type pendingPost struct {
	URL      string    `json:"url"`
	Domain   string    `json:"domain"`
	Day      string    `json:"day"`
	Body     []byte    `json:"body"` // the gzipped JSON report
	First    time.Time `json:"first"`
	Next     time.Time `json:"next"`
	Attempts int       `json:"attempts"`
}

// post tries one POST; a failure is kept under key (its file name) for
// the next try, or dropped once postRetryFor has passed.
func (r *Recorder) post(ctx context.Context, key string, pp *pendingPost) {
	path := filepath.Join(r.o.Dir, postDir, key+".json")
	err := r.postOnce(ctx, pp)
	now := r.o.Now().UTC()
	pp.Attempts++
	switch {
	case err == nil:
		r.o.Logger.Info("TLSRPT report sent", "domain", pp.Domain, "day", pp.Day, "to", pp.URL, "attempt", pp.Attempts)
	case now.Sub(pp.First) >= postRetryFor:
		r.o.Logger.Warn("TLSRPT report POST failed for 24 hours, dropped", "domain", pp.Domain, "day", pp.Day, "to", pp.URL, "attempts", pp.Attempts, "err", err)
	default:
		backoff := postFirstRetry << min(pp.Attempts-1, 10)
		pp.Next = now.Add(backoff)
		if end := pp.First.Add(postRetryFor); pp.Next.After(end) {
			pp.Next = end
		}
		b, _ := json.Marshal(pp)
		if werr := atomicfile.Write(path, b, 0o600); werr != nil {
			r.o.Logger.Warn("TLSRPT report POST failed and not kept for a retry", "domain", pp.Domain, "to", pp.URL, "err", err, "write_err", werr)
			return
		}
		r.o.Logger.Warn("TLSRPT report POST failed, will retry", "domain", pp.Domain, "day", pp.Day, "to", pp.URL, "next", pp.Next.Format(time.RFC3339), "err", err)
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.o.Logger.Warn("TLSRPT retry file not removed", "file", path, "err", err)
	}
}

// retryPosts makes the POSTs whose time has come, at most postsPerRun.
func (r *Recorder) retryPosts(ctx context.Context) {
	names, _ := filepath.Glob(filepath.Join(r.o.Dir, postDir, "*.json"))
	now := r.o.Now()
	budget := postsPerRun
	for _, n := range names {
		if ctx.Err() != nil || budget == 0 {
			return
		}
		b, err := os.ReadFile(n)
		var pp pendingPost
		if err == nil && len(b) < 4<<20 {
			err = json.Unmarshal(b, &pp)
		}
		if err != nil || pp.URL == "" {
			r.o.Logger.Warn("TLSRPT retry file unreadable, removed", "file", n, "err", err)
			os.Remove(n)
			continue
		}
		if now.Before(pp.Next) {
			continue
		}
		budget--
		r.post(ctx, strings.TrimSuffix(filepath.Base(n), ".json"), &pp)
	}
}

// postOnce POSTs the gzipped report (RFC 8460 §5.4: media type
// application/tlsrpt+gzip); any 2xx is success.
func (r *Recorder) postOnce(ctx context.Context, pp *pendingPost) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.PostTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, pp.URL, bytes.NewReader(pp.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/tlsrpt+gzip")
	req.Header.Set("User-Agent", "courriel")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxPostReply))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return nil
}

// publicOnly refuses connections to addresses that are not public unicast:
// report endpoints come from other domains' DNS.
func publicOnly(_ context.Context, network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("tlsrpt: report endpoint %s: %w", address, err)
	}
	a := ap.Addr().Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return fmt.Errorf("tlsrpt: report endpoint address %s is not public, refused", a)
	}
	return nil
}

// lookupRUA returns the report URIs of _smtp._tls.domain (RFC 8460 §3).
func (r *Recorder) lookupRUA(ctx context.Context, domain string) (RUA, error) {
	txts, err := r.o.Resolver.LookupTXT(ctx, "_smtp._tls."+domain)
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		return RUA{}, nil
	}
	if err != nil {
		return RUA{}, fmt.Errorf("tlsrpt: TXT of _smtp._tls.%s: %w", domain, err)
	}
	rua, err := ParseRecord(txts)
	if err != nil {
		r.o.Logger.Info("TLSRPT record unusable, no report", "domain", domain, "err", err)
		return RUA{}, nil
	}
	return rua, nil
}

// RUA is where a domain wants its reports.
type RUA struct {
	Mailto []string // addresses
	HTTPS  []string // https: URLs
}

// ParseRecord returns the report URIs of a TLSRPT TXT RRset: exactly one
// record starting "v=TLSRPTv1", its rua a comma-separated list of mailto:
// and https: URIs (others are skipped); at most maxRUA of each.
func ParseRecord(txts []string) (RUA, error) {
	var rec string
	n := 0
	for _, t := range txts {
		if strings.HasPrefix(t, "v=TLSRPTv1") {
			rec, n = t, n+1
		}
	}
	if n != 1 {
		return RUA{}, fmt.Errorf("tlsrpt: %d TLSRPTv1 records, want one", n)
	}
	var out RUA
	for f := range strings.SplitSeq(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for u := range strings.SplitSeq(v, ",") {
			u = strings.TrimSpace(u)
			scheme, rest, _ := strings.Cut(u, ":")
			switch strings.ToLower(scheme) {
			case "mailto":
				addr, err := url.PathUnescape(rest)
				if err != nil {
					continue
				}
				if a, err := mail.ParseAddress(addr); err == nil && !strings.ContainsAny(a.Address, "\r\n<>") && len(out.Mailto) < maxRUA {
					out.Mailto = append(out.Mailto, a.Address)
				}
			case "https":
				pu, err := url.Parse(u)
				if err != nil || len(u) > maxURI || pu.Host == "" || pu.User != nil || pu.Opaque != "" || strings.ContainsAny(u, "\r\n ") || len(out.HTTPS) >= maxRUA {
					continue
				}
				pu.Scheme, pu.Fragment = "https", ""
				out.HTTPS = append(out.HTTPS, pu.String())
			}
		}
	}
	if len(out.Mailto)+len(out.HTTPS) == 0 {
		return RUA{}, errors.New("tlsrpt: no mailto: or https: rua")
	}
	return out, nil
}

// report is RFC 8460 §4.4's JSON.
type report struct {
	OrganizationName string         `json:"organization-name"`
	DateRange        dateRange      `json:"date-range"`
	ContactInfo      string         `json:"contact-info"`
	ReportID         string         `json:"report-id"`
	Policies         []policyReport `json:"policies"`
}

type dateRange struct {
	Start string `json:"start-datetime"`
	End   string `json:"end-datetime"`
}

type policyReport struct {
	Policy struct {
		Type   PolicyType `json:"policy-type"`
		String []string   `json:"policy-string,omitempty"`
		Domain string     `json:"policy-domain"`
		MXHost []string   `json:"mx-host,omitempty"`
	} `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Details []detail `json:"failure-details,omitempty"`
}

// buildJSON builds one policy domain's report of a day (RFC 8460 §4.4),
// gzipped, and its report-id.
func (r *Recorder) buildJSON(start time.Time, policies []*policyAgg) ([]byte, string, error) {
	end := start.Add(24*time.Hour - time.Second)
	rnd := make([]byte, 8)
	rand.Read(rnd)
	id := start.Format("20060102") + "." + hex.EncodeToString(rnd) + "@" + r.o.Hostname
	rep := report{
		OrganizationName: r.o.Hostname,
		DateRange:        dateRange{Start: start.Format(time.RFC3339), End: end.Format(time.RFC3339)},
		ContactInfo:      r.o.Contact,
		ReportID:         id,
	}
	slices.SortFunc(policies, func(a, b *policyAgg) int { return cmp.Compare(a.Type, b.Type) })
	for _, p := range policies {
		var pr policyReport
		pr.Policy.Type, pr.Policy.String, pr.Policy.Domain, pr.Policy.MXHost = p.Type, p.Strings, p.Domain, p.MXHosts
		pr.Summary.Success, pr.Summary.Failure = p.Success, p.Failure
		for _, dt := range p.Details {
			pr.Details = append(pr.Details, *dt)
		}
		slices.SortFunc(pr.Details, func(a, b detail) int { return cmp.Compare(b.Count, a.Count) })
		rep.Policies = append(rep.Policies, pr)
	}
	js, err := json.Marshal(rep)
	if err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(js)
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), id, nil
}

// buildMessage is the mail form of a report: the gzipped JSON in a
// multipart/report (report-type tlsrpt), RFC 8460 §5.3.
func (r *Recorder) buildMessage(domain string, start time.Time, id string, gz []byte, to []string) []byte {
	end := start.Add(24*time.Hour - time.Second)
	rnd := make([]byte, 8)
	rand.Read(rnd)
	boundary := "tlsrpt-" + hex.EncodeToString(rnd)
	file := fmt.Sprintf("%s!%s!%d!%d.json.gz", r.o.Hostname, domain, start.Unix(), end.Unix())
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "<"+r.o.From+">")
	h("To", "<"+strings.Join(to, ">, <")+">")
	h("Subject", "Report Domain: "+domain+" Submitter: "+r.o.Hostname+" Report-ID: <"+id+">")
	h("Date", r.o.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+id+">")
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", r.o.Hostname)
	h("Auto-Submitted", "auto-generated")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=us-ascii\r\n\r\n")
	b.WriteString("This is an aggregate TLS report (RFC 8460) from " + r.o.Hostname + " for " + domain + ",\r\n" + start.Format(time.DateOnly) + " UTC.\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/tlsrpt+gzip\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString(`Content-Disposition: attachment; filename="` + file + `"` + "\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes()
}
