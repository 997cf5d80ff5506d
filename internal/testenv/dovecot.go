package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// DovecotIMAP is Debian's Dovecot imap binary (package dovecot-imapd), the
// reference for what courriel writes into maildirs.
const DovecotIMAP = "/usr/lib/dovecot/imap"

// NeedDovecot skips a test (fails it with CI=true, where scripts/test
// installs Dovecot and runs as root) when Dovecot's imap binary cannot be
// run as another user.
func NeedDovecot(t testing.TB) {
	t.Helper()
	why := ""
	if _, err := os.Stat(DovecotIMAP); err != nil {
		why = "Dovecot is not installed (apt-get install dovecot-imapd)"
	} else if os.Getuid() != 0 {
		why = "running Dovecot as another user needs root"
	}
	if why != "" {
		skipOrFail(t, fmt.Errorf("%s", why))
	}
}

// RunDovecot runs Dovecot's imap binary pre-authenticated on maildir, as
// nobody (Dovecot refuses root), with extraConf appended to its
// configuration, feeds it script and returns what it answered. The maildir
// and the directories down to it are made reachable by nobody.
func RunDovecot(t testing.TB, maildir, extraConf, script string) string {
	t.Helper()
	cmd := DovecotCommand(t, maildir, extraConf)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dovecot imap: %v\n%s", err, out)
	}
	return string(out)
}

// DovecotCommand is RunDovecot's command, not started: for a test that
// runs Dovecot sessions while it works on the maildir itself (its own
// files must then be nobody's too: mailstore.Owner).
func DovecotCommand(t testing.TB, maildir, extraConf string) *exec.Cmd {
	t.Helper()
	confDir := t.TempDir()
	conf := filepath.Join(confDir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("ssl = no\nmail_location = maildir:%s\nlog_path = /dev/stderr\n"+
		"mail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n%s", maildir, extraConf)), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(confDir, 0o755)
	for d := filepath.Dir(maildir); d != "/" && d != os.TempDir() && d != "."; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	exec.Command("chown", "-R", "65534:65534", maildir).Run()
	cmd := exec.Command(DovecotIMAP, "-c", conf)
	cmd.Env = []string{"USER=alice", "HOME=" + maildir}
	return cmd
}
