package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// casemapMessages are the messages of TestSearchCasemapAsDovecot, in UID
// order: diacritics precomposed and decomposed, in encoded words, raw
// 8-bit fields and bodies.
var casemapMessages = []string{
	"From: =?UTF-8?Q?Zo=C3=AB?= <zoe@example.org>\nSubject: =?UTF-8?Q?Caf=C3=A9_cr=C3=A8me?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nUne \xc3\xa9l\xc3\xa8ve na\xc3\xafve.\n",
	"From: a@example.org\nSubject: Cafe\xcc\x81 decomposed\nMIME-Version: 1.0\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\n=C9COLE d'=E9t=E9\n",
	"From: b@example.org\nSubject: plain cafe\n\nno accents at all: eleve, ecole\n",
	"From: c@example.org\nSubject: =?UTF-8?B?U3RyYcOfZQ==?=\n\n\xc3\x85ngstr\xc3\xb6m\n",
}

// casemapSearches are UTF-8 SEARCH strings, each under the keys it is
// asked with.
var casemapSearches = []struct{ key, value string }{
	{"SUBJECT", "cafe"}, {"SUBJECT", "CAFÉ"}, {"SUBJECT", "café"}, {"SUBJECT", "creme"},
	{"FROM", "zoe"}, {"FROM", "ZOË"},
	{"BODY", "eleve"}, {"BODY", "ÉLÈVE"}, {"BODY", "naive"}, {"BODY", "ecole"}, {"BODY", "été"}, {"BODY", "ete"},
	{"TEXT", "creme"}, {"TEXT", "angstrom"}, {"BODY", "ö"}, {"BODY", "o"}, {"BODY", "å"},
	{"SUBJECT", "strasse"}, {"SUBJECT", "straße"},
}

// SEARCH matches as Dovecot 2.3 does with its comparator
// (i;unicode-casemap: case and diacritics): "cafe" finds "Café", both
// spellings of a decomposed letter find each other, "café" does not find
// "cafe". Dovecot's own answers are the expectation. (A letter with two
// diacritics, ǖ, is decomposed whole here and one level by Dovecot: not
// compared.)
func TestSearchCasemapAsDovecot(t *testing.T) {
	t.Parallel()
	var script strings.Builder
	for i, s := range casemapSearches {
		fmt.Fprintf(&script, "s%d UID SEARCH CHARSET UTF-8 %s {%d+}\r\n%s\r\n", i, s.key, len(s.value), s.value)
	}
	script.WriteString("z LOGOUT\r\n")
	// The SEARCH replies in order, one per command (a pipelining server
	// may answer several before their tagged replies).
	results := func(out string) []string {
		var got []string
		for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
			if rest, ok := strings.CutPrefix(l, "* SEARCH"); ok {
				got = append(got, strings.TrimSpace(rest))
			}
		}
		return got
	}

	e := newEnv(t)
	for i, m := range casemapMessages {
		e.deliver(fmt.Sprintf("17000000%02d.M%dP1.test", i, i), m)
	}
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	r.send(script.String())
	ours := results(strings.Join(r.until("z"), "\n"))

	testenv.NeedDovecot(t)
	dc := filepath.Join(t.TempDir(), "Maildir")
	for i, m := range casemapMessages {
		writeMaildirMsg(t, dc, "cur", fmt.Sprintf("17000000%02d.M%dP1.test", i, i), m)
	}
	os.MkdirAll(filepath.Join(dc, "tmp"), 0o700)
	theirs := results(testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\n"+script.String()))
	if len(ours) != len(casemapSearches) || len(theirs) != len(casemapSearches) {
		t.Fatalf("SEARCH replies: courriel %d, Dovecot %d, want %d", len(ours), len(theirs), len(casemapSearches))
	}
	for i, s := range casemapSearches {
		if ours[i] != theirs[i] {
			t.Errorf("SEARCH %s %q: courriel %q, Dovecot %q", s.key, s.value, ours[i], theirs[i])
		}
	}
}
