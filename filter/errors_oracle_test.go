package filter

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// errorLines are the lines of the errors a user log reports, in order:
// dovecot-lda's ("line N: error: ...") or courriel's ("compile error:
// line N, column C: ...").
func errorLines(log string) []int {
	var lines []int
	for _, m := range regexp.MustCompile(`(?m)(?:line (\d+): error: |compile error: line (\d+), column)`).FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1] + m[2])
		lines = append(lines, n)
	}
	return lines
}

// A user's script with several errors has each logged in
// ~/.dovecot.sieve.log, as dovecot-lda (Pigeonhole 0.5.19) logs them:
// the same lines, in its order, at most LDA_SIEVE_MAX_USER_ERRORS (30);
// the message is kept in the INBOX.
func TestCompileErrorsLoggedLikePigeonhole(t *testing.T) {
	for _, c := range []struct{ name, script string }{
		{"three", "require \"fileinto\";\nfoo;\nfileinto 1;\nif header :is \"a\" { bar; }\nkeep;\n"},
		{"past the bound", strings.Repeat("keep 1;\n", 35)},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newLDAHome(t, c.script)
			logPath := filepath.Join(h.home, UserLogName)
			h.lda(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			theirs, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(logPath); err != nil {
				t.Fatal(err)
			}
			h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m1"))
			ours, err := os.ReadFile(logPath)
			if err != nil {
				t.Fatal(err)
			}
			o, p := errorLines(string(ours)), errorLines(string(theirs))
			if len(p) < 3 {
				t.Fatalf("dovecot-lda logged %v: not several errors\n%s", p, theirs)
			}
			if !slices.Equal(o, p) {
				t.Errorf("errors logged on lines\n ours       %v\n Pigeonhole %v\nours:\n%s\nPigeonhole's:\n%s", o, p, ours, theirs)
			}
			if n, _ := os.ReadDir(filepath.Join(h.dir, "courriel-mailbox", "new")); len(n) != 1 {
				t.Errorf("courriel stored %d copies in the INBOX, want 1", len(n))
			}
		})
	}
}
