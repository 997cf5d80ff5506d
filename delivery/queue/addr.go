package queue

import (
	"net/netip"
	"strings"
)

// Limits from RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle
// brackets, a local part 64, a domain 255.
const (
	maxAddrLen   = 254
	maxLocalLen  = 64
	maxDomainLen = 255
	maxLabelLen  = 63
)

// validAddress reports whether a is an envelope address the queue will store
// and later put on an SMTP command line: local@domain, no controls, no
// brackets, no spaces outside a quoted local part, a domain that is a host
// name or an address literal. It is a safety check, not a full RFC 5321 parser:
// the SMTP server in front of the queue already enforces its policy.
func validAddress(a string) bool {
	if len(a) == 0 || len(a) > maxAddrLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return false
	}
	local, domain := a[:at], a[at+1:]
	if len(local) > maxLocalLen {
		return false
	}
	if strings.ContainsRune(local, ' ') && !(strings.HasPrefix(local, `"`) && strings.HasSuffix(local, `"`) && len(local) >= 2) {
		return false
	}
	return validDomain(domain)
}

// validDomain accepts a host name (UTF-8 labels allowed for SMTPUTF8) or an
// address literal, RFC 5321 §4.1.3.
func validDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		_, ok := parseAddrLiteral(d)
		return ok
	}
	return validHostname(d)
}

// validHostname accepts dot-separated labels of letters, digits, '-', '_'
// and non-ASCII bytes, with an optional trailing dot.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > maxDomainLen {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > maxLabelLen {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 0x80 || c == '-' || c == '_' ||
				(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			if !ok {
				return false
			}
		}
	}
	return true
}

// parseAddrLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func parseAddrLiteral(d string) (netip.Addr, bool) {
	if len(d) < 3 || d[0] != '[' || d[len(d)-1] != ']' {
		return netip.Addr{}, false
	}
	inner := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(inner, "IPv6:"); ok {
		ip, err := netip.ParseAddr(v6)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return netip.Addr{}, false
		}
		return ip, true
	}
	ip, err := netip.ParseAddr(inner)
	if err != nil || !ip.Is4() {
		return netip.Addr{}, false
	}
	return ip, true
}

// domainOf returns the normalised domain of a valid address.
func domainOf(addr string) string {
	return normalizeDomain(addr[strings.LastIndexByte(addr, '@')+1:])
}

// normalizeDomain lowercases ASCII letters and drops a trailing dot, so that
// routes and groups compare equal however the sender spelled the domain.
func normalizeDomain(d string) string {
	if strings.HasPrefix(d, "[") {
		return d
	}
	return strings.ToLower(strings.TrimSuffix(d, "."))
}

// isASCII reports whether s needs no SMTPUTF8 (RFC 6531).
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// printable makes a string from the network safe for a log, a DSN line or a
// header: controls and non-ASCII become '?', runs of whitespace one space, and
// it is cut to max bytes.
func printable(s string, max int) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case c < 0x20 || c >= 0x7f:
			c = '?'
		}
		space = false
		b.WriteByte(c)
	}
	return strings.TrimRight(b.String(), " ")
}
