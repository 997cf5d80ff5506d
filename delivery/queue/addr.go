package queue

import (
	"net/netip"
	"strings"

	"golang.org/x/net/idna"

	"courriel/internal/envaddr"
)

// The envelope address checks are internal/envaddr's, shared with the
// directory, which drops at RCPT time an alias target the queue would
// refuse.
const (
	maxAddrLen   = envaddr.MaxAddrLen
	maxDomainLen = envaddr.MaxDomainLen
)

func validAddress(a string) bool                   { return envaddr.Valid(a) }
func validHostname(h string) bool                  { return envaddr.ValidHostname(h) }
func parseAddrLiteral(d string) (netip.Addr, bool) { return envaddr.ParseAddrLiteral(d) }

// domainOf returns the normalised domain of a valid address.
func domainOf(addr string) string {
	return normalizeDomain(addr[strings.LastIndexByte(addr, '@')+1:])
}

// normalizeDomain lowercases ASCII letters and drops a trailing dot, so that
// routes and groups compare equal however the sender spelled the domain. A
// domain in U-labels (an SMTPUTF8 sender's, or an alias target's) becomes
// its A-labels (RFC 5891 §5: IDNA's lookup form), the only form the DNS,
// MTA-STS and certificates know: Go's resolver refuses a non-ASCII name
// without asking, which bounced such mail as "domain not found". Postfix
// converts the same way for its lookups (SMTPUTF8_README). The recipient's
// address itself is sent unchanged, with SMTPUTF8. A name IDNA refuses
// stays as it is, and is not found.
func normalizeDomain(d string) string {
	if strings.HasPrefix(d, "[") {
		return d
	}
	d = strings.TrimSuffix(d, ".")
	if !isASCII(d) {
		if a, err := idna.Lookup.ToASCII(d); err == nil {
			return a
		}
	}
	return strings.ToLower(d)
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
