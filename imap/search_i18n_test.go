package imap

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// A search string that is not UTF-8 is a malformed key (RFC 9051 §6.4.4:
// strings are in the charset, UTF-8 here), answered BAD as Dovecot does,
// not a search that finds nothing.
func TestSearchStringNotUTF8(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "caf\xc3\xa9"))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	expectReplies(t, r, []struct{ cmd, want string }{
		{"UID SEARCH CHARSET UTF-8 BODY {2+}\r\n\xff\xfe", "x BAD"},
		{"UID SEARCH BODY {2+}\r\n\xff\xfe", "x BAD"},
		{"SEARCH TEXT \"caf\xe9\"", "x BAD"},
		{"SEARCH SUBJECT {1+}\r\n\xc3", "x BAD"},
		{"SEARCH FROM \"\xffbob\"", "x BAD"},
		{"SEARCH HEADER {2+}\r\n\xff\xfe x", "x BAD"},
		{"SEARCH HEADER X-Y {1+}\r\n\x80", "x BAD"},
		{"SEARCH OR ALL BCC \"\xfe\"", "x BAD"},
		{"UID SORT (SUBJECT) UTF-8 BODY {2+}\r\n\xff\xfe", "x BAD"},
		{"UID THREAD REFERENCES UTF-8 TEXT {2+}\r\n\xff\xfe", "x BAD"},
		// Valid UTF-8 still searches.
		{"UID SEARCH CHARSET UTF-8 SUBJECT {5+}\r\ncaf\xc3\xa9", "* SEARCH 1"},
		{"UID SEARCH SUBJECT \"caf\xc3\xa9\"", "* SEARCH 1"},
	})
}

// textCorpus is the corpus of TestSearchTextDecoded, in UID order.
var textCorpus = []string{
	"From: a@b\nSubject: =?UTF-8?Q?caf=C3=A9?=\n\nnothing\n",
	"From: =?ISO-8859-1?Q?caf=E9?= <x@y>\nSubject: s\n\nnothing\n",
	"From: a@b\nSubject: =?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=\n\nnothing\n",
	"From: a@b\nSubject: =?UTF-8?B?5pel5pys6Kqe?=\n\nnothing\n",
	"From: a@b\nSubject: mime\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhello\n--XX\n" +
		"Content-Type: application/pdf; name*=utf-8''%C3%A9t%C3%A9.pdf\nContent-Disposition: attachment; filename*=utf-8''%C3%A9t%C3%A9.pdf\n" +
		"Content-Transfer-Encoding: base64\n\nQ2Fmw6kgc2VjcmV0Cg==\n--XX--\n",
	"From: a@b\nSubject: =?UTF-8?B?Q2Fmw6k=?=\n\nnothing\n",
	"From: a@b\nSubject: foo\n bar\nX-Long: alpha\n\tbeta\nX-D:   three sp\n\nnothing\n",
	"From: a@b\nSubject: fwd\nMIME-Version: 1.0\nContent-Type: message/rfc822\n\nFrom: c@d\nSubject: =?UTF-8?Q?inn=C3=A9r?=\n\ninner body\n",
	"From: a@b\nSubject: l1\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhello\n--XX\n" +
		"Content-Type: application/octet-stream\nContent-Disposition: attachment; filename*0*=ISO-8859-1'fr'%E9t; filename*1*=%E9; filename*2=\".txt\"\n\nzz\n--XX--\n",
	"From: a@b\nSubject: l2\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhello\n--XX\n" +
		"Content-Type: application/octet-stream; name=\"=?UTF-8?Q?=C3=A9t=C3=A9.doc?=\"\nContent-Disposition: attachment; filename*=iso-8859-1''%E9t%E9.pdf\n\nzz\n--XX--\n",
	"From: a@b\nSubject: latin\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\ncaf=E9 au=\n lait\n",
	"From: a@b\nSubject: raw Caf\xc3\xa9\n\nnothing\n",
}

// TEXT searches the header as decoded as HEADER decodes it (encoded words
// in every field, and RFC 2231 parameter values), of the message and of
// its MIME parts and encapsulated messages, and the body as BODY decodes
// it; not the encoded forms. The results are Dovecot 2.3.19's on the same
// messages, except where marked: Dovecot decodes no RFC 2231 value.
func TestSearchTextDecoded(t *testing.T) {
	t.Parallel()
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed=%v", streamed), func(t *testing.T) {
			t.Parallel()
			// Streamed: every message searched from its file, as a
			// large one is (searchStream); the answers are the same.
			testSearchTextDecoded(t, newEnv(t, func(o *Options) { o.streamSearchAll = streamed }))
		})
	}
}

func testSearchTextDecoded(t *testing.T, e *testEnv) {
	for i, m := range textCorpus {
		e.deliver(fmt.Sprintf("17000000%02d.M1P1.test", i), m)
	}
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	search := func(key, s string) string {
		got := r.cmd("x", fmt.Sprintf("UID SEARCH CHARSET UTF-8 %s {%d+}\r\n%s", key, len(s), s))
		if !strings.HasPrefix(last(got), "x OK") {
			t.Errorf("%s %q: %q", key, s, got)
		}
		return got[0]
	}
	for _, tc := range []struct{ key, text, want string }{
		{"TEXT", "café", "1 2 6 11 12"},
		{"TEXT", "CAFÉ", "1 2 6 11 12"},
		{"TEXT", "日本語", "3 4"},
		{"TEXT", "=?UTF-8?B?", ""},
		{"TEXT", "=?", ""},
		{"TEXT", "Q2Fmw6k", ""},
		{"TEXT", "Subject: caf", "1 6"},
		{"TEXT", "subject: foo bar", "7"},
		{"TEXT", "alpha beta", "7"},
		{"TEXT", "X-D:   three", "7"},
		{"TEXT", "innér", "8"},
		{"TEXT", "inner body", "8"},
		{"TEXT", "c@d", "8"},
		{"TEXT", "utf-8''%C3%A9", "5"},
		{"TEXT", "iso-8859-1''", "10"},
		{"TEXT", "été.doc", "10"},
		{"TEXT", "secret", ""},
		{"TEXT", "hello", "5 9 10"},
		{"TEXT", "café au lait", "11"},
		{"TEXT", "caf=E9", ""},
		{"TEXT", "mime-version: 1.0", "5 8 9 10 11"},
		{"TEXT", "1.0 content-type", ""},
		// RFC 2231 values decoded (Dovecot: none).
		{"TEXT", "été.pdf", "5 10"},
		{"TEXT", "ÉTÉ.TXT", "9"},
		{"BODY", "café", "11"},
		{"BODY", "innér", ""},
		{"BODY", "inner body", "8"},
		{"BODY", "c@d", ""},
		{"BODY", "hello", "5 9 10"},
		{"BODY", "secret", ""},
		{"BODY", "Subject", ""},
		{"BODY", "été.pdf", ""},
		{"BODY", "utf-8''%C3%A9", ""},
		{"BODY", "café au lait", "11"},
		{"BODY", "caf=E9", ""},
	} {
		want := strings.TrimSpace("* SEARCH " + tc.want)
		if got := search(tc.key, tc.text); got != want {
			t.Errorf("%s %q: %q, want %q", tc.key, tc.text, got, want)
		}
	}
}

// A SEARCH, SORT or THREAD in another charset than UTF-8 has its strings
// read in that charset (RFC 9051 §6.4.4), as Dovecot does for what iconv
// knows; a charset nothing decodes is NO [BADCHARSET], and the
// connection goes on.
func TestSearchCharset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "caf\xc3\xa9 cr\xc3\xa8me"))
	e.deliver("1700000002.M1P1.test", "From: a@b\nSubject: =?KOI8-R?B?8NLJ18XU?=\n\nnothing\n") // "Привет"
	e.deliver("1700000003.M1P1.test", "From: a@b\nSubject: other\nContent-Type: text/plain; charset=utf-8\n\nprix: 5 \xe2\x82\xac\n")
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	expectReplies(t, r, []struct{ cmd, want string }{
		{"UID SEARCH CHARSET ISO-8859-1 SUBJECT \"caf\xe9\"", "* SEARCH 1"},
		{"UID SEARCH CHARSET iso-8859-1 SUBJECT {5+}\r\nCR\xc8ME", "* SEARCH 1"},
		{"UID SEARCH CHARSET KOI8-R SUBJECT \"\xf0\xd2\xc9\"", "* SEARCH 2"},
		{"UID SEARCH CHARSET windows-1252 BODY \"5 \x80\"", "* SEARCH 3"},
		{"UID SEARCH CHARSET ISO-8859-1 SUBJECT \"caf\xc3\xa9\"", "* SEARCH"}, // UTF-8 bytes read as Latin-1: "cafÃ©"
		{"UID SEARCH CHARSET US-ASCII SUBJECT other", "* SEARCH 3"},
		{"UID SORT (SUBJECT) ISO-8859-1 SUBJECT \"caf\xe9\"", "* SORT 1"},
		{"UID THREAD ORDEREDSUBJECT ISO-8859-1 SUBJECT \"caf\xe9\"", "* THREAD (1)"},
		{"UID SEARCH CHARSET X-NOT-A-CHARSET SUBJECT a", "x NO [BADCHARSET (UTF-8 US-ASCII ISO-8859-1 "},
		{"UID SORT (SUBJECT) X-NOT-A-CHARSET ALL", "x NO [BADCHARSET (UTF-8 US-ASCII ISO-8859-1 "},
		// Without CHARSET, strings are UTF-8 still.
		{"UID SEARCH SUBJECT \"caf\xe9\"", "x BAD"},
		// Bytes the charset does not define: BAD, as Dovecot (iconv).
		{"UID SEARCH CHARSET windows-1252 SUBJECT {2+}\r\nm\x81", "x BAD"},
		{"UID SEARCH CHARSET UTF-16BE SUBJECT {4+}\r\n\x00o\x00t", "* SEARCH 3"},
		{"UID SEARCH CHARSET UTF-16BE SUBJECT {4+}\r\n\xdc\x00\x00t", "x BAD"}, // a lone low surrogate
	})
}

// expectReplies sends each command and checks the first line of its
// answer: an untagged one ("* ...") exactly and followed by OK, a tagged
// one by its prefix; a NOOP after each shows the connection in step.
func expectReplies(t *testing.T, r *rawConn, cases []struct{ cmd, want string }) {
	t.Helper()
	for _, tc := range cases {
		got := r.cmd("x", tc.cmd)
		if !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("%q: %q, want %q", tc.cmd, got, tc.want)
		}
		if strings.HasPrefix(tc.want, "*") && (got[0] != tc.want || !strings.HasPrefix(last(got), "x OK")) {
			t.Errorf("%q: %q, want %q then OK", tc.cmd, got, tc.want)
		}
		if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
			t.Errorf("%q: connection out of step afterwards: %q", tc.cmd, got)
		}
	}
}

// Every charset BADCHARSET lists is one SEARCH takes (RFC 9051 §7.1: the
// list is of the charsets supported), its strings read in it: each one's
// text, encoded in it, finds the message whose subject is that text.
func TestBadCharsetListsSupported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// One subject per script, in UTF-8 (an encoded word), and what a
	// client sends for it in each charset.
	e.deliver("1700000001.M1P1.test", "From: a@b\nSubject: =?UTF-8?B?"+base64.StdEncoding.EncodeToString([]byte("x caf\u00e9 \u041f\u0440\u0438 \u65e5\u672c \uc548 \u4e2d\u6587 \u03b1 \u05d0 \u0627 \u0161 y"))+"?=\n\nx\n")
	samples := map[string]string{
		"latin": "caf\u00e9", "cyrillic": "\u041f\u0440\u0438", "japanese": "\u65e5\u672c", "korean": "\uc548",
		"chinese": "\u4e2d\u6587", "greek": "\u03b1", "hebrew": "\u05d0", "arabic": "\u0627", "central": "\u0161",
	}
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	lines := r.cmd("x", "SEARCH CHARSET X-NOT-A-CHARSET SUBJECT a")
	list := regexp.MustCompile(`^x NO \[BADCHARSET \(([^)]*)\)\]`).FindStringSubmatch(lines[0])
	if list == nil {
		t.Fatalf("no charset list: %q", lines)
	}
	names := strings.Fields(list[1])
	if len(names) < 10 || len(list[1]) > 1000 {
		t.Fatalf("BADCHARSET lists %d charsets in %d bytes", len(names), len(list[1]))
	}
	for _, cs := range names {
		enc, err := ianaindex.MIME.Encoding(cs)
		if err != nil || enc == nil {
			enc, err = htmlindex.Get(cs)
		}
		if err != nil || enc == nil {
			t.Errorf("%s: no encoder to check it with: %v", cs, err)
			continue
		}
		found := 0
		for _, text := range samples {
			b, err := enc.NewEncoder().String(text)
			if err != nil {
				continue // not in this charset
			}
			cmd := fmt.Sprintf("UID SEARCH CHARSET %s SUBJECT {%d+}\r\n%s", cs, len(b), b)
			if got := r.cmd("x", cmd); got[0] != "* SEARCH 1" || !strings.HasPrefix(last(got), "x OK") {
				t.Errorf("%s, %q: %q", cs, text, got)
			}
			found++
		}
		if got := r.cmd("x", "UID SEARCH CHARSET "+cs+" SUBJECT \"x\""); got[0] != "* SEARCH 1" {
			t.Errorf("%s, ASCII: %q", cs, got)
		}
		if found == 0 && cs != "US-ASCII" {
			t.Errorf("%s: none of the samples checked it", cs)
		}
	}
}
