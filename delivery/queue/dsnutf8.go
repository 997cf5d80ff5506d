package queue

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// RFC 6533 DSNs. A DSN about mail that needs UTF-8 is the RFC 3464 one
// with UTF-8 where the sender must read it: its machine-readable part is
// message/global-delivery-status, what it returns of the original is
// message/global-headers or, whole, message/global (RFC 6532 §3.7), its
// text part is UTF-8, and a UTF-8 address is written as it is, of the
// utf-8 address type (§3), never masked: a sender told that
// <??n??@example> failed cannot tell which recipient it was. Such a DSN
// is itself mail that needs SMTPUTF8 (sendDSN queues it WithSMTPUTF8), as
// Postfix's bounce of an SMTPUTF8 message is. Every other DSN is RFC
// 3464's, ASCII, byte for byte as before.

// dsnUTF8 reports whether the DSN about rcpts of m is an RFC 6533 one: m
// needs SMTPUTF8 (WithSMTPUTF8: its sender asked for it and its header
// holds UTF-8), or an address the DSN names is not ASCII (m's sender, to
// whom it goes; a recipient; the address the client named for one),
// which only a client that gave SMTPUTF8 could send (RFC 6531 §3.3). An
// ORCPT or ENVID never decides: they are printable ASCII (ValidORcpt,
// ValidEnvID), an ORCPT of the utf-8 type in its 7-bit form, which RFC
// 6533 §3 writes as it is in message/delivery-status.
func dsnUTF8(m *Message, rcpts []Recipient) bool {
	if m.SMTPUTF8 || !isASCII(m.From) {
		return true
	}
	for i := range rcpts {
		if !isASCII(rcpts[i].Addr) || !isASCII(originalRecipient(&rcpts[i])) {
			return true
		}
	}
	return false
}

// dsnPrintable is printable for a line of a DSN: in an RFC 6533 DSN
// (utf) valid UTF-8 stays (printableUTF8), in any other only ASCII.
func dsnPrintable(s string, max int, utf bool) string {
	if utf {
		return printableUTF8(s, max)
	}
	return printable(s, max)
}

// printableUTF8 is printable that keeps valid UTF-8: only what could end
// a line or hide one becomes '?' (C0 and C1 controls, DEL, U+2028 and
// U+2029, which some readers take for line ends, octets that are not
// UTF-8); runs of whitespace become one space; it is cut to max bytes,
// never inside a character.
func printableUTF8(s string, max int) string {
	var b strings.Builder
	space := false
	for i := 0; i < len(s) && b.Len() < max; {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == ' ' || r == '\t' || r == '\r' || r == '\n':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case r == utf8.RuneError && size == 1, unicode.IsControl(r), r == '\u2028', r == '\u2029':
			r = '?'
		}
		if b.Len()+utf8.RuneLen(r) > max {
			break
		}
		space = false
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}

// cutAt is where s is cut to at most n bytes (n ≥ utf8.UTFMax) without
// splitting a UTF-8 character; for ASCII, n.
func cutAt(s string, n int) int {
	if len(s) <= n {
		return len(s)
	}
	for i := n; i > n-utf8.UTFMax && i > 0; i-- {
		if utf8.RuneStart(s[i]) {
			return i
		}
	}
	return n // not UTF-8 there: cut at n as for ASCII
}

// dsnAddress is the value of a Final-Recipient or Original-Recipient
// field for addr (RFC 3464 §2.3.1, §2.3.2): "rfc822; addr" for an ASCII
// address, as always, and in any DSN that is not an RFC 6533 one (utf);
// in one, "utf-8; addr" for a UTF-8 address (RFC 6533 §3, utf8AddrText).
// An address that is not valid UTF-8 cannot be of the utf-8 type: it
// stays rfc822, and writeField masks its octets.
func dsnAddress(addr string, utf bool) string {
	if !utf || isASCII(addr) || !utf8.ValidString(addr) {
		return "rfc822; " + addr
	}
	return "utf-8; " + utf8AddrText(addr)
}

// utf8AddrText writes a UTF-8 address (valid UTF-8) for RFC 6533 §3's
// utf-8 address type: as it is (its utf-8-address form, the one the RFC
// advises in message/global-delivery-status), or, when it holds a
// character that would let a field be folded or broken there (a space or
// a backslash in a quoted local part, a control, which validAddress never
// lets in), in its utf-8-addr-unitext form: those, '+' and '=' as
// \x{HEX}, so that the field stays one word whatever the address.
func utf8AddrText(addr string) string {
	if strings.IndexFunc(addr, unitextBreaks) < 0 {
		return addr
	}
	var b strings.Builder
	for _, r := range addr {
		if unitextBreaks(r) || r == '+' || r == '=' {
			fmt.Fprintf(&b, `\x{%02X}`, r) // RFC 6533 §3 EmbeddedUnicodeChar
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// unitextBreaks reports whether r, in an address, is one that neither the
// utf-8-addr-unitext form (QUCHAR) nor a one-word field value may hold as
// it is: ASCII controls and space, '\', DEL, and any Unicode control or
// space (U+0085, U+00A0, U+2028...).
func unitextBreaks(r rune) bool {
	return r <= ' ' || r == '\\' || r == 0x7f || unicode.IsControl(r) || unicode.IsSpace(r)
}

// dsnORcpt is the Original-Recipient field's value for an ORCPT (addr-type;
// address, xtext decoded, printable ASCII: ValidORcpt): as the client gave
// it (RFC 3464 §2.3.1), except that in an RFC 6533 DSN (utf) a UTF-8
// address of the utf-8 type, given in its 7-bit form (utf-8-addr-xtext:
// "j\x{F6}rg@…"), is written as utf8AddrText writes one, so that the
// sender reads it.
func dsnORcpt(orcpt string, utf bool) string {
	typ, addr, _ := strings.Cut(orcpt, ";")
	if utf && strings.EqualFold(typ, "utf-8") {
		if dec, ok := decodeUTF8AddrXtext(addr); ok && !isASCII(dec) {
			return typ + "; " + utf8AddrText(dec)
		}
	}
	return typ + "; " + addr
}

// decodeUTF8AddrXtext decodes RFC 6533 §3's utf-8-addr-xtext (and
// -unitext): each \x{HEX} (1 to 6 hex digits) becomes the character it
// names. ok is false for a malformed escape or a character that is not
// one (a surrogate, past U+10FFFF, NUL).
func decodeUTF8AddrXtext(s string) (string, bool) {
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		s = s[i+len(`\x{`):]
		end := strings.IndexByte(s, '}')
		if end < 1 || end > 6 {
			return "", false
		}
		n, err := strconv.ParseUint(s[:end], 16, 32)
		if err != nil || n == 0 || !utf8.ValidRune(rune(n)) {
			return "", false
		}
		b.WriteRune(rune(n))
		s = s[end+1:]
	}
	return b.String(), utf8.ValidString(b.String())
}

// UTF8ORcpt reads the address of an ORCPT of RFC 6533's utf-8 type (§3)
// as a client gives it: utf-8-addr-xtext (printable ASCII but SP, '\',
// '+' and '=', and \x{HEX} escapes for any other character), or, when the
// transaction has SMTPUTF8 (unitext), utf-8-addr-unitext (UTF-8 characters
// as they are as well). Once decoded it must be an address: valid UTF-8,
// no control character, a local part and a domain around the last '@'.
// It returns the address in its canonical utf-8-addr-xtext form, the one
// the envelope keeps (Recipient.ORcpt): whatever form the client chose,
// the same address is the same value, printable ASCII, which dsnORcpt
// decodes for an RFC 6533 DSN and writes as it is in an RFC 3464 one,
// and orcptParam passes on to any next hop (RFC 6533: "safe for use in
// the ORCPT parameter even when SMTPUTF8 is not advertised"). ok is false
// for a malformed escape (not HEXPOINT's: a character written as an
// escape that QCHAR holds, leading zeros, a surrogate, past U+10FFFF),
// an octet neither form allows, or a value that is no address.
func UTF8ORcpt(s string, unitext bool) (string, bool) {
	var dec strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			r, n, ok := embeddedUnicodeChar(s[i:])
			if !ok {
				return "", false
			}
			dec.WriteRune(r)
			i += n
		case c < 0x80:
			if !qchar(c) {
				return "", false
			}
			dec.WriteByte(c)
			i++
		default:
			r, n := utf8.DecodeRuneInString(s[i:])
			if !unitext || r == utf8.RuneError && n == 1 {
				return "", false
			}
			dec.WriteRune(r)
			i += n
		}
	}
	addr := dec.String()
	at := strings.LastIndexByte(addr, '@')
	if at < 1 || at == len(addr)-1 || !utf8.ValidString(addr) || strings.IndexFunc(addr, badAddrRune) >= 0 {
		return "", false
	}
	return utf8AddrXtext(addr), true
}

// badAddrRune: a rune no address may hold, escaped or not: controls (C0,
// DEL, C1) and the Unicode line and paragraph separators.
func badAddrRune(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029'
}

// qchar is RFC 6533's QCHAR: printable ASCII but SP, '\', '+' and '='.
func qchar(c byte) bool {
	return c > ' ' && c < 0x7f && c != '\\' && c != '+' && c != '='
}

// embeddedUnicodeChar reads one \x{HEXPOINT} at the start of s (RFC 6533
// §3): the character, and the octets it took. HEXPOINT writes a
// character in as few digits as it needs, two at least, and an ASCII one
// only when QCHAR cannot hold it.
func embeddedUnicodeChar(s string) (rune, int, bool) {
	if !strings.HasPrefix(s, `\x{`) {
		return 0, 0, false
	}
	end := strings.IndexByte(s, '}')
	digits := s[len(`\x{`):max(end, len(`\x{`))]
	if end < 0 || len(digits) < 2 || len(digits) > 6 {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(digits, 16, 32)
	if err != nil || n == 0 || !utf8.ValidRune(rune(n)) || n < 0x80 && qchar(byte(n)) ||
		len(digits) > 2 && digits[0] == '0' {
		return 0, 0, false
	}
	return rune(n), end + 1, true
}

// utf8AddrXtext writes a decoded UTF-8 address in RFC 6533's
// utf-8-addr-xtext form: QCHARs as they are, every other character as
// \x{HEX} in upper case, two digits at least (HEXPOINT).
func utf8AddrXtext(addr string) string {
	var b strings.Builder
	for _, r := range addr {
		if r < 0x80 && qchar(byte(r)) {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\x{%02X}`, r)
	}
	return b.String()
}
