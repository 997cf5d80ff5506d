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
		{strings.Repeat("b", 65) + "@example.com", false},
		{"bob@" + strings.Repeat("a", 64) + ".com", false},
		{"b@" + strings.Repeat("a.", 127) + "com", false},
	} {
		if got := Valid(tc.addr); got != tc.ok {
			t.Errorf("Valid(%q) = %v, want %v", tc.addr, got, tc.ok)
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
