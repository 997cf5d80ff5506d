package imap

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOddMaildirNamesServed: files other programs named otherwise than
// courriel and Dovecot do (a new/ name with an info part, as offlineimap
// writes; a cur/ info part with its letters out of order, as scripts and
// hand edits leave; another info version) are messages a client can read,
// flag and expunge, with the flags Dovecot 2.3 reads in them. They were
// counted in EXISTS but every FETCH of them answered [EXPUNGEISSUED] with
// no data, the file looked for under the name courriel would give it.
func TestOddMaildirNamesServed(t *testing.T) {
	t.Parallel()
	const body = "Subject: odd\r\n\r\nbody\r\n"
	for _, c := range []struct {
		file  string // under the maildir
		flags string // FLAGS but \Recent, as Dovecot reads the name
		// after is the cur/ name once \Flagged is added.
		after string
	}{
		{"new/1700000001.M1P1.host:2,", "", "1700000001.M1P1.host:2,F"},
		{"new/1700000001.M1P1.host:2,S", `\Seen`, "1700000001.M1P1.host:2,FS"},
		{"cur/1700000001.M1P1.host:2,STPDR", `\Answered \Deleted \Seen \Draft`, "1700000001.M1P1.host:2,DFPRST"},
		{"cur/1700000001.M1P1.host:2,SS", `\Seen`, "1700000001.M1P1.host:2,FS"},
		// What is no flag letter is kept, as Dovecot keeps it when it
		// changes flags; a second set (after a ',') is no flags.
		{"cur/1700000001.M1P1.host:2,S1", `\Seen`, "1700000001.M1P1.host:2,FS1"},
		{"cur/1700000001.M1P1.host:2,S,ab", `\Seen`, "1700000001.M1P1.host:2,FS,ab"},
		// Flags are read after the last ':', as Dovecot reads them.
		{"cur/1700000001.M1P1.host:1,foo", "", "1700000001.M1P1.host:1,foo:2,F"},
		{"cur/1700000001.M1P1.host:2,S:x", "", "1700000001.M1P1.host:2,S:x:2,F"},
	} {
		t.Run(c.file, func(t *testing.T) {
			e := newEnv(t)
			for _, sub := range []string{"cur", "new", "tmp"} {
				os.MkdirAll(filepath.Join(e.maildir, sub), 0o700)
			}
			if err := os.WriteFile(filepath.Join(e.maildir, c.file), []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			r := loggedIn(t, e)
			if got := last(r.cmd("s", "SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
				t.Fatalf("SELECT: %q", got)
			}
			got := strings.Join(r.cmd("f", "FETCH 1 (FLAGS BODY.PEEK[])"), "\n")
			m := regexp.MustCompile(`^\* 1 FETCH \(FLAGS \(([^)]*)\) BODY\[\] \{(\d+)\}`).FindStringSubmatch(got)
			if m == nil || m[2] != "22" || !strings.HasSuffix(got, "\nf OK Fetch completed") {
				t.Fatalf("FETCH: %q", got)
			}
			if fl := strings.Join(slices.DeleteFunc(strings.Fields(m[1]), func(f string) bool { return f == `\Recent` }), " "); fl != c.flags {
				t.Errorf("FLAGS (%s), want (%s)", fl, c.flags)
			}
			if got := last(r.cmd("st", `STORE 1 +FLAGS.SILENT (\Flagged)`)); !strings.HasPrefix(got, "st OK") {
				t.Fatalf("STORE: %q", got)
			}
			if _, err := os.Stat(filepath.Join(e.maildir, "cur", c.after)); err != nil {
				names, _ := filepath.Glob(filepath.Join(e.maildir, "*", "1700000001*"))
				t.Errorf("after STORE: %v; files %q", err, names)
			}
			// Another session, and the folder read again after a restart.
			r.cmd("z", "LOGOUT")
			e.restart()
			r = loggedIn(t, e)
			r.cmd("s", "SELECT INBOX")
			if got := strings.Join(r.cmd("f", "FETCH 1 (BODY.PEEK[])"), "\n"); !strings.Contains(got, "BODY[] {22}") || !strings.HasSuffix(got, "f OK Fetch completed") {
				t.Errorf("FETCH after restart: %q", got)
			}
			r.cmd("d", `STORE 1 +FLAGS.SILENT (\Deleted)`)
			if got := r.cmd("x", "EXPUNGE"); got[0] != "* 1 EXPUNGE" {
				t.Errorf("EXPUNGE: %q", got)
			}
			if names, _ := filepath.Glob(filepath.Join(e.maildir, "*", "1700000001*")); len(names) > 0 {
				t.Errorf("files left after EXPUNGE: %q", names)
			}
		})
	}
}

// Two files of one base (a backup restored beside the messages): giving
// one its usual name never takes the other's, whose message would be
// lost; both files stay, whatever the order a listing finds them in
// (one of them under a fresh base: see TestDuplicateBaseShownAsDovecot).
func TestOddNameNeverReplacesAFile(t *testing.T) {
	t.Parallel()
	for _, names := range [][2]string{{"B:2,SR", "B:2,RS"}, {"B:2,RS", "B:2,SR"}, {"B", "B:2,"}} {
		e := newEnv(t)
		for _, sub := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(e.maildir, sub), 0o700)
		}
		for i, n := range names {
			if err := os.WriteFile(filepath.Join(e.maildir, "cur", n), []byte("Subject: "+[]string{"one", "two"}[i]+"\r\n\r\nb\r\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		r := loggedIn(t, e)
		r.cmd("s", "SELECT INBOX")
		r.cmd("st", `STORE 1:* +FLAGS.SILENT (\Flagged)`)
		r.cmd("z", "LOGOUT")
		var subjects []string
		files, _ := filepath.Glob(filepath.Join(e.maildir, "cur", "*"))
		for _, f := range files {
			b, _ := os.ReadFile(f)
			subjects = append(subjects, strings.SplitN(string(b), "\r\n", 2)[0])
		}
		slices.Sort(subjects)
		if !slices.Equal(subjects, []string{"Subject: one", "Subject: two"}) {
			t.Errorf("%q: files %q hold %q, want both messages", names, files, subjects)
		}
	}
}
