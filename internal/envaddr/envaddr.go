// Package envaddr checks an envelope address as the outbound queue stores
// it and later puts it on an SMTP command line. The queue refuses a message
// with an address that fails Valid; the directory drops an alias target
// that fails it, at RCPT time, so that no such address ever reaches the
// queue after DATA. One check, shared, so the two cannot disagree.
package envaddr

import (
	"net/netip"
	"strings"
)

// Limits from RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle
// brackets, a domain 255. Its local-part limit (64) is not enforced, as by
// Postfix (§4.5.3.1: avoid limits where possible): long local parts are
// real (the SRS0 addresses of forwarders, VERP bounce addresses), and a
// message smtp accepted must not fail here. The path bound is kept: it is
// what every next hop must take (a longer one would bounce after our 250),
// and the headers written from an address (Return-Path, Delivered-To, a
// DSN's fields) stay far below RFC 5322's 998-octet lines.
const (
	MaxAddrLen   = 254
	MaxDomainLen = 255
	MaxLabelLen  = 63
)

// Valid reports whether a is an envelope address the queue will store
// and later put on an SMTP command line: local@domain, no controls, no
// brackets, no spaces outside a quoted local part, a domain that is a host
// name or an address literal. It is a safety check, not a full RFC 5321 parser:
// the SMTP server in front of the queue already enforces its policy.
func Valid(a string) bool {
	if len(a) == 0 || len(a) > MaxAddrLen {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < 0x20 || c == 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	local, domain, ok := Split(a)
	if !ok || local == "" || domain == "" {
		return false
	}
	if strings.ContainsRune(local, ' ') && !(strings.HasPrefix(local, `"`) && strings.HasSuffix(local, `"`) && len(local) >= 2) {
		return false
	}
	return ValidDomain(domain)
}

// Split cuts an address at its last '@': a domain never holds one, a
// local part may, quoted in the external form ("x@y"@example.net, RFC 5321
// §4.1.2 Quoted-string) or bare in the internal form that net/mail and
// Postfix's tables use (x@y@example.net). Cutting at the first '@' would
// give "y"@example.net" as the domain. ok is false without an '@'; local
// and domain are then a and "".
func Split(a string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return a, "", false
	}
	return a[:at], a[at+1:], true
}

// ValidDomain accepts a host name (UTF-8 labels allowed for SMTPUTF8) or an
// address literal, RFC 5321 §4.1.3.
func ValidDomain(d string) bool {
	if strings.HasPrefix(d, "[") {
		_, ok := ParseAddrLiteral(d)
		return ok
	}
	return ValidHostname(d)
}

// ValidHostname accepts dot-separated labels of letters, digits, '-', '_'
// and non-ASCII bytes, with an optional trailing dot.
func ValidHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if len(h) == 0 || len(h) > MaxDomainLen {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if len(label) == 0 || len(label) > MaxLabelLen {
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

// ParseAddrLiteral parses "[192.0.2.1]" or "[IPv6:2001:db8::1]".
func ParseAddrLiteral(d string) (netip.Addr, bool) {
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

// DotAtom reports whether s is a dot-atom, atext runs separated by single
// dots (RFC 5322 §3.2.3), as a local part without quotes. utf8 also takes
// UTF8-non-ascii as atext (RFC 6532 §3.2), C1 controls and the BOM
// excepted; otherwise only ASCII.
func DotAtom(s string, utf8 bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r == '.', r < 0x80 && IsAtext(byte(r)):
		case utf8 && r >= 0xa0 && r != 0xfeff:
		default:
			return false
		}
	}
	return true
}

// IsAtext reports whether c is an ASCII atext character (RFC 5322
// §3.2.3): a letter, a digit, or one of !#$%&'*+-/=?^_`{|}~.
func IsAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
