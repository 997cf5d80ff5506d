package dane

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver asks one DNSSEC-validating resolver and reports, with every
// answer, whether the resolver validated it (the AD bit). It is safe for
// concurrent use and keeps no cache: the resolver it asks does.
type Resolver struct {
	addr    string
	timeout time.Duration
}

// NewResolver returns a Resolver asking the validating resolver at addr
// ("host:port", e.g. 127.0.0.1:53 for a local unbound).
func NewResolver(addr string) *Resolver {
	return &Resolver{addr: addr, timeout: 10 * time.Second}
}

// Addr is the resolver asked.
func (r *Resolver) Addr() string { return r.addr }

// query asks one question with DO and AD set (RFC 6840 §5.7: AD in a query
// asks for the AD bit in the answer) and returns the records of qtype in the
// answer section. A name that does not exist, or has no such record, is a
// *net.DNSError with IsNotFound, as the net package's resolver says it.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, bool, error) {
	rrs, _, secure, err := r.queryCanonical(ctx, name, qtype)
	return rrs, secure, err
}

// queryCanonical is query that also returns the name the answer's CNAME
// chain (if any) leads to, without the final dot.
func (r *Resolver) queryCanonical(ctx context.Context, name string, qtype uint16) ([]dns.RR, string, bool, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.SetEdns0(4096, true)
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &dns.Client{Net: "udp", UDPSize: 4096}
	resp, _, err := c.ExchangeContext(ctx, m, r.addr)
	if err == nil && resp.Truncated {
		c = &dns.Client{Net: "tcp"}
		resp, _, err = c.ExchangeContext(ctx, m, r.addr)
	}
	dnsErr := func(msg string, notFound bool) error {
		return &net.DNSError{Err: msg, Name: name, Server: r.addr, IsNotFound: notFound, IsTemporary: !notFound}
	}
	if err != nil {
		return nil, "", false, dnsErr(err.Error(), false)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, "", resp.AuthenticatedData, dnsErr("no such host", true)
	default:
		return nil, "", false, dnsErr("server answered "+dns.RcodeToString[resp.Rcode], false)
	}
	// Follow the CNAME chain from the name asked (bounded: a loop in a
	// hostile answer ends).
	canonical := strings.ToLower(dns.Fqdn(name))
	for range 8 {
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, canonical) {
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" {
			break
		}
		canonical = next
	}
	var out []dns.RR
	for _, rr := range resp.Answer {
		if rr.Header().Rrtype == qtype && strings.EqualFold(rr.Header().Name, canonical) {
			out = append(out, rr)
		}
	}
	canonical = strings.TrimSuffix(canonical, ".")
	if len(out) == 0 {
		return nil, canonical, resp.AuthenticatedData, dnsErr("no "+dns.TypeToString[qtype]+" record", true)
	}
	return out, canonical, resp.AuthenticatedData, nil
}

// LookupMX returns the MX records of name and whether they were validated.
func (r *Resolver) LookupMX(ctx context.Context, name string) ([]*net.MX, bool, error) {
	rrs, secure, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, secure, err
	}
	out := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		out = append(out, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return out, secure, nil
}

// LookupIPAddr returns the A and AAAA records of host, the name its CNAME
// chain leads to (host itself without one), and whether every answer that
// had records was validated.
func (r *Resolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, string, bool, error) {
	var out []net.IPAddr
	secure, found := true, false
	canonical := strings.ToLower(strings.TrimSuffix(host, "."))
	var firstErr error
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, cn, sec, err := r.queryCanonical(ctx, host, qt)
		var de *net.DNSError
		if err != nil && !(errors.As(err, &de) && de.IsNotFound) {
			return nil, "", false, err
		}
		if err != nil {
			firstErr = err
			continue
		}
		found = true
		secure = secure && sec
		canonical = cn
		for _, rr := range rrs {
			var a netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(v.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA)
			}
			if a.IsValid() {
				out = append(out, net.IPAddr{IP: a.AsSlice()})
			}
		}
	}
	if !found {
		return nil, "", false, firstErr
	}
	return out, canonical, secure, nil
}

// LookupTLSA returns the TLSA records of _port._tcp.host and whether they
// were validated. An RRset larger than MaxRecords is cut to its first
// MaxRecords*4 records (usable or not), bounding the work.
func (r *Resolver) LookupTLSA(ctx context.Context, port int, host string) ([]Record, bool, error) {
	name := fmt.Sprintf("_%d._tcp.%s", port, strings.TrimSuffix(host, "."))
	rrs, secure, err := r.query(ctx, name, dns.TypeTLSA)
	if err != nil {
		return nil, secure, err
	}
	var out []Record
	for _, rr := range rrs {
		if len(out) == MaxRecords*4 {
			break
		}
		t := rr.(*dns.TLSA)
		data, err := hexDecode(t.Certificate)
		if err != nil {
			// Malformed data makes the record unusable (RFC 7671 §4).
			out = append(out, Record{Usage: 255})
			continue
		}
		out = append(out, Record{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
	}
	return out, secure, nil
}

func hexDecode(s string) ([]byte, error) {
	if len(s) > 2*maxFull {
		return nil, errors.New("too long")
	}
	return hex.DecodeString(s)
}

// Validates asks the resolver for the root zone's NS records, which are
// signed: a validating resolver sets the AD bit on its answer. It is the
// check that the configured resolver is one DANE can trust at all.
func (r *Resolver) Validates(ctx context.Context) error {
	_, secure, err := r.query(ctx, ".", dns.TypeNS)
	if err != nil {
		return fmt.Errorf("dane: asking %s for the root zone: %w", r.addr, err)
	}
	if !secure {
		return fmt.Errorf("dane: %s does not validate DNSSEC (no AD bit on the signed root zone)", r.addr)
	}
	return nil
}
