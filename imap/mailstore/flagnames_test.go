package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// STORE with plain flag names: the file name carries the maildir letters,
// keywords go to dovecot-keywords, FlagNames gives the names back.
func TestStoreFlagNames(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	deliverFile(t, st, "", 1)
	mb := openBox(t, NewRegistry(), st, "INBOX")
	steps := []struct {
		op        StoreOp
		flags     []string
		wantNames []string
		wantFile  string // suffix of the cur/ name
	}{
		{StoreAdd, []string{`\seen`, `\Flagged`}, []string{Flagged, Seen}, ":2,FS"},
		{StoreAdd, []string{"$Junk", `\Recent`, `\Unknown`}, []string{Flagged, Seen, "$Junk"}, ":2,FSa"},
		{StoreRemove, []string{`\Flagged`, "$junk"}, []string{Seen}, ":2,S"},
		{StoreReplace, []string{`\Answered`, `\Deleted`, `\Draft`, "Work"}, []string{Answered, Deleted, Draft, "Work"}, ":2,DRTb"},
		{StoreReplace, nil, []string{}, ":2,"},
	}
	for i, s := range steps {
		fl, ok, err := mb.StoreFlags([]uint32{1}, s.op, s.flags, nil)
		if err != nil || !ok[0] {
			t.Fatalf("step %d: %v %v", i, ok, err)
		}
		if got := mb.FlagNames(fl[0]); !slices.Equal(got, s.wantNames) {
			t.Errorf("step %d: names %q, want %q", i, got, s.wantNames)
		}
		ents, _ := os.ReadDir(filepath.Join(st.Path(), "cur"))
		if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), s.wantFile) {
			t.Errorf("step %d: cur/ = %v, want a name ending %q", i, ents, s.wantFile)
		}
	}
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreOp(9), nil, nil); err == nil {
		t.Error("unknown StoreOp accepted")
	}
	flags, perm := mb.DefinedFlags()
	if want := []string{Answered, Flagged, Deleted, Seen, Draft, "$Junk", "Work"}; !slices.Equal(flags, want) {
		t.Errorf("FLAGS %q, want %q", flags, want)
	}
	if perm[len(perm)-1] != Wildcard {
		t.Errorf("PERMANENTFLAGS %q lacks \\*", perm)
	}
	kw, _ := os.ReadFile(filepath.Join(st.Path(), "dovecot-keywords"))
	if string(kw) != "0 $Junk\n1 Work\n" {
		t.Errorf("dovecot-keywords = %q", kw)
	}
}

// SystemNames lists the system flags as FlagNames does, in its order.
func TestSystemNames(t *testing.T) {
	t.Parallel()
	mb := &Mailbox{}
	for set := range 1 << len(systemFlags) {
		var f Flags
		for i, sf := range systemFlags {
			if set&(1<<i) != 0 {
				f |= sf.bit
			}
		}
		if f.HasKeywords() {
			t.Fatalf("%v has keywords", f)
		}
		var buf [5]string
		if got, want := fmt.Sprint(f.SystemNames(&buf)), fmt.Sprint(mb.flagNamesLocked(f)); got != want {
			t.Errorf("SystemNames(%v) = %s, want %s", f, got, want)
		}
	}
	if !KeywordFlag(3).HasKeywords() {
		t.Error("a keyword not seen")
	}
}
