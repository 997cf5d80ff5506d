package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// indexCorpus holds the shapes of message the index keeps: groups, source
// routes, 8-bit and encoded words, quoted strings, nested message/rfc822,
// parameters, dispositions, languages, bare LF, a message over parseRead
// (parsed for ENVELOPE and BODYSTRUCTURE apart), no header at all.
func indexCorpus() []string {
	big := "Subject: big\nFrom: a@b\nContent-Type: text/plain\n\n" + strings.Repeat("0123456789 abcdefghij\n", 4000)
	return []string{
		"From: \"Dupont, Jean\" <jean@exemple.fr>\r\nTo: group: a@b, \"C\" <c@d>;, e@f\r\nCc: empty:;\r\nSubject: caf\xc3\xa9 =?UTF-8?Q?Ren=C3=A9e?= \"q\" \\\r\nDate: Tue, 31 Dec 2024 23:59:59 +1400\r\nMessage-ID: <1@x>\r\nIn-Reply-To: <0@x>\r\nReply-To: <@route1,@route2:r@s>\r\n\r\nbody\r\n",
		"From: x@y (comment name)\nSender: s@t\nDate: 2 Jan 2023 10:00 -0130\nSubject: folded\n  subject\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\nContent-Language: fr, en\n\n--b1\nContent-Type: text/plain; charset=utf-8; format=flowed\nContent-Disposition: inline; filename=\"a b.txt\"\nContent-ID: <cid@x>\nContent-Description: the text\nContent-Location: http://x/y\n\nhello\n--b1\nContent-Type: message/rfc822\n\nFrom: inner@x\nSubject: inner\nContent-Type: multipart/alternative; boundary=b2\n\n--b2\nContent-Type: text/html\n\n<p>x</p>\n--b2--\n--b1\nContent-Type: application/octet-stream; name=bin\nContent-Transfer-Encoding: base64\n\naGVsbG8=\n--b1--\n",
		"Date: garbage\r\nSubject:\r\n\r\n",
		"no header line at all",
		"",
		big,
	}
}

// fetchAll returns the untagged lines of one FETCH in a new session.
func fetchAll(t *testing.T, e *testEnv, items string, utf8 bool) string {
	r := loggedIn(t, e)
	if utf8 {
		r.cmd("u", "ENABLE UTF8=ACCEPT")
	}
	r.cmd("s", "SELECT INBOX")
	out := r.cmd("f", "FETCH 1:* "+items)
	r.cmd("z", "LOGOUT")
	return strings.Join(out, "\n")
}

// TestFetchSameFromIndex checks that what FETCH serves from the index,
// after a restart, is byte for byte what it computed from the files,
// whichever item first made it read them, with helpers parsing ahead.
func TestFetchSameFromIndex(t *testing.T) {
	const items = "(ENVELOPE BODYSTRUCTURE BODY)"
	for _, utf8 := range []bool{false, true} {
		var want string
		for _, first := range []string{items, "(ENVELOPE)", "(BODYSTRUCTURE)", "(BODY[] BODYSTRUCTURE ENVELOPE)"} {
			for _, helpers := range []int{-1, 2} {
				t.Run(fmt.Sprintf("utf8=%v/first=%s/helpers=%d", utf8, first, helpers), func(t *testing.T) {
					e := newEnv(t, func(o *Options) { o.ParseHelpers = helpers })
					// Enough messages for the prefetching helpers (minPrefetch).
					for i := range 3 * minPrefetch {
						corpus := indexCorpus()
						e.deliver(fmt.Sprintf("%d.M1P1.test", 1000+i), corpus[i%len(corpus)])
					}
					fetchAll(t, e, first, utf8)
					cold := fetchAll(t, e, items, utf8)
					e.restart()
					if _, err := os.Stat(filepath.Join(e.maildir, "courriel-index")); err != nil {
						t.Fatalf("no index written: %v", err)
					}
					warm := fetchAll(t, e, items, utf8)
					if warm != cold {
						t.Errorf("from the index:\n%s\nfrom the files:\n%s", warm, cold)
					}
					if want == "" {
						want = cold
					} else if cold != want {
						t.Errorf("cold after %s:\n%s\nwant:\n%s", first, cold, want)
					}
					if !strings.Contains(cold, `((NIL NIL "group" NIL)`) || !strings.Contains(cold, `BODYSTRUCTURE (("text" "plain" ("charset" "utf-8" "format" "flowed")`) {
						t.Errorf("corpus not served as expected:\n%s", cold)
					}
				})
			}
		}
	}
}

// FETCH ENVELOPE alone reads the header alone: the body's structure is
// neither computed nor cached until BODYSTRUCTURE asks for it, which then
// reads the file and gives what a first BODYSTRUCTURE gives.
func TestFetchEnvelopeLeavesTheBody(t *testing.T) {
	e := newEnv(t)
	corpus := indexCorpus()
	e.deliver("1000.M1P1.test", corpus[1]) // multipart, with a message/rfc822 part
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	env := r.cmd("f", "FETCH 1 (ENVELOPE)")
	mb := e.srv.reg.Lookup(filepath.Clean(e.maildir), "")
	if mb == nil {
		t.Fatal("INBOX not loaded while selected")
	}
	if c := mb.Cached(1); c.Envelope == nil || c.Body != nil {
		t.Fatalf("after FETCH ENVELOPE: envelope cached %v, body structure cached %v; want the envelope alone", c.Envelope != nil, c.Body != nil)
	}
	body := r.cmd("b", "FETCH 1 (BODYSTRUCTURE ENVELOPE)")
	r.cmd("z", "LOGOUT")
	first, _, _ := strings.Cut(fetchAll(t, newEnvWith(t, corpus[1]), "(BODYSTRUCTURE ENVELOPE)", false), "\n")
	if body[0] != first {
		t.Errorf("BODYSTRUCTURE after ENVELOPE:\n%s\nwant, as a first FETCH gives:\n%s", body[0], first)
	}
	if !strings.Contains(env[0], `"folded  subject" (("comment name" NIL "x" "y"))`) {
		t.Errorf("ENVELOPE: %s", env[0])
	}
}

// newEnvWith is a fresh server whose INBOX holds msg alone.
func newEnvWith(t *testing.T, msg string) *testEnv {
	e := newEnv(t)
	e.deliver("1000.M1P1.test", msg)
	return e
}
