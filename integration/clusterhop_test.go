package integration

import (
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// clusterProc is one courriel serve process of a two-node cluster
// (listeners smtp and cluster, and the control socket).
type clusterProc struct {
	*server
	name string
	smtp string
	hop  string
}

func startClusterPair(t *testing.T) (a, b *clusterProc, s *testenv.Slapd, vmail string) {
	t.Helper()
	dir := t.TempDir()
	vmail = filepath.Join(dir, "vmail")
	if err := os.MkdirAll(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	s = testenv.StartSlapd(t, testenv.WithHomeBase(vmail))
	for uid, node := range map[string]string{"xomail": "a", "alice": "b", "bob": "b"} {
		s.Modify(t, "dn: uid="+uid+",ou=mail,dc=xoyize,dc=xyz\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: "+node+"\n")
	}
	secret := filepath.Join(dir, "cluster.secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-integration\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "localhost", "127.0.0.1")
	ports := testenv.FreePorts(t, 4)
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	nodes := fmt.Sprintf(`[cluster.nodes.a]
smtp = %q
imap = "127.0.0.1:1"
[cluster.nodes.b]
smtp = %q
imap = "127.0.0.1:1"
`, addr(1), addr(3))
	mk := func(name string, smtpAddr, hopAddr string) *clusterProc {
		cfg := fmt.Sprintf(`myhostname = "%s.xoyize.xyz"
mailbox_domains = ["xoyize.xyz"]
log_level = "debug"
[listen]
local = ""
smtp = %q
submission = ""
submissions = ""
imaps = ""
imap = ""
managesieve = ""
http = ""
cluster = %q
[tls]
cert_file = %q
key_file = %q
[ldap]
urls = [%q]
start_tls = true
ca_file = %q
bind_dn = %q
bind_password = %q
search_base = %q
auth_bind_userdn = "uid=%%u,%s"
cache_ttl = "1s"
negative_cache_ttl = "1s"
[delivery]
maildir_base = %q
[queue]
dir = %q
[cluster]
node = %q
secret_file = %q
%s[mailauth]
inbound_checks = false
`, name, smtpAddr, hopAddr, cert, key, s.URL(), s.CAFile(), s.ReaderDN(), s.ReaderPassword(), s.MailBase(), s.MailBase(),
			vmail, filepath.Join(dir, "queue-"+name), name, secret, nodes)
		p := &clusterProc{server: &server{t: t, config: filepath.Join(dir, name+".toml"), bin: binary, wantListeners: 3},
			name: name, smtp: smtpAddr, hop: hopAddr}
		if err := os.WriteFile(p.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		p.start()
		t.Cleanup(func() {
			p.stop(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("node %s log:\n%s", name, p.logs())
			}
		})
		return p
	}
	return mk("a", addr(0), addr(1)), mk("b", addr(2), addr(3)), s, vmail
}

func sendTo(server, to, subject string) error {
	c, err := smtp.Dial(server)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("sender@example.net"); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: sender@example.net\r\nSubject: %s\r\nMessage-Id: <%s@example.net>\r\n\r\nbody %s\r\n", subject, subject, subject)
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// SIGKILL of the home node under SMTP load: the front node keeps answering
// 250 (queued, fsynced), and once the home node is back (and the queue
// flushed instead of waiting for the 45 s retry) every message is in the
// user's maildir, stored by the home node, exactly once.
func TestClusterHomeNodeKilled(t *testing.T) {
	a, b, _, vmail := startClusterPair(t)
	const total, killAt = 40, 12
	for i := range total {
		if i == killAt {
			b.stop(syscall.SIGKILL)
		}
		if err := sendTo(a.smtp, "bob@xoyize.xyz", fmt.Sprintf("load%d", i)); err != nil {
			t.Fatalf("message %d (b killed after %d): %v", i, killAt, err)
		}
	}
	md := filepath.Join(vmail, "bob", "mailbox", "new")
	count := func() (map[string]int, int) {
		ents, _ := os.ReadDir(md)
		seen := map[string]int{}
		for _, e := range ents {
			if !strings.Contains(e.Name(), ".b.xoyize.xyz") {
				t.Errorf("copy %s not stored by node b", e.Name())
			}
			body, err := os.ReadFile(filepath.Join(md, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			_, rest, _ := strings.Cut(string(body), "\nSubject: ")
			subj, _, _ := strings.Cut(rest, "\n")
			seen[strings.TrimSpace(subj)]++
		}
		return seen, len(ents)
	}
	_, before := count()
	if before > killAt {
		t.Errorf("%d copies stored while b was dead after %d", before, killAt)
	}
	t.Logf("b killed after %d messages: %d stored before the kill, %d copies deferred at a", killAt, before, strings.Count(a.logs(), "dsn=4."))
	b.start()
	if out, err := exec.Command(binary, "queue", "-config", a.config, "flush").CombinedOutput(); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, n := count(); n >= total {
			break
		}
		if time.Now().After(deadline) {
			seen, n := count()
			t.Fatalf("%d of %d copies after b came back: %v", n, total, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("b back: %d copies in bob's maildir after the flush", total)
	time.Sleep(500 * time.Millisecond) // a duplicate would be here by now
	seen, n := count()
	if n != total || len(seen) != total {
		t.Errorf("%d files, %d distinct messages; want %d each: %v", n, len(seen), total, seen)
	}
	for s, c := range seen {
		if c != 1 {
			t.Errorf("%s stored %d times", s, c)
		}
	}
	out, err := exec.Command(binary, "queue", "-config", a.config, "list").CombinedOutput()
	if err != nil || strings.Contains(string(out), "bob@") {
		t.Errorf("a's queue after the drain: %v\n%s", err, out)
	}
}

// SIGKILL of the front node holding node copies (the home node down):
// after its restart and the home node's return, each copy arrives once.
func TestClusterFrontNodeKilled(t *testing.T) {
	a, b, _, vmail := startClusterPair(t)
	b.stop(syscall.SIGKILL)
	const total = 10
	for i := range total {
		if err := sendTo(a.smtp, "alice@xoyize.xyz", fmt.Sprintf("held%d", i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	a.stop(syscall.SIGKILL)
	a.start()
	b.start()
	if out, err := exec.Command(binary, "queue", "-config", a.config, "flush").CombinedOutput(); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	md := filepath.Join(vmail, "alice", "mailbox", "new")
	deadline := time.Now().Add(60 * time.Second)
	for {
		ents, _ := os.ReadDir(md)
		if len(ents) >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d copies after the restart", len(ents), total)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	ents, _ := os.ReadDir(md)
	seen := map[string]bool{}
	for _, e := range ents {
		body, err := os.ReadFile(filepath.Join(md, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(body), "\nSubject: ")
		subj, _, _ := strings.Cut(rest, "\n")
		seen[strings.TrimSpace(subj)] = true
	}
	if len(ents) != total || len(seen) != total {
		t.Errorf("%d files, %d distinct; want %d", len(ents), len(seen), total)
	}
}
