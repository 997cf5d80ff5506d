package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// route is where the recipients of one domain go. Recipients with the same
// route key share one connection.
type route struct {
	key    string
	domain string     // MX routes: the domain looked up
	addr   string     // static and relayhost routes: "host:port"
	relay  *Relayhost // relayhost route only
	node   string     // node copies: the home node's name (addr is its cluster listener)
}

// routeFor picks the route for a recipient domain: a static route for the
// domain, then the "*" route, then the relayhost, then MX (Postfix's
// transport_maps before relayhost).
func (q *Queue) routeFor(domain string) route {
	if addr, ok := q.o.Routes[domain]; ok {
		return route{key: "route:" + addr, addr: addr}
	}
	if addr, ok := q.o.Routes["*"]; ok {
		return route{key: "route:" + addr, addr: addr}
	}
	if q.o.Relayhost != nil {
		return route{key: "relay", addr: q.o.Relayhost.Addr, relay: q.o.Relayhost}
	}
	return route{key: "mx:" + domain, domain: domain}
}

// hop is one host to try for a route.
type hop struct {
	name      string     // host name for TLS verification and logs; an IP for literals
	port      string     // "25" for MX
	ip        netip.Addr // set when name needs no lookup
	implicit  bool       // an implicit MX (RFC 5321 §5.1): "not found" is permanent
	mxSecure  bool       // the MX lookup (or its denial, for an implicit MX) was DNSSEC-validated
	secureDNS bool       // look the addresses up through Options.DANE
	relay     *Relayhost // AUTH and implicit TLS settings, relayhost only
	node      string     // a cluster node's listener: its name (dialNode)
}

// resolve turns a route into hosts in the order to try them. A failure is
// returned when there is nothing to try.
func (q *Queue) resolve(ctx context.Context, rt route) ([]hop, *failure) {
	if rt.node != "" && rt.addr == "" {
		return nil, tempFailure("4.3.5", "cluster node "+rt.node+" has no SMTP address in the configuration")
	}
	if rt.addr != "" {
		host, port, err := splitHostPort(rt.addr) // checked at Open
		if err != nil {
			return nil, tempFailure("4.3.5", "bad route: "+err.Error())
		}
		h := hop{name: host, port: port, relay: rt.relay, node: rt.node}
		if ip, err := netip.ParseAddr(host); err == nil {
			h.ip = ip
		} else if q.o.DANE != nil && q.o.DANERoutes && rt.node == "" {
			// No MX lookup to validate: the name is the admin's.
			h.name = strings.ToLower(strings.TrimSuffix(host, "."))
			h.mxSecure, h.secureDNS = true, true
		}
		return []hop{h}, nil
	}
	if ip, ok := parseAddrLiteral(rt.domain); ok {
		return []hop{{name: ip.String(), port: "25", ip: ip}}, nil
	}
	var mxs []*net.MX
	var err error
	secure, viaDANE := false, q.o.DANE != nil
	if viaDANE {
		// DANE needs to know whether the MX RRset was validated, so the
		// lookup goes to the validating resolver (RFC 7672 §2.2.1).
		mxs, secure, err = q.o.DANE.LookupMX(ctx, rt.domain)
	} else {
		mxs, err = q.o.Resolver.LookupMX(ctx, rt.domain)
	}
	var dnsErr *net.DNSError
	switch {
	case err != nil && len(mxs) > 0:
		// Go returns the usable records with an error when some were
		// malformed: use them.
	case err != nil && errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the domain itself is the implicit MX (RFC 5321 §5.1).
		return []hop{{name: rt.domain, port: "25", implicit: true, mxSecure: secure, secureDNS: viaDANE}}, nil
	case err != nil:
		return nil, tempFailure("4.4.3", "MX lookup for "+rt.domain+" failed: "+printable(err.Error(), 200))
	case len(mxs) == 0:
		return []hop{{name: rt.domain, port: "25", implicit: true, mxSecure: secure, secureDNS: viaDANE}}, nil
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		// RFC 7505 §3: a null MX means the domain accepts no mail.
		return nil, permFailure("5.1.10", "recipient domain "+rt.domain+" does not accept mail (null MX, RFC 7505)")
	}
	// Shuffle, then a stable sort by preference: random among equals
	// (RFC 5321 §5.1).
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	var hops []hop
	for _, mx := range mxs {
		name := strings.TrimSuffix(mx.Host, ".")
		if mx.Host == "." || !validHostname(name) {
			continue // RFC 5321 §5.1: MX targets are names, not addresses
		}
		if _, err := netip.ParseAddr(name); err == nil {
			continue
		}
		hops = append(hops, hop{name: strings.ToLower(name), port: "25", mxSecure: secure, secureDNS: viaDANE})
	}
	if len(hops) == 0 {
		return nil, tempFailure("4.4.3", "no usable MX host for "+rt.domain)
	}
	return hops, nil
}

// addrDNS is what DANE needs of a hop's address lookup.
type addrDNS struct {
	secure    bool   // validated by the DNSSEC resolver
	canonical string // where the host's CNAME chain leads ("" when not asked)
}

// addrs returns the addresses to try for a hop, A and AAAA in the order the
// resolver gave them, and whether they were DNSSEC-validated.
func (q *Queue) addrs(ctx context.Context, h hop) ([]netip.Addr, addrDNS, *failure) {
	var ad addrDNS
	if h.ip.IsValid() {
		return []netip.Addr{h.ip}, ad, nil
	}
	var ips []net.IPAddr
	var err error
	if h.secureDNS {
		ips, ad.canonical, ad.secure, err = q.o.DANE.LookupIPAddr(ctx, h.name)
	} else {
		ips, err = q.o.Resolver.LookupIPAddr(ctx, h.name)
	}
	var dnsErr *net.DNSError
	if err != nil {
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			if h.implicit {
				return nil, ad, permFailure("5.1.2", "host or domain name not found: "+h.name)
			}
			// Postfix: 5.4.4, unless another host failed for now
			// (tryHops keeps the message then).
			return nil, ad, permFailure("5.4.4", "MX host not found: "+h.name)
		}
		return nil, ad, tempFailure("4.4.3", "address lookup for "+h.name+" failed: "+printable(err.Error(), 200))
	}
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok || ip.Zone != "" || a.IsUnspecified() || a.IsMulticast() {
			continue
		}
		out = append(out, a.Unmap())
		if len(out) == maxAddressesTried {
			break
		}
	}
	if len(out) == 0 {
		return nil, ad, tempFailure("4.4.3", "no usable address for "+h.name)
	}
	return out, ad, nil
}

// ParseNexthop parses a relayhost or a static route in Postfix's syntax
// (relayhost, transport_maps nexthops): "host", "host:port", "[host]",
// "[host]:port", the port 25 when none is given; an IPv6 address goes in
// brackets ("[2001:db8::1]:587", "[ipv6:2001:db8::1]"). It returns the
// "host:port" the queue connects to.
//
// Postfix looks up the MX records of a host not in brackets; the queue
// does not: "host" and "[host]" both connect to the host's own addresses
// (for a smarthost the same, unless its name has MX records).
func ParseNexthop(s string) (string, error) {
	host, port, hasPort := s, "25", false
	if rest, ok := strings.CutPrefix(s, "["); ok {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return "", fmt.Errorf("%q: no closing ]", s)
		}
		host, rest = rest[:end], rest[end+1:]
		if len(host) > 5 && strings.EqualFold(host[:5], "ipv6:") {
			host = host[5:]
		}
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return "", fmt.Errorf("%q: want [host] or [host]:port", s)
			}
			port, hasPort = p, true
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port, hasPort = s[:i], s[i+1:], true
		if strings.Contains(host, ":") {
			return "", fmt.Errorf("%q: an IPv6 address goes in brackets: [%s]", s, s)
		}
	}
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return "", fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("%q: an address with a zone is not a mail host", s)
		}
	} else if !validHostname(host) || strings.HasPrefix(host, "-") {
		return "", fmt.Errorf("%q: %q is not a host name or address", s, host)
	}
	return net.JoinHostPort(host, port), nil
}
