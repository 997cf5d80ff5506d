package maildirsize

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const dovecotIMAP = "/usr/lib/dovecot/imap"

// TestDovecotSharesMaildirsize: Dovecot 2.3's maildir++ quota reads the
// maildirsize we keep (a line of ours shows in its GETQUOTAROOT), and the
// line it appends for an APPEND shows in our next Read: switching between
// courriel and Dovecot keeps one count.
func TestDovecotSharesMaildirsize(t *testing.T) {
	for _, why := range []string{dovecotMissing(), notRoot()} {
		if why == "" {
			continue
		}
		if os.Getenv("CI") == "true" { // scripts/test installs it and runs as root
			t.Fatal(why)
		}
		t.Skip(why)
	}
	root, dir := newMaildir(t, map[string]string{"new/1.M1.h,S=2048,W=2100": strings.Repeat("x", 2048)})
	lim := Limits{Bytes: 10 << 20}
	if _, err := Read(root, lim, Owner{-1, -1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	// One megabyte that is only in our file: Dovecot counts it only if it
	// reads the file rather than the folders.
	if err := Add(root, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	out := runDovecot(t, dir, "a GETQUOTAROOT INBOX\r\nb APPEND INBOX {11}\r\nfrom Dovec\r\nc LOGOUT\r\n")
	m := regexp.MustCompile(`\* QUOTA "User quota" \(STORAGE (\d+) (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no QUOTA in Dovecot's answer:\n%s", out)
	}
	if used, _ := strconv.Atoi(m[1]); used != (2048+1<<20)/1024 || m[2] != strconv.Itoa(10<<10) {
		t.Errorf("Dovecot sees STORAGE %s %s, want %d KiB of %d KiB", m[1], m[2], (2048+1<<20)/1024, 10<<10)
	}
	if !strings.Contains(out, "b OK") {
		t.Fatalf("Dovecot's APPEND failed:\n%s", out)
	}
	u, err := Read(root, lim, Owner{-1, -1}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if u.Messages != 3 || u.Bytes <= 2048+1<<20 {
		b, _ := os.ReadFile(filepath.Join(dir, FileName))
		t.Errorf("after Dovecot's APPEND we read %+v from %q", u, b)
	}
}

func dovecotMissing() string {
	if _, err := os.Stat(dovecotIMAP); err != nil {
		return "Dovecot is not installed"
	}
	return ""
}

func notRoot() string {
	if os.Getuid() != 0 {
		return "running Dovecot as another user needs root"
	}
	return ""
}

// runDovecot runs Dovecot's imap binary pre-authenticated on maildir with
// its maildir++ quota (10 MiB, the limit of our file), as nobody.
func runDovecot(t *testing.T, maildir, script string) string {
	t.Helper()
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`ssl = no
mail_location = maildir:%s
log_path = /dev/stderr
mail_uid = 65534
mail_gid = 65534
first_valid_uid = 0
first_valid_gid = 0
mail_plugins = quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = maildir:User quota
  quota_rule = *:storage=10M
}
`, maildir)), 0o644)
	os.Chmod(confDir, 0o755)
	for p := maildir; p != "/" && p != "."; p = filepath.Dir(p) {
		os.Chmod(p, 0o755) // nobody walks down to the maildir
		if strings.Count(p, "/") <= 2 {
			break
		}
	}
	exec.Command("chown", "-R", "65534:65534", maildir).Run()
	cmd := exec.Command(dovecotIMAP, "-c", conf)
	cmd.Env = []string{"USER=alice", "HOME=" + maildir}
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dovecot imap: %v\n%s", err, out)
	}
	return string(out)
}
