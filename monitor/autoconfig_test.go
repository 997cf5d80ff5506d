package monitor

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// The document as a client reads it, declared apart from the production
// types so that a wrong tag there fails here.
type gotConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID       string    `xml:"id,attr"`
		Domains  []string  `xml:"domain"`
		Incoming gotServer `xml:"incomingServer"`
		Outgoing gotServer `xml:"outgoingServer"`
	} `xml:"emailProvider"`
}

type gotServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           string `xml:"port"`
	SocketType     string `xml:"socketType"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// hostedOnly returns an IsHostedDomain that knows only domain and counts its
// calls.
func hostedOnly(domain string, calls *atomic.Int64) func(context.Context, string) (bool, error) {
	return func(_ context.Context, d string) (bool, error) {
		calls.Add(1)
		return d == domain, nil
	}
}

func TestAutoconfigHosted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		target         string
		host           string
		services       *Services
		wantIMAP       string
		wantSubmission string
	}{
		{name: "well-known, default ports", target: "/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=Fred.Bloggs%40Example.COM",
			wantIMAP: "993", wantSubmission: "587"},
		{name: "autoconfig host path", target: "/mail/config-v1.1.xml?emailaddress=fred%2Btag@example.com",
			services: &Services{IMAPS: 1993, Submission: 1587}, wantIMAP: "1993", wantSubmission: "1587"},
		{name: "no parameter: autoconfig.<domain> host", target: "/mail/config-v1.1.xml", host: "autoconfig.example.com",
			wantIMAP: "993", wantSubmission: "587"},
		{name: "no parameter: domain host with port", target: "/.well-known/autoconfig/mail/config-v1.1.xml", host: "Example.com:8080",
			wantIMAP: "993", wantSubmission: "587"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var asked []string
			h := Handler(Options{
				Hostname: "mail.example.net",
				Services: tc.services,
				IsHostedDomain: func(_ context.Context, d string) (bool, error) {
					asked = append(asked, d)
					return d == "example.com", nil
				},
			})
			req := httptest.NewRequest(http.MethodGet, tc.target, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("status %d, body %q", rec.Code, rec.Body.String())
			}
			if len(asked) != 1 || asked[0] != "example.com" {
				t.Errorf("IsHostedDomain asked %q, want [example.com]", asked)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
				t.Errorf("Content-Type %q", ct)
			}
			if !strings.HasPrefix(rec.Body.String(), `<?xml version="1.0" encoding="UTF-8"?>`) {
				t.Errorf("no XML declaration: %q", rec.Body.String())
			}
			var got gotConfig
			if err := xml.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("XML does not parse: %v\n%s", err, rec.Body.String())
			}
			if got.Version != "1.1" || got.Provider.ID != "example.com" || len(got.Provider.Domains) != 1 || got.Provider.Domains[0] != "example.com" {
				t.Errorf("provider: version %q id %q domains %q", got.Version, got.Provider.ID, got.Provider.Domains)
			}
			wantIn := gotServer{"imap", "mail.example.net", tc.wantIMAP, "SSL", "%EMAILADDRESS%", "password-cleartext"}
			wantOut := gotServer{"smtp", "mail.example.net", tc.wantSubmission, "STARTTLS", "%EMAILADDRESS%", "password-cleartext"}
			if got.Provider.Incoming != wantIn {
				t.Errorf("incomingServer %+v, want %+v", got.Provider.Incoming, wantIn)
			}
			if got.Provider.Outgoing != wantOut {
				t.Errorf("outgoingServer %+v, want %+v", got.Provider.Outgoing, wantOut)
			}
		})
	}
}

func TestAutoconfigRefused(t *testing.T) {
	t.Parallel()
	const wellKnown = "/.well-known/autoconfig/mail/config-v1.1.xml"
	q := func(addr string) string { return wellKnown + "?emailaddress=" + url.QueryEscape(addr) }
	tests := []struct {
		name      string
		target    string
		host      string
		wantAsked bool // the lookup runs: the address was well formed
	}{
		{name: "foreign domain", target: q("user@foreign.org"), wantAsked: true},
		{name: "foreign Host, no parameter", target: wellKnown, host: "autoconfig.foreign.org", wantAsked: true},
		{name: "script local part", target: q("<script>alert(1)</script>@example.com")},
		{name: "script domain", target: q("user@<script>.example.com")},
		{name: "quote", target: q(`"fred"@example.com`)},
		{name: "attribute break-out", target: q(`a@example.com"><x y="`)},
		{name: "CRLF", target: q("a@example.com\r\nX-Injected: 1")},
		{name: "newline in local part", target: q("a\n@example.com")},
		{name: "NUL", target: q("a\x00@example.com")},
		{name: "10 KB local part", target: q(strings.Repeat("a", 10_000) + "@example.com")},
		{name: "10 KB domain", target: q("a@" + strings.Repeat("b.", 5_000) + "com")},
		{name: "65-octet local part", target: q(strings.Repeat("a", 65) + "@example.com")},
		{name: "64-octet label", target: q("a@" + strings.Repeat("b", 64) + ".com")},
		{name: "empty", target: q("")},
		{name: "no @", target: q("example.com")},
		{name: "empty local part", target: q("@example.com")},
		{name: "empty domain", target: q("a@")},
		{name: "leading dot", target: q(".a@example.com")},
		{name: "double dot", target: q("a..b@example.com")},
		{name: "trailing dot domain", target: q("a@example.com.")},
		{name: "hyphen label", target: q("a@-example.com")},
		{name: "single label", target: q("a@localhost")},
		{name: "IPv4", target: q("a@192.0.2.1")},
		{name: "address literal", target: q("a@[192.0.2.1]")},
		{name: "unicode domain", target: q("a@exämple.com")},
		{name: "invalid UTF-8", target: wellKnown + "?emailaddress=a%ff@example.com"},
		{name: "two @", target: q("a@b@example.com")},
		{name: "two parameters", target: q("a@example.com") + "&emailaddress=b%40example.com"},
		{name: "bad query escape", target: wellKnown + "?emailaddress=a%zz@example.com"},
		{name: "no parameter, IP Host", target: wellKnown, host: "[::1]:80"},
		{name: "no parameter, hostile Host", target: wellKnown, host: "<script>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			h := Handler(Options{Hostname: "mail.example.net", IsHostedDomain: hostedOnly("example.com", &calls)})
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			// Set the URL by hand: NewRequest refuses some of these targets.
			u, err := url.ParseRequestURI(tc.target)
			if err != nil {
				u = &url.URL{Path: wellKnown, RawQuery: strings.SplitN(tc.target, "?", 2)[1]}
			}
			req.URL = u
			if tc.host != "" {
				req.Host = tc.host
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotFound {
				t.Errorf("status %d, want 404", rec.Code)
			}
			body := rec.Body.String()
			for _, bad := range []string{"<", "script", "\"", "example.com", "aaaa", "X-Injected"} {
				if strings.Contains(body, bad) {
					t.Errorf("body echoes %q: %q", bad, body)
				}
			}
			if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/xml") {
				t.Errorf("refusal served as XML")
			}
			if asked := calls.Load() > 0; asked != tc.wantAsked {
				t.Errorf("IsHostedDomain called: %v, want %v", asked, tc.wantAsked)
			}
		})
	}
}

func TestAutoconfigLookupFails(t *testing.T) {
	t.Parallel()
	h := Handler(Options{
		Hostname: "mail.example.net",
		IsHostedDomain: func(ctx context.Context, _ string) (bool, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Errorf("lookup context has no deadline")
			}
			return false, errors.New("ldap: connection refused")
		},
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml?emailaddress=a@example.com", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "ldap") {
		t.Errorf("the directory error reaches the client: %q", rec.Body.String())
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Errorf("no Retry-After")
	}
}

func TestAutoconfigDisabled(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	for name, o := range map[string]Options{
		"no hostname":      {IsHostedDomain: hostedOnly("example.com", &calls)},
		"no domain lookup": {Hostname: "mail.example.net"},
	} {
		rec := httptest.NewRecorder()
		Handler(o).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml?emailaddress=a@example.com", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", name, rec.Code)
		}
	}
	if calls.Load() != 0 {
		t.Errorf("lookup called while autoconfig is disabled")
	}
}

// Values are escaped by encoding/xml, not pasted: a hostname with markup
// characters (a configuration mistake) still yields well-formed XML that
// carries it verbatim.
func TestAutoconfigEscapes(t *testing.T) {
	t.Parallel()
	const odd = `mail.example.net"/><evil a='1'>&amp;`
	var calls atomic.Int64
	h := Handler(Options{Hostname: odd, IsHostedDomain: hostedOnly("example.com", &calls)})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml?emailaddress=a@example.com", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	if strings.Contains(rec.Body.String(), "<evil") {
		t.Errorf("markup not escaped: %s", rec.Body.String())
	}
	var got gotConfig
	if err := xml.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("XML does not parse: %v", err)
	}
	if got.Provider.Incoming.Hostname != odd || got.Provider.Outgoing.Hostname != odd {
		t.Errorf("hostname round trip: %q / %q", got.Provider.Incoming.Hostname, got.Provider.Outgoing.Hostname)
	}
}

// Autoconfig describes the listeners that are on, implicit TLS first
// (RFC 8314), and no other: a client configured from it must reach one.
func TestAutoconfigDescribesListenersOn(t *testing.T) {
	t.Parallel()
	type srv struct{ typ, port, socket string }
	for _, tc := range []struct {
		name    string
		svc     Services
		in, out []srv
	}{
		{"the usual four", Services{IMAPS: 993, IMAP: 143, Submissions: 465, Submission: 587},
			[]srv{{"imap", "993", "SSL"}, {"imap", "143", "STARTTLS"}}, []srv{{"smtp", "465", "SSL"}, {"smtp", "587", "STARTTLS"}}},
		{"no imaps, no 587", Services{IMAP: 143, Submissions: 465},
			[]srv{{"imap", "143", "STARTTLS"}}, []srv{{"smtp", "465", "SSL"}}},
	} {
		h := Handler(Options{Hostname: "mail.example.net", Services: &tc.svc,
			IsHostedDomain: func(_ context.Context, d string) (bool, error) { return d == "example.com", nil }})
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml?emailaddress=fred@example.com", nil))
		var got struct {
			In  []gotServer `xml:"emailProvider>incomingServer"`
			Out []gotServer `xml:"emailProvider>outgoingServer"`
		}
		if err := xml.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, rec.Body.String())
		}
		flat := func(l []gotServer) (out []srv) {
			for _, s := range l {
				out = append(out, srv{s.Type, s.Port, s.SocketType})
			}
			return out
		}
		if fmt.Sprint(flat(got.In)) != fmt.Sprint(tc.in) || fmt.Sprint(flat(got.Out)) != fmt.Sprint(tc.out) {
			t.Errorf("%s: incoming %v outgoing %v; want %v and %v", tc.name, flat(got.In), flat(got.Out), tc.in, tc.out)
		}
	}
}

// Autoconfig lookups in flight are bounded: past maxAutoconfigLookups, a
// request gets 503 and a Retry-After without a directory lookup, so that a
// flood of requests for random domains cannot hold every LDAP connection;
// once a lookup ends, the next request is looked up again.
func TestAutoconfigBoundsLookupsInFlight(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	entered, release := make(chan struct{}), make(chan struct{})
	h := Handler(Options{
		Hostname: "mail.example.net",
		IsHostedDomain: func(ctx context.Context, d string) (bool, error) {
			// The first lookups hang until released; later ones answer.
			if calls.Add(1) <= maxAutoconfigLookups {
				entered <- struct{}{}
				<-release
			}
			return d == "example.com", nil
		},
	})
	get := func(domain string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mail/config-v1.1.xml?emailaddress=a@"+domain, nil))
		return rec
	}
	done := make(chan int, maxAutoconfigLookups)
	for i := range maxAutoconfigLookups {
		go func() { done <- get(fmt.Sprintf("random%d.example", i)).Code }()
		<-entered
	}
	rec := get("random-more.example")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("with %d lookups in flight: status %d, Retry-After %q; want 503 with Retry-After",
			maxAutoconfigLookups, rec.Code, rec.Header().Get("Retry-After"))
	}
	if n := calls.Load(); n != maxAutoconfigLookups {
		t.Errorf("%d lookups, want %d: the request over the bound was looked up", n, maxAutoconfigLookups)
	}
	close(release)
	for range maxAutoconfigLookups {
		if code := <-done; code != http.StatusNotFound {
			t.Errorf("a lookup in flight ended with status %d, want 404", code)
		}
	}
	if rec := get("example.com"); rec.Code != http.StatusOK {
		t.Errorf("after the lookups ended: status %d, want 200", rec.Code)
	}
}
