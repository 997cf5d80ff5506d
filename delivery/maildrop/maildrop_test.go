package maildrop

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func setup(t *testing.T) *Dir {
	t.Helper()
	d, _, err := Setup(filepath.Join(t.TempDir(), "maildrop"))
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
	uid := uint32(os.Geteuid())
	sub := filepath.Join(d.Path(), strconv.Itoa(os.Geteuid()))
	if fi, err := os.Lstat(sub); err != nil || fi.Mode() != fs.ModeDir|0o700 {
		t.Fatalf("the writer's subdirectory: %v, %v; want a 0700 directory", fi, err)
	}
	st, err := os.Stat(filepath.Join(sub, name))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, %v; want 0600", st.Mode(), err)
	}
	top, err := d.List(100)
	if err != nil || !reflect.DeepEqual(top.Users, []uint32{uid}) || len(top.Foreign)+len(top.Unsafe) != 0 {
		t.Fatalf("top %+v, %v", top, err)
	}
	u := openUser(t, d, uid)
	l, err := u.List(MaxPerUser, 0)
	if err != nil || !reflect.DeepEqual(l.Ready, []string{name}) || len(l.Temp)+len(l.Other) != 0 {
		t.Fatalf("listing %+v, %v", l, err)
	}
	f, err := u.Read(name, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Envelope, env) || string(f.Message) != string(msg) {
		t.Errorf("read back %+v %q", f.Envelope, f.Message)
	}
	if f.UID != uint32(os.Geteuid()) || f.GID != uint32(os.Getegid()) {
		t.Errorf("owner %d:%d, want %d:%d", f.UID, f.GID, os.Geteuid(), os.Getegid())
	}
	if err := u.Remove(name); err != nil {
		t.Fatal(err)
	}
	if l, _ := u.List(100, 0); len(l.Ready) != 0 {
		t.Errorf("still listed after Remove: %v", l.Ready)
	}
}

func openUser(t *testing.T, d *Dir, uid uint32) *UserDir {
	t.Helper()
	u, err := d.OpenUser(uid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// userPath is the subdirectory of the test's own uid, made as Write
// makes it.
func userPath(t *testing.T, d *Dir) string {
	t.Helper()
	p := filepath.Join(d.Path(), strconv.Itoa(os.Geteuid()))
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		t.Fatal(err)
	}
	return p
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
			must(t, os.Symlink(target, filepath.Join(userPath(t, d), name)))
		}},
		{"hard link", func(t *testing.T, d *Dir, name string) {
			other := filepath.Join(userPath(t, d), "elsewhere")
			must(t, os.WriteFile(other, []byte(good("3", "x\r\n")), 0o600))
			must(t, os.Link(other, filepath.Join(userPath(t, d), name)))
		}},
		{"fifo", func(t *testing.T, d *Dir, name string) {
			must(t, syscall.Mkfifo(filepath.Join(userPath(t, d), name), 0o600))
		}},
		{"directory", func(t *testing.T, d *Dir, name string) {
			must(t, os.Mkdir(filepath.Join(userPath(t, d), name), 0o700))
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
			u := openUser(t, d, uint32(os.Geteuid()))
			done := make(chan error, 1)
			go func() {
				_, err := u.Read(name, 1000)
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
			to, removed, err := u.SetAside(name)
			if err != nil || removed {
				t.Fatal(removed, err)
			}
			if _, err := os.Lstat(filepath.Join(CorruptPath(d.Path()), to)); err != nil {
				t.Errorf("not in the corrupt directory: %v", err)
			}
			if l, _ := u.List(100, 0); len(l.Ready) != 0 {
				t.Errorf("still ready: %v", l.Ready)
			}
		})
	}
}

// needRoot skips a test that gives files to other uids.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to give files to other uids")
		}
		t.Skip("needs root")
	}
}

// mkUser makes maildrop/<name> owned by owner, as that user's sendmail
// would (0700).
func mkUser(t *testing.T, d *Dir, name string, owner int) string {
	t.Helper()
	p := filepath.Join(d.Path(), name)
	must(t, os.Mkdir(p, 0o700))
	must(t, os.Lchown(p, owner, owner))
	return p
}

// TestReadNamesTheOwner: the submitter is the file's owner, the uid its
// subdirectory is named by and owned by; a file of another owner in it
// (another user's file the subdirectory's user renamed in, or root's) is
// ErrMalformed and never submitted, as its owner nor as the user.
func TestReadNamesTheOwner(t *testing.T) {
	needRoot(t)
	d := setup(t)
	sub := mkUser(t, d, "4242", 4242)
	good := magic + "\nrcpt root\nsize 3\n\nx\r\n"
	for name, owner := range map[string]int{
		"1700000000000000001.1.0123456789abcdef": 4242, // the user's own
		"1700000000000000002.1.0123456789abcdef": 4343, // a victim's, renamed in
		"1700000000000000003.1.0123456789abcdef": 0,    // root's, renamed in
	} {
		p := filepath.Join(sub, name)
		must(t, os.WriteFile(p, []byte(good), 0o600))
		must(t, os.Lchown(p, owner, owner+1))
	}
	u := openUser(t, d, 4242)
	f, err := u.Read("1700000000000000001.1.0123456789abcdef", 1000)
	if err != nil || f.UID != 4242 || f.GID != 4243 {
		t.Fatalf("the user's file: %+v, %v", f, err)
	}
	for _, name := range []string{"1700000000000000002.1.0123456789abcdef", "1700000000000000003.1.0123456789abcdef"} {
		if f, err := u.Read(name, 1000); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "owned by uid") {
			t.Errorf("another owner's file in 4242/: %+v, %v; want ErrMalformed", f, err)
		}
	}
}

// TestTopClassifies: only a directory named by its owner's uid that
// nobody else may write is read; one named by another uid (made by
// someone before its user), a file, a name that is no uid are foreign
// and RemoveForeign removes them whatever they hold; a group-writable
// one of the right owner is left alone, unread.
func TestTopClassifies(t *testing.T) {
	needRoot(t)
	d := setup(t)
	mkUser(t, d, "4242", 4242)
	squat := mkUser(t, d, "4343", 4242) // made by 4242 for 4343
	must(t, os.WriteFile(filepath.Join(squat, "1700000000000000001.1.0123456789abcdef"), []byte("x"), 0o600))
	must(t, os.Symlink("/etc", filepath.Join(squat, "etc")))
	mkUser(t, d, "04242", 4242)
	mkUser(t, d, "corrupt", 4242)
	must(t, os.Chmod(mkUser(t, d, "4444", 4444), 0o770))
	must(t, os.WriteFile(filepath.Join(d.Path(), "junk"), nil, 0o600))
	top, err := d.List(100)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(top.Users, []uint32{4242}) || !reflect.DeepEqual(top.Unsafe, []uint32{4444}) || len(top.Foreign) != 4 {
		t.Fatalf("top %+v", top)
	}
	for _, e := range top.Foreign {
		must(t, d.RemoveForeign(e.Name))
	}
	if _, err := os.Stat("/etc/passwd"); err != nil {
		t.Fatal("RemoveForeign followed a symlink")
	}
	if top, _ := d.List(100); len(top.Foreign) != 0 || len(top.Users) != 1 {
		t.Errorf("after the removals: %+v", top)
	}
	if _, err := d.OpenUser(4444); !errors.Is(err, ErrNotUsers) {
		t.Errorf("OpenUser of a group-writable subdirectory: %v", err)
	}
}

// TestSetupWithAUsersCorrupt: an entry named corrupt made by a user in
// the maildrop does not stop the server: what is set aside lives beside
// the maildrop, in a directory only the server could make; the layout
// before the subdirectories (files at the top, corrupt/ of the server's)
// is set aside.
func TestSetupWithAUsersCorrupt(t *testing.T) {
	needRoot(t)
	path := filepath.Join(t.TempDir(), "maildrop")
	must(t, os.Mkdir(path, 0o1733))
	must(t, os.Mkdir(filepath.Join(path, "corrupt"), 0o700))
	must(t, os.Lchown(filepath.Join(path, "corrupt"), 4242, 4242))
	d, moved, err := Setup(path)
	if err != nil {
		t.Fatalf("Setup with a user's corrupt/: %v", err)
	}
	d.Close()
	if len(moved) != 0 {
		t.Errorf("moved %v", moved)
	}
	fi, err := os.Lstat(CorruptPath(path))
	if err != nil || fi.Mode() != fs.ModeDir|0o700 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("corrupt directory %v %v", fi, err)
	}
	// The old layout.
	path = filepath.Join(t.TempDir(), "maildrop")
	must(t, os.Mkdir(path, 0o1733))
	must(t, os.Mkdir(filepath.Join(path, "corrupt"), 0o700))
	must(t, os.WriteFile(filepath.Join(path, "1700000000000000001.1.0123456789abcdef"), []byte("x"), 0o600))
	d, moved, err = Setup(path)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if len(moved) != 2 {
		t.Errorf("moved %v, want the old corrupt/ and the old file", moved)
	}
	if ents, _ := os.ReadDir(path); len(ents) != 0 {
		t.Errorf("left at the top: %v", ents)
	}
}

// TestPerUserBound: sendmail writes no file past MaxPerUser entries in
// its subdirectory (ErrFull); what a user made past it anyway is removed
// by List, at most budget in one look.
func TestPerUserBound(t *testing.T) {
	d := setup(t)
	sub := userPath(t, d)
	for i := range MaxPerUser + 30 {
		must(t, os.WriteFile(filepath.Join(sub, strconv.Itoa(i)), nil, 0o600))
	}
	if _, err := Write(d.Path(), &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); !errors.Is(err, ErrFull) {
		t.Fatalf("Write into a full subdirectory: %v, want ErrFull", err)
	}
	u := openUser(t, d, uint32(os.Geteuid()))
	l, err := u.List(MaxPerUser, 20)
	if err != nil || l.Over != 20 {
		t.Fatalf("List: over %d, %v; want 20", l.Over, err)
	}
	if l, _ = u.List(MaxPerUser, 20); l.Over != 10 {
		t.Errorf("second look removed %d, want 10", l.Over)
	}
	if ents, _ := os.ReadDir(sub); len(ents) != MaxPerUser {
		t.Errorf("%d entries left, want %d", len(ents), MaxPerUser)
	}
}

// TestSetAsideUnique: the same name set aside again and again gets a
// name of its own each time; past MaxSetAsidePerUser of one user the
// entry is removed instead, and still leaves the maildrop.
func TestSetAsideUnique(t *testing.T) {
	d := setup(t)
	userPath(t, d)
	u := openUser(t, d, uint32(os.Geteuid()))
	seen := map[string]bool{}
	for i := range MaxSetAsidePerUser + 5 {
		writeFile(t, d, "x", "")
		to, removed, err := u.SetAside("x")
		if err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if removed != (i >= MaxSetAsidePerUser) || (!removed && seen[to]) {
			t.Fatalf("%d: %q removed %v", i, to, removed)
		}
		seen[to] = true
		if _, err := os.Lstat(filepath.Join(userPath(t, d), "x")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%d: still in the maildrop", i)
		}
	}
	if _, _, err := u.SetAside("../escape"); err == nil {
		t.Error("SetAside took a path")
	}
}

// TestListClassifies: files listed oldest first (names of different
// lengths sort as numbers), temporary and foreign names apart.
func TestListClassifies(t *testing.T) {
	d := setup(t)
	for _, n := range []string{"999999999.1.0123456789abcdef", "1000000000.1.0123456789abcdef", ".tmp-1000000000.2.0123456789abcdef", "junk", "../x"[3:]} {
		writeFile(t, d, n, "")
	}
	u := openUser(t, d, uint32(os.Geteuid()))
	l, err := u.List(100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.Ready, []string{"999999999.1.0123456789abcdef", "1000000000.1.0123456789abcdef"}) ||
		!reflect.DeepEqual(l.Temp, []string{".tmp-1000000000.2.0123456789abcdef"}) || len(l.Other) != 2 {
		t.Errorf("listing %+v", l)
	}
}

// TestWriteNotDurable: when the subdirectory's fsync after the rename
// fails, Write says so and the file is gone: the caller's "not sent"
// holds (exit 75), no copy is picked up later.
func TestWriteNotDurable(t *testing.T) {
	d := setup(t)
	syncDir = func(*os.File) error { return syscall.EIO }
	defer func() { syncDir = func(d *os.File) error { return d.Sync() } }()
	if name, err := Write(d.Path(), &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); err == nil || name != "" {
		t.Fatalf("Write: %q, %v; want an error", name, err)
	}
	if ents, _ := os.ReadDir(userPath(t, d)); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// TestWatch: a user's subdirectory made, and a file written in one
// watched, are announced.
func TestWatch(t *testing.T) {
	d := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-w.C:
		case <-time.After(20 * time.Second):
			t.Fatal("no event for " + what)
		}
	}
	userPath(t, d)
	wait("a subdirectory made")
	must(t, w.AddUser(uint32(os.Geteuid())))
	if _, err := Write(d.Path(), &Envelope{Recipients: []string{"root"}}, []byte("x\r\n")); err != nil {
		t.Fatal(err)
	}
	wait("a file written")
}

func writeFile(t *testing.T, d *Dir, name, content string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(userPath(t, d), name), []byte(content), 0o600))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatchOnePerUser: a user moving their subdirectory away and making
// a new one, again and again, leaves the server one watch for them (and
// one for the top); none once their subdirectory is gone (Keep).
func TestWatchOnePerUser(t *testing.T) {
	d := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := d.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watches := func() int {
		b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(w.fd))
		must(t, err)
		return strings.Count(string(b), "inotify wd:")
	}
	uid := uint32(os.Geteuid())
	away := t.TempDir()
	for i := range 5 {
		userPath(t, d)
		must(t, w.AddUser(uid))
		must(t, w.AddUser(uid))
		must(t, os.Rename(userPath(t, d), filepath.Join(away, strconv.Itoa(i))))
	}
	userPath(t, d)
	must(t, w.AddUser(uid))
	if n := watches(); n != 2 {
		t.Errorf("%d inotify watches, want 2 (the top and the user's)", n)
	}
	w.Keep(nil)
	if n := watches(); n != 1 {
		t.Errorf("%d inotify watches after Keep(nil), want 1 (the top)", n)
	}
}

// TestSetupLegacyOnce: the old layout is set aside at the first Setup
// only: files a user puts at the top later are not moved at each start
// (they are foreign entries, removed at the next look).
func TestSetupLegacyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maildrop")
	d, _, err := Setup(path)
	must(t, err)
	d.Close()
	for i := range 3 {
		must(t, os.WriteFile(filepath.Join(path, strconv.Itoa(1700000000+i)+"000000000.1.0123456789abcdef"), nil, 0o600))
	}
	d, moved, err := Setup(path)
	must(t, err)
	defer d.Close()
	if len(moved) != 0 {
		t.Errorf("moved %v at a second start", moved)
	}
	ents, _ := os.ReadDir(CorruptPath(path))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "legacy-") {
			t.Errorf("set aside: %s", e.Name())
		}
	}
	if top, err := d.List(100); err != nil || len(top.Foreign) != 3 {
		t.Errorf("top %+v, %v; want the 3 files foreign", top, err)
	}
}

// TestListSkipsWhatItCannotStat: an entry whose stat fails (a user's
// FUSE mount root may not enter), or on another device (a mount), is
// skipped; the others are listed all the same. A subdirectory on
// another device is not opened.
func TestListSkipsWhatItCannotStat(t *testing.T) {
	needRoot(t)
	d := setup(t)
	mkUser(t, d, "4242", 4242)
	mkUser(t, d, "4343", 4343)
	mkUser(t, d, "4444", 4444)
	defer func() { fstatat = unix.Fstatat }()
	fstatat = func(dfd int, name string, st *unix.Stat_t, flags int) error {
		err := unix.Fstatat(dfd, name, st, flags)
		switch name {
		case "4343":
			return unix.EACCES
		case "4444":
			st.Dev++
		}
		return err
	}
	top, err := d.List(100)
	if err != nil || !reflect.DeepEqual(top.Users, []uint32{4242}) || len(top.Skipped) != 2 || len(top.Foreign) != 0 {
		t.Fatalf("top %+v, %v", top, err)
	}
	d.dev++ // as if every subdirectory were on another device
	if _, err := d.OpenUser(4242); !errors.Is(err, ErrNotUsers) {
		t.Errorf("OpenUser of a subdirectory on another device: %v", err)
	}
}

// TestSweepBounded: a directory as deep as its maker likes is removed
// from the trash without recursion, a bounded part per call.
func TestSweepBounded(t *testing.T) {
	needRoot(t)
	d := setup(t)
	p := mkUser(t, d, "x", 4242)
	for range 200 {
		p = filepath.Join(p, "d")
		must(t, os.Mkdir(p, 0o700))
	}
	must(t, d.RemoveForeign("x"))
	if _, err := os.Lstat(filepath.Join(d.Path(), "x")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the name is still taken: %v", err)
	}
	trash := filepath.Join(CorruptPath(d.Path()), TrashName)
	calls := 0
	for ; calls < 1000; calls++ {
		if ents, _ := os.ReadDir(trash); len(ents) == 0 {
			break
		}
		_, problems, err := d.Sweep(20)
		if err != nil || len(problems) != 0 {
			t.Fatalf("Sweep: %v %+v", err, problems)
		}
	}
	if calls < 10 || calls == 1000 {
		t.Errorf("%d calls of Sweep(20) for 201 directories", calls)
	}
}
