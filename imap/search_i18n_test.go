package imap

import (
	"strings"
	"testing"
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
	for _, tc := range []struct{ cmd, want string }{
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
	} {
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
