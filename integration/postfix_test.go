package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// postfix is a private Postfix instance (Debian's postfix 3.7, its own
// config_directory and queue in a temp dir) on a loopback port, delivering
// hosted-domain.com to one maildir with virtual(8): the yardstick for the
// milter benchmark. Root only (Postfix's master runs as root).
type postfix struct {
	SMTP  string
	conf  string
	vmail string
}

// startPostfix starts the instance with smtpd_milters = milters ("" for
// none); it skips when Postfix is missing or we are not root.
func startPostfix(tb testing.TB, milters string) *postfix {
	tb.Helper()
	if !postfixAvailable() {
		tb.Skip("a private Postfix instance needs postfix and root")
	}
	dir := tb.TempDir()
	p := &postfix{conf: filepath.Join(dir, "conf"), vmail: filepath.Join(dir, "vmail")}
	p.SMTP = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(tb))
	for _, d := range []string{p.conf, p.vmail, filepath.Join(dir, "spool"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	// The TempDir's parents must let the postfix user through.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chown(p.vmail, 20000, 20000)
	if err := exec.Command("chown", "postfix", filepath.Join(dir, "data")).Run(); err != nil {
		tb.Fatal(err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = hosted-domain.com
virtual_mailbox_base = %[2]s
virtual_mailbox_maps = static:xomail/mailbox/
virtual_uid_maps = static:20000
virtual_gid_maps = static:20000
smtpd_milters = %[3]s
milter_default_action = tempfail
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtputf8_enable = no
biff = no
alias_maps =
alias_database =
`, dir, p.vmail, milters)
	master, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		tb.Fatal(err)
	}
	masterCF := regexp.MustCompile(`(?m)^smtp +inet .*$`).ReplaceAllString(string(master),
		p.SMTP+" inet n - n - - smtpd")
	if err := os.WriteFile(filepath.Join(p.conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.conf, "master.cf"), []byte(masterCF), 0o644); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("postfix", "-c", p.conf, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "maillog"))
		tb.Fatalf("postfix start: %v\n%s\n%s", err, out, log)
	}
	tb.Cleanup(func() {
		exec.Command("postfix", "-c", p.conf, "stop").Run()
		// master exits once its children have: wait (bounded) for the port.
		for range 200 {
			c, err := net.DialTimeout("tcp", p.SMTP, 100*time.Millisecond)
			if err != nil {
				return
			}
			c.Close()
			time.Sleep(50 * time.Millisecond)
		}
	})
	for range 200 {
		c, err := net.DialTimeout("tcp", p.SMTP, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("postfix did not listen")
	return nil
}

func postfixAvailable() bool {
	_, err := exec.LookPath("postfix")
	return err == nil && os.Geteuid() == 0
}

// delivered counts the messages in the maildir's new/.
func (p *postfix) delivered() int {
	ents, _ := os.ReadDir(filepath.Join(p.vmail, "xomail", "mailbox", "new"))
	return len(ents)
}

// waitDelivered waits (bounded) until n messages are in new/ (Postfix
// answers 250 once its queue file is safe; delivery follows).
func (p *postfix) waitDelivered(n int) bool {
	for range 1200 {
		if p.delivered() >= n {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// anyMessage returns one delivered message.
func (p *postfix) anyMessage() string {
	dir := filepath.Join(p.vmail, "xomail", "mailbox", "new")
	ents, _ := os.ReadDir(dir)
	if len(ents) == 0 {
		return ""
	}
	b, _ := os.ReadFile(filepath.Join(dir, ents[len(ents)-1].Name()))
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}
