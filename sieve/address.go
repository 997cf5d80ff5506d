// Address parts (RFC 5228 §2.7.4) and SMTP's quoting of a local part.

package sieve

import "strings"

// mailAddr is an address split into its local part, as it is once
// unquoted ("john doe" of "\"john doe\"@example.org"), and its domain.
type mailAddr struct {
	local, domain string
	noDomain      bool // a local part alone (RCPT TO:<postmaster>)
}

// splitAddrSpec splits an addr-spec whose local part is unquoted
// already (net/mail's Address): at its last "@", since a domain has
// none.
func splitAddrSpec(s string) mailAddr {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return mailAddr{local: s, noDomain: true}
	}
	return mailAddr{local: s[:at], domain: s[at+1:]}
}

// parseEnvelopeAddress reads an envelope address as SMTP gives it (its
// local part quoted when it must be: "\"john doe\"@example.org"); false
// for the null sender, which is no address.
func parseEnvelopeAddress(s string) (mailAddr, bool) {
	if s == "" {
		return mailAddr{}, false
	}
	if s[0] != '"' {
		return splitAddrSpec(s), true
	}
	var local strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				local.WriteByte(s[i])
			}
		case '"':
			switch rest := s[i+1:]; {
			case rest == "":
				return mailAddr{local: local.String(), noDomain: true}, true
			case rest[0] == '@':
				return mailAddr{local: local.String(), domain: rest[1:]}, true
			}
			return splitAddrSpec(s), true // not a quoted local part after all
		default:
			local.WriteByte(c)
		}
	}
	return splitAddrSpec(s), true
}

// part is one address part, as Pigeonhole extracts it: :all the address
// with its local part quoted where it must be (Dovecot's
// smtp_address_encode), :localpart unquoted; :user and :detail split the
// local part at its first "+" (RFC 5233), and :detail has no value
// without one, nor :domain without a domain.
func (a mailAddr) part(part string) (string, bool) {
	switch part {
	case "all":
		if a.noDomain {
			return quoteLocalPart(a.local), true
		}
		return quoteLocalPart(a.local) + "@" + a.domain, true
	case "localpart":
		return a.local, true
	case "domain":
		return a.domain, !a.noDomain
	case "user":
		if i := strings.IndexByte(a.local, '+'); i >= 0 {
			return a.local[:i], true
		}
		return a.local, true
	case "detail":
		if i := strings.IndexByte(a.local, '+'); i >= 0 {
			return a.local[i+1:], true
		}
	}
	return "", false
}

// quoteLocalPart writes a local part as SMTP (RFC 5321) has it, as
// Dovecot's smtp_address_write: as it is when a dot-string (atoms
// separated by single dots; octets past ASCII count as atom text, RFC
// 6531), else quoted, '"' and '\\' escaped.
func quoteLocalPart(local string) string {
	dotString := local != ""
	for i := 0; i < len(local) && dotString; i++ {
		switch c := local[i]; {
		case c == '.':
			dotString = i > 0 && i < len(local)-1 && local[i-1] != '.'
		case !isAtext(c):
			dotString = false
		}
	}
	if dotString {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isAtext says whether c is RFC 5322's atext, or an octet past ASCII.
func isAtext(c byte) bool {
	switch {
	case c >= 0x80, 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}
