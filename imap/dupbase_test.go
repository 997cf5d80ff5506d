package imap

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// dupBaseFiles is a maildir's files (path under it, message text; text ""
// is a second link to the file before it).
type dupBaseFiles [][2]string

func (fs dupBaseFiles) write(t *testing.T, maildir string) {
	t.Helper()
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(maildir, s), 0o700)
	}
	for i, f := range fs {
		p := filepath.Join(maildir, f[0])
		if f[1] == "" {
			if err := os.Link(filepath.Join(maildir, fs[i-1][0]), p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte("Subject: "+f[1]+"\r\n\r\n"+f[1]+"\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// texts are the message texts of a FETCH (BODY.PEEK[TEXT]) answer, sorted.
func dupBaseTexts(out string) []string {
	var got []string
	for _, m := range regexp.MustCompile(`BODY\[TEXT\] \{\d+\}\r?\n(\w+)`).FindAllStringSubmatch(out, -1) {
		got = append(got, m[1])
	}
	slices.Sort(got)
	return got
}

// onDisk is the texts of the maildir's message files, sorted, and the
// number of files.
func dupBaseOnDisk(t *testing.T, maildir string) []string {
	t.Helper()
	var got []string
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(maildir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(maildir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, strings.TrimPrefix(strings.SplitN(string(b), "\r\n", 2)[0], "Subject: "))
		}
	}
	slices.Sort(got)
	return got
}

// TestDuplicateBaseShownAsDovecot: two files of one maildir base name (a
// backup restored, a sync tool's copy: one in new/ and one in cur/, or
// two in cur/ with other flags) are two messages, as Dovecot shows them
// once its sync has given the second file a fresh base name
// (maildir-sync.c, maildir_fix_duplicate); one file's two links are one
// message. courriel showed one message and left the other file on disk,
// a message its user could not reach. Dovecot's imap on a copy of the
// maildir is the expectation (its first session renames, its second
// shows); no file is lost, and the messages stay the same after a
// restart.
func TestDuplicateBaseShownAsDovecot(t *testing.T) {
	t.Parallel()
	testenv.NeedDovecot(t)
	const b = "1700000000.M1P2.host"
	for _, c := range []struct {
		name  string
		files dupBaseFiles
		shown int // by Dovecot
	}{
		{"new and cur", dupBaseFiles{{"new/" + b, "one"}, {"cur/" + b + ":2,S", "two"}}, 2},
		{"cur twice", dupBaseFiles{{"cur/" + b + ":2,", "one"}, {"cur/" + b + ":2,S", "two"}}, 2},
		{"bare and flagged", dupBaseFiles{{"cur/" + b, "one"}, {"cur/" + b + ":2,F", "two"}}, 2},
		{"new twice", dupBaseFiles{{"new/" + b, "one"}, {"new/" + b + ":2,S", "two"}}, 2},
		{"three", dupBaseFiles{{"new/" + b, "one"}, {"cur/" + b + ":2,S", "two"}, {"cur/" + b + ":2,FS", "three"}, {"cur/1700000001.M1P2.host:2,", "four"}}, 4},
		{"sizes", dupBaseFiles{{"cur/" + b + ",S=21:2,", "one"}, {"cur/" + b + ",S=21:2,S", "two"}}, 2},
		{"two links", dupBaseFiles{{"cur/" + b + ":2,S", "one"}, {"cur/" + b + ":2,F", ""}}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			const fetch = "f FETCH 1:* (BODY.PEEK[TEXT])\r\n"
			dc := filepath.Join(t.TempDir(), "Maildir")
			c.files.write(t, dc)
			testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\nz LOGOUT\r\n")
			theirs := dupBaseTexts(testenv.RunDovecot(t, dc, "", "a SELECT INBOX\r\n"+fetch+"z LOGOUT\r\n"))
			if len(theirs) != c.shown {
				t.Fatalf("Dovecot shows %q, not %d messages: the oracle changed", theirs, c.shown)
			}

			e := newEnv(t)
			c.files.write(t, e.maildir)
			want := dupBaseOnDisk(t, e.maildir)
			for round := 0; round < 2; round++ {
				r := loggedIn(t, e)
				r.cmd("s", "SELECT INBOX")
				ours := dupBaseTexts(strings.Join(r.cmd("f", "FETCH 1:* (BODY.PEEK[TEXT])"), "\n"))
				r.cmd("z", "LOGOUT")
				if !slices.Equal(ours, theirs) {
					t.Errorf("round %d: courriel shows %q, Dovecot %q", round, ours, theirs)
				}
				if got := dupBaseOnDisk(t, e.maildir); !slices.Equal(got, want) {
					t.Errorf("round %d: files hold %q, want %q", round, got, want)
				}
				e.restart()
			}
			if strings.HasSuffix(c.name, "sizes") {
				if names, _ := filepath.Glob(filepath.Join(e.maildir, "cur", "*,S=21:2,*")); len(names) != 2 {
					t.Errorf("files with the size in their name: %q, want 2", names)
				}
			}
		})
	}
}

// A copy of a message a session has selected, restored beside its file,
// is a new message (EXISTS) at the next NOOP; the message the session
// had keeps its file and flags.
func TestDuplicateBaseAppearsToSession(t *testing.T) {
	t.Parallel()
	const b = "1700000000.M1P2.host"
	for _, restored := range []string{"cur/" + b + ":2,", "cur/" + b + ":2,FS", "new/" + b} {
		e := newEnv(t)
		dupBaseFiles{{"cur/" + b + ":2,S", "one"}}.write(t, e.maildir)
		r := loggedIn(t, e)
		r.cmd("s", "SELECT INBOX")
		if err := os.WriteFile(filepath.Join(e.maildir, restored), []byte("Subject: two\r\n\r\ntwo\r\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(r.cmd("n", "NOOP"), "\n"); !strings.Contains(got, "* 2 EXISTS") {
			t.Errorf("%s: NOOP: %q", restored, got)
		}
		got := strings.Join(r.cmd("f", "FETCH 1:* (FLAGS BODY.PEEK[TEXT])"), "\n")
		if texts := dupBaseTexts(got); !slices.Equal(texts, []string{"one", "two"}) {
			t.Errorf("%s: FETCH: %q", restored, got)
		}
		if !regexp.MustCompile(`\* 1 FETCH \(FLAGS \(\\Seen\) BODY\[TEXT\] \{5\}\none`).MatchString(got) {
			t.Errorf("%s: message 1 changed: %q", restored, got)
		}
		r.cmd("z", "LOGOUT")
		if got := dupBaseOnDisk(t, e.maildir); !slices.Equal(got, []string{"one", "two"}) {
			t.Errorf("%s: files hold %q", restored, got)
		}
	}
}
