package smtp

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"courriel/internal/envaddr"
	"courriel/smtp/wire"
)

func TestParseAddress(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 63)
	for _, tc := range []struct {
		in   string
		utf8 bool
		want string // normalized; "" when an error is expected
		err  error
	}{
		{"alice@example.com", false, "alice@example.com", nil},
		{"Alice.B+tag@EXAMPLE.Com", false, "Alice.B+tag@example.com", nil},
		{"a!#$&'*+-/=?^_`{|}~@x.y", false, "a!#$&'*+-/=?^_`{|}~@x.y", nil}, // routed: '!' is a bang path
		{"a#$&'*+-/=?^_`{|}~@x.y", false, "a#$&'*+-/=?^_`{|}~@x.y", nil},
		{"user@localhost", false, "user@localhost", nil},
		{"j\u00f6rg@b\u00fccher.example", true, "j\u00f6rg@b\u00fccher.example", nil},
		{"j\u00f6rg@example.com", false, "", errNeedUTF8},
		{"a\u2028b@example.com", true, "", errAddrSyntax},
		{"\"a\u2029b\"@example.com", true, "", errAddrSyntax},
		{"a@ex\u2028ample.com", true, "", errAddrSyntax},
		{"a%b@example.com", false, "a%b@example.com", nil}, // routed
		{"b!a@example.com", false, "b!a@example.com", nil}, // routed
		{"a@b@example.com", false, "", errRelayTrick},
		{"a@[192.0.2.1]", false, "", errRelayTrick},
		{"a@[IPv6:2001:db8::1]", false, "", errRelayTrick},
		{"noat", false, "", errAddrSyntax},
		{"@example.com", false, "", errAddrSyntax},
		{"a@", false, "", errAddrSyntax},
		{"a.@example.com", false, "", errAddrSyntax},
		{".a@example.com", false, "", errAddrSyntax},
		{"a..b@example.com", false, "", errAddrSyntax},
		{"a b@example.com", false, "", errAddrSyntax},
		{"a\"b@example.com", false, "", errAddrSyntax},
		{"a\x00b@example.com", false, "", errAddrSyntax},
		{"a\r\nb@example.com", false, "", errAddrSyntax},
		{"a@example.com.", false, "a@example.com", nil}, // the root's dot, as Postfix reads it
		// Quoted local parts, as wire.ParseForwardPath hands them over
		// (a quoted dot-atom arrives unquoted), kept quoted.
		{`"john doe"@Example.com`, false, `"john doe"@example.com`, nil},
		{`"a..b"@example.com`, false, `"a..b"@example.com`, nil},
		{`"a\"b\\c"@example.com`, false, `"a\"b\\c"@example.com`, nil},
		{`"jö rg"@example.com`, true, `"jö rg"@example.com`, nil},
		{`"jö rg"@example.com`, false, "", errNeedUTF8},
		// Routed (address.routed), for the session to refuse or relay.
		{`"x@y"@Example.com`, false, `"x@y"@example.com`, nil},
		{`"x@y z"@example.com`, false, `"x@y z"@example.com`, nil},
		{`"a%b"@example.com`, false, "a%b@example.com", nil},
		{`"a!b"@example.com`, false, "a!b@example.com", nil},
		{`"x@y"@[192.0.2.1]`, false, "", errRelayTrick},
		// The bounds hold with a quoted '@' as without.
		{`"` + strings.Repeat("a", 61) + `@"@x.com`, false, `"` + strings.Repeat("a", 61) + `@"@x.com`, nil},
		{`"` + strings.Repeat("a", 62) + `@"@x.com`, false, `"` + strings.Repeat("a", 62) + `@"@x.com`, nil}, // no local-part limit
		{`"` + strings.Repeat("a", 246) + `@"@x.com`, false, "", errAddrLength},                              // path of 257
		{"\"x@y\x00\"@example.com", false, "", errAddrSyntax},
		{"\"x@y\r\n\"@example.com", false, "", errAddrSyntax},
		{`"x@<y"@example.com`, false, "", errAddrSyntax},
		{`"x@y>"@example.com`, false, "", errAddrSyntax},
		{"\"x@y\u2028\"@example.com", true, "", errAddrSyntax},
		{"\"x@y\u2029\"@example.com", true, "", errAddrSyntax},
		{"\"a\x00b\"@example.com", false, "", errAddrSyntax},
		{"\"a\rb\"@example.com", false, "", errAddrSyntax},
		{"\"a\nb\"@example.com", false, "", errAddrSyntax},
		{"\"a\tb\"@example.com", false, "", errAddrSyntax},
		{"\"a\x7fb\"@example.com", false, "", errAddrSyntax},
		{`"a b`, false, "", errAddrSyntax},
		{`"` + strings.Repeat("a", 61) + ` "@x.com`, false, `"` + strings.Repeat("a", 61) + ` "@x.com`, nil}, // 64 octets quoted
		{`"` + strings.Repeat("a", 62) + ` "@x.com`, false, `"` + strings.Repeat("a", 62) + ` "@x.com`, nil}, // 65: no local-part limit
		{`"` + strings.Repeat("a", 245) + `\""@x.com`, false, "", errAddrLength},                             // 246 octets of content, path of 257 quoted
		{"a@example.com..", false, "", errAddrSyntax},
		{"a@.", false, "", errAddrSyntax},
		{"a@.example.com", false, "", errAddrSyntax},
		{"a@exa..mple.com", false, "", errAddrSyntax},
		{"a@-x.com", false, "", errAddrSyntax},
		{"a@x-.com", false, "", errAddrSyntax},
		{"a@x_y.com", false, "", errAddrSyntax},
		{"a@x.com\x00", false, "", errAddrSyntax},
		{"\xff@x.com", true, "", errAddrSyntax},
		{"a\u200b\u0085@x.com", true, "", errAddrSyntax}, // C1 control
		{strings.Repeat("a", 64) + "@x.com", false, strings.Repeat("a", 64) + "@x.com", nil},
		// No local-part limit (Postfix has none): the path bounds it.
		{strings.Repeat("a", 65) + "@x.com", false, strings.Repeat("a", 65) + "@x.com", nil},
		{strings.Repeat("a", 248) + "@x.com", false, strings.Repeat("a", 248) + "@x.com", nil},                     // path of 256
		{strings.Repeat("a", 249) + "@x.com", false, "", errAddrLength},                                            // path of 257
		{"\"" + strings.Repeat("a", 246) + " \"@x.com", false, "", errAddrLength},                                  // 257 quoted
		{"\"" + strings.Repeat("a", 245) + " \"@x.com", false, "\"" + strings.Repeat("a", 245) + " \"@x.com", nil}, // 256 quoted
		{"a@" + long + "x.com", false, "", errAddrSyntax},                                                          // 64-octet label
		{"a@" + long + "." + long + "." + long + "." + strings.Repeat("b", 60), false, "a@" + long + "." + long + "." + long + "." + strings.Repeat("b", 60), nil},
		{"ab@" + long + "." + long + "." + long + "." + strings.Repeat("b", 60), false, "", errAddrLength}, // path of 257
	} {
		got, err := parseAddress(tc.in, tc.utf8)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("parseAddress(%q) = %v, %v; want error %v", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseAddress(%q) = %q, %v; want %q", tc.in, got.String(), err, tc.want)
		}
	}
}

// TestAddressRouted: a recipient whose local part holds a routing
// operator, quoted or not, is routed (Postfix's RESOLVE_FLAG_ROUTED); the
// session refuses it from unauthenticated clients.
func TestAddressRouted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     string
		routed bool
	}{
		{"alice@example.com", false},
		{`"john doe"@example.com`, false},
		{`"a\\b"@example.com`, false},
		{"a%b@example.com", true},
		{"b!a@example.com", true},
		{`"x@y"@example.com`, true},
		{`"a%b"@example.com`, true},
		{`"a b!c"@example.com`, true},
	} {
		a, err := parseAddress(tc.in, false)
		if err != nil {
			t.Fatalf("parseAddress(%q): %v", tc.in, err)
		}
		if a.routed() != tc.routed {
			t.Errorf("%q routed = %v, want %v", tc.in, a.routed(), tc.routed)
		}
	}
}

// A sender's local part may hold '%', '!' and a quoted '@' (nothing is
// routed by it); the rest is as for recipients.
func TestParseSender(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want string
		err  error
	}{
		{"list-bounces%x@example.org", "list-bounces%x@example.org", nil},
		{"uucp!user@example.org", "uucp!user@example.org", nil},
		{"a@b@example.com", "", errRelayTrick},
		{`"x@y"@Example.NET`, `"x@y"@example.net`, nil},
		{`"x@y"@[192.0.2.1]`, `"x@y"@[192.0.2.1]`, nil},
		{`"` + strings.Repeat("x", 61) + `@"@example.net`, `"` + strings.Repeat("x", 61) + `@"@example.net`, nil}, // 64 octets quoted
		{`"` + strings.Repeat("x", 62) + `@"@example.net`, `"` + strings.Repeat("x", 62) + `@"@example.net`, nil}, // 65: no local-part limit
		{`"` + strings.Repeat("x", 240) + `@"@example.net`, "", errAddrLength},                                    // path of 257
		{"\"x@y\x00\"@example.net", "", errAddrSyntax},
		{"\"x@y\n\"@example.net", "", errAddrSyntax},
		{`"x@y>"@example.net`, "", errAddrSyntax},
		{"\"x@\u2028\"@example.net", "", errNeedUTF8}, // and errAddrSyntax with SMTPUTF8, below
		{"sender@example.org.", "sender@example.org", nil},
		// '_' in a sender's domain, as Postfix takes it (never in a
		// recipient's: TestParseAddress).
		{"cron@web_01.Example.org", "cron@web_01.example.org", nil},
		{"a@_x.example.org", "a@_x.example.org", nil},
		{"a@x_-.example.org", "", errAddrSyntax},
		// RFC 5321 §4.1.2, as Postfix takes them: a quoted local part
		// (wire.ParseReversePath unquotes it; it is quoted again) and
		// address literals.
		{"john smith@example.net", `"john smith"@example.net`, nil},
		{`say "hi"@example.net`, `"say \"hi\""@example.net`, nil},
		{"x@[192.0.2.1]", "x@[192.0.2.1]", nil},
		{"x@[IPv6:2001:db8::1]", "x@[IPv6:2001:db8::1]", nil},
		{"x@[300.1.1.1]", "", errAddrSyntax},
		{"x@[IPv6:192.0.2.1]", "", errAddrSyntax},
		{"a\x01b@example.net", "", errAddrSyntax},
	} {
		got, err := parseSender(tc.in, false)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("parseSender(%q) = %v, %v; want error %v", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("parseSender(%q) = %q, %v; want %q", tc.in, got.String(), err, tc.want)
		}
	}
	for _, in := range []string{"\"x@\u2028\"@example.net", "\"x@\u2029\"@example.net"} {
		if _, err := parseSender(in, true); !errors.Is(err, errAddrSyntax) {
			t.Errorf("parseSender(%q, SMTPUTF8) = %v; want %v", in, err, errAddrSyntax)
		}
	}
}

// FuzzParseAddress: whatever the input, an accepted address is within the
// RFC 5321 limits, has no '@' in its local part unless quoted, no address
// literal, is routed exactly when its local part holds a routing operator,
// has no control characters, a lower-case domain, and parses again to
// itself.
func FuzzParseAddress(f *testing.F) {
	for _, s := range []string{"alice@example.com", "a%b@c.d", "\"a@b\"@c", "@a:b@c", "a@[1.2.3.4]",
		"j\u00f6rg@b\u00fccher.example", "a..b@c", `"a b"@c`, `"a\\"@c`, `"a>b"@c`, "a\u2028b@c", "\"\u2029\"@c", "a@b.", strings.Repeat("x", 70) + "@y.z"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, smtputf8 bool) {
		a, err := parseAddress(in, smtputf8)
		if err != nil {
			return
		}
		s := a.String()
		if len(s)+2 > maxPath || len(a.Domain) > maxDomain {
			t.Fatalf("%q: over the limits", s)
		}
		content, quoted := wire.UnquoteLocal(a.Local)
		if !quoted {
			content = a.Local
		}
		if !quoted && strings.ContainsAny(content, "@\"\\ ") || strings.HasPrefix(a.Domain, "[") {
			t.Fatalf("%q: relay trick or bad quoting accepted", s)
		}
		if a.routed() != strings.ContainsAny(content, "@%!") {
			t.Fatalf("%q: routed = %v", s, a.routed())
		}
		if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }) {
			t.Fatalf("%q: control or invalid UTF-8 accepted", s)
		}
		if strings.ContainsAny(s, "\u2028\u2029") {
			t.Fatalf("%q: a line separator accepted", s)
		}
		if !smtputf8 && !isASCII(s) {
			t.Fatalf("%q: non-ASCII without SMTPUTF8", s)
		}
		if strings.HasSuffix(a.Domain, ".") || strings.Contains(a.Domain, "..") {
			t.Fatalf("%q: bad domain", s)
		}
		if !envaddr.Valid(s) {
			t.Fatalf("%q: taken at RCPT, refused by the queue after DATA", s)
		}
		again, err := parseAddress(s, smtputf8)
		if err != nil || again != a {
			t.Fatalf("%q: does not parse to itself (%v, %v)", s, again, err)
		}
	})
}

// TestValidDomainAllocatesNothing: checked for every address of every
// message.
func TestValidDomainAllocatesNothing(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		if !validDomain("mail.hosted-domain.example") {
			t.Fatal("refused")
		}
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
