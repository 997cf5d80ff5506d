package testenv

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Postfix is a Postfix instance in the seed's setup (virtual alias and
// mailbox domains from LDAP maps, maildirs under the slapd fixture's home
// base), listening for SMTP on a loopback port. It exists to measure
// courriel beside the system it replaces, in one run.
type Postfix struct {
	Addr  string // host:port of its smtpd
	conf  string
	spool string
}

// StartPostfix starts a Postfix instance against s (which must have been
// started WithHomeBase, the directory Postfix delivers under; the users'
// uids must be able to reach it: see PublicTempDir). It needs root and
// Debian's postfix and postfix-ldap packages.
func StartPostfix(t testing.TB, s *Slapd) *Postfix {
	t.Helper()
	if _, err := os.Stat("/usr/lib/postfix/postfix-ldap.so"); err != nil {
		skipOrFail(t, fmt.Errorf("postfix with LDAP maps is not installed (apt-get install postfix postfix-ldap): %w", err))
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, fmt.Errorf("a Postfix instance needs root"))
	}
	// Not t.TempDir: its parent is private to root, and Postfix's daemons
	// run as the postfix user.
	dir, err := os.MkdirTemp("", "courriel-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "etc")
	for _, d := range []string{conf, filepath.Join(conf, "ldap")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))

	// The CA file must be readable by the postfix user.
	ca, err := os.ReadFile(s.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(conf, "ldap-ca.pem")
	if err := os.WriteFile(caFile, ca, 0o644); err != nil {
		t.Fatal(err)
	}
	common := fmt.Sprintf(`server_host = %s
start_tls = yes
version = 3
tls_ca_cert_file = %s
tls_require_cert = yes
bind = yes
bind_dn = %s
bind_pw = %s
search_base = %s
scope = sub
`, s.URL(), caFile, s.ReaderDN(), s.ReaderPassword(), s.MailBase())
	maps := map[string]string{ // the seed's maps, verbatim
		"virtual_alias_domains":   "query_filter = mailacceptinggeneralid=*@%s\nresult_attribute = mailacceptinggeneralid\nresult_format = %d\n",
		"virtual_alias_maps":      "query_filter = mailacceptinggeneralid=%s\nresult_attribute = maildrop\n",
		"virtual_mailbox_maps":    "query_filter = maildrop=%s\nresult_attribute = homeDirectory\nresult_format = %s/mailbox/\n",
		"virtual_uid_maps":        "query_filter = maildrop=%s\nresult_attribute = uidNumber\n",
		"smtpd_sender_login_maps": "query_filter = (|(mailacceptinggeneralid=%s)(maildrop=%s))\nresult_attribute = uid\n",
	}
	for name, q := range maps {
		if err := os.WriteFile(filepath.Join(conf, "ldap", name), []byte(common+q), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ldap := func(n string) string { return "ldap:" + filepath.Join(conf, "ldap", n) }
	// The fixture's bob@xoyize.xyz maps to itself, which puts myhostname
	// among the alias domains too: the seed says to list a domain once,
	// so it is excluded there.
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
myhostname = xoyize.xyz
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
queue_directory = %s
data_directory = %s
mail_owner = postfix
setgid_group = postdrop
maillog_file = %s
maillog_file_prefixes = %s
smtputf8_enable = no
biff = no
alias_maps =
alias_database =
virtual_alias_domains = !$myhostname, %s
virtual_mailbox_domains = $myhostname
virtual_alias_maps = %s
virtual_mailbox_base = /
virtual_mailbox_maps = %s
virtual_uid_maps = %s
virtual_gid_maps = %s
virtual_minimum_uid = 1000
smtpd_sender_login_maps = %s
alternate_config_directories = %s
`, filepath.Join(dir, "spool"), filepath.Join(dir, "data"), filepath.Join(dir, "maillog"), dir,
		ldap("virtual_alias_domains"), ldap("virtual_alias_maps"), ldap("virtual_mailbox_maps"),
		ldap("virtual_uid_maps"), ldap("virtual_uid_maps"), ldap("smtpd_sender_login_maps"), conf)
	if err := os.WriteFile(filepath.Join(conf, "main.cf"), []byte(mainCF), 0o644); err != nil {
		t.Fatal(err)
	}
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	// Our smtpd on the chosen port; no chroot, so that the LDAP CA file
	// and the log file need no copies inside the spool.
	var out []string
	for _, line := range strings.Split(string(master), "\n") {
		f := strings.Fields(line)
		if len(f) >= 8 && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, " ") {
			if f[0] == "smtp" && f[1] == "inet" {
				f[0] = addr
			}
			f[4] = "n"
			line = strings.Join(f, "\t")
		}
		out = append(out, line)
	}
	if err := os.WriteFile(filepath.Join(conf, "master.cf"), []byte(strings.Join(out, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "spool"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "postfix", data).CombinedOutput(); err != nil {
		t.Fatalf("chown postfix %s: %v %s", data, err, out)
	}
	// virtual(8) creates the maildir but not the home above it, which the
	// admin of the seed's setup makes for each user.
	for _, u := range s.Users() {
		if err := os.MkdirAll(u.Home, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(u.Home, u.UID, u.GID); err != nil {
			t.Fatal(err)
		}
	}
	p := &Postfix{Addr: addr, conf: conf, spool: filepath.Join(dir, "spool")}
	if out, err := p.run("check"); err != nil {
		t.Fatalf("postfix check: %v\n%s\n%s", err, out, p.log())
	}
	if out, err := p.run("start"); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, p.log())
	}
	t.Cleanup(func() { p.run("stop") })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix does not listen on %s: %v\n%s", addr, err, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PublicTempDir is a temporary directory that other users may traverse
// (mode 0755, under the system's temporary directory), removed when the
// test ends: a home base for processes that drop root, as Postfix's
// virtual(8) does.
func PublicTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "courriel-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (p *Postfix) run(verb string) ([]byte, error) {
	// Postfix writes its reasons to stderr only when that is a terminal
	// (syslog otherwise): script gives it one, and returns its status.
	cmd := exec.Command("script", "-qec", "/usr/sbin/postfix -c "+p.conf+" "+verb, "/dev/null")
	cmd.Env = append(os.Environ(), "MAIL_CONFIG="+p.conf)
	return cmd.CombinedOutput()
}

// log returns Postfix's log so far (maillog_file).
func (p *Postfix) log() string {
	b, _ := os.ReadFile(filepath.Join(filepath.Dir(p.conf), "maillog"))
	return string(b)
}

// CPU is the processor time Postfix's processes have used so far: the
// master's, its live daemons' and that of daemons it has reaped.
func (p *Postfix) CPU() time.Duration {
	b, err := os.ReadFile(filepath.Join(p.spool, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	master := strings.TrimSpace(string(b))
	var total int64
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range procs {
		stat, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 15 {
			continue
		}
		pid := filepath.Base(filepath.Dir(path))
		// f[1] is the parent pid; f[11..14] utime, stime, cutime, cstime.
		if pid != master && f[1] != master {
			continue
		}
		n := 2
		if pid == master {
			n = 4
		}
		for _, v := range f[11 : 11+n] {
			x, _ := strconv.ParseInt(v, 10, 64)
			total += x
		}
	}
	return time.Duration(total) * 10 * time.Millisecond // USER_HZ = 100
}

// Log is Postfix's log so far.
func (p *Postfix) Log() string { return p.log() }

// Queued counts the messages in Postfix's queue (maildrop, incoming,
// active, deferred, hold): 0 once it has delivered (or bounced) all it
// accepted. Cheaper to poll than a listing of a large maildir, which would
// take the processor from Postfix's delivery agents while it is measured.
func (p *Postfix) Queued() int {
	n := 0
	for _, q := range []string{"maildrop", "incoming", "active", "deferred", "hold"} {
		filepath.WalkDir(filepath.Join(p.spool, q), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
	}
	return n
}
