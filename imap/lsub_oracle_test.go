package imap

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// lsubScript subscribes to folders that exist, one that was renamed away
// (the subscription stays, RFC 9051 §6.3.7), one never created, a child
// without its parent and a special-use folder, then asks LSUB with "*",
// "%" and an empty pattern.
const lsubScript = "a CREATE Work\r\nb CREATE Work.Projects\r\nc CREATE Other\r\nd CREATE Top.Child\r\n" +
	"e SUBSCRIBE Work\r\nf SUBSCRIBE Work.Projects\r\ng SUBSCRIBE Sent\r\nh SUBSCRIBE Gone\r\ni SUBSCRIBE Top.Child\r\n" +
	"j RENAME Work Job\r\n" +
	"k LSUB \"\" *\r\nl LSUB \"\" %\r\nm LSUB \"\" \"\"\r\nz LOGOUT\r\n"

// lsubReplies is what a session answered to lsubScript's SUBSCRIBE of a
// name that is no folder and to its LSUB commands: each command's LSUB
// lines (sorted: the order is the server's) and its tagged reply.
func lsubReplies(out string) []string {
	var got, lines []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "* LSUB "):
			// A name written quoted or as an atom is the same name.
			lines = append(lines, strings.ReplaceAll(l, `"`, ""))
		case len(l) > 2 && strings.Contains("hklm", l[:1]) && l[1] == ' ':
			// The tagged reply without Dovecot's timing.
			l, _, _ = strings.Cut(l, " (0.")
			slices.Sort(lines)
			got = append(append(got, lines...), strings.TrimSuffix(l, "."))
			lines = nil
		}
	}
	return got
}

// LSUB answers as Dovecot 2.3 does (cmd-list.c): SUBSCRIBE refuses a
// name that is no folder, a subscribed folder that no longer exists has
// no attribute (\Noselect in LSUB says a child is
// subscribed), an unsubscribed parent of a subscribed child is \Noselect
// for "%" only, a special use is given, an empty pattern lists nothing,
// and the tagged reply says "Lsub completed".
func TestLSUBAsDovecot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	r.send(lsubScript)
	ours := lsubReplies(strings.Join(r.until("z"), "\n"))

	testenv.NeedDovecot(t)
	// The special-use folders courriel makes and subscribes for a new
	// user, as Debian's 15-mailboxes.conf with auto = subscribe.
	specialUse := "namespace inbox {\n  inbox = yes\n  separator = .\n"
	for _, f := range []string{"Drafts", "Sent", "Junk", "Trash"} {
		specialUse += "  mailbox " + f + " {\n    special_use = \\" + f + "\n    auto = subscribe\n  }\n"
	}
	specialUse += "}\n"
	dc := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dc, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	theirs := lsubReplies(testenv.RunDovecot(t, dc, specialUse, lsubScript))
	if len(theirs) == 0 {
		t.Fatal("no LSUB reply from Dovecot")
	}
	if !slices.Equal(ours, theirs) {
		t.Errorf("LSUB:\ncourriel %q\nDovecot  %q", ours, theirs)
	}
}
