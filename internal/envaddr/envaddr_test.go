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
