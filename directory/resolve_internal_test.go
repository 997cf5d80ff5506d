package directory

import (
	"slices"
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
