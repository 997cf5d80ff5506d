package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// listNonExistentForms are LIST commands, basic and extended (RFC 5258),
// asked of a maildir where Work.Sub exists and its parent Work does not.
var listNonExistentForms = []string{
	`LIST "" "*"`,
	`LIST "" "%"`,
	`LIST "" "Work"`,
	`LIST "" "W*"`,
	`LIST "Work." "%"`,
	`LIST () "" "*"`,
	`LIST () "" "%"`,
	`LIST (REMOTE) "" "%"`,
	`LIST "" ("%")`,
	`LIST "" ("Work" "INBOX")`,
	`LIST "" "%" RETURN ()`,
	`LIST "" "*" RETURN (CHILDREN)`,
	`LIST "" "%" RETURN (CHILDREN)`,
	`LIST "" "Work" RETURN (CHILDREN)`,
	`LIST "" "*" RETURN (SUBSCRIBED)`,
	`LIST "" "%" RETURN (SUBSCRIBED)`,
	`LIST "" "%" RETURN (SUBSCRIBED CHILDREN)`,
	`LIST "" "%" RETURN (SPECIAL-USE)`,
	`LIST "" "*" RETURN (STATUS (MESSAGES))`,
	`LIST "" "%" RETURN (STATUS (MESSAGES))`,
	`LIST (SUBSCRIBED) "" "*"`,
	`LIST (SUBSCRIBED) "" "%"`,
	`LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"`,
	`LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"`,
	`LIST (SUBSCRIBED) "" "*" RETURN (CHILDREN)`,
	`LIST (SUBSCRIBED RECURSIVEMATCH) "" "%" RETURN (CHILDREN)`,
	`LIST (SPECIAL-USE) "" "*"`,
	`LSUB "" "*"`,
	`LSUB "" "%"`,
}

// listWorkReplies is, for each command of the script, its LIST, LSUB and
// STATUS lines about Work and Work.Sub (sorted: the order is the
// server's; \Marked and \UnMarked, which Dovecot gives as it last saw
// new/, left out) and its tagged reply's status.
func listWorkReplies(out string) []string {
	var got, lines []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		l = strings.ReplaceAll(l, `"`, "")
		switch {
		case strings.HasPrefix(l, "* LIST ") || strings.HasPrefix(l, "* LSUB ") || strings.HasPrefix(l, "* STATUS "):
			if !strings.Contains(l, " Work") && !strings.Contains(l, " Gone") {
				continue
			}
			for _, m := range []string{` \UnMarked`, `\UnMarked `, `\UnMarked`, ` \Marked`, `\Marked `, `\Marked`} {
				l = strings.Replace(l, m, "", 1)
			}
			lines = append(lines, l)
		case strings.HasPrefix(l, "l") && strings.Contains(l, " "):
			tag, rest, _ := strings.Cut(l, " ")
			status, _, _ := strings.Cut(rest, " ")
			slices.Sort(lines)
			got = append(append(got, tag+":"), lines...)
			got = append(got, tag+" "+status)
			lines = nil
		}
	}
	return got
}

// A name that does not exist but has children (or is subscribed) is
// \Noselect to a basic LIST and \NonExistent (RFC 5258 §3: implies
// \Noselect) to an extended one (selection options, RETURN options, a
// pattern list, even empty), as Dovecot 2.3 answers (cmd-list.c,
// mailbox_flags2str; list_send_status sends no STATUS for it). courriel
// said \Noselect to both. The rest of those lines as Dovecot gives them
// too: attributes in its order (\Subscribed first), \HasChildren and
// \HasNoChildren to an extended LIST only with RETURN (CHILDREN), and
// CHILDINFO for a subscribed name with a subscribed descendant whether
// the pattern matches that one or not (mailbox_childinfo2str).
// Dovecot's answers on the same maildir (Work.Sub present, Work absent;
// several subscriptions, one of a name that never existed) are the
// expectation.
func TestListNonExistentParentAsDovecot(t *testing.T) {
	t.Parallel()
	testenv.NeedDovecot(t)
	var script strings.Builder
	for i, c := range listNonExistentForms {
		fmt.Fprintf(&script, "l%02d %s\r\n", i, c)
	}
	script.WriteString("z LOGOUT\r\n")
	build := func(maildir, subscriptions string) {
		for _, d := range []string{"cur", "new", "tmp", ".Work.Sub/cur", ".Work.Sub/new", ".Work.Sub/tmp"} {
			if err := os.MkdirAll(filepath.Join(maildir, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(maildir, "subscriptions"), []byte(subscriptions), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, subs := range []string{"Work.Sub\n", "Work\nWork.Sub\n", "Gone\nWork\n", ""} {
		// Not named after subs: a '#' (Go's name of an empty one) in
		// the path to Dovecot's configuration starts a comment there.
		t.Run("subscribed="+strings.ReplaceAll(strings.TrimSpace(subs), "\n", ","), func(t *testing.T) {
			dc := filepath.Join(t.TempDir(), "Maildir")
			build(dc, subs)
			theirs := listWorkReplies(testenv.RunDovecot(t, dc, "", script.String()))
			if n := len(slices.DeleteFunc(slices.Clone(theirs), func(l string) bool { return !strings.HasSuffix(l, " OK") })); n != len(listNonExistentForms) || !slices.Contains(theirs, `* LIST (\Noselect \HasChildren) . Work`) {
				t.Fatalf("Dovecot answered %q", theirs)
			}

			e := newEnv(t)
			build(e.maildir, subs)
			r := loggedIn(t, e)
			r.send(script.String())
			ours := listWorkReplies(strings.Join(r.until("z"), "\n"))
			if slices.Equal(ours, theirs) {
				return
			}
			// Command by command, for a readable failure.
			split := func(lines []string) map[string][]string {
				m := map[string][]string{}
				tag := ""
				for _, l := range lines {
					if strings.HasSuffix(l, ":") {
						tag = strings.TrimSuffix(l, ":")
						continue
					}
					m[tag] = append(m[tag], l)
				}
				return m
			}
			o, d := split(ours), split(theirs)
			for i, c := range listNonExistentForms {
				tag := fmt.Sprintf("l%02d", i)
				if !slices.Equal(o[tag], d[tag]) {
					t.Errorf("%s:\ncourriel %q\nDovecot  %q", c, o[tag], d[tag])
				}
			}
		})
	}
}
