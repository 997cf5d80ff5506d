package imap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLongKeywordRefused: a keyword over 50 characters (Dovecot's
// mail_max_keyword_length) is refused as Dovecot 2.3 refuses it, "NO
// [CANNOT] Keyword length too long", and nothing of the command is
// stored, in STORE, APPEND (before "+": the message is not sent for
// nothing) and CATENATE; 50 characters are fine, and so is a longer
// keyword the folder already has. Such a keyword was answered OK and
// dropped (QA).
func TestLongKeywordRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "kw"))
	// A long keyword another program put in the folder's table.
	old := "Old" + strings.Repeat("o", 57)
	os.WriteFile(filepath.Join(e.maildir, "dovecot-keywords"), []byte("0 "+old+"\n"), 0o600)
	k50 := "K" + strings.Repeat("x", 49)
	k51 := "K" + strings.Repeat("x", 50)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	const refused = "x NO [CANNOT] Keyword length too long"
	for _, c := range []struct {
		name, cmd, want string
		flags           string // FETCH FLAGS afterwards
		exists          string // the last EXISTS afterwards ("": unchanged)
	}{
		{"50 characters", "STORE 1 FLAGS (" + k50 + ")", "x OK", "(" + k50 + ` \Recent)`, ""},
		{"51 characters", "STORE 1 FLAGS (" + k51 + ")", refused, "(" + k50 + ` \Recent)`, ""},
		{"one of two", "STORE 1 +FLAGS ($ok " + k51 + ")", refused, "(" + k50 + ` \Recent)`, ""},
		{"removed", "STORE 1 -FLAGS (" + k51 + ")", refused, "(" + k50 + ` \Recent)`, ""},
		{"known to the folder", "STORE 1 +FLAGS (" + old + ")", "x OK", "(" + old + " " + k50 + ` \Recent)`, ""},
		{"APPEND, sync literal", "APPEND INBOX (" + k51 + ") {5}", refused, "", ""},
		{"APPEND, non-sync literal", "APPEND INBOX (" + k51 + ") {5+}\r\nhello", refused, "", ""},
		{"MULTIAPPEND, the second", "APPEND INBOX {5+}\r\nhello (" + k51 + ") {5+}\r\nhello", refused, "", ""},
		{"CATENATE", "APPEND INBOX (" + k51 + ") CATENATE (TEXT {5+}\r\nhello)", refused, "", ""},
		{"APPEND, 50 characters", "APPEND INBOX (" + k50 + ") {5+}\r\nhello", "x OK [APPENDUID", "", "* 2 EXISTS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			lines := r.cmd("x", c.cmd)
			if got := last(lines); !strings.HasPrefix(got, c.want) {
				t.Errorf("%q: got %q, want %q", c.cmd, got, c.want)
			}
			if c.exists != "" && !strings.Contains(strings.Join(lines, "\n"), c.exists) {
				t.Errorf("%q: no %q in %q", c.cmd, c.exists, lines)
			}
			if c.flags != "" {
				if got := r.cmd("f", "FETCH 1 (FLAGS)")[0]; got != "* 1 FETCH (FLAGS "+c.flags+")" {
					t.Errorf("after %q: %q, want FLAGS %s", c.cmd, got, c.flags)
				}
			}
			// Nothing was appended by a refused APPEND.
			if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
				t.Errorf("out of step afterwards: %q", got)
			}
		})
	}
	if got := strings.Join(r.cmd("s", "STATUS INBOX (MESSAGES)"), "\n"); !strings.Contains(got, "(MESSAGES 2)") {
		t.Errorf("messages after the refused APPENDs: %q", got)
	}
}
