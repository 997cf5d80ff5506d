package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// bodyStructureMessages are messages whose BODYSTRUCTURE
// TestBodyStructureAsDovecot compares: parameters in the header's order
// and case, twice one name, RFC 2231 ones among plain ones, Content-MD5
// on a leaf, on parts and on an encapsulated message.
var bodyStructureMessages = []string{
	"Content-Type: text/plain; Format=flowed; CHARSET=\"UTF-8\"; DelSp=yes; charset=x\r\n" +
		"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\nContent-Disposition: inline; FileName=\"a.txt\"; Size=3\r\n\r\nbody\r\n",
	"Content-Type: text/plain; format=flowed\r\nContent-MD5: (comment) abc\r\n\r\nbody\r\n",
	"Content-Type: multipart/mixed; Boundary=\"XX\"; B=1; a=2\r\n\r\n--XX\r\n" +
		"Content-Type: text/html; Charset=ISO-8859-1\r\nContent-MD5: abc\r\n\r\nhi\r\n--XX\r\n" +
		"Content-Type: application/octet-stream; z=1; name*1=\"b\"; Y=2; name*0=\"a\"; A*=utf-8''x; b=3\r\nContent-MD5: def\r\n\r\nzz\r\n--XX\r\n" +
		"Content-Type: message/rfc822; X=y\r\nContent-MD5: ghi\r\n\r\nSubject: in\r\nContent-Type: text/plain; Charset=us-ascii; N=1\r\nContent-MD5: jkl\r\n\r\nin\r\n--XX--\r\n",
	"Content-Type: text/plain\r\nContent-MD5: folded\r\n\tvalue\r\nContent-MD5: second\r\n\r\nbody\r\n",
}

// BODYSTRUCTURE gives what Dovecot 2.3.19 gives for the same messages:
// Content-Type and Content-Disposition parameters in the header's order
// with their names as written (two of one name both; RFC 2231 ones
// after the plain ones, by name: rfc2231-parser.c, rfc2231_parse; a text
// part's default charset last: imap-bodystructure.c, params_write), and
// the body MD5, Content-MD5's value (message-part-data.c,
// parse_content_header). courriel gave the parameters lower-cased,
// sorted and once a name, and NIL for the MD5. Dovecot's imap on the
// same maildir is the expectation; the values of mimeValueCases
// (TestParseMIMEValue) are asked too, as a Content-Type or a
// Content-Disposition. A type written in capitals is left out: Dovecot
// keeps its case, courriel lower-cases it.
func TestBodyStructureAsDovecot(t *testing.T) {
	t.Parallel()
	testenv.NeedDovecot(t)
	msgs := append([]string(nil), bodyStructureMessages...)
	for _, c := range mimeValueCases {
		if c.typ == "" || strings.ToLower(c.in[:len(c.typ)]) != c.in[:len(c.typ)] {
			continue
		}
		if c.subtype {
			msgs = append(msgs, "Content-Type: "+c.in+"\r\n\r\nbody\r\n")
		} else {
			msgs = append(msgs, "Content-Type: application/octet-stream\r\nContent-Disposition: "+c.in+"\r\n\r\nbody\r\n")
		}
	}
	var script strings.Builder
	for i := range msgs {
		fmt.Fprintf(&script, "f%d FETCH %d (BODYSTRUCTURE BODY)\r\n", i+1, i+1)
	}
	script.WriteString("z LOGOUT\r\n")
	// Each FETCH's answer: its untagged line and the lines of its
	// literals (a server may answer several FETCHes before their tagged
	// replies).
	answers := func(out string) []string {
		got := make([]string, len(msgs))
		cur := -1
		for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
			var n int
			switch {
			case strings.HasPrefix(l, "* ") && strings.Contains(l, " FETCH ("):
				fmt.Sscanf(l, "* %d FETCH", &n)
				cur = n - 1
				if cur >= 0 && cur < len(got) {
					got[cur] = l
				}
			case strings.HasPrefix(l, "* ") || strings.HasPrefix(l, "f") || strings.HasPrefix(l, "a ") || strings.HasPrefix(l, "z "):
				cur = -1
			case cur >= 0 && cur < len(got):
				got[cur] += "\n" + l
			}
		}
		return got
	}

	dc := filepath.Join(t.TempDir(), "Maildir")
	e := newEnv(t)
	for i, m := range msgs {
		name := fmt.Sprintf("17000000%02d.M%dP1.test", i, i)
		writeMaildirMsg(t, dc, "cur", name+":2,", m)
		writeMaildirMsg(t, e.maildir, "cur", name+":2,", m)
	}
	os.MkdirAll(filepath.Join(dc, "tmp"), 0o700)
	theirs := answers(testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\n"+script.String()))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	r.send(script.String())
	ours := answers(strings.Join(r.until("z"), "\n"))
	for i := range msgs {
		if theirs[i] == "" {
			t.Fatalf("message %d: no answer from Dovecot", i+1)
		}
		if ours[i] != theirs[i] {
			t.Errorf("message %d %q:\ncourriel %s\nDovecot  %s", i+1, strings.SplitN(msgs[i], "\r\n\r\n", 2)[0], ours[i], theirs[i])
		}
	}
}
