package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// fillLetters gives message uid of mb 26 keywords, one per maildir letter,
// and takes them away again unless keep: the folder's dovecot-keywords is
// full for good (its names are never freed).
func fillLetters(t *testing.T, mb *Mailbox, uid uint32, keep bool) []string {
	t.Helper()
	var all []string
	for i := range 26 {
		all = append(all, fmt.Sprintf("k%d", i))
	}
	if _, _, err := mb.StoreFlags([]uint32{uid}, StoreAdd, all, nil); err != nil {
		t.Fatalf("26 keywords: %v", err)
	}
	if !keep {
		if _, _, err := mb.StoreFlags([]uint32{uid}, StoreRemove, all, nil); err != nil {
			t.Fatal(err)
		}
	}
	return all
}

// namesOf is what a session shows as message uid's FLAGS.
func namesOf(t *testing.T, mb *Mailbox, uid uint32) []string {
	t.Helper()
	fl, ok := mb.FlagsOf([]uint32{uid})
	if !ok[0] {
		t.Fatalf("UID %d gone", uid)
	}
	return mb.FlagNamesOf(uid, fl[0])
}

func wantNames(t *testing.T, what string, mb *Mailbox, uid uint32, want ...string) {
	t.Helper()
	if got := namesOf(t, mb, uid); !slices.Equal(got, want) {
		t.Errorf("%s: FLAGS %q, want %q", what, got, want)
	}
}

func defines(mb *Mailbox, name string) bool {
	flags, perm := mb.DefinedFlags()
	return slices.Contains(flags, name) && slices.Contains(perm, name) && perm[len(perm)-1] == Wildcard
}

// A folder whose 26 maildir letters were all used once keeps taking new
// keywords, as Dovecot does in its index: STORE, APPEND, COPY and MOVE
// succeed and the message has the keyword, kept in courriel-keywords over
// a restart; STORE -FLAGS takes it away and an expunge forgets it. They
// were refused (NO [LIMIT]; APPEND, COPY and MOVE storing nothing).
func TestKeywordsPastTheLetters(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	deliverFile(t, st, "", 1)
	for _, f := range []string{"Full", "Free"} {
		if err := st.Create(f); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry()
	open := func(reg *Registry, name string) *Mailbox {
		mb, err := reg.Open(st, name)
		if err != nil {
			t.Fatal(err)
		}
		return mb
	}
	inbox, full, free := open(reg, "INBOX"), open(reg, "Full"), open(reg, "Free")
	fillLetters(t, inbox, 1, false)
	fu, err := full.Append(strings.NewReader("Subject: f\n\nf\n"), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	fillLetters(t, full, fu, false)

	// STORE: each change gives other flags, for the sessions to see it.
	fl0, _ := inbox.FlagsOf([]uint32{1})
	fl1, ok, err := inbox.StoreFlags([]uint32{1}, StoreAdd, []string{"brandnew", Seen}, nil)
	if err != nil || !ok[0] {
		t.Fatalf("STORE +FLAGS (brandnew \\Seen): %v %v", ok, err)
	}
	fl2, _, err := inbox.StoreFlags([]uint32{1}, StoreAdd, []string{"second"}, nil)
	if err != nil {
		t.Fatalf("STORE +FLAGS (second): %v", err)
	}
	if fl1[0] == fl0[0] || fl2[0] == fl1[0] || !fl2[0].HasKeywords() {
		t.Errorf("flags %x, %x, %x: a change not told", fl0[0], fl1[0], fl2[0])
	}
	wantNames(t, "STORE", inbox, 1, Seen, "brandnew", "second")
	if !defines(inbox, "brandnew") || !defines(inbox, "second") {
		t.Errorf("FLAGS/PERMANENTFLAGS lack the keywords, or \\*: %q", fmt.Sprint(inbox.DefinedFlags()))
	}
	if _, _, err := inbox.StoreFlags([]uint32{1}, StoreRemove, []string{"BRANDNEW"}, nil); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "STORE -FLAGS", inbox, 1, Seen, "second")
	if flags, _ := inbox.DefinedFlags(); slices.Contains(flags, "brandnew") {
		t.Errorf("FLAGS %q still has a keyword no message has", flags)
	}
	if _, _, err := inbox.StoreFlags([]uint32{1}, StoreReplace, []string{Seen, "second", "k3"}, nil); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "STORE FLAGS", inbox, 1, Seen, "k3", "second")

	// APPEND.
	au, err := inbox.Append(strings.NewReader("Subject: a\n\na\n"), []string{Flagged, "appended"}, time.Time{})
	if err != nil {
		t.Fatalf("APPEND (appended): %v", err)
	}
	wantNames(t, "APPEND", inbox, au, Flagged, "appended")

	// COPY into a full folder, and into one with free letters.
	_, cu, err := inbox.CopyTo(full, []uint32{1})
	if err != nil || len(cu) != 1 {
		t.Fatalf("COPY: %v %v", cu, err)
	}
	wantNames(t, "COPY", full, cu[0], Seen, "k3", "second")
	_, fcu, err := inbox.CopyTo(free, []uint32{1})
	if err != nil || len(fcu) != 1 {
		t.Fatalf("COPY: %v %v", fcu, err)
	}
	wantNames(t, "COPY, free letters", free, fcu[0], Seen, "k3", "second")
	if m, _ := free.Get(fcu[0]); !strings.HasSuffix(curFile(t, st, ".Free", m.Base), ":2,Sab") {
		t.Errorf("the keywords did not take the free letters")
	}

	// MOVE, within the maildir.
	_, mu, err := inbox.MoveTo(full, []uint32{au})
	if err != nil || len(mu) != 1 {
		t.Fatalf("MOVE: %v %v", mu, err)
	}
	wantNames(t, "MOVE", full, mu[0], Flagged, "appended")
	if _, ok := inbox.FlagsOf([]uint32{au}); ok[0] {
		t.Error("the moved message is still in INBOX")
	}
	if len(inbox.extra) != 1 {
		t.Errorf("INBOX keeps keywords of %d messages, want 1", len(inbox.extra))
	}

	// The letters as Dovecot has them: 26, the others in no file name.
	kw, _ := os.ReadFile(filepath.Join(st.Path(), "dovecot-keywords"))
	if n := strings.Count(string(kw), "\n"); n != 26 {
		t.Errorf("dovecot-keywords has %d lines", n)
	}
	m1, _ := inbox.Get(1)
	if got := curFile(t, st, "", m1.Base); !strings.HasSuffix(got, ":2,Sd") {
		t.Errorf("INBOX message 1 is %s, want :2,Sd", got)
	}

	// A restart: read back from courriel-keywords, with courriel-state
	// and without.
	for _, mb := range []*Mailbox{inbox, full, free} {
		mb.Release()
	}
	reg.SaveAll()
	for _, state := range []bool{true, false} {
		if !state {
			for _, d := range []string{"", ".Full"} {
				os.Remove(filepath.Join(st.Path(), d, StateFileName))
			}
		}
		reg = NewRegistry()
		inbox, full = open(reg, "INBOX"), open(reg, "Full")
		wantNames(t, fmt.Sprintf("restart (state %v)", state), inbox, 1, Seen, "k3", "second")
		wantNames(t, "restart, COPY", full, cu[0], Seen, "k3", "second")
		wantNames(t, "restart, MOVE", full, mu[0], Flagged, "appended")
		if !defines(full, "appended") {
			t.Errorf("FLAGS after the restart lack a keyword")
		}
		inbox.Release()
		full.Release()
		reg.SaveAll()
	}

	// Expunged: forgotten, and the file goes with the last one.
	reg = NewRegistry()
	full = open(reg, "Full")
	defer full.Release()
	if _, err := full.Expunge(func(u uint32) bool { return u == mu[0] }, false); err != nil {
		t.Fatal(err)
	}
	if len(full.extra) != 1 || defines(full, "appended") {
		t.Errorf("after the expunge: %d messages with keywords, FLAGS %q", len(full.extra), fmt.Sprint(full.DefinedFlags()))
	}
	data, _ := os.ReadFile(filepath.Join(st.Path(), ".Full", ExtraKeywordsFileName))
	if strings.Contains(string(data), "appended") {
		t.Errorf("%s still names the expunged message's keyword", ExtraKeywordsFileName)
	}
	if _, _, err := full.StoreFlags([]uint32{cu[0]}, StoreRemove, []string{"second"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(st.Path(), ".Full", ExtraKeywordsFileName)); !os.IsNotExist(err) {
		t.Errorf("%s left with no keyword in it: %v", ExtraKeywordsFileName, err)
	}
}

// The file is checked: one that does not decode is ignored, and names
// of messages gone are dropped.
func TestExtraKeywordsFile(t *testing.T) {
	t.Parallel()
	mb := &Mailbox{}
	mb.setExtraLocked("a", []string{"x", "Y"})
	mb.setExtraLocked("b", []string{"y", "z"})
	data := mb.encodeExtraLocked()
	l, order, err := decodeExtra(string(data), nil)
	if err != nil || len(l) != 2 || !slices.Equal(order, []string{"x", "Y", "z"}) || !slices.Equal(l["a"], []string{"x", "Y"}) || !slices.Equal(l["b"], []string{"Y", "z"}) {
		t.Fatalf("decoded %q, %v", l, err)
	}
	for i := range data {
		bad := slices.Clone(data)
		bad[i] ^= 0x20
		if _, _, err := decodeExtra(string(bad), nil); err == nil {
			t.Errorf("byte %d changed: decoded", i)
		}
	}
	if _, _, err := decodeExtra(string(data[:len(data)-1]), nil); err == nil {
		t.Error("short file decoded")
	}
	mb.setExtraLocked("a", nil)
	mb.setExtraLocked("b", []string{"z"})
	if len(mb.extraNames) != 1 || !slices.Equal(mb.extraOrder, []string{"z"}) {
		t.Errorf("names left: %v %q", mb.extraNames, mb.extraOrder)
	}
}

// A STORE naming a keyword a message has beyond the letters: -FLAGS takes
// it away even when the name has a letter now (a table another program
// emptied and filled again), +FLAGS giving it the letter leaves one of
// the two, FLAGS sets exactly what it names.
func TestExtraAfterStore(t *testing.T) {
	t.Parallel()
	mb := &Mailbox{}
	mb.setExtraLocked("a", []string{"x", "y"})
	for _, c := range []struct {
		op           StoreOp
		extra, named []string
		want         []string
	}{
		{StoreAdd, []string{"z"}, []string{"z"}, []string{"x", "y", "z"}},
		{StoreAdd, []string{"Y"}, []string{"Y"}, []string{"x", "y"}},
		{StoreAdd, nil, []string{"X"}, []string{"y"}},
		{StoreRemove, nil, []string{"Y"}, []string{"x"}},
		{StoreRemove, []string{"q"}, []string{"q"}, []string{"x", "y"}},
		{StoreReplace, []string{"q"}, []string{"q", "x"}, []string{"q"}},
	} {
		if got := mb.extraAfterLocked("a", c.op, c.extra, foldSet(c.extra), foldSet(c.named)); !slices.Equal(got, c.want) {
			t.Errorf("%v %q %q: %q, want %q", c.op, c.extra, c.named, got, c.want)
		}
	}
}

// Past MaxExtraKeywords names beyond the letters, a STORE of a new one is
// refused and leaves the folder's keywords as they were, PERMANENTFLAGS
// loses \*; an APPEND stores its message without it.
func TestTooManyKeywordsLeavesNone(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 10; i++ {
		deliverFile(t, st, "", i)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	// 30 keywords in one STORE: 26 letters, 4 beyond.
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("k%d", i))
	}
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, many, nil); err != nil {
		t.Fatalf("30 keywords: %v", err)
	}
	if got := namesOf(t, mb, 1); !slices.Equal(got, many) {
		t.Fatalf("FLAGS %q", got)
	}
	var more []string
	for i := 4; i < MaxExtraKeywords; i++ {
		more = append(more, fmt.Sprintf("x%d", i))
	}
	// Spread over messages 2..10 (MaxMessageExtraKeywords each at most).
	for uid := uint32(2); len(more) > 0; uid++ {
		n := min(len(more), 120)
		if _, _, err := mb.StoreFlags([]uint32{uid}, StoreAdd, more[:n], nil); err != nil {
			t.Fatal(err)
		}
		more = more[n:]
	}
	before, _ := mb.DefinedFlags()
	if _, perm := mb.DefinedFlags(); slices.Contains(perm, Wildcard) {
		t.Errorf("PERMANENTFLAGS has \\* with no room for a keyword")
	}
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{"one-more"}, nil); err != ErrTooManyKeywords {
		t.Fatalf("one keyword past the bound: %v", err)
	}
	if after, _ := mb.DefinedFlags(); !slices.Equal(before, after) {
		t.Errorf("FLAGS changed by the refused STORE")
	}
	// A keyword the folder has is still taken.
	u, err := mb.Append(strings.NewReader("Subject: a\n\na\n"), []string{"x7", "one-more"}, time.Time{})
	if err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	wantNames(t, "APPEND past the bound", mb, u, "x7")
}

// Dovecot reads the 26 lettered keywords of a folder that has keywords
// beyond them as before (those it does not see: they are courriel's), and
// courriel keeps them after Dovecot worked on the folder.
func TestDovecotReadsLettersBesideExtraKeywords(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	st := testStore(t)
	deliverFile(t, st, "", 1)
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	letters := fillLetters(t, mb, 1, true)
	if _, _, err := mb.StoreFlags([]uint32{1}, StoreAdd, []string{"brandnew"}, nil); err != nil {
		t.Fatal(err)
	}
	mb.Release()
	reg.SaveAll()

	out := testenv.RunDovecot(t, st.Path(), "", "a SELECT INBOX\r\nb FETCH 1 (FLAGS)\r\nc LOGOUT\r\n")
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "* 1 FETCH") {
			line = l
		}
	}
	for _, k := range letters {
		if !strings.Contains(line+" ", " "+k+" ") && !strings.Contains(line, "("+k+" ") && !strings.Contains(line, " "+k+")") {
			t.Errorf("Dovecot does not see %s: %q\n%s", k, line, out)
		}
	}
	if strings.Contains(line, "brandnew") {
		t.Errorf("Dovecot sees the keyword beyond the letters? %q", line)
	}

	reg = NewRegistry()
	mb, err = reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	defer mb.Release()
	want := append(slices.Clone(letters), "brandnew")
	wantNames(t, "after Dovecot", mb, 1, want...)
}
