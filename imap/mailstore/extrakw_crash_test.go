package mailstore

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// APPEND, COPY and MOVE write courriel-keywords (fsynced) before the
// files appear in cur/: at each rename ("held"), every file in the
// destination's cur/ that was not there before has its keywords beyond
// the letters on disk, so that a crash there loses none. They were
// written after the renames.
func TestExtraWrittenBeforeRenames(t *testing.T) {
	st := testStore(t)
	deliverFile(t, st, "", 1)
	deliverFile(t, st, "", 2)
	if err := st.Create("Dst"); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	inbox := openBox(t, reg, st, "INBOX")
	dst := openBox(t, reg, st, "Dst")
	fillLetters(t, inbox, 1, false)
	fillLetters(t, dst, 1, false) // no UID 1: the letters are taken all the same
	if _, _, err := inbox.StoreFlags([]uint32{1, 2}, StoreAdd, []string{"beyond"}, nil); err != nil {
		t.Fatal(err)
	}

	// check: the new files of dir's cur/ (not in before) all have
	// "beyond" in dir's courriel-keywords, as on disk now.
	checks := 0
	check := func(dir string, before []string) {
		ents, _ := os.ReadDir(filepath.Join(dir, "cur"))
		data, err := os.ReadFile(filepath.Join(dir, ExtraKeywordsFileName))
		var l map[string][]string
		if err == nil {
			l, _, err = decodeExtra(string(data), nil)
		}
		for _, e := range ents {
			base, _, _ := strings.Cut(e.Name(), ":2,")
			if slices.Contains(before, base) {
				continue
			}
			checks++
			if err != nil || !slices.Contains(l[base], "beyond") {
				t.Errorf("%s in cur/ before its keywords are in %s (err %v)", e.Name(), ExtraKeywordsFileName, err)
			}
		}
	}
	bases := func(dir string) []string {
		ents, _ := os.ReadDir(filepath.Join(dir, "cur"))
		var out []string
		for _, e := range ents {
			base, _, _ := strings.Cut(e.Name(), ":2,")
			out = append(out, base)
		}
		return out
	}
	watch := func(dir string, f func()) {
		t.Helper()
		before := bases(dir)
		reg.syncHook = func(event string) {
			if event == "held" {
				check(dir, before)
			}
		}
		f()
		reg.syncHook = nil
	}
	inboxDir, dstDir := st.Path(), filepath.Join(st.Path(), ".Dst")

	watch(inboxDir, func() {
		if _, err := inbox.Append(strings.NewReader("Subject: a\n\na\n"), []string{"beyond"}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	})
	watch(dstDir, func() {
		if _, _, err := inbox.CopyTo(dst, []uint32{1}); err != nil {
			t.Fatal(err)
		}
	})
	watch(dstDir, func() {
		if _, _, err := inbox.MoveTo(dst, []uint32{2}); err != nil {
			t.Fatal(err)
		}
	})
	if checks < 3 {
		t.Errorf("%d files checked, want 3 at least", checks)
	}
}
