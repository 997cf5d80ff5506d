package mailstore

import (
	"errors"
	"slices"
	"testing"
)

func TestFolderDir(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dir string
		bad       bool
		// newBad: a name of an existing folder (Dovecot makes them)
		// that NewFolderDir refuses.
		newBad bool
	}{
		{"INBOX", "", false, false},
		{"inbox", "", false, false},
		{"Sent", ".Sent", false, false},
		{"Archive.2024", ".Archive.2024", false, false},
		{"Entwürfe", ".Entw&APw-rfe", false, false},
		{"R&D", ".R&-D", false, false},
		{"INBOX.child", ".INBOX.child", false, false},
		{"Inbox.child", ".INBOX.child", false, false}, // as Dovecot: the INBOX level is INBOX
		{"inboxes.child", ".inboxes.child", false, false},
		{"", "", true, false},
		{".hidden", "", true, false},
		{"a..b", "", true, false},
		{"trailing.", "", true, false},
		{"..", "", true, false},
		{"a/b", "", true, false},
		{"ctl\x01", "", true, false},
		{"wild*", ".wild*", false, true},
		{"50% off", ".50% off", false, true},
		{`back\slash`, `.back\slash`, false, true},
		{"\xff\xfe", "", true, false},
		{string(make([]byte, 300)), "", true, false},
	}
	for _, tc := range tests {
		if dir, err := NewFolderDir(tc.name); (tc.bad || tc.newBad) != errors.Is(err, ErrBadName) || err == nil && dir != tc.dir {
			t.Errorf("NewFolderDir(%q) = %q, %v", tc.name, dir, err)
		}
		dir, err := FolderDir(tc.name)
		if tc.bad {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("FolderDir(%q) = %q, %v; want ErrBadName", tc.name, dir, err)
			}
			continue
		}
		if err != nil || dir != tc.dir {
			t.Errorf("FolderDir(%q) = %q, %v; want %q", tc.name, dir, err, tc.dir)
			continue
		}
		if dir == "" {
			continue
		}
		back, ok := FolderName(dir)
		if !ok || back != CanonicalName(tc.name) {
			t.Errorf("FolderName(%q) = %q, %v", dir, back, ok)
		}
	}
	for _, d := range []string{"cur", "new", "tmp", ".", "..", ".a..b", ".&AGEAYgBj-", ".x&"} {
		if n, ok := FolderName(d); ok {
			t.Errorf("FolderName(%q) = %q, want not a folder", d, n)
		}
	}
}

func TestFlagsInFileNames(t *testing.T) {
	t.Parallel()
	base, f := SplitName("1700000000.M1P1.host,S=10,W=11:2,TSRa")
	if base != "1700000000.M1P1.host,S=10,W=11" {
		t.Errorf("base = %q", base)
	}
	if f&FlagSeen == 0 || f&FlagDeleted == 0 || f&FlagAnswered == 0 || f&KeywordFlag(0) == 0 {
		t.Errorf("flags = %b", f)
	}
	if got := FileName(base, f|FlagDraft|FlagFlagged|KeywordFlag(3)); got != base+":2,DFRSTad" {
		t.Errorf("FileName = %q, want ASCII order", got)
	}
	if _, f := SplitName("1700000000.M1P1.host"); f != 0 {
		t.Errorf("no info: %b", f)
	}
	if w, ok := sizeField("x,S=10,W=1234", 'W'); !ok || w != 1234 {
		t.Errorf("W = %d %v", w, ok)
	}
	if _, ok := sizeField("x,S=,W=", 'W'); ok {
		t.Error("empty W= accepted")
	}
}

func TestSubscriptionsFormats(t *testing.T) {
	t.Parallel()
	if got := parseSubscriptions([]byte("Sent\nEntw&APw-rfe\ninbox\nSent\n")); !slices.Equal(got, []string{"Sent", "Entwürfe", "INBOX"}) {
		t.Errorf("v1 = %q", got)
	}
	if got := parseSubscriptions([]byte("V\t2\n\nArchive\t2024\nTrash\n")); !slices.Equal(got, []string{"Archive.2024", "Trash"}) {
		t.Errorf("v2 = %q", got)
	}
}

func FuzzFolderDir(f *testing.F) {
	f.Add("Archive.2024")
	f.Add("Entwürfe")
	f.Fuzz(func(t *testing.T, name string) {
		dir, err := FolderDir(name)
		if err != nil || dir == "" {
			return
		}
		if dir[0] != '.' || dir == "." || dir == ".." || len(dir) > maxNameLen {
			t.Fatalf("FolderDir(%q) = %q", name, dir)
		}
		for i := 0; i < len(dir); i++ {
			if dir[i] == '/' || dir[i] < 0x20 {
				t.Fatalf("FolderDir(%q) = %q has a forbidden byte", name, dir)
			}
		}
		if back, ok := FolderName(dir); !ok || back != name {
			t.Fatalf("round trip %q -> %q -> %q", name, dir, back)
		}
	})
}

// TestOddName: the names pathLocked cannot derive from a file's base and
// flags are odd ones, kept as found (see Mailbox.odd).
func TestOddName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sub, name string
		odd       bool
	}{
		{"new", "1700000000.M1P1.host", false},
		{"new", "1700000000.M1P1.host:2,", true},
		{"new", "1700000000.M1P1.host:2,S", true},
		{"cur", "1700000000.M1P1.host", false}, // bare
		{"cur", "1700000000.M1P1.host:2,", false},
		{"cur", "1700000000.M1P1.host:2,DFRSTad", false},
		{"cur", "1700000000.M1P1.host:2,SR", true},
		{"cur", "1700000000.M1P1.host:2,SS", true},
		{"cur", "1700000000.M1P1.host:2,S,x", true},
		{"cur", "1700000000.M1P1.host:1,foo", true},
		{"cur", "1700000000.M1P1.host:2,S:x", true},
	} {
		base, fl := SplitName(c.name)
		want := ""
		if c.odd {
			want = c.sub + "/" + c.name
		}
		if got := oddName(c.sub, c.name, base, fl); got != want {
			t.Errorf("oddName(%s/%s) = %q, want %q", c.sub, c.name, got, want)
		}
	}
}
