package imap

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A SEARCH reads each message's text once for all its BODY and TEXT
// keys, however many and however nested under NOT, OR and parentheses,
// and answers as the keys one by one: held whole or streamed from its
// file, large or not.
func TestSearchTextReadOncePerMessage(t *testing.T) {
	t.Parallel()
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed=%v", streamed), func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			reads := map[uint32]int{}
			e := newEnv(t, func(o *Options) {
				o.streamSearchAll = streamed
				o.textReadHook = func(uid uint32) {
					mu.Lock()
					reads[uid]++
					mu.Unlock()
				}
			})
			msgs := append(slices.Clone(textCorpus), largeSearchMessage())
			for i, m := range msgs {
				e.deliver(fmt.Sprintf("17000000%02d.M1P1.test", i), m)
			}
			r := loggedIn(t, e)
			r.cmd("s", "SELECT INBOX")
			lit := func(key, s string) string { return fmt.Sprintf("%s {%d+}\r\n%s", key, len(s), s) }
			search := func(prog string) map[uint32]bool {
				t.Helper()
				mu.Lock()
				clear(reads)
				mu.Unlock()
				got := r.cmd("x", "UID SEARCH CHARSET UTF-8 "+prog)
				if !strings.HasPrefix(last(got), "x OK") || !strings.HasPrefix(got[0], "* SEARCH") {
					t.Fatalf("%q: %q", prog, got)
				}
				hits := map[uint32]bool{}
				for _, f := range strings.Fields(got[0])[2:] {
					var u uint32
					fmt.Sscan(f, &u)
					hits[u] = true
				}
				return hits
			}
			keys := []struct{ key, text string }{
				{"TEXT", "café"}, {"BODY", "café"}, {"TEXT", "Subject: caf"}, {"TEXT", "日本語"},
				{"BODY", "inner body"}, {"TEXT", "été.doc"}, {"BODY", "plain-été-word"},
				{"TEXT", "réunion trimestrielle"}, {"BODY", "réunion"}, {"BODY", "latin été mot"},
				{"TEXT", "content-transfer-encoding: quoted-printable"}, {"BODY", "invisible"},
			}
			alone := make([]map[uint32]bool, len(keys))
			for i, k := range keys {
				alone[i] = search(lit(k.key, k.text))
			}
			uids := make([]uint32, len(msgs))
			for i := range uids {
				uids[i] = uint32(i + 1)
			}
			// The keys nested, by threes: NOT a, OR b NOT c, NOT (OR NOT
			// b NOT NOT a); the threes ORed; then 300 NOT BODY keys no
			// message holds.
			var prog strings.Builder
			var ors []string
			for i := 0; i+2 < len(keys); i += 3 {
				a, b, c := keys[i], keys[i+1], keys[i+2]
				ors = append(ors, fmt.Sprintf("(NOT %s (OR %s NOT %s) NOT (OR NOT %s NOT NOT %s))",
					lit(a.key, a.text), lit(b.key, b.text), lit(c.key, c.text), lit(b.key, b.text), lit(a.key, a.text)))
			}
			or := ors[len(ors)-1]
			for i := len(ors) - 2; i >= 0; i-- {
				or = "(OR " + ors[i] + " " + or + ")"
			}
			prog.WriteString(or)
			for i := range 300 {
				fmt.Fprintf(&prog, " NOT BODY \"absent-%d\"", i)
			}
			// The expectation, from the keys alone.
			want := map[uint32]bool{}
			for _, u := range uids {
				for i := 0; i+2 < len(keys); i += 3 {
					a, b, c := alone[i][u], alone[i+1][u], alone[i+2][u]
					if !a && (b || !c) && !(!b || a) {
						want[u] = true
					}
				}
			}
			if len(want) == 0 || len(want) == len(uids) {
				t.Fatalf("a program that tells nothing: %v", want)
			}
			got := search(prog.String())
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("nested program: %v, want %v", got, want)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, u := range uids {
				if reads[u] != 1 {
					t.Errorf("message %d: text read %d times, want 1", u, reads[u])
				}
			}
		})
	}
}
