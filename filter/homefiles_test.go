package filter

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// adminHome is a user's home (owned by 65534 when the test runs as root)
// holding ~/admin/, a directory the user may not write, with a file the
// admin placed there: what a symlink of the user's may point at.
type adminHome struct {
	base, home, admin string
	uid, gid          int
}

const adminContent = "placed by the admin\n"

func newAdminHome(t *testing.T) *adminHome {
	t.Helper()
	base := t.TempDir()
	h := &adminHome{base: base, home: filepath.Join(base, "u"), uid: -1, gid: -1}
	h.admin = filepath.Join(h.home, "admin", "notes")
	if err := os.MkdirAll(filepath.Dir(h.admin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.admin, []byte(adminContent), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() == 0 {
		h.uid, h.gid = 65534, 65534
		if err := os.Chown(h.home, h.uid, h.gid); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// deliver delivers a message to the home's user through a filter that
// chowns to the user (as the server does when running as root), and
// returns the filter's log.
func (h *adminHome) deliver(t *testing.T, body string) string {
	t.Helper()
	var log syncBuffer
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: h.base})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Chown: h.uid >= 0,
		Directory: fakeDir{"u@x.y": {Address: "u@x.y", Home: h.home, Login: "u"}},
		Logger:    slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(), Body: strings.NewReader(body)}
	uid, gid := max(h.uid, 0), max(h.gid, 0)
	if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: h.home + "/mailbox/", UID: uid, GID: gid}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return log.String()
}

// unchanged fails unless path still holds adminContent, owned by the
// test's user (root) with mode 0644.
func unchanged(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	st := fi.Sys().(*syscall.Stat_t)
	if string(data) != adminContent || int(st.Uid) != os.Getuid() || fi.Mode().Perm() != 0o644 {
		t.Errorf("%s: %q, owner %d, mode %v; want it as the admin left it (%q, owner %d, 0644)",
			path, data, st.Uid, fi.Mode().Perm(), adminContent, os.Getuid())
	}
}

// ~/.dovecot.sieve.log is appended to as root and given to the user:
// never through a symlink (Pigeonhole opens it O_NOFOLLOW), even one
// that stays in the home, nor when it is a hard link of another file; a
// plain log is written as before.
func TestUserLogRefusesLinks(t *testing.T) {
	const broken = "require \"fileinto\";\nfileinto \"x\" \"y\";\n" // does not compile: a line in the log
	for _, tc := range []struct {
		name string
		link func(h *adminHome) error
	}{
		{"symlink to the admin's file", func(h *adminHome) error {
			return os.Symlink("admin/notes", filepath.Join(h.home, UserLogName))
		}},
		{"symlink through a symlinked directory", func(h *adminHome) error {
			if err := os.Symlink("admin", filepath.Join(h.home, "adm")); err != nil {
				return err
			}
			return os.Symlink("adm/notes", filepath.Join(h.home, UserLogName))
		}},
		{"hard link", func(h *adminHome) error {
			return os.Link(h.admin, filepath.Join(h.home, UserLogName))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newAdminHome(t)
			os.WriteFile(filepath.Join(h.home, ".dovecot.sieve"), []byte(broken), 0o644)
			if err := tc.link(h); err != nil {
				t.Fatal(err)
			}
			log := h.deliver(t, "Subject: s\r\n\r\nbody\r\n")
			unchanged(t, h.admin)
			if !strings.Contains(log, "cannot write the user's log") {
				t.Errorf("the refused log is not logged:\n%s", log)
			}
		})
	}
	t.Run("regular file", func(t *testing.T) {
		h := newAdminHome(t)
		os.WriteFile(filepath.Join(h.home, ".dovecot.sieve"), []byte(broken), 0o644)
		h.deliver(t, "Subject: s\r\n\r\nbody\r\n")
		p := filepath.Join(h.home, UserLogName)
		data, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(data), "msg_id=m") {
			t.Fatalf("user log %q, %v", data, err)
		}
		if h.uid >= 0 {
			fi, _ := os.Stat(p)
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != h.uid || fi.Mode().Perm() != 0o600 {
				t.Errorf("user log owner %d mode %v, want %d 0600", st.Uid, fi.Mode().Perm(), h.uid)
			}
		}
	})
}

// A :personal include that is a symlink inside the home, or reached
// through a symlinked ~/sieve, is not read (courriel reads as root): the
// copy is kept in the INBOX and the admin's file never runs as a script.
// The active link ~/.dovecot.sieve -> sieve/NAME.sieve is followed.
func TestPersonalIncludeRefusesSymlinks(t *testing.T) {
	const leak = `require ["fileinto", "mailbox"]; fileinto :create "Leaked";`
	for _, tc := range []struct {
		name string
		link func(h *adminHome) error
	}{
		{"script a symlink", func(h *adminHome) error {
			os.Mkdir(filepath.Join(h.home, "sieve"), 0o755)
			return os.Symlink("../admin/notes", filepath.Join(h.home, "sieve", "inc.sieve"))
		}},
		{"through a symlinked directory", func(h *adminHome) error {
			os.WriteFile(filepath.Join(filepath.Dir(h.admin), "inc.sieve"), []byte(leak), 0o644)
			return os.Symlink("admin", filepath.Join(h.home, "sieve"))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newAdminHome(t)
			// What the admin's file says if it is run as a script.
			os.WriteFile(h.admin, []byte(leak), 0o644)
			os.WriteFile(filepath.Join(h.home, ".dovecot.sieve"), []byte("require \"include\";\ninclude :personal \"inc\";\n"), 0o644)
			if err := tc.link(h); err != nil {
				t.Fatal(err)
			}
			h.deliver(t, "Subject: s\r\n\r\nbody\r\n")
			if _, err := os.Stat(filepath.Join(h.home, "mailbox", ".Leaked")); err == nil {
				t.Error("the admin's file was run as the user's script")
			}
			if files, _ := os.ReadDir(filepath.Join(h.home, "mailbox", "new")); len(files) != 1 {
				t.Errorf("INBOX holds %d, want the copy kept there", len(files))
			}
		})
	}
	t.Run("active link", func(t *testing.T) {
		h := newAdminHome(t)
		os.Mkdir(filepath.Join(h.home, "sieve"), 0o755)
		os.WriteFile(filepath.Join(h.home, "sieve", "main.sieve"), []byte("require \"include\";\ninclude :personal \"inc\";\n"), 0o644)
		os.WriteFile(filepath.Join(h.home, "sieve", "inc.sieve"), []byte(`require ["fileinto", "mailbox"]; fileinto :create "Mine";`), 0o644)
		os.Symlink("sieve/main.sieve", filepath.Join(h.home, ".dovecot.sieve"))
		h.deliver(t, "Subject: s\r\n\r\nbody\r\n")
		if files, _ := os.ReadDir(filepath.Join(h.home, "mailbox", ".Mine", "new")); len(files) != 1 {
			t.Errorf("Mine holds %d, want the copy the linked script and its include filed", len(files))
		}
	})
}

// The active script swapped for a symlink between its lstat and its
// open (the user owns the home) is not read through it.
func TestActiveScriptSwappedForSymlink(t *testing.T) {
	for _, linked := range []bool{false, true} {
		h := newAdminHome(t)
		os.WriteFile(h.admin, []byte(`require ["fileinto", "mailbox"]; fileinto :create "Leaked";`), 0o644)
		os.Mkdir(filepath.Join(h.home, "sieve"), 0o755)
		rel := ".dovecot.sieve"
		if linked {
			rel = "sieve/a.sieve"
			os.Symlink("sieve/a.sieve", filepath.Join(h.home, ".dovecot.sieve"))
		}
		p := filepath.Join(h.home, rel)
		os.WriteFile(p, []byte("keep;"), 0o644)
		c := newScriptCache(sieve.Limits{}, sieve.AllExtensions(), 1<<20, "", 100)
		c.beforeOpen = func(string) {
			os.Remove(p)
			os.Symlink(strings.Repeat("../", strings.Count(rel, "/"))+"admin/notes", p)
		}
		s, err := c.userScript(h.home)
		if err != nil || s == nil || s.err == nil || !strings.Contains(s.err.Error(), "symlink") {
			t.Errorf("%s swapped for a symlink: %+v, %v; want a script refused as a symlink", rel, s, err)
		}
	}
}

// dovecot-keywords linked to a file of the maildir the user may not read
// is not read: its lines would be written back into the user's table.
func TestKeywordsRefuseSymlink(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, ".Admin"), 0o700)
	os.WriteFile(filepath.Join(dir, ".Admin", "secret"), []byte("0 TopSecret\n"), 0o600)
	os.Symlink(".Admin/secret", filepath.Join(dir, "dovecot-keywords"))
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := KeywordLetters(root, []string{"$Label1"}, -1, -1); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Errorf("KeywordLetters through a symlink: %v, want it refused", err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if d != nil && d.Type().IsRegular() && !strings.Contains(p, ".Admin") {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("TopSecret")) {
				t.Errorf("%s holds the admin's line: %q", p, b)
			}
		}
		return nil
	})
}
