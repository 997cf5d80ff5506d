package maildirsize

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newMaildir(t *testing.T, files map[string]string) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"new", "cur", "tmp", ".Junk/new", ".Junk/cur", ".Junk/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dir
}

func TestParseLimits(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Limits
		bad  bool
	}{
		{"1000S,20C", Limits{1000, 20}, false},
		{"1000S", Limits{Bytes: 1000}, false},
		{"20C", Limits{Messages: 20}, false},
		{"", Limits{}, false},
		{"0S", Limits{}, false},
		{"1000X", Limits{}, true},
		{"-5S", Limits{}, true},
		{"S", Limits{}, true},
	} {
		got, err := ParseLimits(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ParseLimits(%q) = %+v, %v", tc.in, got, err)
		}
		if !tc.bad && tc.in != "" && tc.in != "0S" {
			if back, _ := ParseLimits(got.String()); back != got {
				t.Errorf("%+v does not round-trip through %q", got, got.String())
			}
		}
	}
}

// TestReadComputesAndFollows: a missing file is computed from the folders
// (S= in names, the file's size otherwise), and later reads sum the lines
// Add appends.
func TestReadComputesAndFollows(t *testing.T) {
	root, dir := newMaildir(t, map[string]string{
		"new/1.M1.h,S=100,W=102":      strings.Repeat("x", 100),
		"cur/2.M2.h,S=50:2,S":         strings.Repeat("y", 50),
		"cur/3.M3.h:2,":               strings.Repeat("z", 7), // no S=: stat
		".Junk/new/4.M4.h,S=1000":     "junk",
		"tmp/5.M5.h,S=999999":         "not a message yet",
		"cur/.hidden,S=123":           "not a message",
		"dovecot-uidlist":             "3 V1 N4\n",
		".Junk/maildirfolder":         "",
		".Junk/cur/6.M6.h,S=1:2,ST":   "x",
		".Junk/cur/7.M7.h,S=bad:2,ST": "abc",
	})
	lim := Limits{Bytes: 10000, Messages: 100}
	now := time.Now()
	u, err := Read(root, lim, Owner{-1, -1}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Usage{Bytes: 100 + 50 + 7 + 1000 + 1 + 3, Messages: 6}); u != want {
		t.Errorf("computed %+v, want %+v", u, want)
	}
	b, _ := os.ReadFile(filepath.Join(dir, FileName))
	if string(b) != "10000S,100C\n1161 6\n" {
		t.Errorf("file %q", b)
	}
	if err := Add(root, 500, 1); err != nil {
		t.Fatal(err)
	}
	if err := Add(root, -100, -1); err != nil {
		t.Fatal(err)
	}
	if u, err = Read(root, lim, Owner{-1, -1}, now); err != nil || u != (Usage{Bytes: 1561, Messages: 6}) {
		t.Errorf("after two lines: %+v, %v", u, err)
	}
	// Removals older than 15 minutes make the next read count afresh.
	if u, err = Read(root, lim, Owner{-1, -1}, now.Add(16*time.Minute)); err != nil || u != (Usage{Bytes: 1161, Messages: 6}) {
		t.Errorf("stale file recomputed: %+v, %v", u, err)
	}
}

// TestReadRecomputes: new limits, an oversized or a broken file are
// computed afresh, with the limits given on the first line.
func TestReadRecomputes(t *testing.T) {
	for _, tc := range []struct{ name, file string }{
		{"other limits", "5S\n10 1\n"},
		{"too large", "1000S\n" + strings.Repeat("1 0\n", 2000)},
		{"broken", "1000S\nten one\n"},
		{"negative total", "1000S\n-500 -3\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, dir := newMaildir(t, map[string]string{"new/1.M1.h,S=10": "0123456789", FileName: tc.file})
			u, err := Read(root, Limits{Bytes: 1000}, Owner{-1, -1}, time.Now())
			if err != nil || u != (Usage{Bytes: 10, Messages: 1}) {
				t.Errorf("%+v, %v", u, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, FileName)); string(b) != "1000S\n10 1\n" {
				t.Errorf("file %q", b)
			}
		})
	}
}

func TestFits(t *testing.T) {
	u := Usage{Bytes: 900, Messages: 9}
	for _, tc := range []struct {
		l    Limits
		size int64
		want bool
	}{
		{Limits{Bytes: 1000}, 100, true},
		{Limits{Bytes: 1000}, 101, false},
		{Limits{Messages: 10}, 5000, true},
		{Limits{Messages: 9}, 1, false},
		{Limits{}, 1 << 40, true},
	} {
		if got := u.Fits(tc.l, tc.size); got != tc.want {
			t.Errorf("%+v fits %+v + %d: %v", u, tc.l, tc.size, got)
		}
	}
}

// TestSymlinkedFileRefused: maildirsize is never followed through a symlink.
func TestSymlinkedFileRefused(t *testing.T) {
	root, dir := newMaildir(t, nil)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("1S\n"), 0o600)
	if err := os.Symlink(outside, filepath.Join(dir, FileName)); err != nil {
		t.Fatal(err)
	}
	if err := Add(root, 5, 1); err == nil {
		t.Error("Add wrote through a symlink")
	}
	if u, err := Read(root, Limits{Bytes: 100}, Owner{-1, -1}, time.Now()); err != nil || u != (Usage{}) {
		t.Errorf("Read: %+v, %v", u, err)
	}
	if b, _ := os.ReadFile(outside); string(b) != "1S\n" {
		t.Errorf("the symlink's target changed: %q", b)
	}
	if fi, err := os.Lstat(filepath.Join(dir, FileName)); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("the symlink was not replaced by a file: %v", err)
	}
}

// A deleted folder on its way out (Dovecot's and courriel's trash,
// "..DOVECOT-TRASHED", whatever is inside it) is not counted: its
// messages were freed when it was deleted.
func TestRecalculateSkipsTrash(t *testing.T) {
	root, dir := newMaildir(t, map[string]string{"new/1.M1.h,S=10": "0123456789", ".Junk/cur/2.M2.h,S=5:2,S": "01234"})
	for _, d := range []string{"..DOVECOT-TRASHED/cur", "..DOVECOT-TRASHED/h.1.2/new"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"..DOVECOT-TRASHED/cur/3.M3.h,S=100:2,", "..DOVECOT-TRASHED/h.1.2/new/4.M4.h,S=100"} {
		if err := os.WriteFile(filepath.Join(dir, f), make([]byte, 100), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	u, err := Recalculate(root, Limits{Bytes: 1000}, Owner{-1, -1})
	if err != nil || u != (Usage{Bytes: 15, Messages: 2}) {
		t.Errorf("%+v, %v; want 15 bytes in 2 messages", u, err)
	}
}
