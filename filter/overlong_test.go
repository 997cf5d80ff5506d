package filter

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// overlongMessage is a header past the window (20,000 fields: 1.9 MB)
// then four X-Spam-Flag fields: NO, YES, and two a sender forged past
// the megabyte a pass holds of a field: 2 MiB of spaces before YES (the
// value is "YES"), and YES after 2 MiB of text (LF line ends).
func overlongMessage() string {
	var b strings.Builder
	b.WriteString("From: a@b.c\nSubject: hi\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&b, "X-Fill-%05d: %s\n", i, strings.Repeat("v", 80))
	}
	b.WriteString("X-Spam-Flag: NO\nX-Spam-Flag: YES\n")
	b.WriteString("X-Spam-Flag:" + strings.Repeat(" ", 2<<20) + "YES\n")
	b.WriteString("X-Spam-Flag: " + strings.Repeat("v", 2<<20) + "YES\n")
	b.WriteString("To: u@x.y\n\nbody\n")
	return b.String()
}

// overlongNote is what the log says of a field deleted unmatched.
const overlongNote = "deleteheader: a X-Spam-Flag field past what the script sees is longer than 1048576 octets: deleted without its value matched"

// A field past the window too long for a pass to hold (more than 1 MiB)
// is deleted by every deleteheader of its name, value patterns or not,
// without its value matched (sieve/unseen.go), and the log says so: a
// forged field never survives an administrator's stripping script.
// Where Pigeonhole, matching the whole value, deletes it too, the copy
// is sieve-test's. Before, the value was matched on its first megabyte:
// both forged fields survived :is and :contains "YES".
func TestDeleteheaderOverlongValue(t *testing.T) {
	bin := sieveTestBin(t)
	msg := overlongMessage()
	eh := `require ["editheader", "variables"]; `
	const no, yes, spaces, text = 1, 2, 3, 4 // the X-Spam-Flag fields
	for _, tc := range []struct {
		name   string
		before string   // the administrator's script ("": none)
		user   string   // the user's
		kept   []int    // the X-Spam-Flag fields kept
		oracle bool     // Pigeonhole's copy is the same
		got    string   // X-Got's value, "" for none
		notes  []string // in the log: "line N" of overlongNote
	}{
		{"every field of the name", eh + `deleteheader "X-Spam-Flag";`, "", nil, true, "", nil},
		{"is YES", eh + `deleteheader :is "X-Spam-Flag" "YES";`, "", []int{no}, false, "", []string{"line 1"}},
		{"contains YES", eh + `deleteheader :contains "X-Spam-Flag" "yes";`, "", []int{no}, true, "", []string{"line 1"}},
		{"matches, in the user's script", "", eh + `deleteheader :matches "X-Spam-Flag" "*YES*";`, []int{no}, true, "", []string{"line 1"}},
		{"an index past the megabyte", eh + "\n" + `deleteheader :index 4 :is "X-Spam-Flag" "nope";`, "", []int{no, yes, spaces}, false, "", []string{"line 2"}},
		// Pigeonhole's variables are the last field's: here YES's
		{"match variables", "", eh + `deleteheader :matches "X-Spam-Flag" "Y*"; addheader "X-Got" "${0}";`, []int{no}, false, "YES", []string{"line 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log bytes.Buffer
			lg := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			sc := sequenceCase{name: tc.name, user: tc.user}
			if tc.before != "" {
				sc.before = []string{tc.before}
			}
			ours := runSequenceWith(t, sc, nil, msg, Options{Logger: lg})
			if len(ours) != 1 {
				t.Fatalf("%d copies", len(ours))
			}
			var kept []int
			got := ""
			for _, l := range strings.Split(strings.TrimPrefix(ours[0], "INBOX [] "), "|") {
				switch v, ok := strings.CutPrefix(l, "X-Spam-Flag:"); {
				case !ok:
					if g, ok := strings.CutPrefix(l, "X-Got: "); ok {
						got = g
					}
				case v == " NO":
					kept = append(kept, no)
				case v == " YES":
					kept = append(kept, yes)
				case strings.TrimSpace(v) == "YES":
					kept = append(kept, spaces)
				default:
					kept = append(kept, text)
				}
			}
			if fmt.Sprint(kept) != fmt.Sprint(tc.kept) || got != tc.got {
				t.Errorf("fields kept %v, X-Got %q; want %v, %q", kept, got, tc.kept, tc.got)
			}
			for _, n := range tc.notes {
				if !strings.Contains(log.String(), n+": "+overlongNote) {
					t.Errorf("log %.500q, want %q", log.String(), n+": "+overlongNote)
				}
			}
			if tc.notes == nil && strings.Contains(log.String(), overlongNote) {
				t.Errorf("log %.500q", log.String())
			}
			if tc.oracle {
				theirs, out := oracleSequence(t, bin, sc, msg)
				if len(theirs) != 1 || theirs[0] != ours[0] {
					t.Errorf("not sieve-test's copy: %d copies; %.300s", len(theirs), out)
				}
			}
		})
	}
}
