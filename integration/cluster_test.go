package integration

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"courriel/internal/testenv"
)

// clusterNode is one courriel node of a two-node cluster. Both nodes see
// the users' homes at the same path (the directory gives one homeDirectory
// per user), each on its own storage: the node runs in a mount namespace
// where the shared path is a bind mount of Store, as two machines would.
type clusterNode struct {
	*server
	Name  string
	Store string // this node's storage, mounted at the homes' path inside its namespace
	IMAP  string // plain IMAP (the internal hop of IMAP proxying)
	Sieve string // ManageSieve
	Hop   string // listen.cluster
}

// maildir lists the files of a user's folder on this node's storage.
func (n *clusterNode) maildir(t testing.TB, user, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.Store, user, "mailbox", sub))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() {
			out = append(out, filepath.Join(n.Store, user, "mailbox", sub, e.Name()))
		}
	}
	return out
}

// messageIDs counts the messages of a user's INBOX (new and cur) by the
// id send put in their Subject.
func (n *clusterNode) messageIDs(t testing.TB, user string) map[string]int {
	t.Helper()
	ids := map[string]int{}
	for _, sub := range []string{"new", "cur"} {
		for _, f := range n.maildir(t, user, sub) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if m := messageIDRe.FindSubmatch(data); m != nil {
				ids[string(m[1])]++
			}
		}
	}
	return ids
}

var messageIDRe = regexp.MustCompile(`(?m)^Subject: (\S+@cluster\.test)\r?$`)

// cluster is two nodes (A: xomail; B: alice and bob), each on its own
// OpenLDAP consumer of one provider, with HAProxy in front (PROXY v2).
type cluster struct {
	dir    *testenv.Replicated
	second *testenv.Slapd // B's replica
	A, B   *clusterNode
	ha     *haproxy
	ca     *testenv.CA
	homes  string // where the homes are, inside each node's namespace
	secret string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	requireTool(t, "haproxy")
	requireTool(t, "unshare")
	requireTool(t, "swaks")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the cluster test needs root (mount namespaces, maildir owners)")
		}
		t.Skip("needs root")
	}
	top := t.TempDir()
	c := &cluster{homes: filepath.Join(top, "vmail"), ca: testenv.NewCA(t)}
	if err := os.MkdirAll(c.homes, 0o755); err != nil {
		t.Fatal(err)
	}
	c.dir = testenv.StartReplicated(t, testenv.WithHomeBase(c.homes))
	c.second = c.dir.AddConsumer(t)
	for user, node := range map[string]string{"xomail": "a", "alice": "b", "bob": "b"} {
		c.dir.Provider.Modify(t, fmt.Sprintf("dn: uid=%s,%s\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: %s\n", user, testenv.MailBase, node))
	}
	c.dir.WaitInSync(t)

	secret := filepath.Join(top, "cluster.secret")
	c.secret = "cluster-secret-0123456789"
	if err := os.WriteFile(secret, []byte(c.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ports := testenv.FreePorts(t, 12)
	at := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	mk := func(name string, base int, replica *testenv.Slapd) *clusterNode {
		n := &clusterNode{Name: name, Store: filepath.Join(top, "store-"+name)}
		if err := os.MkdirAll(n.Store, 0o755); err != nil {
			t.Fatal(err)
		}
		n.server = &server{t: t, dir: filepath.Join(top, "node-"+name), vmail: n.Store, bin: binary, ca: c.ca}
		n.SMTP, n.Sub, n.IMAPS, n.IMAP, n.Sieve, n.Hop = at(base), at(base+1), at(base+2), at(base+3), at(base+4), at(base+5)
		n.slapd = replica
		return n
	}
	c.A = mk("a", 0, c.dir.Consumer)
	c.B = mk("b", 6, c.second)
	nodes := fmt.Sprintf(`[cluster.nodes.a]
smtp = %q
imap = %q
managesieve = %q
[cluster.nodes.b]
smtp = %q
imap = %q
managesieve = %q
`, c.A.Hop, c.A.IMAP, c.A.Sieve, c.B.Hop, c.B.IMAP, c.B.Sieve)
	cert, key := c.ca.Issue(t, "localhost", "127.0.0.1", "xoyize.xyz")
	for _, n := range []*clusterNode{c.A, c.B} {
		if err := os.MkdirAll(n.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf(`myhostname = "xoyize.xyz"
log_level = "debug"
[listen]
local = ""
smtp = %q
submission = %q
submissions = ""
imaps = %q
imap = %q
managesieve = %q
cluster = %q
[proxy_protocol]
trusted_networks = ["127.0.0.1"]
listeners = ["smtp", "imaps"]
[tls]
cert_file = %q
key_file = %q
[ldap]
urls = [%q]
write_urls = [%q]
write_bind_dn = %q
write_bind_password_file = %q
start_tls = true
ca_file = %q
bind_dn = %q
bind_password = %q
search_base = %q
auth_bind_userdn = "uid=%%u,%s"
cache_ttl = "1h"
negative_cache_ttl = "1h"
[delivery]
maildir_base = %q
[queue]
dir = %q
tls_policy = "verify"
ca_path = %q
[cluster]
node = %q
secret_file = %q
tls = true
ca_file = %q
connect_timeout = "2s"
%s[mailauth]
inbound_checks = false
`, n.SMTP, n.Sub, n.IMAPS, n.IMAP, n.Sieve, n.Hop, cert, key,
			n.slapd.URL(), c.dir.Provider.URL(), testenv.AdminDN, secretFile(t, filepath.Join(top, "admin.pw"), testenv.AdminPassword),
			n.slapd.CAFile(), testenv.ReaderDN, testenv.ReaderPassword, testenv.MailBase, testenv.MailBase,
			c.homes, filepath.Join(n.dir, "queue"), c.ca.CertFile(), n.Name, secret, c.ca.CertFile(), nodes)
		n.config = filepath.Join(n.dir, "config.toml")
		if err := os.WriteFile(n.config, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		n.wantListeners = 7 // and the control socket
		n.wrap = []string{"unshare", "-m", "--propagation", "private", "sh", "-c",
			`mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh", n.Store, c.homes}
		n.start()
		node := n
		t.Cleanup(func() {
			node.stop(syscall.SIGTERM)
			if t.Failed() {
				t.Logf("node %s log:\n%s", node.Name, node.logs())
			}
		})
	}
	opts := "send-proxy-v2 check-send-proxy check inter 200ms fall 2 rise 2 on-marked-down shutdown-sessions"
	c.ha = startHAProxy(t, "  option redispatch\n  retries 2\n  timeout check 1s\n", map[string][]haproxyServer{
		"smtp":   {{"a", c.A.SMTP, opts}, {"b", c.B.SMTP, opts}},
		"smtpA":  {{"a", c.A.SMTP, opts}},
		"smtpB":  {{"b", c.B.SMTP, opts}},
		"imaps":  {{"a", c.A.IMAPS, opts}, {"b", c.B.IMAPS, opts}},
		"imapsA": {{"a", c.A.IMAPS, opts}},
		"imapsB": {{"b", c.B.IMAPS, opts}},
	})
	return c
}

// secretFile writes data to name (mode 0600) and returns name.
func secretFile(t testing.TB, name, data string) string {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

// send submits one message through an HAProxy frontend with swaks and
// returns its output; ok says whether it got 250 at the end of DATA.
func (c *cluster) send(t testing.TB, front, to, msgID string) (string, bool) {
	t.Helper()
	out, _ := exec.Command("swaks", "--server", c.ha.Front[front], "--to", to, "--from", "sender@example.net",
		"--helo", "client.example.net", "--header", "Subject: "+msgID,
		"--body", "cluster test "+msgID, "--timeout", "30").CombinedOutput()
	return string(out), accepted(string(out))
}

// imapLogin logs in through an HAProxy IMAPS frontend.
func (c *cluster) imapLogin(t testing.TB, front, user, pass string, opts *imapclient.Options) (*imapclient.Client, error) {
	t.Helper()
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = &tls.Config{ServerName: "localhost", RootCAs: c.ca.Pool()}
	cl, err := imapclient.DialTLS(c.ha.Front[front], opts)
	if err != nil {
		return nil, err
	}
	if err := cl.Login(user, pass).Wait(); err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// waitUntil polls cond every 100 ms until it holds or limit passes.
func waitUntil(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The cluster of issue 18 end to end: OpenLDAP provider and two replicas,
// two courriel nodes each on its own replica and storage, HAProxy with
// PROXY v2 in front.
func TestCluster(t *testing.T) {
	c := startCluster(t)
	alice := testenv.FixtureUsers(c.homes)[1]
	if alice.Login != "alice" {
		t.Fatalf("fixture order changed: %+v", alice)
	}

	t.Run("mail for B's user arriving at A lands only at B", func(t *testing.T) {
		if out, ok := c.send(t, "smtpA", "alice@example.org", "first@cluster.test"); !ok {
			t.Fatalf("swaks:\n%s", out)
		}
		waitUntil(t, 30*time.Second, "the copy at B", func() bool { return len(c.B.maildir(t, "alice", "new")) == 1 })
		f := c.B.maildir(t, "alice", "new")[0]
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) != alice.UID || int(st.Gid) != alice.GID {
			t.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, alice.UID, alice.GID)
		}
		data, _ := os.ReadFile(f)
		if !strings.Contains(string(data), "Delivered-To: alice@xoyize.xyz") || !strings.Contains(string(data), "first@cluster.test") {
			t.Errorf("the copy at B:\n%s", data)
		}
		if _, err := os.Stat(filepath.Join(c.A.Store, "alice")); !os.IsNotExist(err) {
			t.Errorf("A made a home for alice on its storage: %v", err)
		}
	})

	t.Run("IMAP at A reads B's mailbox and IDLE sees a delivery", func(t *testing.T) {
		exists := make(chan uint32, 16)
		cl, err := c.imapLogin(t, "imapsA", "alice", testenv.AlicePassword, &imapclient.Options{
			UnilateralDataHandler: &imapclient.UnilateralDataHandler{Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		sel, err := cl.Select("INBOX", nil).Wait()
		if err != nil || sel.NumMessages != 1 {
			t.Fatalf("SELECT through A: %+v %v", sel, err)
		}
		idle, err := cl.Idle()
		if err != nil {
			t.Fatal(err)
		}
		if out, ok := c.send(t, "smtpB", "alice@example.org", "idle@cluster.test"); !ok {
			t.Fatalf("swaks:\n%s", out)
		}
		select {
		case n := <-exists:
			if n != 2 {
				t.Errorf("EXISTS %d, want 2", n)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("IDLE at A was not told of the delivery at B")
		}
		idle.Close()
		if _, err := os.Stat(filepath.Join(c.A.Store, "alice")); !os.IsNotExist(err) {
			t.Errorf("IMAP at A made a home for alice on A's storage: %v", err)
		}
	})

	t.Run("a message at the size limit for B's user, arriving at A, lands at B", func(t *testing.T) {
		// A's Received: field makes the hop's copy larger than the
		// limit A applied; B must take what A took (Postfix's
		// message_size_limit counts what the client sent, and a relay
		// hop's trace is not the client's).
		const limit = 10240000 // message_size_limit's default
		msg := []byte("Subject: at-the-limit@cluster.test\r\n\r\n")
		line := strings.Repeat("x", 998) + "\r\n"
		for len(msg)+len(line) <= limit {
			msg = append(msg, line...)
		}
		msg = append(msg, strings.Repeat("y", limit-len(msg)-2)+"\r\n"...)
		c2, err := smtp.Dial(c.ha.Front["smtpA"])
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if err := c2.Hello("client.example.net"); err != nil {
			t.Fatal(err)
		}
		if err := c2.Mail("sender@example.net"); err != nil {
			t.Fatal(err)
		}
		if err := c2.Rcpt("alice@example.org"); err != nil {
			t.Fatal(err)
		}
		w, err := c2.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write(msg)
		if err := w.Close(); err != nil {
			t.Fatalf("a message of %d bytes (the limit) at A: %v", len(msg), err)
		}
		c2.Quit()
		var big string
		waitUntil(t, 60*time.Second, "the copy at B", func() bool {
			for _, f := range c.B.maildir(t, "alice", "new") {
				// Stored with LF line ends: its W= is the size with CRLF.
				if fi, err := os.Stat(f); err == nil && fi.Size() > limit*99/100 {
					big = f
					return true
				}
			}
			return false
		})
		os.Remove(big) // the next cases read every message
	})

	t.Run("a new alias on the provider is accepted at A", func(t *testing.T) {
		// The negative answer is cached for an hour: only the replica's
		// change notification can make A accept it.
		if out, ok := c.send(t, "smtpA", "newalias@example.org", "alias0@cluster.test"); ok {
			t.Fatalf("an unknown alias was accepted:\n%s", out)
		}
		c.dir.Provider.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: newalias@example.org\n")
		waitUntil(t, 30*time.Second, "the new alias accepted at A", func() bool {
			_, ok := c.send(t, "smtpA", "newalias@example.org", "alias@cluster.test")
			return ok
		})
	})

	t.Run("a PROXY header from an untrusted address is refused", func(t *testing.T) {
		conn, err := dialFrom("127.0.0.9", c.A.SMTP)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "PROXY TCP4 192.0.2.1 127.0.0.1 5555 25\r\nEHLO x\r\n")
		r := bufio.NewReader(conn)
		var got []string
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				got = append(got, strings.TrimSpace(line))
			}
			if err != nil {
				break
			}
		}
		if slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "250") }) {
			t.Errorf("a spoofed PROXY header was served: %q", got)
		}
	})

	t.Run("B killed under load: A answers 250, B's users UNAVAILABLE, nothing lost or doubled", func(t *testing.T) {
		before := c.B.messageIDs(t, "alice")
		const total = 60
		var wg sync.WaitGroup
		var mu sync.Mutex
		var refused []string
		sent := make(chan int, total)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total {
				id := fmt.Sprintf("load%d@cluster.test", i)
				if out, ok := c.send(t, "smtpA", "alice@example.org", id); !ok {
					mu.Lock()
					refused = append(refused, out)
					mu.Unlock()
				}
				sent <- i
			}
		}()
		for i := range total / 3 {
			<-sent
			_ = i
		}
		c.B.stop(syscall.SIGKILL)
		// B's users are refused at A, quickly and at once afterwards.
		for range 2 {
			_, err := c.imapLogin(t, "imapsA", "alice", testenv.AlicePassword, nil)
			if err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
				t.Errorf("login of alice at A with B down: %v, want NO [UNAVAILABLE]", err)
			}
		}
		wg.Wait()
		if len(refused) > 0 {
			t.Fatalf("%d of %d messages refused while B was down; first:\n%s", len(refused), total, refused[0])
		}
		c.B.start()
		if out, err := exec.Command(binary, "queue", "-config", c.A.config, "flush").CombinedOutput(); err != nil {
			t.Fatalf("queue flush: %v\n%s", err, out)
		}
		waitUntil(t, 90*time.Second, "every message at B", func() bool {
			ids := c.B.messageIDs(t, "alice")
			n := 0
			for i := range total {
				if ids[fmt.Sprintf("load%d@cluster.test", i)] > 0 {
					n++
				}
			}
			return n == total
		})
		for id, n := range c.B.messageIDs(t, "alice") {
			if n > 1 || before[id] > 0 && n != before[id] {
				t.Errorf("%s stored %d times", id, n)
			}
		}
		waitUntil(t, 30*time.Second, "A's queue empty", func() bool {
			out, _ := exec.Command(binary, "queue", "-config", c.A.config, "list").CombinedOutput()
			return !strings.Contains(string(out), "alice")
		})
	})

	t.Run("provider stopped: logins and delivery go on", func(t *testing.T) {
		c.dir.Provider.Stop(t)
		defer c.dir.Provider.Start(t)
		cl, err := c.imapLogin(t, "imapsA", "xomail", testenv.XomailPassword, nil)
		if err != nil {
			t.Fatalf("login with the provider down: %v", err)
		}
		cl.Close()
		if out, ok := c.send(t, "smtpA", "bob@example.org", "noprovider@cluster.test"); !ok {
			t.Fatalf("delivery with the provider down:\n%s", out)
		}
		waitUntil(t, 30*time.Second, "the copy at B", func() bool { return c.B.messageIDs(t, "bob")["noprovider@cluster.test"] == 1 })
	})

	t.Run("move-user under load", func(t *testing.T) {
		c.dir.WaitInSync(t)
		const total = 40
		done := make(chan error, 1)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total {
				front := []string{"smtpA", "smtpB"}[i%2]
				if out, ok := c.send(t, front, "bob@example.org", fmt.Sprintf("move%d@cluster.test", i)); !ok {
					done <- fmt.Errorf("message %d refused during the move:\n%s", i, out)
					return
				}
			}
			done <- nil
		}()
		time.Sleep(500 * time.Millisecond)
		out, err := exec.Command(binary, "move-user", "-config", c.B.config, "bob", "a").CombinedOutput()
		if err != nil {
			t.Fatalf("move-user: %v\n%s", err, out)
		}
		t.Logf("move-user:\n%s", out)
		wg.Wait()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		exec.Command(binary, "queue", "-config", c.A.config, "flush").Run()
		exec.Command(binary, "queue", "-config", c.B.config, "flush").Run()
		waitUntil(t, 120*time.Second, "every message in bob's new home", func() bool {
			ids := c.A.messageIDs(t, "bob")
			for i := range total {
				if ids[fmt.Sprintf("move%d@cluster.test", i)] == 0 {
					return false
				}
			}
			return true
		})
		ids := c.A.messageIDs(t, "bob")
		for id, n := range ids {
			if n != 1 {
				t.Errorf("%s stored %d times in bob's new home", id, n)
			}
		}
		if ids["noprovider@cluster.test"] != 1 {
			t.Error("the message from before the move did not move")
		}
		if len(c.B.maildir(t, "bob", "new")) > 0 {
			t.Errorf("bob's old home at B still receives: %v", c.B.maildir(t, "bob", "new"))
		}
		// bob logs in at B and is served from A.
		cl, err := c.imapLogin(t, "imapsB", "bob", testenv.BobPassword, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		sel, err := cl.Select("INBOX", nil).Wait()
		if err != nil || int(sel.NumMessages) != len(ids) {
			t.Errorf("SELECT at B after the move: %+v %v, want %d messages", sel, err, len(ids))
		}
	})
}
