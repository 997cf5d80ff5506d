package queue

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// route is where the recipients of one domain go. Recipients with the same
// route key share one connection.
type route struct {
	key     string
	domain  string     // MX routes: the recipient domain looked up
	nexthop Nexthop    // static and relayhost routes
	addr    string     // node copies: the home node's cluster listener, "host:port"
	relay   *Relayhost // relayhost route only
	node    string     // node copies: the home node's name
}

// routeFor picks the route for a recipient domain: a static route for the
// domain, then the "*" route, then the relayhost, then MX (Postfix's
// transport_maps before relayhost). A static route's key is its nexthop, so
// that "host" (MX hosts) and "[host]" (the host itself) are two
// destinations, as in Postfix, whose connection cache and dead-host
// memory are per nexthop too.
func (q *Queue) routeFor(domain string) route {
	if nh, ok := q.o.routes[domain]; ok {
		return route{key: "route:" + nh.String(), nexthop: nh}
	}
	if nh, ok := q.o.routes["*"]; ok {
		return route{key: "route:" + nh.String(), nexthop: nh}
	}
	if q.o.Relayhost != nil {
		return route{key: "relay", nexthop: q.o.relayhost, relay: q.o.Relayhost}
	}
	return route{key: "mx:" + domain, domain: domain}
}

// hop is one host to try for a route.
type hop struct {
	name      string     // host name for TLS verification and logs; an IP for literals
	port      string     // "25" for MX
	ip        netip.Addr // set when name needs no lookup
	implicit  bool       // the name looked up itself: an implicit MX (RFC 5321 §5.1) or a [nexthop]
	mxSecure  bool       // the MX lookup (or its denial, for an implicit MX) was DNSSEC-validated
	secureDNS bool       // look the addresses up through Options.DANE
	nexthop   string     // static and relayhost routes: the nexthop's host (DANE's next-hop domain, errors)
	relay     *Relayhost // AUTH and implicit TLS settings, relayhost only
	node      string     // a cluster node's listener: its name (dialNode)
	// known is the address lookup an earlier pass over the route's
	// hosts made (hopsAfter), taken as it was: nil, look the name up.
	known *looked
	// pref is the MX preference (0 for an implicit MX, a [nexthop] or an
	// address); dest is what the mail is for, the recipient domain or
	// the nexthop's host, named by a loop's failure (loop.go). bestMX,
	// set by tryHops, says no host with addresses is preferred to it.
	pref   uint16
	dest   string
	bestMX bool
}

// resolve turns a route into hosts in the order to try them. A failure is
// returned when there is nothing to try.
func (q *Queue) resolve(ctx context.Context, rt route) ([]hop, *failure) {
	if rt.node != "" {
		if rt.addr == "" {
			return nil, tempFailure("4.3.5", "cluster node "+rt.node+" has no SMTP address in the configuration")
		}
		host, port, err := splitHostPort(rt.addr) // checked by the cluster's configuration
		if err != nil {
			return nil, tempFailure("4.3.5", "bad address of cluster node "+rt.node+": "+err.Error())
		}
		h := hop{name: host, port: port, node: rt.node}
		if ip, err := netip.ParseAddr(host); err == nil {
			h.ip = ip
		}
		return []hop{h}, nil
	}
	if nh := rt.nexthop; nh.Host != "" {
		if !nh.MX {
			// "[host]": the host itself, no MX lookup (Postfix).
			h := hop{name: nh.Host, port: nh.Port, implicit: true, nexthop: nh.Host, relay: rt.relay}
			if ip, err := netip.ParseAddr(nh.Host); err == nil {
				h.ip = ip
			} else if q.o.DANE != nil && q.o.DANERoutes {
				// No MX lookup to validate: the name is the admin's.
				h.mxSecure, h.secureDNS = true, true
			}
			return []hop{h}, nil
		}
		// "host", "host:port": the host's MX hosts, each on the port
		// given, or the host itself when it has no MX (Postfix's smtp(8)
		// resolves a nexthop as it does a recipient domain). DANE follows
		// the MX lookup's validation only under DANERoutes.
		hops, f := q.resolveMX(ctx, nh.Host, nh.Port, q.o.DANE != nil && q.o.DANERoutes, true)
		for i := range hops {
			hops[i].nexthop, hops[i].relay = nh.Host, rt.relay
		}
		return hops, f
	}
	if ip, ok := parseAddrLiteral(rt.domain); ok {
		return []hop{{name: ip.String(), port: "25", ip: ip}}, nil
	}
	// DANE needs to know whether the MX RRset was validated, so the lookup
	// goes to the validating resolver (RFC 7672 §2.2.1).
	return q.resolveMX(ctx, rt.domain, "25", q.o.DANE != nil, false)
}

// resolveMX looks up the MX hosts of name, a recipient domain or (isNexthop)
// the host of a relayhost or static route, through the validating resolver
// when viaDANE.
func (q *Queue) resolveMX(ctx context.Context, name, port string, viaDANE, isNexthop bool) ([]hop, *failure) {
	var mxs []*net.MX
	var err error
	secure := false
	if viaDANE {
		mxs, secure, err = q.o.DANE.LookupMX(ctx, name)
	} else {
		mxs, err = q.o.Resolver.LookupMX(ctx, rooted(name))
	}
	implicit := []hop{{name: name, port: port, implicit: true, mxSecure: secure, secureDNS: viaDANE}}
	var dnsErr *net.DNSError
	switch {
	case err != nil && len(mxs) > 0:
		// Go returns the usable records with an error when some were
		// malformed: use them.
	case err != nil && errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		// No MX: the name itself is the implicit MX (RFC 5321 §5.1). A
		// name that does not exist at all is found out by its address
		// lookup, which says so (addrs).
		return implicit, nil
	case err != nil:
		return nil, tempFailure("4.4.3", "MX lookup for "+name+" failed: "+printable(err.Error(), 200))
	case len(mxs) == 0:
		return implicit, nil
	}
	if len(mxs) == 1 && mxs[0].Host == "." {
		if isNexthop {
			// Not the recipient's domain refusing mail: the route
			// points nowhere (Postfix: 5.1.0, "nexthop domain does not
			// accept mail"; a relayhost defers instead, relayhostProblem).
			return nil, permFailure("5.4.4", "nexthop "+name+" does not accept mail (null MX, RFC 7505): check the route")
		}
		// RFC 7505 §3: a null MX means the domain accepts no mail.
		return nil, permFailure("5.1.10", "recipient domain "+name+" does not accept mail (null MX, RFC 7505)")
	}
	// Shuffle, then a stable sort by preference: random among equals
	// (RFC 5321 §5.1).
	q.o.shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return cmp.Compare(a.Pref, b.Pref) })
	var hops []hop
	for _, mx := range mxs {
		host := strings.TrimSuffix(mx.Host, ".")
		if mx.Host == "." {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			// RFC 5321 §5.1 wants a name, but Postfix takes an
			// address there (dns_lookup.c valid_rr_name: "numeric
			// domain name") and connects to it without a lookup
			// (smtp_addr.c: "Interpret a numerical name as an
			// address"), and domains that publish one get their
			// mail from it: bouncing it lost mail Postfix delivers.
			// It is a hop of its own address, so that the loop
			// check of our own addresses (tryHops, lookLevel) sees
			// it, and without DANE: no address lookup to validate.
			if ip, ok := mxAddress(ip); ok {
				hops = append(hops, hop{name: ip.String(), port: port, ip: ip, mxSecure: secure, pref: mx.Pref})
			}
			continue
		}
		if !validHostname(host) {
			continue // no host name: nothing to look up
		}
		hops = append(hops, hop{name: strings.ToLower(host), port: port, mxSecure: secure, secureDNS: viaDANE, pref: mx.Pref})
	}
	if len(hops) == 0 {
		// Every MX record names no host at all (a malformed name, an
		// address nobody can connect to): the domain's DNS is broken,
		// and stays so until its admin fixes it (a lookup failure
		// would be temporary, this is an answer). Postfix finds such
		// a reply malformed and bounces (5.4.4); waiting told the
		// sender after maximal_queue_lifetime only.
		return nil, permFailure("5.4.4", "no usable MX host for "+name+": its MX records name no host")
	}
	return hops, nil
}

// mxAddress is an MX target that is an IP address as a hop's address:
// IPv4-mapped as IPv4, as addrs takes a lookup's. An address with a zone,
// the unspecified address (0.0.0.0, which some domains published to
// refuse mail before RFC 7505's null MX) and a multicast one are none to
// connect to, as addrs skips them in a lookup's answer.
func mxAddress(ip netip.Addr) (netip.Addr, bool) {
	ip = ip.Unmap()
	if ip.Zone() != "" || ip.IsUnspecified() || ip.IsMulticast() {
		return netip.Addr{}, false
	}
	return ip, true
}

// rooted is a domain as an absolute name, with its final dot, so that
// a resolver looks up that name only: without it Go's resolver (and the
// C library's) tries the names of resolv.conf's search list, or of the
// host name's domain when it has none, after an NXDOMAIN, and mail for
// a domain that does not exist went wherever "typo.example.<our own
// domain>" led (a wildcard record: our own web server, or this host),
// instead of bouncing. Postfix's smtp(8) turns the search off
// (RES_DEFNAMES, RES_DNSRCH) for the same reason.
func rooted(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// relayhostProblem keeps mail for the relayhost when the relayhost itself
// is the problem: a permanent failure before any transaction (its name
// not found, a null MX) is a configuration mistake, not the recipient's, and
// bouncing would lose every message sent until the admin notices. Postfix
// does the same (smtp_connect.c: "relayhost configuration problem", 4.3.5);
// it has no such net for transport_maps nexthops, and neither do routes.
func (q *Queue) relayhostProblem(id string, rt route, f *failure) *failure {
	if f == nil || rt.relay == nil || !f.perm {
		return f
	}
	q.log.Warn("relayhost configuration problem, mail deferred", "queue_id", id, "relayhost", rt.nexthop.String(), "reason", f.text)
	t := f.asTemporary()
	t.status = "4.3.5"
	t.text = printable("relayhost configuration problem: "+f.text, maxReplyText)
	return t
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
	if h.known != nil {
		return h.known.ips, h.known.ad, h.known.f
	}
	if h.ip.IsValid() {
		return []netip.Addr{h.ip}, ad, nil
	}
	var ips []net.IPAddr
	var err error
	if h.secureDNS {
		ips, ad.canonical, ad.secure, err = q.o.DANE.LookupIPAddr(ctx, h.name)
	} else {
		ips, err = q.o.Resolver.LookupIPAddr(ctx, rooted(h.name))
	}
	var dnsErr *net.DNSError
	if err != nil {
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			switch {
			case h.implicit && h.nexthop == "":
				return nil, ad, permFailure("5.1.2", "host or domain name not found: "+h.name)
			case h.implicit:
				// The route's own host: the sender's address is
				// fine, the route is not (Postfix: 5.4.4).
				return nil, ad, permFailure("5.4.4", "nexthop host or domain name not found: "+h.name)
			case h.nexthop != "":
				return nil, ad, permFailure("5.4.4", "MX host not found: "+h.name+" (MX of nexthop "+h.nexthop+")")
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

// Nexthop is a relayhost or static route's destination.
type Nexthop struct {
	Host string // a host name (lower case, A-labels, no trailing dot) or an IP address
	Port string // "25" unless given
	// MX: look up Host's MX records and try those hosts, each on Port,
	// Host itself only when it has none (Postfix's "host" and
	// "host:port"); false: Host itself ("[host]", "[host]:port", and an
	// address).
	MX bool
}

// String is n in Postfix's syntax, the port always written:
// "relay.example:25", "[relay.example]:587", "[2001:db8::1]:25".
func (n Nexthop) String() string {
	if n.MX {
		return n.Host + ":" + n.Port
	}
	return "[" + n.Host + "]:" + n.Port
}

// ParseNexthop parses a relayhost or a static route in Postfix's syntax
// (relayhost, transport_maps nexthops): "host", "host:port", "[host]",
// "[host]:port", the port 25 when none is given; an IPv6 address goes in
// brackets ("[2001:db8::1]:587", "[ipv6:2001:db8::1]").
//
// As in Postfix, the brackets say whether MX records are looked up: a host
// without them is a mail domain (its MX hosts, with the port given if any,
// or its own addresses when it has no MX), "[host]" is the host itself.
// An address needs no brackets: it has no MX records to look up.
func ParseNexthop(s string) (Nexthop, error) {
	host, port, hasPort, bracketed := s, "25", false, false
	if rest, ok := strings.CutPrefix(s, "["); ok {
		bracketed = true
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return Nexthop{}, fmt.Errorf("%q: no closing ]", s)
		}
		host, rest = rest[:end], rest[end+1:]
		if len(host) > 5 && strings.EqualFold(host[:5], "ipv6:") {
			host = host[5:]
		}
		if rest != "" {
			p, ok := strings.CutPrefix(rest, ":")
			if !ok {
				return Nexthop{}, fmt.Errorf("%q: want [host] or [host]:port", s)
			}
			port, hasPort = p, true
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port, hasPort = s[:i], s[i+1:], true
		if strings.Contains(host, ":") {
			return Nexthop{}, fmt.Errorf("%q: an IPv6 address goes in brackets: [%s]", s, s)
		}
	}
	if hasPort {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return Nexthop{}, fmt.Errorf("%q: port %q is not a number from 1 to 65535", s, port)
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return Nexthop{}, fmt.Errorf("%q: an address with a zone is not a mail host", s)
		}
		return Nexthop{Host: ip.String(), Port: port}, nil
	}
	if !validHostname(host) || strings.HasPrefix(host, "-") {
		return Nexthop{}, fmt.Errorf("%q: %q is not a host name or address", s, host)
	}
	// The DNS, certificates and the route's key want one spelling:
	// lower case, A-labels (as Postfix converts for its lookups).
	return Nexthop{Host: normalizeDomain(host), Port: port, MX: !bracketed}, nil
}
