package directory

import (
	"slices"
	"strings"
	"testing"
)

// crunchMaildrop splits a maildrop value as Postfix's mail_addr_crunch.
func TestCrunchMaildrop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"k1@xoyize.xyz", []string{"k1@xoyize.xyz"}},
		{"<k2@xoyize.xyz>", []string{"k2@xoyize.xyz"}},
		{" < k2@xoyize.xyz > ", []string{"k2@xoyize.xyz"}},
		{"k1@xoyize.xyz, k2@xoyize.xyz", []string{"k1@xoyize.xyz", "k2@xoyize.xyz"}},
		{"x@outside.test,y@outside.test", []string{"x@outside.test", "y@outside.test"}},
		{"<x@outside.test>, <y@outside.test>,", []string{"x@outside.test", "y@outside.test"}},
		{`"a,b"@outside.test, c@outside.test`, []string{`"a,b"@outside.test`, "c@outside.test"}},
		{`"a\",b"@outside.test`, []string{`"a\",b"@outside.test`}},
		{"x@outside.test> NOTIFY=NEVER", []string{"x@outside.test> NOTIFY=NEVER"}},
		{"<<x@outside.test>>", []string{"<x@outside.test>"}},
		{" , ,", nil},
		{"", nil},
	} {
		if got := crunchMaildrop(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("crunchMaildrop(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// externalForm quotes an alias target written in Postfix's internal form
// and refuses what it cannot read without guessing.
func TestExternalForm(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 60) + " " + strings.Repeat("b", 4) // 65 octets
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"john doe@example.org", `"john doe"@example.org`, true},
		{"a;b@example.org", `"a;b"@example.org`, true},
		{"john..doe@example.org", `"john..doe"@example.org`, true},
		{"josé martin@exemple.fr", `"josé martin"@exemple.fr`, true},
		{"john.doe@example.org", "john.doe@example.org", true},
		{`"john doe"@example.org`, `"john doe"@example.org`, true},
		{"@example.org", "@example.org", true}, // unchanged: Valid refuses it
		{"x@outside.test> NOTIFY=NEVER", "x@outside.test> NOTIFY=NEVER", true},
		{`jo"hn doe@example.org`, "", false},
		{`john\ doe@example.org`, "", false},
		{"john (x) doe@example.org", "", false},
		{"a b@c@example.org", "", false},
		{"a\u0085b c@example.org", "", false},
		{"a\u2028b@example.org", "", false},
		{long + "@example.org", `"` + long + `"@example.org`, true}, // no local-part limit: Valid bounds the path
	} {
		got, ok := externalForm(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("externalForm(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
