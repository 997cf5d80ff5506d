package maildrop

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func setup(t *testing.T) *Dir {
	t.Helper()
	d, err := Setup(filepath.Join(t.TempDir(), "maildrop"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestWriteRead: what sendmail writes, the server reads back whole, with
// the file's owner; the file is 0600 and its name is listed as ready.
func TestWriteRead(t *testing.T) {
	d := setup(t)
	fi, err := os.Stat(d.Path())
	if err != nil || fi.Mode()&fs.ModeSticky == 0 || fi.Mode().Perm() != 0o733 {
		t.Fatalf("directory mode %v, %v; want sticky 0733", fi.Mode(), err)
	}
	env := &Envelope{From: "", FromSet: true, FullName: "Alice Martin = + \n", Extract: true,
		Recipients: []string{"root", "bob@example.org", "é@exemple.fr"}, Notify: "FAILURE,DELAY", Ret: "HDRS", EnvID: "a+b=c"}
	msg := []byte("Subject: x\r\n\r\nbody\r\n\r\n")
	name, err := Write(d.Path(), env, msg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(d.Path(), name))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	l, err := d.List(100)
	if err != nil || !reflect.DeepEqual(l.Ready, []string{name}) || len(l.Temp)+len(l.Other) != 0 {
		t.Fatalf("listing %+v, %v", l, err)
	}
	f, err := d.Read(name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Envelope, env) || string(f.Message) != string(msg) {
		t.Errorf("read back %+v %q", f.Envelope, f.Message)
	}
	if f.UID != uint32(os.Geteuid()) || f.GID != uint32(os.Getegid()) {
		t.Errorf("owner %d:%d, want %d:%d", f.UID, f.GID, os.Geteuid(), os.Getegid())
	}
	if err := d.Remove(name); err != nil {
		t.Fatal(err)
	}
	if l, _ := d.List(100); len(l.Ready) != 0 {
		t.Errorf("still listed after Remove: %v", l.Ready)
	}
}

// TestWriteRefusesUnsafeDir: sendmail writes nothing into a directory
// that would not keep the file to its writer.
func TestWriteRefusesUnsafeDir(t *testing.T) {
	base := t.TempDir()
	for _, tc := range []struct {
		name string
		mode fs.FileMode
	}{
		{"world-writable, not sticky", 0o733},
		{"listable", fs.ModeSticky | 0o777},
		{"group-listable", fs.ModeSticky | 0o773},
	} {
		dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "_"))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := Write(dir, &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); !errors.Is(err, ErrUnsafeDir) {
			t.Errorf("%s: %v, want ErrUnsafeDir", tc.name, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: left %v", tc.name, ents)
		}
	}
	d := setup(t)
	link := filepath.Join(base, "link")
	if err := os.Symlink(d.Path(), link); err != nil {
		t.Fatal(err)
	}
	if _, err := Write(link, &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); !errors.Is(err, ErrUnsafeDir) {
		t.Errorf("symlink: %v, want ErrUnsafeDir", err)
	}
}

// TestReadHostile: every file that is not a well-formed maildrop file of
// its owner's is ErrMalformed (the server sets it aside), never read as a
// message, and SetAside moves it into corrupt/.
func TestReadHostile(t *testing.T) {
	good := func(size string, rest string) string {
		return magic + "\nrcpt root\nsize " + size + "\n\n" + rest
	}
	for _, tc := range []struct {
		name string
		make func(t *testing.T, d *Dir, name string)
	}{
		{"symlink", func(t *testing.T, d *Dir, name string) {
			target := filepath.Join(t.TempDir(), "secret")
			os.WriteFile(target, []byte(good("3", "x\r\n")), 0o600)
			must(t, os.Symlink(target, filepath.Join(d.Path(), name)))
		}},
		{"hard link", func(t *testing.T, d *Dir, name string) {
			other := filepath.Join(d.Path(), "elsewhere")
			must(t, os.WriteFile(other, []byte(good("3", "x\r\n")), 0o600))
			must(t, os.Link(other, filepath.Join(d.Path(), name)))
		}},
		{"fifo", func(t *testing.T, d *Dir, name string) {
			must(t, syscall.Mkfifo(filepath.Join(d.Path(), name), 0o600))
		}},
		{"directory", func(t *testing.T, d *Dir, name string) {
			must(t, os.Mkdir(filepath.Join(d.Path(), name), 0o700))
		}},
		{"oversize", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, good("2000", strings.Repeat("x", 2000)))
		}},
		{"oversize beyond the envelope bound", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, strings.Repeat("x", MaxEnvelope+1001))
		}},
		{"truncated message", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, good("10", "x\r\n"))
		}},
		{"extended message", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, good("1", "x\r\n"))
		}},
		{"truncated envelope", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt ro")
		}},
		{"empty", func(t *testing.T, d *Dir, name string) { writeFile(t, d, name, "") }},
		{"bad magic", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, "courriel-maildrop 2\nrcpt root\nsize 0\n\n")
		}},
		{"uid claimed in the file", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nuid 0\nrcpt root\nsize 0\n\n")
		}},
		{"no size", func(t *testing.T, d *Dir, name string) { writeFile(t, d, name, magic+"\nrcpt root\n\n") }},
		{"negative size", func(t *testing.T, d *Dir, name string) { writeFile(t, d, name, good("-1", "")) }},
		{"size with a plus", func(t *testing.T, d *Dir, name string) { writeFile(t, d, name, good("+3", "x\r\n")) }},
		{"repeated from", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nfrom a\nfrom b\nrcpt root\nsize 0\n\n")
		}},
		{"out of order", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt root\nfrom a\nsize 0\n\n")
		}},
		{"raw space in a value", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt a b\nsize 0\n\n")
		}},
		{"control octet", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt a\rb\nsize 0\n\n")
		}},
		{"bad xtext", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt a+2\nsize 0\n\n")
		}},
		{"lower-case xtext", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt a+2b\nsize 0\n\n")
		}},
		{"extract with a value", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nextract yes\nsize 0\n\n")
		}},
		{"empty recipient", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt \nsize 0\n\n")
		}},
		{"too long a line", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\nrcpt "+strings.Repeat("a", maxLine)+"\nsize 0\n\n")
		}},
		{"too many recipients", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\n"+strings.Repeat("rcpt a\n", MaxRecipients+1)+"size 0\n\n")
		}},
		{"envelope without end", func(t *testing.T, d *Dir, name string) {
			writeFile(t, d, name, magic+"\n"+strings.Repeat("rcpt a\n", MaxEnvelope/7+1))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := setup(t)
			name := "1700000000000000000.42.0123456789abcdef"
			tc.make(t, d, name)
			done := make(chan error, 1)
			go func() {
				_, err := d.Read(name, 1000)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Read: %v, want ErrMalformed", err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("Read hangs")
			}
			to, err := d.SetAside(name)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(filepath.Join(d.Path(), corruptDir, to)); err != nil {
				t.Errorf("not in corrupt/: %v", err)
			}
			if l, _ := d.List(100); len(l.Ready) != 0 {
				t.Errorf("still ready: %v", l.Ready)
			}
		})
	}
}

// TestReadNamesTheOwner: the submitter is the file's owner, whatever the
// file says and whoever wrote the bytes (root here gives the file to
// another uid, as if that user had written it).
func TestReadNamesTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to give a file to another uid")
		}
		t.Skip("needs root")
	}
	d := setup(t)
	name, err := Write(d.Path(), &Envelope{Recipients: []string{"root"}}, []byte("x\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Lchown(filepath.Join(d.Path(), name), 4242, 4343))
	f, err := d.Read(name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if f.UID != 4242 || f.GID != 4343 {
		t.Errorf("owner %d:%d, want 4242:4343", f.UID, f.GID)
	}
}

// TestListSortsAndSorts: files listed oldest first (names of different
// lengths sort as numbers), temporary and foreign names apart.
func TestListClassifies(t *testing.T) {
	d := setup(t)
	for _, n := range []string{"999999999.1.0123456789abcdef", "1000000000.1.0123456789abcdef", ".tmp-1000000000.2.0123456789abcdef", "junk", "../x"[3:]} {
		writeFile(t, d, n, "")
	}
	l, err := d.List(100)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Ready, []string{"999999999.1.0123456789abcdef", "1000000000.1.0123456789abcdef"}) ||
		!reflect.DeepEqual(l.Temp, []string{".tmp-1000000000.2.0123456789abcdef"}) || len(l.Other) != 2 {
		t.Errorf("listing %+v", l)
	}
	if l, _ := d.List(1); len(l.Ready)+len(l.Temp)+len(l.Other) != 1 {
		t.Errorf("List(1) read %+v", l)
	}
	// A temporary file is removed only once stale.
	tmp := ".tmp-1000000000.2.0123456789abcdef"
	if removed, err := d.RemoveStale(tmp, time.Now()); removed || err != nil {
		t.Errorf("fresh temp file removed: %v %v", removed, err)
	}
	if removed, err := d.RemoveStale(tmp, time.Now().Add(StaleAfter+time.Minute)); !removed || err != nil {
		t.Errorf("stale temp file kept: %v %v", removed, err)
	}
	if _, err := d.SetAside("../escape"); err == nil {
		t.Error("SetAside took a path")
	}
}

// TestSetupRefusesAnotherUsersCorrupt: a corrupt/ someone made first in
// the world-writable directory is not the server's.
func TestSetupRefusesSymlinkedCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maildrop")
	must(t, os.Mkdir(path, 0o700))
	must(t, os.Symlink(t.TempDir(), filepath.Join(path, corruptDir)))
	if d, err := Setup(path); err == nil {
		d.Close()
		t.Fatal("Setup took a corrupt/ that is a symlink")
	}
}

// TestWatch: a file written is announced.
func TestWatch(t *testing.T) {
	d := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(d.Path(), &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no event for a file written")
	}
}

func writeFile(t *testing.T, d *Dir, name, content string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(d.Path(), name), []byte(content), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
