package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
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

// TestKeywordsPastTheLetters: a folder whose 26 maildir letters were all
// used once (no message carrying them any more) still takes new keywords,
// as Dovecot does: STORE, APPEND, COPY and MOVE answer OK, FETCH FLAGS
// shows the keyword (announced in FLAGS first, PERMANENTFLAGS keeping
// \*), also after a restart, SEARCH KEYWORD finds it, STORE -FLAGS takes it
// away. STORE answered NO [LIMIT] Too many keywords in this mailbox, and
// APPEND, COPY and MOVE stored nothing (demo).
func TestKeywordsPastTheLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "kw"))
	r := loggedIn(t, e)
	var all []string
	for i := range 26 {
		all = append(all, fmt.Sprintf("k%d", i))
	}
	kws := strings.Join(all, " ")
	for _, c := range []string{"CREATE Tags", "SELECT Tags", "APPEND Tags {5+}\r\nhello", "STORE 1 +FLAGS (" + kws + ")",
		"STORE 1 -FLAGS (" + kws + ")", "SELECT INBOX", "STORE 1 +FLAGS (" + kws + ")", "STORE 1 -FLAGS (" + kws + ")"} {
		if got := last(r.cmd("p", c)); !strings.HasPrefix(got, "p OK") {
			t.Fatalf("%q: %q", c, got)
		}
	}
	expect := func(cmd, want string, lines ...string) {
		t.Helper()
		got := r.cmd("x", cmd)
		if !strings.HasPrefix(last(got), want) {
			t.Errorf("%q: %q, want %q", cmd, last(got), want)
		}
		all := strings.Join(got, "\n")
		for _, l := range lines {
			if !strings.Contains(all, l) {
				t.Errorf("%q: no %q in\n%s", cmd, l, all)
			}
		}
	}
	other := loggedIn(t, e)
	other.cmd("s", "SELECT INBOX")
	expect("STORE 1 +FLAGS (brandnew)", "x OK", "FLAGS (", " brandnew)", `[PERMANENTFLAGS (\Answered`, ` brandnew \*)]`,
		`* 1 FETCH (FLAGS (brandnew \Recent))`)
	// Another session hears of the keyword, then of the change.
	if got := strings.Join(other.cmd("n", "NOOP"), "\n"); !strings.Contains(got, " brandnew)\n") || !strings.Contains(got, " FLAGS (brandnew))") ||
		strings.Index(got, " brandnew)\n") > strings.Index(got, "* 1 FETCH") {
		t.Errorf("the other session's NOOP:\n%s", got)
	}
	expect("STORE 1 +FLAGS (second)", "x OK", `* 1 FETCH (FLAGS (brandnew second \Recent))`)
	if got := strings.Join(other.cmd("n", "NOOP"), "\n"); !strings.Contains(got, " FLAGS (brandnew second))") {
		t.Errorf("the other session's NOOP:\n%s", got)
	}
	expect("STORE 1 -FLAGS (second)", "x OK", `* 1 FETCH (FLAGS (brandnew \Recent))`)
	expect("FETCH 1 (FLAGS)", "x OK", `* 1 FETCH (FLAGS (brandnew \Recent))`)
	expect("SEARCH KEYWORD BRANDNEW", "x OK", "* SEARCH 1\n")
	expect("APPEND INBOX (\\Seen appended) {5+}\r\nhello", "x OK [APPENDUID", "* 2 EXISTS")
	expect("FETCH 2 (FLAGS)", "x OK", `* 2 FETCH (FLAGS (\Seen appended \Recent))`)
	expect("SEARCH KEYWORD appended", "x OK", "* SEARCH 2\n")
	expect("COPY 1 Tags", "x OK [COPYUID")
	expect("MOVE 2 Tags", "x OK", "* 2 EXPUNGE")
	expect("STORE 1 -FLAGS (brandnew)", "x OK", `* 1 FETCH (FLAGS (\Recent))`)
	expect("SEARCH KEYWORD brandnew", "x OK", "* SEARCH\n")
	// A lettered keyword of a folder with room, into the full one.
	expect("CREATE Roomy", "x OK")
	expect("APPEND Roomy (roomy) {5+}\r\nhello", "x OK [APPENDUID")
	expect("SELECT Roomy", "x OK")
	expect("COPY 1 Tags", "x OK [COPYUID")
	expect("MOVE 1 Tags", "x OK", "* 1 EXPUNGE")

	e.restart()
	r = loggedIn(t, e)
	expect("SELECT Tags", "x OK", " brandnew appended roomy)", ` appended roomy \*)]`)
	expect("FETCH 2:3 (FLAGS)", "x OK", `* 2 FETCH (FLAGS (brandnew \Recent))`, `* 3 FETCH (FLAGS (\Seen appended \Recent))`)
	expect("SEARCH KEYWORD brandnew", "x OK", "* SEARCH 2\n")
	expect("FETCH 4:5 (FLAGS)", "x OK", `* 4 FETCH (FLAGS (roomy \Recent))`, `* 5 FETCH (FLAGS (roomy \Recent))`)
	expect("SEARCH KEYWORD roomy", "x OK", "* SEARCH 4 5\n")
	expect("SELECT INBOX", "x OK")
	expect("FETCH 1 (FLAGS)", "x OK", `* 1 FETCH (FLAGS ())`)
}

// On a full disk, a keyword past the 26 letters that courriel-keywords
// cannot take is refused as a new lettered one is (NO [OVERQUOTA]), and
// the message keeps the keywords it had; a COPY or MOVE whose keyword
// cannot be written is refused as well, rather than lose it (the message
// stays where it was, with it).
func TestKeywordsPastTheLettersDiskFull(t *testing.T) {
	t.Parallel()
	e := newEnvOnTmpfs(t, "size=1m,mode=0755")
	e.deliver("1700000000.M1P1.host", testMessage(1, "a@example.org", "one"))
	r := loggedIn(t, e)
	var all []string
	for i := range 26 {
		all = append(all, fmt.Sprintf("k%d", i))
	}
	kws := strings.Join(all, " ")
	for _, c := range []string{"CREATE Other", "CREATE Tags", "APPEND Tags {5+}\r\nhello", "SELECT Tags",
		"STORE 1 FLAGS (" + kws + ")", "SELECT INBOX", "STORE 1 +FLAGS (" + kws + ")",
		"STORE 1 -FLAGS (" + kws + ")", "STORE 1 +FLAGS (known)"} {
		if got := last(r.cmd("p", c)); !strings.HasPrefix(got, "p OK") {
			t.Fatalf("%q: %q", c, got)
		}
	}
	testenv.FillSpace(t, filepath.Join(e.base, "fill"))
	if got := last(r.cmd("x", "STORE 1 +FLAGS (brandnew)")); got != "x NO [OVERQUOTA] Not enough disk space" {
		t.Errorf("STORE of a new keyword on a full disk: %q", got)
	}
	for _, c := range []string{"COPY 1 Other", "MOVE 1 Other", "COPY 1 Tags", "MOVE 1 Tags"} {
		if got := last(r.cmd("x", c)); got != "x NO [OVERQUOTA] Not enough disk space" {
			t.Errorf("%s on a full disk: %q", c, got)
		}
	}
	if got := r.cmd("f", "FETCH 1 (FLAGS)")[0]; got != `* 1 FETCH (FLAGS (known \Recent))` {
		t.Errorf("after the refused commands: %q", got)
	}
	if got := r.cmd("s", "STATUS Other (MESSAGES)")[0]; got != `* STATUS "Other" (MESSAGES 0)` {
		t.Errorf("Other: %q", got)
	}
	if got := r.cmd("s", "STATUS Tags (MESSAGES)")[0]; got != `* STATUS "Tags" (MESSAGES 1)` {
		t.Errorf("Tags: %q", got)
	}
}

// TestKeywordsPastTheLettersOtherServer: a keyword past the 26 letters
// that another courriel process (here a second server on the same
// maildirs) gives a message, or takes away, reaches a session of this
// one at its NOOP, with the folder's FLAGS, though this server writes
// nothing to the folder: it came only when this server next wrote
// courriel-keywords itself, or opened the folder again.
func TestKeywordsPastTheLettersOtherServer(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	one := newEnvIn(t, base)
	two := newEnvIn(t, base)
	one.deliver("1700000001.M1P1.test", testMessage(1, "bob@example.org", "kw"))
	var all []string
	for i := range 26 {
		all = append(all, fmt.Sprintf("k%d", i))
	}
	kws := strings.Join(all, " ")
	r := loggedIn(t, one)
	for _, c := range []string{"SELECT INBOX", "STORE 1 +FLAGS (" + kws + ")", "STORE 1 -FLAGS (" + kws + ")"} {
		if got := last(r.cmd("p", c)); !strings.HasPrefix(got, "p OK") {
			t.Fatalf("%q: %q", c, got)
		}
	}
	other := loggedIn(t, two)
	if got := last(other.cmd("s", "SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
		t.Fatalf("SELECT on the other server: %q", got)
	}
	if got := last(r.cmd("x", "STORE 1 +FLAGS.SILENT (brandnew)")); !strings.HasPrefix(got, "x OK") {
		t.Fatalf("STORE +brandnew: %q", got)
	}
	if got := strings.Join(other.cmd("n", "NOOP"), "\n"); !strings.Contains(got, " brandnew)\n") || !strings.Contains(got, "* 1 FETCH (") || !strings.Contains(got, " FLAGS (brandnew))") {
		t.Errorf("the other server's NOOP after +brandnew:\n%s", got)
	}
	if got := last(r.cmd("x", "STORE 1 -FLAGS.SILENT (brandnew)")); !strings.HasPrefix(got, "x OK") {
		t.Fatalf("STORE -brandnew: %q", got)
	}
	if got := strings.Join(other.cmd("n", "NOOP"), "\n"); strings.Contains(got, "brandnew") || !strings.Contains(got, "* 1 FETCH (") || !strings.Contains(got, " FLAGS ())") {
		t.Errorf("the other server's NOOP after -brandnew:\n%s", got)
	}
}
