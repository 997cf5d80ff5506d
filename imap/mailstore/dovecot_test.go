package mailstore

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const dovecotIMAP = "/usr/lib/dovecot/imap"

// needDovecot skips (fails in CI) when Dovecot's imap binary cannot be run
// as another user.
func needDovecot(t *testing.T) {
	t.Helper()
	why := ""
	if _, err := os.Stat(dovecotIMAP); err != nil {
		why = "Dovecot is not installed"
	} else if os.Getuid() != 0 {
		why = "running Dovecot as another user needs root"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// runDovecot runs Dovecot's imap binary pre-authenticated on maildir, as
// nobody (Dovecot refuses root), and returns its output.
func runDovecot(t *testing.T, maildir, script string) string {
	t.Helper()
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("ssl = no\nmail_location = maildir:%s\nlog_path = /dev/stderr\n"+
		"mail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n", maildir)), 0o644)
	os.Chmod(confDir, 0o755)
	for d := maildir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
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

// Dovecot and courriel share the UIDVALIDITY counter: a folder Dovecot
// creates after one of ours gets the next value, and ours after Dovecot's
// the one after that; each sees the other's folder with its UIDVALIDITY.
func TestDovecotSharesUIDValidityCounter(t *testing.T) {
	needDovecot(t)
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	if err := st.Create("Ours"); err != nil {
		t.Fatal(err)
	}
	mb, err := reg.Open(st, "Ours")
	if err != nil {
		t.Fatal(err)
	}
	ours := mb.UIDValidity()
	mb.Release()

	out := runDovecot(t, st.Path(), "a CREATE Theirs\r\nb STATUS Theirs (UIDVALIDITY)\r\n"+
		"c STATUS Ours (UIDVALIDITY)\r\nd LOGOUT\r\n")
	if !strings.Contains(out, fmt.Sprintf("STATUS Ours (UIDVALIDITY %d)", ours)) {
		t.Errorf("Dovecot sees another UIDVALIDITY for our folder (want %d):\n%s", ours, out)
	}
	m := regexp.MustCompile(`STATUS Theirs \(UIDVALIDITY (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no STATUS for Dovecot's folder:\n%s", out)
	}
	theirs, _ := strconv.ParseUint(m[1], 10, 32)
	if uint32(theirs) != ours+1 {
		t.Errorf("Dovecot's folder got UIDVALIDITY %d, want %d (the counter after ours)", theirs, ours+1)
	}

	reg = NewRegistry()
	mb, err = reg.Open(st, "Theirs")
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.UIDValidity(); uint64(got) != theirs {
		t.Errorf("courriel reads Dovecot's folder with UIDVALIDITY %d, want %d", got, theirs)
	}
	mb.Release()
	if err := st.Create("Ours2"); err != nil {
		t.Fatal(err)
	}
	mb, err = reg.Open(st, "Ours2")
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.UIDValidity(); uint64(got) <= theirs {
		t.Errorf("our next folder got UIDVALIDITY %d, not above Dovecot's %d", got, theirs)
	}
	mb.Release()
}
