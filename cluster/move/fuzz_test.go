package move

import (
	"archive/tar"
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"courriel/directory"
)

// fixedUser is a directory of one user (unit tests of the importer alone).
type fixedUser struct{ u directory.User }

func (f fixedUser) LookupUser(_ context.Context, login string) (directory.User, error) {
	if login != f.u.Login {
		return directory.User{}, directory.ErrNotFound
	}
	return f.u, nil
}

// FuzzImportHome: whatever the stream, the import either fails and leaves
// nothing, or puts a home in place that holds only directories, regular
// files and the one Sieve link, all inside it.
func FuzzImportHome(f *testing.F) {
	t := &testing.T{}
	valid := craft(t, "xomail", []member{dir("mailbox"), dir("mailbox/cur"), file("mailbox/cur/1.M1:2,S", "hello"), dir("sieve"),
		file("sieve/a.sieve", "keep;"), {h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + activeLink, Linkname: "sieve/a.sieve"}}}, true)
	f.Add(valid)
	f.Add(valid[:len(valid)-1024])
	f.Add(craft(t, "xomail", []member{file("../x", "y")}, true))
	f.Add(craft(t, "xomail", []member{{h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + "mailbox", Linkname: "/"}}}, true))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, stream []byte) {
		base := t.TempDir()
		homes := filepath.Join(base, "homes")
		if err := os.Mkdir(homes, 0o755); err != nil {
			t.Fatal(err)
		}
		home := filepath.Join(homes, "xomail")
		im := NewImporter(ImportOptions{Directory: fixedUser{directory.User{Login: "xomail", Home: home, Maildir: home + "/mailbox/", UID: os.Getuid(), GID: os.Getgid()}},
			Limits: Limits{MaxEntries: 100, MaxFileSize: 1 << 16, MaxTotal: 1 << 20}})
		im.syncFS = func(*os.Root) error { return nil } // syncfs of a shared disk, thousands of times
		err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(stream))
		if names := listDir(t, base); len(names) != 1 {
			t.Fatalf("beside the homes: %q", names)
		}
		names := listDir(t, homes)
		if err != nil {
			if len(names) != 0 {
				t.Fatalf("failed import (%v) left %q", err, names)
			}
			return
		}
		if len(names) != 1 || names[0] != "xomail" {
			t.Fatalf("homes after an import: %q", names)
		}
		werr := filepath.WalkDir(home, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch rel, _ := filepath.Rel(home, p); {
			case de.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				if rel != activeLink || checkLink(rel, target) != nil {
					t.Errorf("link %s -> %s", rel, target)
				}
			case !de.IsDir() && !de.Type().IsRegular():
				t.Errorf("%s: %v", rel, de.Type())
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
	})
}

// FuzzImportDelta: whatever the stream sent after a pre-copy, the import
// either fails and leaves the staging directory as the pre-copy wrote it
// (a stream that never named the move) or removed, or puts a home in
// place (or keeps the staging directory, for a delta) holding only
// directories, regular files and the one Sieve link; nothing beside the
// homes is touched.
func FuzzImportDelta(f *testing.F) {
	t := &testing.T{}
	f.Add(craft2(t, "xomail", "final", moveA, "R\tmailbox/cur/1.M1:2,S\tmailbox/cur/1.M1:2,SF\nD\tmailbox/.Work\nD\tmailbox/dovecot-uidlist\n",
		[]member{file("mailbox/dovecot-uidlist", "3 V1 N4\n"), dir("sieve"), file("sieve/a.sieve", "keep;"),
			{h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + activeLink, Linkname: "sieve/a.sieve"}}}, true))
	f.Add(craft2(t, "xomail", "final", moveA, "D\t../canary\n", nil, true))
	f.Add(craft2(t, "xomail", "final", moveA, "R\tmailbox/new/2.M2\tmailbox/cur/2.M2:2,S\n", []member{file("mailbox/new/2.M2", "again")}, true))
	f.Add(craft2(t, "xomail", "delta", moveA, "", nil, true))
	f.Fuzz(func(t *testing.T, stream []byte) {
		im, homes, canary := stagingImporter(t, Limits{MaxEntries: 100, MaxFileSize: 1 << 16, MaxTotal: 1 << 20})
		im.syncFS = func(*os.Root) error { return nil } // syncfs of a shared disk, thousands of times
		stagedPre(t, im, moveA)
		staged := listDir(t, homes)
		before := readTree(t, filepath.Join(homes, staged[0]))
		err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(stream))
		if b, cerr := os.ReadFile(canary); cerr != nil || string(b) != "canary" {
			t.Fatalf("canary: %q, %v", b, cerr)
		}
		if names := listDir(t, filepath.Dir(homes)); len(names) != 2 {
			t.Fatalf("beside the homes: %q", names)
		}
		names := listDir(t, homes)
		if err != nil {
			if len(names) == 0 {
				return
			}
			if len(names) != 1 || names[0] != staged[0] || im.pending[moveA] == nil {
				t.Fatalf("failed delta (%v) left %q", err, names)
			}
			after := readTree(t, filepath.Join(homes, staged[0]))
			for rel, n := range before {
				if a, ok := after[rel]; !ok || a.kind != n.kind || a.content != n.content {
					t.Errorf("failed delta (%v) changed %s", err, rel)
				}
			}
			if len(after) != len(before) {
				t.Errorf("failed delta (%v) changed the staging directory", err)
			}
			return
		}
		if len(names) != 1 { // the home, or (a delta) its staging directory
			t.Fatalf("homes after a delta: %q", names)
		}
		home := filepath.Join(homes, names[0])
		werr := filepath.WalkDir(home, func(p string, de fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			switch rel, _ := filepath.Rel(home, p); {
			case de.Type()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				if rel != activeLink || checkLink(rel, target) != nil {
					t.Errorf("link %s -> %s", rel, target)
				}
			case !de.IsDir() && !de.Type().IsRegular():
				t.Errorf("%s: %v", rel, de.Type())
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
	})
}
