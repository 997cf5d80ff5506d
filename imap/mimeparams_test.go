package imap

import (
	"fmt"
	"strings"
	"testing"
)

// mimeValueCases are Content-Type (subtype) and Content-Disposition
// values, their type and their parameter list as BODYSTRUCTURE gives it:
// Dovecot 2.3.19's, as TestBodyStructureAsDovecot checks.
var mimeValueCases = []struct {
	in, typ, params string
	subtype         bool
}{
	{"text/plain; charset=utf-8", "text/plain", `("charset" "utf-8")`, true},
	{"TEXT/Plain (comment); charset = \"utf-8\" (c2) ; name = x", "text/plain", `("charset" "utf-8" "name" "x")`, true},
	{"application/pdf; name*=iso-8859-1''%E9t%E9.pdf", "application/pdf", `("name*" "iso-8859-1''%E9t%E9.pdf")`, true},
	{"attachment; filename*=iso-8859-1''%E9t%E9.pdf", "attachment", `("filename*" "iso-8859-1''%E9t%E9.pdf")`, false},
	// Continuations: joined in index order under the charset'lang' of
	// the first piece; a plain piece's "%" escaped.
	{"attachment; filename*0*=ISO-8859-1'fr'%E9t; filename*1*=%E9; filename*2=\".txt\"", "attachment", `("filename*" "ISO-8859-1'fr'%E9t%E9.txt")`, false},
	{"attachment; filename*0=\"a 50%\"; filename*1*=%E9; filename*2=\"x y\\\"z\"", "attachment", `("filename*" "''a 50%25%E9x y\"z")`, false},
	{"attachment; filename*0*=utf-8''%C3%A9; filename*1=\"a%b\"; filename*2*=c%20", "attachment", `("filename*" "utf-8''%C3%A9a%25bc%20")`, false},
	{"attachment; filename*0=\"long \"; filename*1=\"name.txt\"", "attachment", `("filename" "long name.txt")`, false},
	{"attachment; filename*1=\"b\"; filename*0=\"a\"", "attachment", `("filename" "ab")`, false},
	{"attachment; filename*00=a; filename*01=b", "attachment", `("filename" "ab")`, false},
	{"text/plain;\r\n\tname*0*=utf-8''%C3%A9;\r\n\tname*1*=%C3%A9", "text/plain", `("name*" "utf-8''%C3%A9%C3%A9")`, true},
	{"text/plain; a*0*=us-ascii''x; a*1*=y%20z; b*0=p; b*1*=q", "text/plain", `("a*" "us-ascii''xy%20z" "b*" "''pq")`, true},
	// A missing index: the pieces as they are.
	{"attachment; filename*0=\"a\"; filename*2=\"c\"", "attachment", `("filename*0" "a" "filename*2" "c")`, false},
	// A plain and an extended value of one name are two parameters.
	{"attachment; filename=\"plain.txt\"; filename*=utf-8''%C3%A9.txt", "attachment", `("filename" "plain.txt" "filename*" "utf-8''%C3%A9.txt")`, false},
	{"text/plain; NAME*=utf-8''x; Charset=UTF-8", "text/plain", `("Charset" "UTF-8" "NAME*" "utf-8''x")`, true},
	{"text/plain; name*=''foo; x*=%41", "text/plain", `("name*" "''foo" "x*" "%41")`, true},
	{"attachment; filename*=utf-8'en'", "attachment", `("filename*" "utf-8'en'")`, false},
	{"text/plain; name*=utf-8''%E9%ZZ", "text/plain", `("name*" "utf-8''%E9%ZZ")`, true},
	{"text/plain; name*=\"a\\\"b\"", "text/plain", `("name*" "a\"b")`, true},
	{"text/plain; charset*=us-ascii''utf-8", "text/plain", `("charset*" "us-ascii''utf-8")`, true},
	// Lenient: a parameter that does not parse is skipped, not the list.
	{"text/plain; name=\"x\\\\y\"; garbage; =v; k=", "text/plain", `("name" "x\\y" "k" "")`, true},
	{"text/plain; name=a/b; c=d", "text/plain", `("name" "a" "c" "d")`, true},
	{"text/plain; name==?utf-8?q?=C3=A9?=; b=c", "text/plain", `("name" "=?utf-8?q?=C3=A9?=" "b" "c")`, true},
	{"text/plain; name=a; name=b", "text/plain", `("name" "a" "name" "b")`, true},
	{"text/plain; name=\"open; c=d", "text/plain", `NIL`, true},
	{"attachment; filename=a;", "attachment", `("filename" "a")`, false},
	{"image/png; name=\"\"", "image/png", `("name" "")`, true},
	{"attachment filename=a", "attachment", `NIL`, false},
	// 8-bit, unencoded: kept, and then sent in a literal.
	{"text/plain; name=\xc3\xa9t\xc3\xa9.pdf; b=c", "text/plain", "(\"name\" {9}\r\n\xc3\xa9t\xc3\xa9.pdf \"b\" \"c\")", true},
	// No type: nothing.
	{"text; charset=utf-8", "", `NIL`, true},
	{"; charset=utf-8", "", `NIL`, true},
	{"; filename=a", "", `NIL`, false},
	{"", "", `NIL`, false},
}

func TestParseMIMEValue(t *testing.T) {
	for _, c := range mimeValueCases {
		typ, params := parseMIMEParams(c.in, c.subtype)
		got := string(appendParams(nil, params, false))
		if typ != c.typ || got != c.params {
			t.Errorf("%q: %q %s, want %q %s", c.in, typ, got, c.typ, c.params)
		}
	}
}

// What a client reads in BODYSTRUCTURE for RFC 2231 parameters: the raw
// form, never a decoded value, never 8-bit it did not ask for.
func TestBodyStructureRFC2231(t *testing.T) {
	t.Parallel()
	msgs := []struct{ header, want string }{
		{"Content-Type: application/pdf; name*=iso-8859-1''%E9t%E9.pdf\nContent-Disposition: attachment; filename*=iso-8859-1''%E9t%E9.pdf\n",
			`("application" "pdf" ("name*" "iso-8859-1''%E9t%E9.pdf") NIL NIL "7bit" 6 NIL ("attachment" ("filename*" "iso-8859-1''%E9t%E9.pdf")) NIL NIL)`},
		{"Content-Type: text/plain\nContent-Disposition: attachment; filename*0*=ISO-8859-1'fr'%E9t; filename*1*=%E9; filename*2=\".txt\"\n",
			`("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL ("attachment" ("filename*" "ISO-8859-1'fr'%E9t%E9.txt")) NIL NIL)`},
		{"Content-Type: text/plain; charset=utf-8; name*=utf-8''%C3%A9t%C3%A9.pdf\nContent-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf\n",
			`("text" "plain" ("charset" "utf-8" "name*" "utf-8''%C3%A9t%C3%A9.pdf") NIL NIL "7bit" 6 1 NIL ("attachment" ("filename*" "utf-8''%C3%A9t%C3%A9.pdf")) NIL NIL)`},
		{"Content-Type: text/plain; name=a; name=b\nContent-Disposition: attachment; filename*0=\"long \"; filename*1=\"name.txt\"\n",
			`("text" "plain" ("name" "a" "name" "b" "charset" "us-ascii") NIL NIL "7bit" 6 1 NIL ("attachment" ("filename" "long name.txt")) NIL NIL)`},
	}
	e := newEnv(t)
	for i, m := range msgs {
		e.deliver(fmt.Sprintf("17000000%02d.M1P1.test", i), "From: a@b\nSubject: p\nMIME-Version: 1.0\n"+m.header+"\nbody\n")
	}
	for _, utf8 := range []bool{false, true} {
		out := fetchAll(t, e, "(BODYSTRUCTURE)", utf8)
		for i, m := range msgs {
			want := fmt.Sprintf("* %d FETCH (BODYSTRUCTURE %s)", i+1, m.want)
			if !strings.Contains(out, want) {
				t.Errorf("utf8=%v: message %d:\n%s\nwant %s", utf8, i+1, out, want)
			}
		}
		for _, c := range []byte(out) {
			if c >= 0x80 {
				t.Errorf("utf8=%v: 8-bit byte in BODYSTRUCTURE:\n%s", utf8, out)
				break
			}
		}
	}
}
