package smtp

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"courriel/internal/envaddr"
	"courriel/smtp/wire"
)

// Limits of RFC 5321 §4.5.3.1. Its 64-octet local part (§4.5.3.1.1) is
// not one: as by Postfix, which has none (§4.5.3.1: avoid limits where
// possible), a long local part is taken, sender or recipient, since the
// SRS0 addresses of forwarders and VERP bounce addresses have them; a
// recipient of ours is then looked up like any other (unknown: 550 5.1.1).
// The path is bounded, by §4.5.3.1.3's 256 octets rather than by the
// command line (MaxLineLength, 4096): it is what every next hop must take,
// so what we accept can leave (a longer sender would bounce after our 250,
// at the first next hop that holds to it, as sendmail does), it is what
// the queue stores (envaddr.MaxAddrLen), and the header lines made from an
// address (Return-Path, Delivered-To, Received's for, a DSN's fields) stay
// far below RFC 5322's 998 octets. The local parts seen in practice fit:
// SRS0 of a 64-octet local part at a 64-octet domain is under 150 octets.
const (
	maxDomain = 255 // §4.5.3.1.2
	maxPath   = 256 // §4.5.3.1.3, including the angle brackets
	maxLabel  = 63  // RFC 1035 §2.3.4
)

// Errors of parseAddress. errRelayTrick marks shapes refused as relay
// attempts whatever the domain and the client: a bare second '@' (a@b@c,
// no mailbox at all) and, for a recipient, an address literal. A local
// part holding a routing operator in a valid form ("x@y"@z, a%b@z, a!b@z)
// is no error: address.routed says so, and the session decides.
var (
	errAddrSyntax = errors.New("smtp: bad address syntax")
	errAddrLength = errors.New("smtp: address too long")
	errRelayTrick = errors.New("smtp: address routes through another host")
	errNeedUTF8   = errors.New("smtp: non-ASCII address without SMTPUTF8")
)

// address is a mailbox that passed parseAddress. immutable.
type address struct {
	Local  string // as sent: local parts may be case-sensitive (RFC 5321 §2.4)
	Domain string // lower-cased for lookups
}

func (a address) String() string { return a.Local + "@" + a.Domain }

// routed reports whether a's local part holds a routing operator ('@',
// '%' or '!', quoted or not) by which a host past a.Domain's may send the
// mail on (the %-hack, bang paths, "x@y"@z): Postfix's resolver flags
// such a recipient RESOLVE_FLAG_ROUTED whatever its domain, ignoring its
// own percent and bang settings since a next hop may honour them
// (trivial-rewrite's resolve.c).
func (a address) routed() bool { return strings.ContainsAny(a.Local, "@%!") }

// parseAddress checks one mailbox as wire.ParseForwardPath hands it over:
// it has already removed the angle brackets, dropped a source route
// ("@a,@b:"), which RFC 5321 §4.1.1.3 says to ignore, unquoted a quoted
// dot-atom ("john.doe"@x is john.doe@x) and put any other quoted local part
// in its canonical quoted form (wire.QuoteLocal).
//
// A local part is a dot-atom (RFC 5321 §4.1.2 Dot-string) or a
// Quoted-string whose content is printable (UTF-8 with SMTPUTF8:
// validQuotedContent), the path at most 256 octets quoted (what the
// queue's envelope takes; no local-part limit), which Postfix takes too; it is kept quoted, its
// external form, which the queue keeps and relays ("john doe"@x and
// "x@y"@x go so to a next hop), and the directory looks up in Postfix's
// internal form, unquoted. A routing operator in the local part, quoted or
// not, is taken and marked (address.routed); a bare second '@' (a@b@z) is
// errRelayTrick. The domain must be a host name (no address literal,
// no trailing dot, no empty label). Non-ASCII is allowed only when the
// client gave SMTPUTF8 (RFC 6531 §3.3), and must be valid UTF-8 without
// control characters.
func parseAddress(s string, smtputf8 bool) (address, error) {
	return parseMailbox(s, smtputf8, true)
}

// parseSender is parseAddress for a reverse-path: nothing is ever routed
// by a sender's local part here, so its routing operators are plain
// characters ('%', '!', and '@' when quoted: MAIL FROM:<"x@y"@example.net>,
// which RFC 5321 allows and Postfix takes), and a local part that needs
// quoting is taken unquoted too (and quoted).
func parseSender(s string, smtputf8 bool) (address, error) {
	return parseMailbox(s, smtputf8, false)
}

func parseMailbox(s string, smtputf8, recipient bool) (address, error) {
	a, err := parseMailboxSyntax(s, smtputf8, recipient)
	// What the queue would refuse in an envelope ('<' or '>' in a quoted
	// local part) is refused here: taken at RCPT, it would fail the whole
	// message after DATA.
	if err == nil && !envaddr.Valid(a.Local+"@"+a.Domain) {
		return address{}, errAddrSyntax
	}
	return a, err
}

func parseMailboxSyntax(s string, smtputf8, recipient bool) (address, error) {
	// A fully qualified name's root dot ("alice@example.org."), as Postfix
	// takes it: the same domain.
	if t, ok := strings.CutSuffix(s, "."); ok && !strings.HasSuffix(t, ".") && !strings.HasSuffix(t, "@") {
		s = t
	}
	if len(s)+2 > maxPath {
		return address{}, errAddrLength
	}
	if !utf8.ValidString(s) {
		return address{}, errAddrSyntax
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return address{}, errAddrSyntax
	}
	local, domain := s[:at], s[at+1:]
	content, quoted := wire.UnquoteLocal(local)
	if !quoted {
		content = local
	}
	if !quoted && strings.ContainsRune(content, '@') || recipient && strings.HasPrefix(domain, "[") {
		return address{}, errRelayTrick
	}
	if content == "" || domain == "" {
		return address{}, errAddrSyntax
	}
	if len(domain) > maxDomain {
		return address{}, errAddrLength
	}
	ascii := true
	for _, r := range s {
		if r >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii && !smtputf8 {
		return address{}, errNeedUTF8
	}
	if !ascii && strings.ContainsAny(s, "\u2028\u2029") {
		// Line and paragraph separators: text that some readers (logs,
		// JavaScript, editors) break a line at, in no real address.
		return address{}, errAddrSyntax
	}
	switch {
	case envaddr.DotAtom(content, true):
		local = content
	case !quoted && recipient:
		// a..b@x: no dot-atom, and not quoted by the client.
		return address{}, errAddrSyntax
	case !validQuotedContent(content):
		return address{}, errAddrSyntax
	default:
		local = wire.QuoteLocal(content)
		if len(local)+len(domain)+3 > maxPath { // quoting made it longer
			return address{}, errAddrLength
		}
	}
	if !recipient {
		// A sender is nothing routed here: what RFC 5321 §4.1.2 allows
		// and Postfix takes goes, an address literal too.
		if strings.HasPrefix(domain, "[") {
			if !validAddressLiteral(domain) {
				return address{}, errAddrSyntax
			}
			return address{Local: local, Domain: domain}, nil
		}
	}
	if !(recipient && validDomain(domain) || !recipient && validSenderDomain(domain)) {
		return address{}, errAddrSyntax
	}
	return address{Local: local, Domain: strings.ToLower(domain)}, nil
}

// validQuotedContent: what a quoted local part may hold once unquoted
// (qtext and quoted-pairs of RFC 5321 §4.1.2: printable ASCII and space,
// UTF-8 with SMTPUTF8), nothing that could end a line or a field (no
// control character, no U+2028 or U+2029).
func validQuotedContent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError || r == 0x2028 || r == 0x2029 {
			return false
		}
	}
	return true
}

// validAddressLiteral: "[" IPv4 "]" or "[IPv6:" IPv6 "]" (RFC 5321 §4.1.3).
func validAddressLiteral(d string) bool {
	in, ok := strings.CutPrefix(d, "[")
	if !ok {
		return false
	}
	if in, ok = strings.CutSuffix(in, "]"); !ok {
		return false
	}
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}

// validDomain: sub-domain *("." sub-domain), RFC 5321 §4.1.2, labels of
// letters, digits and inner hyphens, at most 63 octets each; U-labels are
// let through as runs of non-ASCII letters (RFC 6531 §3.3).
func validDomain(s string) bool { return validHost(s, false) }

// validSenderDomain is validDomain with '_' in labels too, for MAIL FROM
// only: a sender's domain is nothing we route to, and Postfix takes one
// (its valid_hostname), as the queue takes it for a bounce
// (envaddr.ValidHostname). Host names with an underscore are real (a
// system's own name in its cron mail's sender), and a 501 at MAIL loses
// the message where Postfix delivered it.
func validSenderDomain(s string) bool { return validHost(s, true) }

func validHost(s string, underscore bool) bool {
	if s == "" || len(s) > maxDomain {
		return false
	}
	for label := range strings.SplitSeq(s, ".") { // no slice: twice per message
		if label == "" || len(label) > maxLabel {
			return false
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			case r == '_' && underscore:
			case r >= 0xa0 && r != 0xfeff:
			default:
				return false
			}
		}
	}
	return true
}
