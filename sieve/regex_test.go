package sieve

import (
	"fmt"
	"strings"
	"testing"
)

// regexSubject is the subject the glibc table matches, UTF-8 octets in it.
const regexSubject = "raw café naïve x done_1"

// glibcRegexTable: :regex patterns (as Sieve strings) on regexSubject, and
// what Pigeonhole 2.3.19's sieve-test (glibc 2.36, the C locale) does with
// them: "refused" (the script does not compile), "N" (no match) or "Y"
// followed by ${1}. TestRegexGlibcTable checks ours against it,
// TestOracleRegexGlibcTable checks it against sieve-test.
var glibcRegexTable = []struct {
	pattern, comparator, want string
}{
	// GNU operators: \s \S \w \W \b \B
	{`raw\\sca`, "", "Y"},
	{`caf..\\s`, "", "Y"}, // é is two octets, '.' takes one
	{`caf.\\s`, "", "N"},
	{`r\\w\\w `, "", "Y"},
	{`caf\\w`, "", "N"}, // no octet of é is a word octet
	{`x\\Wdone`, "", "Y"},
	{`X\\WDONE`, "", "Y"},
	{`R\\W`, "", "N"},
	{`\\Sa`, "", "Y"},
	{`\\bcaf`, "", "Y"},
	{`caf\\b`, "", "Y"},
	{`caf\\B`, "", "N"},
	{`e_\\B1`, "", "Y"},
	// word start and end
	{`\\<raw`, "", "Y"},
	{`raw\\>`, "", "Y"},
	{`\\<aw`, "", "N"},
	{`ra\\>`, "", "N"},
	{`^\\<`, "", "Y"},
	{`raw\\>$`, "", "N"},
	{`(x )\\<d`, "", "Yx"},
	{`\\<(naïve|x)\\>`, "", "Ynaïve"},
	{`\\<(n.)`, "", "Yna"},
	{`\\>\\s(n)`, "", "N"}, // é is no word
	{`e\\>\\s(.)`, "", "Yx"},
	{`x \\>`, "", "N"},
	// \` and \', anchors anywhere
	{"\\\\`raw", "", "Y"},
	{`done_1\\'`, "", "Y"},
	{`a^b`, "", "N"},
	{`e$|x`, "", "Y"},
	{`r$`, "", "N"},
	// escaped ordinary characters are themselves
	{`ra\\d`, "", "N"},
	{`ra\\d*w`, "", "Y"},
	{`\\Raw`, "", "Y"},
	{`\\Raw`, "i;octet", "N"},
	{`r\\.`, "", "N"},
	{`\\t`, "", "N"},
	{`raw\\{`, "", "N"},
	// octets: bracket expressions, case folding in ASCII only
	{`caf[é]`, "", "Y"},
	{`caf[é][é]\\s`, "", "Y"},
	{`caf[^a]\\s`, "", "N"},
	{`caf[^a][^a]\\s`, "", "Y"},
	{`(na..)`, "", "Ynaï"},
	{`CAF`, "", "Y"},
	{`CAFÉ`, "", "N"},
	{`caf[[:alpha:]]`, "", "N"},
	{`[[:upper:]]AW`, "", "Y"},
	{`[[:upper:]]aw`, "i;octet", "N"},
	{`[R-R]AW`, "", "Y"},
	{`[Z-a]`, "", "refused"},
	{`[Z-a]`, "i;octet", "Y"},
	{`[[:UPPER:]]`, "", "refused"},
	{`[[:foo:]]`, "", "refused"},
	{`[[=a=]]w`, "", "Y"},
	{`[[.a.]]w`, "", "Y"},
	{`[[.R.]]aw`, "", "Y"},
	{`[[.hyphen.]]`, "", "refused"},
	{`[[=é=]]`, "", "refused"},
	{`[\\w]`, "", "Y"},
	{`ra[\\w]`, "", "Y"},
	{`[]a]`, "", "Y"},
	{`[^]a]`, "", "Y"},
	{`[a-]`, "", "Y"},
	{`[]`, "", "refused"},
	{`[a-c-e]`, "", "refused"},
	{`r[[:alpha:]-z]w`, "", "refused"},
	{`[[:alpha:]`, "", "refused"},
	// bounds and operators
	{`a{255}`, "", "N"},
	{`a{0,255}`, "", "Y"},
	{`w{,3} `, "", "Y"},
	{`a{32768}`, "", "refused"},
	{`w{1`, "", "refused"},
	{`w{x}`, "", "refused"},
	{`a{2,1}`, "", "refused"},
	{`{w`, "", "refused"},
	{`*raw`, "", "refused"},
	{`x|*raw`, "", "refused"},
	{`^*raw`, "", "refused"},
	{`\\<*raw`, "", "refused"},
	{`a**`, "", "Y"},
	{`(a+?)w`, "", "Ya"},
	{`a{1}{2}`, "", "N"},
	{`()raw`, "", "Y"},
	{`(|r)aw`, "", "Yr"},
	{`raw|`, "", "Y"},
	{`)raw`, "", "N"},
	{`(raw`, "", "refused"},
	{`raw\\`, "", "refused"},
	{`(n)(a)(ï)`, "", "Yn"},
	{`w{,}`, "", "Y"},
	{`w{}`, "", "refused"},
	{`({w)`, "", "refused"},
	{`r[[:alpha:]-]w`, "", "Y"},
	{`[a-[.z.]]w`, "", "Y"},
	{`[[:xdigit:]]{2}`, "", "Y"},
	{`[^[:alnum:] ]`, "", "Y"},
	{`ra{0}w`, "", "N"},
	{`(\\<)raw`, "", "Y"},
	{`1$\\>`, "", "Y"},
	{`\\>$`, "", "Y"},
	{`raw\\>\\<`, "", "N"},
	{`\\<é`, "", "N"},
	{`(.*)(x)`, "", "Yraw café naïve"},
	{`(..)*$`, "i;octet", "Y_1"},
	{`(r|ra)(w|aw)`, "", "Yr"},
}

// glibcRefused are patterns glibc takes and we refuse, rather than match
// differently (regex.go).
var glibcRefused = []string{`(a)\\1`, `(w) \\1`, `\\<.*`, `(a|-)\\>`, `(a|b)*\\>`, `\\B\\<`, `\\<\\>`, `a{1001}`, `\\<`}

func glibcRegexScript(pattern, comparator string) string {
	cmp := ""
	if comparator != "" {
		cmp = `:comparator "` + comparator + `" `
	}
	return fmt.Sprintf(`require ["regex", "fileinto", "variables"];
if header :regex %s"subject" "%s" { fileinto "Y${1}"; } else { fileinto "N"; }
`, cmp, pattern)
}

func glibcRegexMessage() []byte {
	return []byte("From: a@example.com\nTo: b@example.org\nSubject: " + regexSubject + "\n\nbody\n")
}

func TestRegexGlibcTable(t *testing.T) {
	env := Envelope{From: "a@example.com", To: "b@example.org"}
	for _, r := range glibcRegexTable {
		got, err := ours(t, []byte(glibcRegexScript(r.pattern, r.comparator)), glibcRegexMessage(), env)
		g := strings.TrimPrefix(strings.Join(got, "\n"), "store ")
		if g != r.want {
			t.Errorf("%s %q: ours %q (%v), glibc %q", r.comparator, r.pattern, g, err, r.want)
		}
	}
	for _, p := range glibcRefused {
		if _, err := compileAll([]byte(glibcRegexScript(p, "")), Limits{}); err == nil {
			t.Errorf("%q compiles", p)
		} else if !strings.Contains(err.Error(), "not supported here") {
			t.Errorf("%q: %v, not a clear refusal", p, err)
		}
	}
}

func TestOracleRegexGlibcTable(t *testing.T) {
	o := newOracle(t)
	env := Envelope{From: "a@example.com", To: "b@example.org"}
	for _, r := range glibcRegexTable {
		want, out := o.run(t, "regex", []byte(glibcRegexScript(r.pattern, r.comparator)), glibcRegexMessage(), env)
		w := strings.TrimPrefix(strings.Join(want, "\n"), "store ")
		if w != r.want {
			t.Errorf("%s %q: sieve-test %q, table %q\n%s", r.comparator, r.pattern, w, r.want, out)
		}
	}
	for _, p := range glibcRefused {
		if want, out := o.run(t, "regex", []byte(glibcRegexScript(p, "")), glibcRegexMessage(), env); want[0] == "refused" {
			t.Errorf("%q: sieve-test refuses it too: update regex.go\n%s", p, out)
		}
	}
}
