package mimepart

import (
	"fmt"
	"strings"
	"testing"
)

// pieces renders a Multipart as the bytes of each span, for comparing.
func pieces(body string, m Multipart) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pre=%q", body[m.Preamble.Start:m.Preamble.End])
	for _, p := range m.Parts {
		fmt.Fprintf(&b, " part=%q", body[p.Start:p.End])
	}
	if m.Closed {
		fmt.Fprintf(&b, " epi=%q", body[m.Epilogue.Start:m.Epilogue.End])
	}
	return b.String()
}

// TestSplit: the cases where the three splitters this package replaced
// (imap's, sieve's, sevenbit's) disagreed are marked with the rule kept;
// each answer is Dovecot 2.3's and Pigeonhole's (TestMultipartAsDovecot in
// imap and TestOracleDelimiters in sieve hold the same bytes to them).
func TestSplit(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 90)
	cases := []struct {
		name, boundary, body, want string
	}{
		{"plain", "b", "pre\r\n--b\r\n\r\none\r\n--b\r\nX: y\r\n\r\ntwo\r\n--b--\r\nepi\r\n",
			`pre="pre" part="\r\none" part="X: y\r\n\r\ntwo" epi="epi\r\n"`},
		{"first line is a delimiter", "b", "--b\r\n\r\none\r\n--b--",
			`pre="" part="\r\none" epi=""`},
		{"empty body", "b", "", `pre=""`},
		{"no delimiter: all preamble", "b", "just text\r\n--c\r\n", `pre="just text\r\n--c\r\n"`},
		{"missing close delimiter: the last part runs to the end", "b", "--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n",
			`pre="" part="\r\none" part="\r\ntwo\r\n"`},
		{"close delimiter without a line break", "b", "--b\r\n\r\none\r\n--b--", `pre="" part="\r\none" epi=""`},
		{"delimiter without a line break starts no part", "b", "--b\r\n\r\none\r\n--b", `pre="" part="\r\none"`},
		{"two delimiters in a row: an empty part", "b", "--b\r\n--b\r\n\r\nx\r\n--b--\r\n",
			`pre="" part="" part="\r\nx" epi=""`},
		{"empty part before the close", "b", "--b\r\n--b--\r\n", `pre="" part="" epi=""`},
		{"a part's only line break is the next delimiter's", "b", "--b\r\n\r\n--b--\r\n", `pre="" part="" epi=""`},
		{"only the close delimiter", "b", "pre\r\n--b--\r\nepi", `pre="pre" epi="epi"`},
		{"delimiter inside a line is content", "b", "--b\r\n\r\nx --b\r\n--b--", `pre="" part="\r\nx --b" epi=""`},
		{"text after the epilogue's delimiters is epilogue", "b", "--b\r\n\r\none\r\n--b--\r\n--b\r\n\r\nthree\r\n",
			`pre="" part="\r\none" epi="--b\r\n\r\nthree\r\n"`},
		// imap matched the boundary as a prefix of the line; sieve and
		// sevenbit wanted only blanks, or "--" and blanks, after it.
		// RFC 2046 §5.1.1 and Dovecot: a prefix.
		{"transport padding", "b", "--b \t\r\n\r\none\r\n--b-- \r\nepi", `pre="" part="\r\none" epi="epi"`},
		{"a suffix after the boundary: still a delimiter", "b", "--b\r\n\r\none\r\n--bXYZ\r\n\r\ntwo\r\n--b--\r\n",
			`pre="" part="\r\none" part="\r\ntwo" epi=""`},
		{"a close delimiter with junk after it", "b", "--b\r\n\r\none\r\n--b--junk\r\nepi\r\n",
			`pre="" part="\r\none" epi="epi\r\n"`},
		{"one dash after the boundary: not a close", "b", "--b\r\n\r\none\r\n--b-\r\n\r\ntwo\r\n--b--",
			`pre="" part="\r\none" part="\r\ntwo" epi=""`},
		// imap and sevenbit gave a bare LF before a delimiter line to the
		// part; sieve to the delimiter. Dovecot: to the delimiter.
		{"bare LF lines", "b", "pre\n--b\n\none\n--b\n\ntwo\n\n--b--\nepi\n",
			`pre="pre" part="\none" part="\ntwo\n" epi="epi\n"`},
		{"CR LF LF before a delimiter", "b", "--b\r\n\r\none\r\n\n--b--", `pre="" part="\r\none\r\n" epi=""`},
		{"CR CR LF ends the delimiter line", "b", "--b\r\r\n\r\none\r\n--b--", `pre="" part="\r\none" epi=""`},
		{"a lone CR is no line break", "b", "--b\r\n\r\none\r--b\r\n\r\ntwo\r\n--b--", `pre="" part="\r\none\r--b\r\n\r\ntwo" epi=""`},
		// All three split only on a non-empty boundary, and used all of a
		// long one. Dovecot (and Pigeonhole): an empty boundary makes
		// every "--" line a delimiter line, and a boundary is compared
		// on its first 80 octets.
		{"empty boundary", "", "--\r\n\r\nx\r\n--zz\r\n\r\ny\r\n", `pre="" part="\r\nx" part="\r\ny\r\n"`},
		{"a boundary of 90 octets", long, "--" + long + "\r\n\r\none\r\n--" + long[:80] + "Q\r\n\r\ntwo\r\n--" + long + "--\r\n",
			`pre="" part="\r\none" part="\r\ntwo" part=""`},
		{"a boundary of 70 octets", long[:70], "--" + long[:70] + "\r\n\r\none\r\n--" + long[:69] + "\r\n--" + long[:70] + "--",
			`pre="" part="\r\none\r\n--` + long[:69] + `" epi=""`},
		{"a boundary holding LF never matches", "b\nc", "--b\nc\r\n\r\none\r\n", `pre="--b\nc\r\n\r\none\r\n"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := pieces(c.body, Split([]byte(c.body), NewDelimiter(c.boundary), 1000)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestSplitMaxParts: past maxParts no part is kept, and the rest of the
// body is in no span unless the next delimiter line closes the multipart.
func TestSplitMaxParts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		max        int
		want       string
	}{
		{"at the bound", "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b--\r\nepi", 2, `pre="" part="\r\n1" part="\r\n2" epi="epi"`},
		{"past the bound", "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n--b--\r\nepi", 2, `pre="" part="\r\n1" part="\r\n2"`},
		{"past the bound, no close", "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n--b\r\n\r\n3\r\n", 2, `pre="" part="\r\n1" part="\r\n2"`},
		{"the last part runs to the end", "--b\r\n\r\n1\r\n--b\r\n\r\n2\r\n", 2, `pre="" part="\r\n1" part="\r\n2\r\n"`},
		{"no parts", "pre\r\n--b\r\n\r\n1\r\n", 0, `pre="pre"`},
	}
	for _, c := range cases {
		m := Split([]byte(c.body), NewDelimiter("b"), c.max)
		if got := pieces(c.body, m); got != c.want {
			t.Errorf("%s: got  %s\nwant %s", c.name, got, c.want)
		}
	}
}

// TestLine: what a line (without its line break) is to a delimiter; the
// streaming scanner of imap asks this of each line it reads.
func TestLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		boundary, line string
		delim, isClose bool
	}{
		{"b", "--b", true, false},
		{"b", "--b--", true, true},
		{"b", "--b  ", true, false},
		{"b", "--b-- ", true, true},
		{"b", "--bc", true, false},
		{"b", "--b---", true, true},
		{"b", "--b-", true, false},
		{"b", "-b", false, false},
		{"b", " --b", false, false},
		{"b", "--B", false, false}, // boundaries are case-sensitive
		{"b", "", false, false},
		{"", "--", true, false},
		{"", "----", true, true},
		{"", "-", false, false},
		{strings.Repeat("y", 100), "--" + strings.Repeat("y", 80), true, false},
		{strings.Repeat("y", 100), "--" + strings.Repeat("y", 79), false, false},
	}
	for _, c := range cases {
		delim, isClose := NewDelimiter(c.boundary).Line([]byte(c.line))
		if delim != c.delim || isClose != c.isClose {
			t.Errorf("boundary %.10q, line %.20q: delim %v close %v, want %v %v", c.boundary, c.line, delim, isClose, c.delim, c.isClose)
		}
	}
}
