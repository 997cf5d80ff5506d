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

// delimiterMessages are multiparts at the edges of RFC 2046 §5.1.1's
// delimiter lines, where the splitter sieve had before internal/mimepart
// disagreed with Pigeonhole: a line starting with the delimiter and
// anything after it is a delimiter line (a part hidden behind "--bXYZ"
// was content to us, an attachment to a mail reader); "--" right after
// it closes the multipart; a boundary is compared on its first 80
// octets, and an empty one matches every "--" line. Nested multiparts
// whose outer boundary is a prefix of the inner one are not here: see
// internal/mimepart.
var delimiterMessages = map[string]string{
	"suffix":          "--b\r\n\r\none\r\n--bXYZ\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=evil.exe\r\n\r\nMZ\r\n--b--\r\nepi\r\n",
	"close with junk": "pre\r\n--b\r\n\r\none\r\n--b--junk\r\nepi\r\n--b\r\n\r\nthree\r\n",
	"padding":         "--b \t\r\n\r\none\r\n--b-- \r\nepi\r\n",
	"one dash":        "--b\r\n\r\none\r\n--b-\r\n\r\ntwo\r\n--b--\r\n",
	"bare LF":         "--b\r\n\r\none\n--b\r\n\r\ntwo\n\n--b--\r\n",
	"no close":        "pre\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo",
	"delimiter last":  "--b\r\n\r\none\r\n--b",
	"two in a row":    "--b\r\n--b\r\n\r\none\r\n--b--\r\n",
}

// nestedMessages nest multiparts whose boundaries RFC 2046 §5.1.1 forbids
// (one a prefix of another, or equal): a delimiter line is the longest
// matching boundary's of all those open, the innermost's of equal ones,
// and ends what is open inside that multipart (Dovecot's parser, which
// Pigeonhole reads mail with).
var nestedMessages = map[string]string{
	"l1 around l10":          "Content-Type: multipart/mixed; boundary=l1\r\n\r\n--l1\r\nContent-Type: multipart/alternative; boundary=l10\r\n\r\npre\r\n--l10\r\n\r\none\r\n--l10\r\nContent-Type: text/html\r\n\r\ntwo\r\n--l10--\r\nepi\r\n--l1\r\n\r\nthree\r\n--l1--\r\n",
	"a, ab, abc":             "Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\nContent-Type: multipart/alternative; boundary=abc\r\n\r\n--abc\r\n\r\none\r\n--abc\r\n\r\ntwo\r\n--abc--\r\nepi\r\n--ab\r\n\r\nthree\r\n--ab--\r\n--a\r\n\r\nMZ\r\n--a--\r\n",
	"b inside b":             "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b--\r\nepi\r\n--b\r\n\r\nthree\r\n--b--\r\n",
	"l10 in a message in l1": "Content-Type: multipart/mixed; boundary=l1\r\n\r\n--l1\r\nContent-Type: message/rfc822\r\n\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=l10\r\n\r\n--l10\r\n\r\none\r\n--l10--\r\n--l10\r\n\r\ntwo\r\n--l1--\r\n",
	"outer ends the inner":   "Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\none\r\n--out\r\n\r\ntwo\r\n--out--\r\n",
}

// TestOracleDelimiters: the parts foreverypart visits, their text, and
// the body test on preamble, parts and epilogue are Pigeonhole's.
func TestOracleDelimiters(t *testing.T) {
	o := newOracle(t)
	long := strings.Repeat("x", 90)
	msgs := map[string]string{
		"empty boundary":        "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\none\r\n--zz\r\n\r\ntwo\r\n",
		"boundary of 90 octets": "Content-Type: multipart/mixed; boundary=\"" + long + "\"\r\n\r\n--" + long + "\r\n\r\none\r\n--" + long[:80] + "Q\r\n\r\ntwo\r\n--" + long + "--\r\n",
	}
	for name, body := range delimiterMessages {
		msgs[name] = "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + body
	}
	for name, body := range nestedMessages {
		msgs[name] = body
	}
	scripts := []string{
		`require ["foreverypart", "mime", "variables", "fileinto"]; set "i" "-"; foreverypart { set "i" "${i}x";
		if header :mime :matches :contenttype "content-type" "*" { fileinto "${i}${1}"; } }`,
		`require ["foreverypart", "extracttext", "variables", "fileinto"]; set "i" "-"; foreverypart { set "i" "${i}x";
		extracttext :length "n"; fileinto "${i}:${n}"; extracttext "t"; if string :is "${t}" ["one", "two", "three", "MZ"] { fileinto "${i}=${t}"; } }`,
		`require ["body", "fileinto"]; if body :content "multipart" :contains "pre" { fileinto "pre"; }
		if body :content "multipart" :contains "epi" { fileinto "epi"; } if body :content "multipart" :contains "three" { fileinto "three"; }
		if body :content "text" :contains ["XYZ", "Q", "MZ"] { fileinto "leak"; } if body :content "text" :is "one" { fileinto "one"; }`,
	}
	env := Envelope{From: "a@example.com", To: "b@example.org"}
	for name, body := range msgs {
		// LF lines, as the corpus has them and as Dovecot's LDA reads mail
		// from Postfix (ReadMessage makes CRLF LF).
		raw := []byte(strings.ReplaceAll("From: a@example.com\r\nTo: b@example.org\r\nSubject: "+name+"\r\nMIME-Version: 1.0\r\n"+body, "\r\n", "\n"))
		for _, src := range scripts {
			got, compileErr := ours(t, []byte(src), raw, env)
			want, out := o.run(t, "delimiters", []byte(src), raw, env)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s: %q:\n ours:   %q (%v)\n theirs: %q\n sieve-test: %s", name, src, got, compileErr, want, out)
			}
		}
	}
}
