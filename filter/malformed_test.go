package filter

import (
	"fmt"
	"strings"
	"testing"
)

// malformedLines are header lines no script can name: a line without a
// colon and one whose name has a space (Dovecot reads them as a field
// without a name and a field named "X Bad"), each with a folded line,
// beside a field whose folded line goes with it (LF line ends).
const malformedLines = "no colon here\n\tits continuation\nX-Fold: a\n\tb\nX Bad: spaced name\n\tmore\n"

// malformedMessages have such lines where a script sees the header, past
// it (after 20,000 fields: 1.9 MB), and first of all.
func malformedMessages() []struct{ name, msg string } {
	var past strings.Builder
	past.WriteString("X-Multi: one\nX-Fold: top\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&past, "X-Fill-%05d: %s\n", i, strings.Repeat("v", 80))
	}
	past.WriteString(malformedLines + "X-Multi: two\nFrom: a@b.c\nTo: u@x.y\nSubject: hi\n\nbody\n")
	return []struct{ name, msg string }{
		{"in the window", "From: a@b.c\n" + malformedLines + "X-Multi: one\nTo: u@x.y\nX-Multi: two\nSubject: hi\n\nbody\n"},
		{"past the window", past.String()},
		{"first", " leading continuation\n\tand more\nX-Fold: a\nFrom: a@b.c\nX-Multi: one\nSubject: hi\n\nbody\n"},
	}
}

// The scripts run on a message with such lines as on any other, and see
// the fields around them, as Pigeonhole's. Before, such a line where a
// script sees the header made the message unreadable to the scripts: it
// was delivered without running any, an administrator's included.
func TestOracleMalformedHeaderLines(t *testing.T) {
	bin := sieveTestBin(t)
	tc := sequenceCase{"tests", []string{`require ["fileinto", "mailbox", "copy"]; if exists "X-Fold" { fileinto :copy :create "Before"; }`},
		`require ["fileinto", "mailbox"]; if allof (exists "X-Fold", header :is "X-Multi" "one") { fileinto :create "Seen"; }`}
	for _, m := range malformedMessages() {
		t.Run(m.name, func(t *testing.T) {
			theirs, out := oracleSequence(t, bin, tc, m.msg)
			ours := runSequence(t, tc, nil, m.msg)
			if len(theirs) != 2 {
				t.Fatalf("sieve-test stored %d copies: %s", len(theirs), out)
			}
			if strings.Join(ours, "\n") != strings.Join(theirs, "\n") {
				t.Errorf("ours:\n  %.300s\nsieve-test:\n  %.300s", strings.Join(ours, "\n  "), strings.Join(theirs, "\n  "))
			}
		})
	}
}

// An edit keeps such lines where they are, with their folded lines,
// whether a script sees them or not, and no deleteheader reaches them;
// a field deleted takes its own folded lines. Pigeonhole 2.3.19's
// editheader aborts on a line without a colon (sieve-test cannot be
// asked), and 2.3.21's keeps or drops it depending on whether it had
// parsed the header (sieve.namedField): these copies are the message
// with the edits and nothing else.
func TestMalformedHeaderLinesKept(t *testing.T) {
	eh := `require "editheader"; `
	before := []string{eh + `deleteheader "X-Fold";`}
	user := eh + `deleteheader :index 2 "X-Multi"; addheader :last "X-L" "l";`
	for _, m := range malformedMessages() {
		t.Run(m.name, func(t *testing.T) {
			got := runSequence(t, sequenceCase{m.name, before, user}, nil, m.msg)
			h, _, _ := strings.Cut(m.msg, "\n\n")
			h = strings.Replace(h, "\nX-Multi: two", "", 1) // the second X-Multi
			h = strings.Replace(h, "X-Fold: a\n\tb\n", "", 1)
			h = strings.Replace(h, "X-Fold: top\n", "", 1)
			h = strings.Replace(h, "X-Fold: a\n", "", 1)
			want := "INBOX [] " + strings.ReplaceAll(h, "\n", "|") + "|X-L: l"
			if len(got) != 1 || got[0] != want {
				if len(got) == 1 {
					o, w := strings.Split(got[0], "|"), strings.Split(want, "|")
					t.Fatalf("stored: %d lines, want %d; first difference: %s", len(o), len(w), firstDifference(o, w))
				}
				t.Fatalf("stored %d copies", len(got))
			}
		})
	}
}
