package sieve

import (
	"strings"
	"testing"
)

// bodyCacheMessage has a plain part, an HTML part and a base64 part.
const bodyCacheMessage = "From: a@example.com\r\nSubject: cache\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n" +
	"--b\r\nContent-Type: text/plain\r\n\r\nHello World\r\n" +
	"--b\r\nContent-Type: text/html\r\n\r\n<p>Caf&eacute; QQQ</p>\r\n" +
	"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\naGlkZGVuIHdvcmQ=\r\n" +
	"--b--\r\n"

// TestBodyTestCached: the body test's answers come from values made once
// per run (the folded body, the decoded parts, HTML's text) and from the
// answers already given; they are those of each test alone, asked once,
// twice, and in a loop whose keys change at every part (as sieve-test
// answers them).
func TestBodyTestCached(t *testing.T) {
	tests := []struct {
		test string
		want bool
	}{
		{`body :raw :contains "hello world"`, true},
		{`body :raw :comparator "i;octet" :contains "hello world"`, false},
		{`body :raw :contains "aGlkZGVu"`, true},
		{`body :raw :contains "hidden"`, false},
		{`body :raw :matches "*CAF&EACUTE;*"`, true},
		{`body :raw :is "x"`, false},
		{`body :raw :value "gt" "preamble"`, true},
		{`body :raw :count "eq" "1"`, true},
		{`body :text :contains "café qqq"`, true},
		{`body :text :contains "<p>"`, false},
		{`body :content "text/html" :contains "<P>"`, true},
		{`body :content "application" :contains "HIDDEN"`, true},
		{`body :content "text" :count "eq" "2"`, true},
		{`body :content "multipart" :is "preamble"`, true},
		{`body :content "image" :contains ""`, false},
		{`body :text :regex "w.rld"`, true},
	}
	for _, tc := range tests {
		want := map[bool]string{true: "yes", false: "no"}[tc.want]
		src := `require ["body", "fileinto", "relational", "regex", "variables", "foreverypart", "extracttext"];
			if ` + tc.test + ` { set "a" "yes"; } else { set "a" "no"; }
			if ` + tc.test + ` { set "b" "yes"; } else { set "b" "no"; }
			fileinto "${a}-${b}";`
		if got := strings.Join(canonicalResult(compileRun(t, src, bodyCacheMessage, RunOptions{})), "|"); got != "store "+want+"-"+want {
			t.Errorf("%s: got %q, want %s twice", tc.test, got, want)
		}
	}
	// Keys made from each part in turn: one answer per key, none taken
	// from another key's.
	loop := `require ["body", "fileinto", "variables", "foreverypart", "extracttext"];
		set "r" "";
		foreverypart { extracttext :first 5 "x";
			if body :raw :contains "${x}-" { set "r" "${r}1"; } else { set "r" "${r}0"; }
			if body :text :contains "${x}" { set "r" "${r}1"; } else { set "r" "${r}0"; } }
		fileinto "${r}";`
	// parts: the message, a multipart (no text: "" is contained, "-"
	// too, in its boundaries), "Hello", the HTML ("Café", its text), the
	// base64 part ("hidde", neither raw nor text)
	if got := strings.Join(canonicalResult(compileRun(t, loop, bodyCacheMessage, RunOptions{})), "|"); got != "store 11"+"01"+"01"+"00" {
		t.Errorf("loop: got %q", got)
	}
}
