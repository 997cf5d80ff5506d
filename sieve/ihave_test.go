package sieve

import (
	"strings"
	"testing"
)

// TestIhave: a script guarding an extension we lack with ihave compiles and
// runs the other branch; error fails the run into the implicit keep.
func TestIhave(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
		errWant   string // a run error containing this
	}{
		{"unknown extension's block is not checked",
			`require "ihave"; if ihave "xunknown" { xunknown :tag "a"; } else { discard; }`, []string{"discard"}, ""},
		{"known extension is required by ihave",
			`require "ihave"; if ihave "fileinto" { fileinto "A"; } fileinto "B";`, []string{"store A", "store B"}, ""},
		{"not ihave of unknown skips the else",
			`require "ihave"; if not ihave "xunknown" { discard; } else { xunknown; }`, []string{"discard"}, ""},
		{"error fails the run", `require ["ihave", "fileinto"]; fileinto "A"; error "no way";`,
			[]string{"error"}, "error: no way"},
	}
	for _, tc := range tests {
		res := runScript(t, tc.src, Envelope{From: "a@example.com", To: "b@example.org"})
		if got := canonicalResult(res); strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
		if tc.errWant != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tc.errWant)) {
			t.Errorf("%s: error %v, want one with %q", tc.name, res.Err, tc.errWant)
		}
	}
	for _, src := range []string{
		`require "ihave"; if anyof(ihave "xunknown", true) { xunknown; }`,
		`require "ihave"; fileinto "A"; if ihave "fileinto" { fileinto "B"; }`,
		`if ihave "fileinto" { discard; }`,
		`require "ihave"; error;`,
	} {
		if _, err := compileAll([]byte(src), Limits{}); err == nil {
			t.Errorf("%q compiled", src)
		}
	}
}
