package scripts

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func open(t *testing.T, lim Limits) (*Store, string) {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	s, err := Open(home, Options{Limits: lim, CreateHome: true, Owner: Owner{UID: os.Getuid(), GID: os.Getgid(), Chown: os.Geteuid() == 0}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, home
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"main", true}, {"vacation 2026", true}, {"Café", true}, {"日本語", true}, {".", true}, {"..", true},
		{"", false}, {"a/b", false}, {"../x", false}, {"a\x00b", false}, {"a\nb", false}, {"a\x7fb", false},
		{"a\u0085b", false}, {"a\u2028b", false}, {"a\u2029b", false}, {"\xff\xfe", false}, {"ÿ", false},
		{strings.Repeat("x", 249), true}, {strings.Repeat("x", 250), false},
	} {
		if err := ValidName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestLayout(t *testing.T) {
	s, home := open(t, Limits{})
	if err := s.Put("main", []byte("keep;\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("other", []byte("discard;\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive("main"); err != nil {
		t.Fatal(err)
	}
	target, err := os.Readlink(filepath.Join(home, ".dovecot.sieve"))
	if err != nil || target != "sieve/main.sieve" {
		t.Fatalf("link = %q, %v", target, err)
	}
	for p, mode := range map[string]os.FileMode{"sieve": 0o700 | os.ModeDir, "sieve/tmp": 0o700 | os.ModeDir, "sieve/main.sieve": 0o600} {
		fi, err := os.Lstat(filepath.Join(home, p))
		if err != nil || fi.Mode() != mode {
			t.Errorf("%s: mode %v, %v; want %v", p, fi.Mode(), err, mode)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != os.Getuid() {
			t.Errorf("%s: uid %d", p, st.Uid)
		}
	}
	b, err := os.ReadFile(filepath.Join(home, "sieve/main.sieve"))
	if err != nil || string(b) != "keep;\n" {
		t.Fatalf("main.sieve = %q, %v", b, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 || !list[0].Active || list[0].Name != "main" || list[1].Active || list[0].Size != 6 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if err := s.Delete("main"); !errors.Is(err, ErrActive) {
		t.Fatalf("Delete active: %v", err)
	}
	if err := s.Rename("main", "other"); !errors.Is(err, ErrExists) {
		t.Fatalf("Rename onto existing: %v", err)
	}
	os.WriteFile(filepath.Join(home, "sieve/main.svbin"), []byte("bin"), 0o600)
	if err := s.Rename("main", "renamed"); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.Active(); a != "renamed" {
		t.Fatalf("active after rename = %q", a)
	}
	if _, err := os.Stat(filepath.Join(home, "sieve/main.svbin")); !os.IsNotExist(err) {
		t.Errorf("svbin of the old name kept: %v", err)
	}
	name, content, ok, err := s.ActiveScript()
	if err != nil || !ok || name != "renamed" || string(content) != "keep;\n" {
		t.Fatalf("ActiveScript = %q %q %v %v", name, content, ok, err)
	}
	if err := s.SetActive(""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(home, ".dovecot.sieve")); !os.IsNotExist(err) {
		t.Fatalf("link after deactivation: %v", err)
	}
	os.WriteFile(filepath.Join(home, "sieve/other.svbin"), []byte("bin"), 0o600)
	if err := s.Delete("other"); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(home, "sieve"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "renamed.sieve,tmp" {
		t.Fatalf("sieve/ holds %v", names)
	}
	if err := s.Delete("other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Delete missing: %v", err)
	}
	if err := s.SetActive("nothere"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetActive missing: %v", err)
	}
}

// A regular ~/.dovecot.sieve: delivery runs it, nothing is listed active,
// and activation keeps a copy as dovecot.orig, as Pigeonhole does.
func TestRegularActiveFile(t *testing.T) {
	s, home := open(t, Limits{})
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte("discard;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Active(); a != "" || err != nil {
		t.Fatalf("Active = %q, %v", a, err)
	}
	if _, b, ok, err := s.ActiveScript(); !ok || err != nil || string(b) != "discard;\n" {
		t.Fatalf("ActiveScript of a regular file = %q %v %v", b, ok, err)
	}
	if err := s.Put("new", []byte("keep;\n")); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActive("new"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(home, "sieve/dovecot.orig.sieve"))
	if err != nil || string(b) != "discard;\n" {
		t.Fatalf("dovecot.orig.sieve = %q, %v", b, err)
	}
	if a, _ := s.Active(); a != "new" {
		t.Fatalf("Active = %q", a)
	}
}

func TestQuota(t *testing.T) {
	s, _ := open(t, Limits{MaxScripts: 2, MaxStorage: 100, MaxScriptSize: 60})
	var qe *QuotaError
	if err := s.Put("a", make([]byte, 61)); !errors.As(err, &qe) || qe.Kind != QuotaMaxSize {
		t.Fatalf("oversized: %v", err)
	}
	if err := s.Put("a", make([]byte, 50)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("b", make([]byte, 51)); !errors.As(err, &qe) || qe.Kind != QuotaMaxStorage {
		t.Fatalf("storage: %v", err)
	}
	if err := s.Put("a", make([]byte, 60)); err != nil { // replacing does not count twice
		t.Fatal(err)
	}
	if err := s.Put("b", make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.HaveSpace("c", 1); !errors.As(err, &qe) || qe.Kind != QuotaMaxScripts || qe.Limit != 2 {
		t.Fatalf("count: %v", err)
	}
}

// The home is the user's: links out of it are not followed.
func TestHostileHome(t *testing.T) {
	s, home := open(t, Limits{})
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret.sieve"), []byte("secret"), 0o600)
	if err := os.Symlink(outside, filepath.Join(home, "sieve")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get("secret"); err == nil {
		t.Fatal("read through a link out of the home")
	}
	if err := s.Put("x", []byte("keep;")); err == nil {
		t.Fatal("wrote through a link out of the home")
	}
	if _, err := os.Stat(filepath.Join(outside, "x.sieve")); err == nil {
		t.Fatal("a file was created outside the home")
	}
	os.Remove(filepath.Join(home, "sieve"))
	// A script that is a link, even inside the home, is not read.
	os.Mkdir(filepath.Join(home, "sieve"), 0o700)
	os.WriteFile(filepath.Join(home, "private"), []byte("private"), 0o600)
	os.Symlink("../private", filepath.Join(home, "sieve/link.sieve"))
	if _, err := s.Get("link"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a link: %v", err)
	}
	// An active link pointing elsewhere is no active script.
	os.Symlink("/etc/passwd", filepath.Join(home, ".dovecot.sieve"))
	if _, _, ok, err := s.ActiveScript(); ok || err != nil {
		t.Fatalf("ActiveScript through a foreign link: %v %v", ok, err)
	}
	os.Remove(filepath.Join(home, ".dovecot.sieve"))
	os.Symlink(filepath.Join(home, "sieve/x.sieve"), filepath.Join(home, ".dovecot.sieve")) // absolute, into the storage
	if a, _ := s.Active(); a != "x" {
		t.Fatalf("absolute link: active %q", a)
	}
	if _, err := Open(filepath.Join(home, "../elsewhere"), Options{Base: home}); err == nil {
		t.Fatal("home outside Base opened")
	}
}

func TestReadActive(t *testing.T) {
	s, home := open(t, Limits{})
	if _, _, ok, err := ReadActive(filepath.Join(home, "nothere"), Options{}); ok || err != nil {
		t.Fatalf("missing home: %v %v", ok, err)
	}
	if _, _, ok, err := ReadActive(home, Options{}); ok || err != nil {
		t.Fatalf("no script: %v %v", ok, err)
	}
	s.Put("f", []byte("stop;\n"))
	s.SetActive("f")
	name, b, ok, err := ReadActive(home, Options{Base: filepath.Dir(home)})
	if !ok || err != nil || name != "f" || string(b) != "stop;\n" {
		t.Fatalf("ReadActive = %q %q %v %v", name, b, ok, err)
	}
	if _, _, _, err := ReadActive(home, Options{Limits: Limits{MaxScriptSize: 3}}); !errors.Is(err, ErrTooBig) {
		t.Fatalf("over the size limit: %v", err)
	}
}

// What a crashed writer left in tmp/ goes after 36 hours, as in Pigeonhole.
func TestStaleTmp(t *testing.T) {
	s, home := open(t, Limits{})
	s.Put("a", []byte("keep;"))
	old, fresh := filepath.Join(home, "sieve/tmp/old"), filepath.Join(home, "sieve/tmp/fresh")
	os.WriteFile(old, nil, 0o600)
	os.WriteFile(fresh, nil, 0o600)
	long := time.Now().Add(-37 * time.Hour)
	os.Chtimes(old, long, long)
	s.Put("a", []byte("stop;"))
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("stale file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("recent file removed: %v", err)
	}
}

// An entry whose homeDirectory is another user's home, or a place inside
// it, gets ErrNotUsable: Pigeonhole, working as that uid, would get EACCES.
func TestAnotherUsersHome(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give directories owners")
	}
	base := t.TempDir()
	home := filepath.Join(base, "alice")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 20001, 20000); err != nil {
		t.Fatal(err)
	}
	evil := Owner{UID: 20099, GID: 20000, Chown: true}
	for _, h := range []string{home, filepath.Join(home, "inner")} {
		s, err := Open(h, Options{Base: base, CreateHome: true, Owner: evil})
		if !errors.Is(err, ErrNotUsable) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Open(%s) as uid 20099: %v, want ErrNotUsable", h, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(home, "inner")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a home was made inside alice's: %v", err)
	}
	s, err := Open(home, Options{Base: base, Owner: Owner{UID: 20001, GID: 20000, Chown: true}})
	if err != nil {
		t.Fatalf("alice: %v", err)
	}
	s.Close()
}
