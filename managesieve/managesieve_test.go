package managesieve

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func need(t *testing.T, prog string) string {
	t.Helper()
	p, err := exec.LookPath(prog)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed", prog)
		}
		t.Skipf("%s is not installed", prog)
	}
	return p
}

// sieve-connect (Debian's client) does what a user does: upload, check,
// activate, list, download, delete; the files are Pigeonhole's, and
// Pigeonhole's sieve-test runs the stored script.
func TestSieveConnect(t *testing.T) {
	need(t, "sieve-connect")
	e := newEnv(t, nil)
	u := e.user(t, "alice")
	host, port, _ := strings.Cut(e.addr, ":")
	work := t.TempDir()
	local := filepath.Join(work, "filter.sieve")
	script := "require [\"fileinto\"];\r\nif header :contains \"subject\" \"invoice\" {\r\n  fileinto \"Invoices\";\r\n}\r\n"
	if err := os.WriteFile(local, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	try := func(args ...string) (string, error) {
		t.Helper()
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		pw.WriteString(u.Password + "\n")
		pw.Close()
		defer pr.Close()
		cmd := exec.Command("sieve-connect", append([]string{"--server", host, "--port", port, "--user", u.Login,
			"--passwordfd", "3", "--tlscafile", e.ca.CertFile(), "--tlshostname", "localhost"}, args...)...)
		cmd.ExtraFiles = []*os.File{pr}
		cmd.Dir = work
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := try(args...)
		if err != nil {
			t.Fatalf("sieve-connect %v: %v\n%s", args, err, out)
		}
		return out
	}
	run("--checkscript", "--localsieve", local)
	run("--upload", "--localsieve", local, "--remotesieve", "filter")
	run("--activate", "--remotesieve", "filter")
	if out := run("--list"); !strings.Contains(out, `"filter" ACTIVE`) {
		t.Fatalf("list: %s", out)
	}
	down := filepath.Join(work, "down.sieve")
	run("--download", "--remotesieve", "filter", "--localsieve", down)
	if b, _ := os.ReadFile(down); string(b) != script {
		t.Fatalf("downloaded %q, want %q", b, script)
	}

	// On disk, as Pigeonhole lays it out.
	home := u.Home
	target, err := os.Readlink(filepath.Join(home, ".dovecot.sieve"))
	if err != nil || target != "sieve/filter.sieve" {
		t.Fatalf("~/.dovecot.sieve -> %q, %v", target, err)
	}
	for p, mode := range map[string]os.FileMode{"sieve": os.ModeDir | 0o700, "sieve/tmp": os.ModeDir | 0o700, "sieve/filter.sieve": 0o600, ".dovecot.sieve": os.ModeSymlink | 0o777} {
		fi, err := os.Lstat(filepath.Join(home, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
		if os.Geteuid() == 0 {
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != u.UID || int(st.Gid) != u.GID {
				t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, u.UID, u.GID)
			}
		}
	}
	if b, _ := os.ReadFile(filepath.Join(home, "sieve/filter.sieve")); string(b) != script {
		t.Fatalf("stored %q", b)
	}
	sieveTestReads(t, u.UID, u.GID, filepath.Join(home, ".dovecot.sieve"), "Subject: your invoice\r\n\r\nhi\r\n", "Invoices")

	// The main script before its part: stored with Pigeonhole's warning,
	// activated once the part is there. sieve-connect 0.90 takes the
	// OK (WARNINGS) literal (Pigeonhole's, byte for byte) for a failure and
	// exits 1, though the script is stored.
	mainSrc := filepath.Join(work, "main.sieve")
	os.WriteFile(mainSrc, []byte("require \"include\";\r\ninclude \"part\";\r\n"), 0o644)
	if out, _ := try("--upload", "--localsieve", mainSrc, "--remotesieve", "main"); !strings.Contains(out, "OK (WARNINGS)") ||
		!strings.Contains(out, "main: line 2: warning: included personal script 'part' does not exist (ignored during upload).") {
		t.Fatalf("upload without its part: %s", out)
	}
	if out := run("--list"); !strings.Contains(out, `"main"`) {
		t.Fatalf("main not stored: %s", out)
	}
	if out, err := try("--activate", "--remotesieve", "main"); err == nil || !strings.Contains(out, "included personal script 'part' does not exist") {
		t.Fatalf("activating without its part: %v\n%s", err, out)
	}
	run("--upload", "--localsieve", local, "--remotesieve", "part")
	run("--activate", "--remotesieve", "main")
	run("--activate", "--remotesieve", "filter")
	run("--delete", "--remotesieve", "main")
	run("--delete", "--remotesieve", "part")

	if out, err := try("--delete", "--remotesieve", "filter"); err == nil || !strings.Contains(out, "Cannot delete the active Sieve script") {
		t.Fatalf("deleting the active script: %v\n%s", err, out)
	}
	run("--deactivate")
	run("--delete", "--remotesieve", "filter")
	if _, err := os.Stat(filepath.Join(home, "sieve/filter.sieve")); !os.IsNotExist(err) {
		t.Fatalf("script still there: %v", err)
	}
	if out := run("--list"); strings.Contains(out, "filter") {
		t.Fatalf("list after delete: %s", out)
	}
}

// sieveTestReads runs Pigeonhole's sieve-test as the user (uid, gid) on
// a script path and a message and checks it would file into folder.
func sieveTestReads(t *testing.T, uid, gid int, path, msg, folder string) {
	t.Helper()
	st := need(t, "sieve-test")
	if os.Getuid() != 0 {
		uid, gid = os.Getuid(), os.Getgid()
	}
	// The user must reach its home, as Dovecot's LDA does.
	for d := filepath.Dir(path); d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o011 == 0 && d != filepath.Dir(path) {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
	dir, err := os.MkdirTemp("", "sieve-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	mf := filepath.Join(dir, "msg.eml")
	os.WriteFile(mf, []byte(msg), 0o644)
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("mail_uid = %d\nmail_gid = %d\nfirst_valid_uid = 0\nfirst_valid_gid = 0\nmail_location = maildir:%s/mail\n", uid, gid, dir)), 0o644)
	out, err := exec.Command(st, "-c", conf, path, mf).CombinedOutput()
	if err != nil {
		t.Fatalf("sieve-test: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "store message in folder: "+folder) {
		t.Fatalf("sieve-test does not file into %s:\n%s", folder, out)
	}
}
