package envaddr

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr string
		ok   bool
	}{
		{"bob@example.com", true},
		{"Bob.Smith+tag@Sub.Example.COM.", true},
		{"bob@[192.0.2.1]", true},
		{"bob@[IPv6:2001:db8::1]", true},
		{`"bob smith"@example.com`, true},
		{`"x@y"@example.net`, true},
		{`"` + strings.Repeat("x", 30) + "@" + strings.Repeat("y", 31) + `"@example.net`, true}, // 64 octets quoted
		{`"` + strings.Repeat("x", 31) + "@" + strings.Repeat("y", 31) + `"@example.net`, true}, // 65: no local-part limit
		{"\"x@y\r\n\"@example.net", false},
		{`"x@<y"@example.net`, false},
		{"josé@exemple.fr", true},
		{"bob@", false},
		{"@example.com", false},
		{"bob", false},
		{"bob smith@example.com", false},
		{"bob@exa mple.com", false},
		{"bob@example..com", false},
		{"bob@[300.1.1.1]", false},
		{"bob@[IPv6:192.0.2.1]", false},
		{"bob@[192.0.2.1", false},
		{"bob@example.com\r\nDATA", false},
		{"bob@example.com>", false},
		{"<bob@example.com", false},
		{"bob\x00@example.com", false},
		{strings.Repeat("b", 65) + "@example.com", true},
		{strings.Repeat("b", 242) + "@example.com", true},  // 254 octets: a 256-octet path
		{strings.Repeat("b", 243) + "@example.com", false}, // 255
		{"bob@" + strings.Repeat("a", 64) + ".com", false},
		{"b@" + strings.Repeat("a.", 127) + "com", false},
	} {
		if got := Valid(tc.addr); got != tc.ok {
			t.Errorf("Valid(%q) = %v, want %v", tc.addr, got, tc.ok)
		}
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		addr, local, domain string
		ok                  bool
	}{
		{"bob@example.com", "bob", "example.com", true},
		{`"x@y"@example.net`, `"x@y"`, "example.net", true},
		{"x@y@example.net", "x@y", "example.net", true}, // internal form
		{`"a@b@c"@[192.0.2.1]`, `"a@b@c"`, "[192.0.2.1]", true},
		{"@example.com", "", "example.com", true},
		{"bob@", "bob", "", true},
		{"postmaster", "postmaster", "", false},
		{"", "", "", false},
	} {
		local, domain, ok := Split(tc.addr)
		if local != tc.local || domain != tc.domain || ok != tc.ok {
			t.Errorf("Split(%q) = %q, %q, %v; want %q, %q, %v", tc.addr, local, domain, ok, tc.local, tc.domain, tc.ok)
		}
	}
}

func TestDotAtom(t *testing.T) {
	for _, c := range []struct {
		s          string
		ascii, eai bool
	}{
		{"user", true, true},
		{"first.last", true, true},
		{"a!#$%&'*+-/=?^_`{|}~z", true, true},
		{"", false, false},
		{".user", false, false},
		{"user.", false, false},
		{"a..b", false, false},
		{"a b", false, false},
		{`"quoted"`, false, false},
		{"a(b)", false, false},
		{"a@b", false, false},
		{"jörg", false, true},
		{"用户", false, true},
		{"a\u0085b", false, false}, // C1 control
		{"a\ufeffb", false, false}, // BOM
		{"a\x00b", false, false},
	} {
		if got := DotAtom(c.s, false); got != c.ascii {
			t.Errorf("DotAtom(%q, false) = %v", c.s, got)
		}
		if got := DotAtom(c.s, true); got != c.eai {
			t.Errorf("DotAtom(%q, true) = %v", c.s, got)
		}
	}
}
