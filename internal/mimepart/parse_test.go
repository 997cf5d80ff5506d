package mimepart

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// testParser reads a header as the tests write them: a Content-Type of
// multipart/...; boundary=X, or message/rfc822; the header ends at the
// first empty line.
func testParser() Parser {
	boundary := regexp.MustCompile(`(?i)content-type: multipart/[a-z]+; boundary=(\S+)`)
	return Parser{
		HeaderEnd: func(ent []byte) int {
			if strings.HasPrefix(string(ent), "\r\n") {
				return 2
			}
			if i := strings.Index(string(ent), "\r\n\r\n"); i >= 0 {
				return i + 4
			}
			return len(ent)
		},
		Kind: func(header []byte, e *Entity) Kind {
			if m := boundary.FindSubmatch(header); m != nil {
				return Kind{Multipart: true, Delimiter: NewDelimiter(string(m[1]))}
			}
			if strings.Contains(strings.ToLower(string(header)), "message/rfc822") {
				return Kind{Message: true}
			}
			return Kind{}
		},
		MaxParts: 100,
	}
}

// tree renders an entity: a leaf as its body, a multipart as its parts
// in brackets (then "epi=" and its epilogue when closed), a message as
// "msg" and its entity.
func tree(msg string, e *Entity) string {
	switch {
	case e.Message != nil:
		return "msg" + tree(msg, e.Message)
	case e.Parts != nil || e.Closed:
		var parts []string
		for _, p := range e.Parts {
			parts = append(parts, tree(msg, p))
		}
		s := "[" + strings.Join(parts, " ") + "]"
		if e.Closed {
			s += fmt.Sprintf("epi=%q", msg[e.Epilogue.Start:e.Epilogue.End])
		}
		return s
	}
	return fmt.Sprintf("%q", msg[e.BodyStart:e.End])
}

// TestParseNested: the answers are Dovecot 2.3's (BODYSTRUCTURE and
// BODY[n] of the same messages; TestMultipartAsDovecot in imap holds
// them to it): a delimiter line is the longest matching boundary's of all
// those open, the innermost's of equal ones, and ends what is open inside
// its multipart.
func TestParseNested(t *testing.T) {
	t.Parallel()
	const mixed = "Content-Type: multipart/mixed; boundary="
	cases := []struct{ name, msg, want, body1 string }{
		{"l1 around l10",
			mixed + "l1\r\n\r\n--l1\r\n" + mixed + "l10\r\n\r\n--l10\r\n\r\na\r\n--l10\r\n\r\nb\r\n--l10--\r\n--l1\r\n\r\nc\r\n--l1--\r\n",
			`[["a" "b"]epi="" "c"]epi=""`, "--l10\r\n\r\na\r\n--l10\r\n\r\nb\r\n--l10--\r\n"},
		{"a, ab, abc",
			mixed + "a\r\n\r\n--a\r\n" + mixed + "ab\r\n\r\n--ab\r\n" + mixed + "abc\r\n\r\n--abc\r\n\r\nx\r\n--abc\r\n\r\ny\r\n--abc--\r\nepi3\r\n--ab\r\n\r\nz\r\n--ab--\r\nepi2\r\n--a\r\n\r\nw\r\n--a--\r\nepi1\r\n",
			`[[["x" "y"]epi="epi3" "z"]epi="epi2" "w"]epi="epi1\r\n"`,
			"--ab\r\n" + mixed + "abc\r\n\r\n--abc\r\n\r\nx\r\n--abc\r\n\r\ny\r\n--abc--\r\nepi3\r\n--ab\r\n\r\nz\r\n--ab--\r\nepi2"},
		{"b inside b: the inner one's lines, then the outer's",
			mixed + "b\r\n\r\n--b\r\n" + mixed + "b\r\n\r\n--b\r\n\r\nin1\r\n--b\r\n\r\nin2\r\n--b--\r\nepi\r\n--b\r\n\r\nout2\r\n--b--\r\n",
			`[["in1" "in2"]epi="epi" "out2"]epi=""`, "--b\r\n\r\nin1\r\n--b\r\n\r\nin2\r\n--b--\r\nepi"},
		{"an outer delimiter ends an inner part",
			mixed + "out\r\n\r\n--out\r\n" + mixed + "in\r\n\r\n--in\r\n\r\nx\r\n--out\r\n\r\ny\r\n--out--\r\n",
			`[["x"] "y"]epi=""`, "--in\r\n\r\nx"},
		{"l10 after its close delimiter is l1's",
			mixed + "l1\r\n\r\n--l1\r\nContent-Type: message/rfc822\r\n\r\nSubject: s\r\n" + mixed + "l10\r\n\r\n--l10\r\n\r\nx\r\n--l10--\r\n--l10\r\n\r\nq\r\n--l1--\r\n",
			`[msg["x"]epi="" "q"]epi=""`, "Subject: s\r\n" + mixed + "l10\r\n\r\n--l10\r\n\r\nx\r\n--l10--\r\n"},
		{"l1--alt inside l1: not l1's close",
			mixed + "l1\r\n\r\n--l1\r\n" + mixed + "l1--alt\r\n\r\n--l1--alt\r\n\r\nx\r\n--l1--alt--\r\n--l1\r\n\r\ny\r\n--l1--\r\n",
			`[["x"]epi="" "y"]epi=""`, "--l1--alt\r\n\r\nx\r\n--l1--alt--\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := testParser().Parse([]byte(c.msg))
			if got := tree(c.msg, e); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
			if len(e.Parts) == 0 {
				t.Fatal("no parts")
			}
			if p := e.Parts[0]; c.msg[p.BodyStart:p.End] != c.body1 {
				t.Errorf("BODY[1] %q, want %q", c.msg[p.BodyStart:p.End], c.body1)
			}
		})
	}
}

// TestOwner: which open multipart a line is a delimiter line of
// (Dovecot's boundary_find).
func TestOwner(t *testing.T) {
	t.Parallel()
	cases := []struct {
		open    []string // innermost first
		line    string
		want    int
		isClose bool
	}{
		{[]string{"l10", "l1"}, "--l10", 0, false},
		{[]string{"l10", "l1"}, "--l1", 1, false},
		{[]string{"l10", "l1"}, "--l1--", 1, true},
		{[]string{"l10", "l1"}, "--l10--", 0, true},
		{[]string{"l1", "l10"}, "--l10", 1, false},  // the longer, though outer
		{[]string{"b", "b"}, "--b", 0, false},       // equal: the innermost
		{[]string{"ab", "ab--"}, "--ab--", 0, true}, // all of the line, bar "--": the innermost stops
		{[]string{"l1--alt", "l1"}, "--l1--alt--", 0, true},
		{[]string{"x", "y"}, "--z", -1, false},
	}
	for _, c := range cases {
		var ds []Delimiter
		for _, b := range c.open {
			ds = append(ds, NewDelimiter(b))
		}
		if got, cl := Owner([]byte(c.line), ds); got != c.want || cl != c.isClose {
			t.Errorf("Owner(%q, %q) = %d, %v; want %d, %v", c.line, c.open, got, cl, c.want, c.isClose)
		}
	}
}
