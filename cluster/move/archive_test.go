package move

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The home as Dovecot and courriel leave it goes through the stream and
// comes out byte for byte, with its mtimes, the user's owner and
// delivery's modes, without what a move must leave behind.
func TestArchiveRoundTrip(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	homeBase := filepath.Join(base, "nodeb")
	if err := os.Mkdir(homeBase, 0o755); err != nil {
		t.Fatal(err)
	}
	_, d := startDirectory(t, homeBase)
	src := filepath.Join(base, "nodea", "xomail")
	makeHome(t, src)

	a, err := Scan("xomail", src, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	size, err := a.Size()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil || n != size || int64(buf.Len()) != size {
		t.Fatalf("WriteTo = %d, %v; Size %d, %d bytes written", n, err, size, buf.Len())
	}
	root := os.Geteuid() == 0
	g := NewGate()
	g.Close(filepath.Join(homeBase, "xomail")) // closed by an earlier move away from here
	im := NewImporter(ImportOptions{Directory: d, Chown: root, Gate: g})
	if err := im.ImportHome(context.Background(), "xomail", &buf); err != nil {
		t.Fatal(err)
	}
	if g.IsClosed(filepath.Join(homeBase, "xomail")) {
		t.Error("the gate stays closed for a home imported here")
	}
	if got := listDir(t, homeBase); len(got) != 1 || got[0] != "xomail" {
		t.Errorf("beside the home: %q, want only xomail (no staging left)", got)
	}
	want, got := readTree(t, src), readTree(t, filepath.Join(homeBase, "xomail"))
	for rel, w := range want {
		if skipped(rel) {
			if _, ok := got[rel]; ok {
				t.Errorf("%s copied; unfinished writes and dotlocks stay behind", rel)
			}
			continue
		}
		g, ok := got[rel]
		if !ok {
			t.Errorf("%s missing", rel)
			continue
		}
		if g.kind != w.kind || g.content != w.content {
			t.Errorf("%s: %s %q, want %s %q", rel, g.kind, g.content, w.kind, w.content)
		}
		if g.kind == "file" && !g.mtime.Equal(w.mtime) {
			t.Errorf("%s: mtime %v, want %v", rel, g.mtime, w.mtime)
		}
		wantPerm := os.FileMode(0o600)
		if g.kind == "dir" {
			wantPerm = 0o700
		}
		if g.kind != "link" && g.perm != wantPerm {
			t.Errorf("%s: mode %v, want %v", rel, g.perm, wantPerm)
		}
		if root && (g.uid != 20000 || g.gid != 20000) {
			t.Errorf("%s: owner %d:%d, want 20000:20000", rel, g.uid, g.gid)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			t.Errorf("%s appeared", rel)
		}
	}
	if len(got) < 30 {
		t.Errorf("only %d entries imported:\n%s", len(got), fmtTree(got))
	}
}

// Every hostile stream is refused, and nothing of it stays on disk.
func TestImportRefusesHostile(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	homeBase := filepath.Join(base, "homes")
	if err := os.Mkdir(homeBase, 0o755); err != nil {
		t.Fatal(err)
	}
	_, d := startDirectory(t, homeBase)
	ok := []member{dir("mailbox"), dir("mailbox/cur"), file("mailbox/cur/1.M1:2,S", "hello world")}
	valid := craft(t, "xomail", ok, true)
	tampered := bytes.Replace(valid, []byte("hello world"), []byte("hello World"), 1)
	link := func(name, target string) member {
		return member{h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + name, Linkname: target, Mode: 0o777}}
	}
	special := func(typ byte, name string) member {
		return member{h: tar.Header{Typeflag: typ, Name: homePrefix + name, Mode: 0o600, Devmajor: 1, Devminor: 3}}
	}
	deep := []member{}
	p := "d"
	for range 40 {
		deep = append(deep, dir(p))
		p += "/d"
	}
	many := []member{dir("a"), dir("b"), dir("c"), dir("d")}
	for _, tc := range []struct {
		name   string
		stream []byte
		lim    Limits
	}{
		{"dot-dot", craft(t, "xomail", []member{file("../escape", "x")}, true), Limits{}},
		{"dot-dot inside", craft(t, "xomail", []member{dir("a"), file("a/../../escape", "x")}, true), Limits{}},
		{"absolute", craft(t, "xomail", []member{{h: tar.Header{Typeflag: tar.TypeReg, Name: "/tmp/escape", Size: 1}, body: "x"}}, true), Limits{}},
		{"outside home/", craft(t, "xomail", []member{{h: tar.Header{Typeflag: tar.TypeReg, Name: "escape", Size: 1}, body: "x"}}, true), Limits{}},
		{"symlink dir", craft(t, "xomail", []member{link("mailbox", "/etc")}, true), Limits{}},
		{"sieve link out", craft(t, "xomail", []member{dir("sieve"), link(".dovecot.sieve", "../../etc/passwd")}, true), Limits{}},
		{"sieve link absolute", craft(t, "xomail", []member{link(".dovecot.sieve", "/etc/passwd")}, true), Limits{}},
		{"sieve link deeper", craft(t, "xomail", []member{link(".dovecot.sieve", "sieve/a/b.sieve")}, true), Limits{}},
		{"char device", craft(t, "xomail", []member{special(tar.TypeChar, "null")}, true), Limits{}},
		{"block device", craft(t, "xomail", []member{special(tar.TypeBlock, "sda")}, true), Limits{}},
		{"fifo", craft(t, "xomail", []member{special(tar.TypeFifo, "fifo")}, true), Limits{}},
		{"hard link", craft(t, "xomail", []member{{h: tar.Header{Typeflag: tar.TypeLink, Name: homePrefix + "passwd", Linkname: "/etc/passwd"}}}, true), Limits{}},
		{"oversized file", craft(t, "xomail", []member{file("big", "12345678901")}, true), Limits{MaxFileSize: 10}},
		{"too many bytes", craft(t, "xomail", []member{file("a", "123456"), file("b", "123456")}, true), Limits{MaxTotal: 10}},
		{"too many entries", craft(t, "xomail", many, true), Limits{MaxEntries: 3}},
		{"too deep", craft(t, "xomail", deep, true), Limits{}},
		{"control byte", craft(t, "xomail", []member{file("a\nb", "x")}, true), Limits{}},
		{"before its directory", craft(t, "xomail", []member{file("mailbox/cur/1.M1", "x")}, true), Limits{}},
		{"twice", craft(t, "xomail", []member{file("a", "1"), file("a", "2")}, true), Limits{}},
		{"another login", craft(t, "alice", ok, true), Limits{}},
		{"no trailer", craft(t, "xomail", ok, false), Limits{}},
		{"truncated", valid[:len(valid)/2], Limits{}},
		{"tampered", tampered, Limits{}},
		{"not a tar", []byte(strings.Repeat("garbage\n", 200)), Limits{}},
		{"empty", nil, Limits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := NewImporter(ImportOptions{Directory: d, Chown: os.Geteuid() == 0, Limits: tc.lim})
			err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(tc.stream))
			if !errors.Is(err, ErrRefused) {
				t.Errorf("ImportHome = %v, want ErrRefused", err)
			}
			if got := listDir(t, homeBase); len(got) != 0 {
				t.Errorf("left on disk: %q", got)
			}
			if got := listDir(t, base); len(got) != 1 {
				t.Errorf("beside the base: %q", got)
			}
		})
	}
	// The valid stream itself goes in: the cases above fail for their
	// own reason.
	im := NewImporter(ImportOptions{Directory: d, Chown: os.Geteuid() == 0})
	if err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(valid)); err != nil {
		t.Fatalf("valid stream: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(homeBase, "xomail/mailbox/cur/1.M1:2,S")); err != nil || string(b) != "hello world" {
		t.Fatalf("valid stream: %q, %v", b, err)
	}
}

// A home holding mail is never merged into; one without mail (a login
// created its skeleton) is set aside and replaced.
func TestImportExistingHome(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	_, d := startDirectory(t, base)
	stream := craft(t, "xomail", []member{dir("mailbox"), dir("mailbox/new"), file("mailbox/new/2.M2", "imported")}, true)
	home := filepath.Join(base, "xomail")
	for _, sub := range []string{"mailbox/cur", "mailbox/new", "mailbox/tmp"} {
		if err := os.MkdirAll(filepath.Join(home, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(home, "mailbox/cur/1.M1:2,S"), []byte("already here"), 0o600); err != nil {
		t.Fatal(err)
	}
	im := NewImporter(ImportOptions{Directory: d, Chown: os.Geteuid() == 0})
	err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(stream))
	if !errors.Is(err, ErrHomeExists) || !errors.Is(err, ErrRefused) {
		t.Fatalf("import over a maildir with mail: %v", err)
	}
	if got := listDir(t, base); len(got) != 1 {
		t.Errorf("beside the home: %q", got)
	}
	if got := listDir(t, filepath.Join(home, "mailbox/new")); len(got) != 0 {
		t.Errorf("merged into the existing maildir: %q", got)
	}

	if err := os.Remove(filepath.Join(home, "mailbox/cur/1.M1:2,S")); err != nil {
		t.Fatal(err)
	}
	if err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(stream)); err != nil {
		t.Fatalf("import over an empty skeleton: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(home, "mailbox/new/2.M2")); err != nil || string(b) != "imported" {
		t.Errorf("imported message: %q, %v", b, err)
	}
	names := listDir(t, base)
	if len(names) != 2 || !strings.HasPrefix(names[1], "xomail.replaced-") {
		t.Errorf("beside the home: %q, want xomail and xomail.replaced-*", names)
	}
}

// Scan refuses a home it cannot send faithfully.
func TestScanRefuses(t *testing.T) {
	t.Parallel()
	for name, prepare := range map[string]func(home string) error{
		"symlink out": func(home string) error { return os.Symlink("/etc", filepath.Join(home, "mailbox")) },
		"sieve link out": func(home string) error {
			return os.Symlink("../other/sieve/x.sieve", filepath.Join(home, ".dovecot.sieve"))
		},
		"fifo": func(home string) error { return syscall.Mkfifo(filepath.Join(home, "fifo"), 0o600) },
	} {
		home := t.TempDir()
		if err := prepare(home); err != nil {
			t.Fatal(err)
		}
		if _, err := Scan("x", home, Limits{}); err == nil {
			t.Errorf("%s: Scan accepted it", name)
		}
	}
	if _, err := Scan("x", filepath.Join(t.TempDir(), "big"), Limits{}); err != nil {
		t.Errorf("missing home: %v (an empty home moves)", err)
	}
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "big"), make([]byte, 11), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Scan("x", home, Limits{MaxFileSize: 10}); err == nil {
		t.Error("a file over MaxFileSize scanned")
	}
}
