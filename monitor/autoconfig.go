package monitor

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"

	"courriel/internal/envaddr"
)

// Limits on what an autoconfig request may name.
const (
	maxAddress   = 254 // RFC 5321 §4.5.3.1.3: a path is 256 octets with its "<>"
	maxLocalPart = 64  // RFC 5321 §4.5.3.1.1
	maxDomain    = 253 // RFC 1035 §2.3.4: 255 octets on the wire, 253 as text
	maxLabel     = 63  // RFC 1035 §2.3.4
)

// errBadAddress marks an emailaddress (or Host) that is not a plain
// dot-atom@domain address; the request gets 404 as if the domain were not ours.
var errBadAddress = errors.New("malformed address")

// autoconfig serves Thunderbird's autoconfiguration document ("ISPDB"
// format, clientConfig version 1.1). Thunderbird fetches
//
//	https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=<address>
//	https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=<address>
//
// and other clients (K-9/Thunderbird for Android, Evolution, KMail) read the
// same file.
type autoconfig struct {
	hostname string   // immutable; the server name clients connect to
	services Services // immutable
	isHosted func(ctx context.Context, domain string) (bool, error)
	// lookups holds a token per isHosted call in flight; nil: no bound.
	lookups chan struct{}
	log     *slog.Logger
}

func (a *autoconfig) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	domain, err := requestDomain(r)
	if err != nil {
		// Never echo the input: it is whatever the client sent.
		a.log.Debug("autoconfig: refused", "err", err)
		http.Error(w, "unknown domain", http.StatusNotFound)
		return
	}
	hosted, err := a.lookup(r.Context(), domain)
	if errors.Is(err, errBusy) {
		a.log.Debug("autoconfig: too many lookups in flight", "domain", domain)
		w.Header().Set("Retry-After", "60")
		http.Error(w, "busy, try again later", http.StatusServiceUnavailable)
		return
	}
	if err != nil {
		a.log.Warn("autoconfig: hosted-domain lookup failed", "domain", domain, "err", err)
		w.Header().Set("Retry-After", "60")
		http.Error(w, "directory unavailable, try again later", http.StatusServiceUnavailable)
		return
	}
	if !hosted {
		a.log.Debug("autoconfig: not a hosted domain", "domain", domain)
		http.Error(w, "unknown domain", http.StatusNotFound)
		return
	}
	body, err := a.document(domain)
	if err != nil { // cannot happen with these types; kept so it cannot go silent
		a.log.Error("autoconfig: encoding the document", "domain", domain, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	// The answer changes only when a domain is added or removed.
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write(body)
}

// errBusy: maxAutoconfigLookups lookups are in flight already.
var errBusy = errors.New("too many autoconfig lookups in flight")

// lookup asks isHosted about domain, bounded in time (lookupTimeout) and
// in number: when a.lookups is full, errBusy without asking, so that a
// flood of requests for random domains cannot take the directory
// connections mail and logins need.
func (a *autoconfig) lookup(ctx context.Context, domain string) (bool, error) {
	if a.lookups != nil {
		select {
		case a.lookups <- struct{}{}:
			defer func() { <-a.lookups }()
		default:
			return false, errBusy
		}
	}
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	return a.isHosted(ctx, domain)
}

// The ISPDB document, clientConfig version 1.1. encoding/xml escapes every
// value, so nothing from the request can break out of its element.
type clientConfig struct {
	XMLName  xml.Name      `xml:"clientConfig"`
	Version  string        `xml:"version,attr"`
	Provider emailProvider `xml:"emailProvider"`
}

type emailProvider struct {
	ID               string         `xml:"id,attr"`
	Domain           string         `xml:"domain"`
	DisplayName      string         `xml:"displayName"`
	DisplayShortName string         `xml:"displayShortName"`
	Incoming         []serverConfig `xml:"incomingServer"`
	Outgoing         []serverConfig `xml:"outgoingServer"`
}

type serverConfig struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"`
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// document renders the autoconfig XML for a hosted domain.
func (a *autoconfig) document(domain string) ([]byte, error) {
	// %EMAILADDRESS% is expanded by the client: courriel accepts any of a
	// user's addresses as login, so the address typed is the right one.
	const username = "%EMAILADDRESS%"
	server := func(typ string, port int, socket string) serverConfig {
		return serverConfig{Type: typ, Hostname: a.hostname, Port: port, SocketType: socket,
			Username: username, Authentication: "password-cleartext"} // inside TLS only
	}
	cc := clientConfig{
		Version: "1.1",
		Provider: emailProvider{
			ID:               domain,
			Domain:           domain,
			DisplayName:      domain,
			DisplayShortName: domain,
		},
	}
	// Only the listeners that are on, implicit TLS first (RFC 8314); the
	// STARTTLS ones refuse AUTH before it (RFC 3207).
	p := &cc.Provider
	if s := a.services; s.IMAPS > 0 {
		p.Incoming = append(p.Incoming, server("imap", s.IMAPS, "SSL"))
	}
	if s := a.services; s.IMAP > 0 {
		p.Incoming = append(p.Incoming, server("imap", s.IMAP, "STARTTLS"))
	}
	if s := a.services; s.Submissions > 0 {
		p.Outgoing = append(p.Outgoing, server("smtp", s.Submissions, "SSL"))
	}
	if s := a.services; s.Submission > 0 {
		p.Outgoing = append(p.Outgoing, server("smtp", s.Submission, "STARTTLS"))
	}
	out, err := xml.MarshalIndent(cc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal clientConfig: %w", err)
	}
	return append(append([]byte(xml.Header), out...), '\n'), nil
}

// requestDomain returns the lower-case domain an autoconfig request asks
// about: the domain of its one emailaddress parameter or, when there is
// none (older clients), the Host it was sent to, less an "autoconfig."
// prefix.
func requestDomain(r *http.Request) (string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", fmt.Errorf("%w: query: %v", errBadAddress, err)
	}
	if addrs, ok := q["emailaddress"]; ok {
		if len(addrs) != 1 {
			return "", fmt.Errorf("%w: %d emailaddress parameters", errBadAddress, len(addrs))
		}
		return addressDomain(addrs[0])
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimPrefix(strings.ToLower(host), "autoconfig.")
	if !validDomain(host) {
		return "", fmt.Errorf("%w: host is not a domain name", errBadAddress)
	}
	return host, nil
}

// addressDomain checks that s is local@domain with a dot-atom local part
// (RFC 5322 §3.2.3) and a host-name domain, and returns the domain in lower
// case. Quoted local parts and address literals are refused: courriel's
// addresses never use them, and refusing is safer than parsing.
func addressDomain(s string) (string, error) {
	if len(s) > maxAddress {
		return "", fmt.Errorf("%w: longer than %d octets", errBadAddress, maxAddress)
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", fmt.Errorf("%w: no @", errBadAddress)
	}
	local, domain := s[:at], strings.ToLower(s[at+1:])
	if len(local) > maxLocalPart || !envaddr.DotAtom(local, false) {
		return "", fmt.Errorf("%w: local part", errBadAddress)
	}
	if !validDomain(domain) {
		return "", fmt.Errorf("%w: domain", errBadAddress)
	}
	return domain, nil
}

// validDomain reports whether s is a lower-case host name of at least two
// labels: letters, digits and inner hyphens (RFC 1123 §2.1, punycode
// "xn--" labels included), labels of 1..63 octets, 253 octets in all, and a
// top-level label that is not all digits so an IPv4 address is not taken
// for a domain. A mail domain always has two labels or more.
func validDomain(s string) bool {
	if s == "" || len(s) > maxDomain {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > maxLabel || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	tld := labels[len(labels)-1]
	return strings.Trim(tld, "0123456789") != ""
}
