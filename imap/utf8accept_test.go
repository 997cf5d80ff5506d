package imap

import (
	"slices"
	"testing"
)

// TestUTF8AcceptQuotesUTF8Only: after ENABLE UTF8=ACCEPT, ENVELOPE and
// BODYSTRUCTURE quote UTF-8 text, and send other 8-bit text (a raw
// Latin-1 header, common in spam and old mailers) as a literal, as
// before UTF8=ACCEPT: a quoted string holds UTF-8 only (RFC 9051
// utf8-quoted, RFC 6855 §3), and a client that enabled it read those
// bytes as broken UTF-8, or refused the response.
func TestUTF8AcceptQuotesUTF8Only(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.host", "Subject: caf\xe9\nFrom: \"Ren\xe9\" <r@x>\nContent-Type: text/plain; name=\"\xe9t\xe9.txt\"\n\nbody\n")
	e.deliver("1700000002.M1P1.host", "Subject: café\nFrom: \"René\" <r@x>\n\nbody\n")
	r := loggedIn(t, e)
	expectLines(t, r, "e", "ENABLE UTF8=ACCEPT", "* ENABLED UTF8=ACCEPT", "e OK Enabled")
	r.cmd("s", "EXAMINE INBOX")
	want := []string{
		"* 1 FETCH (ENVELOPE (NIL {4}",
		"caf\xe9 (({4}",
		`Ren` + "\xe9" + ` NIL "r" "x")) (({4}`,
		`Ren` + "\xe9" + ` NIL "r" "x")) (({4}`,
		`Ren` + "\xe9" + ` NIL "r" "x")) NIL NIL NIL NIL NIL) BODYSTRUCTURE ("text" "plain" ("name" {7}`,
		"\xe9t\xe9.txt" + ` "charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL))`,
		`* 2 FETCH (ENVELOPE (NIL "café" (("René" NIL "r" "x")) (("René" NIL "r" "x")) (("René" NIL "r" "x")) NIL NIL NIL NIL NIL))`,
		"f OK Fetch completed",
	}
	r.send("f FETCH 1 (ENVELOPE BODYSTRUCTURE)\r\n")
	got := r.until("f")
	r.send("f FETCH 2 (ENVELOPE)\r\n")
	got = append(got[:len(got)-1], r.until("f")...)
	if !slices.Equal(got, want) {
		t.Errorf("FETCH:\n got %q\nwant %q", got, want)
	}
}
