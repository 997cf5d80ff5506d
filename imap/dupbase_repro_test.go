package imap

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// Known defects the torture test (dupbase_torture_test.go) found; each is
// skipped, with its reason, until fixed, and the torture test keeps away
// from its trigger unless COURRIEL_TORTURE_KNOWN is set.

// TestLinkedBaseSplitTwice: a file with two links under its base (new/B
// and new/B:2,F, as a restore with hard links leaves them) beside another
// file of that base (cur/B:2,S) is shown twice: the first listing under
// the lock gives new/B a fresh base (cur/B:2,S keeps B) and leaves
// new/B:2,F, the same file, under B; the next gives it a fresh base of
// its own. The two links then hold two bases, two UIDs: one message shown
// twice, for ever (Dovecot removes a second link of a base only). Dovecot
// 2.3 does the same (its maildir_fix_duplicate renames each second name
// that is another file than the base's, here both links in turn).
func TestLinkedBaseSplitTwice(t *testing.T) {
	skipKnown(t, "known defect: one file's two links beside a second file of their base get two fresh bases, the message is shown twice (as Dovecot 2.3 does)")
	t.Parallel()
	const b = "1700000000.M1P2.host"
	files := dupBaseFiles{{"new/" + b, "one"}, {"new/" + b + ":2,F", ""}, {"cur/" + b + ":2,S", "two"}}
	if _, err := os.Stat(testenv.DovecotIMAP); err == nil && os.Getuid() == 0 {
		dc := filepath.Join(t.TempDir(), "Maildir")
		files.write(t, dc)
		for range 2 {
			testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\nz LOGOUT\r\n")
		}
		out := testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\nf FETCH 1:* (BODY.PEEK[TEXT])\r\nz LOGOUT\r\n")
		t.Logf("Dovecot shows %q", dupBaseTexts(out))
	}
	e := newEnv(t)
	files.write(t, e.maildir)
	for round := range 3 {
		r := loggedIn(t, e)
		r.cmd("s", "SELECT INBOX")
		ours := dupBaseTexts(strings.Join(r.cmd("f", "FETCH 1:* (BODY.PEEK[TEXT])"), "\n"))
		r.cmd("z", "LOGOUT")
		if round > 0 && !slices.Equal(ours, []string{"one", "two"}) {
			names, _ := filepath.Glob(filepath.Join(e.maildir, "*", "1*"))
			t.Errorf("round %d: courriel shows %q, want one and two once (files %q)", round, ours, names)
		}
		e.restart()
	}
}

// TestExpungedBaseCopyRenumbers: a copy of a message restored beside its
// file (any name of its base: new/B, cur/B:2,F) after the message was
// flagged \Deleted and before EXPUNGE, which removes the message's file
// without a listing. The next sync finds the copy under a base whose
// record is stale (the message courriel itself expunged) and takes it for
// a file another program numbered: revalidateLocked gives the folder a
// new UIDVALIDITY, every session selecting it is closed ("renumbered by
// another program") and the copy is shown under the UID just expunged.
// Dovecot in the same place gives the copy a new UID, UIDVALIDITY kept.
// No mail is lost; every client's cache of the folder is.
func TestExpungedBaseCopyRenumbers(t *testing.T) {
	skipKnown(t, "known defect: a second file of the base of a message courriel expunged is taken for a stale record's file: new UIDVALIDITY, sessions closed")
	t.Parallel()
	const b = "1700000000.M1P2.host"
	for _, restored := range []string{"new/" + b, "cur/" + b + ":2,F"} {
		e := newEnv(t)
		dupBaseFiles{{"cur/" + b + ":2,S", "one"}, {"cur/1700000001.M1P2.host:2,S", "other"}}.write(t, e.maildir)
		r := loggedIn(t, e)
		sel := strings.Join(r.cmd("s", "SELECT INBOX"), "\n")
		r.cmd("d", `UID STORE 1 +FLAGS.SILENT (\Deleted)`)
		if err := os.WriteFile(filepath.Join(e.maildir, restored), []byte("Subject: two\r\n\r\ntwo\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		x := strings.Join(r.cmdSafe("x", "EXPUNGE"), "\n")
		n := strings.Join(r.cmdSafe("n", "NOOP"), "\n")
		if !strings.Contains(x, "* 1 EXPUNGE") || !strings.Contains(n+x, "EXISTS") || strings.Contains(n+x, "BYE") {
			t.Errorf("%s: EXPUNGE %q, NOOP %q: want the expunge and the copy as a new message", restored, x, n)
		}
		r2 := loggedIn(t, e)
		sel2 := strings.Join(r2.cmd("s", "SELECT INBOX"), "\n")
		if v := uidValidityOf(sel); v != uidValidityOf(sel2) {
			t.Errorf("%s: UIDVALIDITY %s, then %s", restored, v, uidValidityOf(sel2))
		}
		if got := strings.Join(r2.cmd("f", "UID FETCH 1 (BODY.PEEK[TEXT])"), "\n"); strings.Contains(got, "two") {
			t.Errorf("%s: the copy has the expunged UID 1: %q", restored, got)
		}
	}
}

func uidValidityOf(sel string) string {
	_, v, _ := strings.Cut(sel, "[UIDVALIDITY ")
	v, _, _ = strings.Cut(v, "]")
	return v
}

// skipKnown skips a known defect's reproducer unless COURRIEL_TORTURE_KNOWN
// is set (to see it fail).
func skipKnown(t *testing.T, why string) {
	if os.Getenv("COURRIEL_TORTURE_KNOWN") == "" {
		t.Skip(why)
	}
}
