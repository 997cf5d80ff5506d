package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// `courriel demo -cluster` starts two nodes in one process, a on
// 127.0.0.2 and b on 127.0.0.3 with the demo's ports (TestDemo's
// 127.0.0.1 listeners do not collide with them), each with its own
// configuration and mail store, and the users' mail lands on their home
// node.
func TestDemoCluster(t *testing.T) {
	requireTool(t, "swaks")
	requireTool(t, "curl")
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(binary, "demo", "-cluster", "-dir", dir)
	var mu sync.Mutex
	var out bytes.Buffer
	w := lockedWriter{&mu, &out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	output := func() string {
		mu.Lock()
		defer mu.Unlock()
		return out.String()
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo -cluster did not stop cleanly on Ctrl-C: %v", err)
			}
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			t.Error("demo -cluster did not stop on Ctrl-C")
		}
		if t.Failed() {
			t.Logf("demo output:\n%s", output())
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, addr := range []string{"127.0.0.2:3389", "127.0.0.2:2525", "127.0.0.2:2993", "127.0.0.3:2525", "127.0.0.3:2993", "127.0.0.2:2143", "127.0.0.3:2143"} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case err := <-done:
				t.Fatalf("demo -cluster exited: %v\n%s", err, output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo -cluster not listening on %s", addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, node := range []struct{ name, host string }{{"a", "127.0.0.2"}, {"b", "127.0.0.3"}} {
		c, err := net.DialTimeout("tcp", node.host+":2525", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if l := firstLine(c); !strings.HasPrefix(l, "220 xoyize.xyz ESMTP") {
			t.Errorf("node %s SMTP greeting %q", node.name, l)
		}
		c.Close()
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", node.host+":2993", &tls.Config{ServerName: node.host, InsecureSkipVerify: true})
		if err != nil {
			t.Fatalf("node %s IMAPS: %v", node.name, err)
		}
		if l := firstLine(tc); !strings.HasPrefix(l, "* OK ") {
			t.Errorf("node %s IMAPS greeting %q", node.name, l)
		}
		tc.Close()
		// The node's own log lines say which node they are.
		for _, l := range []string{"smtp", "imaps", "imap", "submission", "managesieve"} {
			if want := "node=" + node.name + " listener=" + l + " addr=" + node.host + ":"; !strings.Contains(output(), want) {
				t.Errorf("no %q in the log", want)
			}
		}
	}
	printed := output()
	for _, want := range []string{"swaks --server 127.0.0.2:2525 --to alice@example.org", "imaps://127.0.0.2:2993", "xomail on node a", "alice and bob on\nnode b"} {
		if !strings.Contains(printed, want) {
			t.Errorf("the demo does not print %q", want)
		}
	}
	// Each user's mail, handed to their home node, lands in that node's
	// mail store (alice's through her Sieve script there).
	for _, tc := range []struct{ server, to, user, node string }{
		{"127.0.0.2:2525", "test0@hosted-domain.com", "xomail", "a"},
		{"127.0.0.3:2525", "bob@example.org", "bob", "b"},
	} {
		o, _ := run(t, "", "swaks", "--server", tc.server, "--to", tc.to, "--from", "someone@example.net")
		if !accepted(o) {
			t.Fatalf("swaks to %s at %s:\n%s", tc.to, tc.server, o)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, tc.node, "vmail", tc.user, "mailbox", "new", "*")); len(files) != 1 {
			t.Errorf("%s has %d messages on node %s, want 1", tc.user, len(files), tc.node)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "b", "vmail", "alice", ".dovecot.sieve")); err != nil {
		t.Errorf("alice's sample Sieve script is not on her node: %v", err)
	}
	for _, other := range []string{filepath.Join(dir, "b", "vmail", "xomail"), filepath.Join(dir, "a", "vmail", "bob"), filepath.Join(dir, "a", "vmail", "alice")} {
		if _, err := os.Stat(other); err == nil {
			t.Errorf("%s exists: a mailbox on a node that is not the user's home", other)
		}
	}
	o, err := run(t, "", "curl", "-sSk", "--user", "bob:demo", "imaps://127.0.0.3:2993/INBOX?ALL")
	if err != nil || !strings.Contains(o, "* SEARCH 1") {
		t.Errorf("curl imaps at node b: %v\n%s", err, o)
	}
	// The IMAP hop's listener on each node: STARTTLS with a certificate
	// the nodes verify (the demo's, their cluster.ca_file).
	pem, err := os.ReadFile(filepath.Join(dir, "tls", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	for _, host := range []string{"127.0.0.2", "127.0.0.3"} {
		c, err := net.DialTimeout("tcp", host+":2143", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		greeting, _ := r.ReadString('\n')
		c.Write([]byte("h1 STARTTLS\r\n"))
		reply, _ := r.ReadString('\n')
		if !strings.HasPrefix(greeting, "* OK") || !strings.HasPrefix(reply, "h1 OK") {
			t.Errorf("%s:2143: %q %q", host, greeting, reply)
			continue
		}
		if err := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: host}).Handshake(); err != nil {
			t.Errorf("%s:2143: STARTTLS not verified with the demo certificate: %v", host, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cluster-secret")); err != nil || len(bytes.TrimSpace(b)) < 16 {
		t.Errorf("cluster secret: %v %q", err, b)
	}
}
