package managesieve

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/internal/testenv"
	"courriel/loginguard"
)

const testClusterSecret = "0123456789abcdef-cluster"

type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type sieveNode struct {
	base string
	srv  *Server
	ln   net.Listener
	log  *syncLog
}

// sievePair is two ManageSieve nodes over one slapd; alice is homed on b
// (mailHost: b), her home under b's base.
type sievePair struct {
	slapd *testenv.Slapd
	ca    *testenv.CA
	a, b  *sieveNode
	alice testenv.FixtureUser
}

func newSievePair(t *testing.T, frontSecret, bAddr string, bHolds ...*cluster.Holds) *sievePair {
	t.Helper()
	parent := t.TempDir()
	p := &sievePair{a: &sieveNode{base: filepath.Join(parent, "a"), log: &syncLog{}}, b: &sieveNode{base: filepath.Join(parent, "b"), log: &syncLog{}}}
	for _, n := range []*sieveNode{p.a, p.b} {
		if err := os.Mkdir(n.base, 0o711); err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n.ln = ln
	}
	s := testenv.StartSlapd(t, testenv.WithHomeBase(p.b.base))
	s.Modify(t, "dn: uid=alice,"+s.MailBase()+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: b\n")
	p.slapd, p.ca = s, s.CA()
	for _, u := range s.Users() {
		if u.Login == "alice" {
			p.alice = u
		}
	}
	if bAddr == "" {
		bAddr = p.b.ln.Addr().String()
	}
	nodes := map[string]cluster.Node{"a": {ManageSieve: p.a.ln.Addr().String()}, "b": {ManageSieve: bAddr}}
	cert := p.ca.IssueCertificate(t, "localhost", "127.0.0.1")
	for name, n := range map[string]*sieveNode{"a": p.a, "b": p.b} {
		secret := testClusterSecret
		if name == "a" && frontSecret != "" {
			secret = frontSecret
		}
		// No test waits this out (a stopped node refuses at once): long,
		// so that a slow run's greeting from b still comes within it.
		c, err := cluster.New(cluster.Options{Self: name, Nodes: nodes, Secret: []byte(secret), ConnectTimeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d, err := directory.New(directory.Options{
			URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
			BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
			MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
			DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second, HomeAttribute: "mailHost",
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		var out io.Writer = n.log
		if testing.Verbose() {
			out = io.MultiWriter(n.log, os.Stderr)
		}
		var holds *cluster.Holds
		if name == "b" && len(bHolds) > 0 {
			holds = bHolds[0]
		}
		srv, err := NewServer(Options{
			Auth: d, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Holds: holds,
			Logger:      slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug})),
			AllowedBase: n.base, Chown: os.Geteuid() == 0, Cluster: c,
			Guard: loginguard.New(loginguard.Options{BaseDelay: -1, NetLimit: -1}),
		})
		if err != nil {
			t.Fatal(err)
		}
		n.srv = srv
		go srv.Serve(n.ln)
		t.Cleanup(func() { srv.Close() })
	}
	return p
}

func (p *sievePair) sieveConnect(t *testing.T, work string, args ...string) (string, error) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pw.WriteString(p.alice.Password + "\n")
	pw.Close()
	defer pr.Close()
	host, port, _ := net.SplitHostPort(p.a.ln.Addr().String())
	cmd := exec.Command("sieve-connect", append([]string{"--server", host, "--port", port, "--user", "alice",
		"--passwordfd", "3", "--tlscafile", p.ca.CertFile(), "--tlshostname", "localhost"}, args...)...)
	cmd.ExtraFiles = []*os.File{pr}
	cmd.Dir = work
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// sieve-connect at the front node manages the scripts of a user homed on
// the back node: they are written in b's home, a's base stays empty, and
// b logs the client's address as a saw it.
func TestClusterSieveConnect(t *testing.T) {
	need(t, "sieve-connect")
	p := newSievePair(t, "", "")
	work := t.TempDir()
	local := filepath.Join(work, "filter.sieve")
	script := "require [\"fileinto\"];\r\nif header :contains \"subject\" \"invoice\" {\r\n  fileinto \"Invoices\";\r\n}\r\n"
	if err := os.WriteFile(local, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := p.sieveConnect(t, work, args...)
		if err != nil {
			t.Fatalf("sieve-connect %v: %v\n%s\nfront log:\n%s\nback log:\n%s", args, err, out, p.a.log, p.b.log)
		}
		return out
	}
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
	if b, err := os.ReadFile(filepath.Join(p.alice.Home, "sieve/filter.sieve")); err != nil || string(b) != script {
		t.Fatalf("b's home holds %q, %v", b, err)
	}
	if target, err := os.Readlink(filepath.Join(p.alice.Home, ".dovecot.sieve")); err != nil || target != "sieve/filter.sieve" {
		t.Fatalf("~/.dovecot.sieve -> %q, %v", target, err)
	}
	if ents, _ := os.ReadDir(p.a.base); len(ents) != 0 {
		t.Errorf("a's base should stay empty, holds %d entries", len(ents))
	}
	if !strings.Contains(p.b.log.String(), "via=127.0.0.1") || !strings.Contains(p.a.log.String(), "passed through") {
		t.Errorf("logs:\na:\n%s\nb:\n%s", p.a.log, p.b.log)
	}
}

// Home node down or a wrong secret: the login at the front is refused
// for now (TRYLATER), nothing is created at the front.
func TestClusterSieveRefused(t *testing.T) {
	need(t, "sieve-connect")
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // a stopped node: connection refused
	for _, tc := range []struct {
		name, secret, addr, backLog string
	}{
		{"home node stopped", "", deadAddr, ""},
		{"wrong secret", "another-secret-0123456789", "", "wrong cluster secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newSievePair(t, tc.secret, tc.addr)
			out, err := p.sieveConnect(t, t.TempDir(), "--list")
			if err == nil || !strings.Contains(out, "temporarily unavailable") {
				t.Fatalf("sieve-connect: %v\n%s", err, out)
			}
			if tc.backLog != "" && !strings.Contains(p.b.log.String(), tc.backLog) {
				t.Errorf("b's log:\n%s", p.b.log)
			}
			if ents, _ := os.ReadDir(p.a.base); len(ents) != 0 {
				t.Errorf("a's base should stay empty, holds %d entries", len(ents))
			}
		})
	}
}

// The back side in the protocol's words: XCLIENT then the cluster login.
func TestClusterSieveBackSide(t *testing.T) {
	holds := cluster.NewHolds()
	p := newSievePair(t, "", "", holds)
	c, err := net.Dial("tcp", p.b.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 8192)
	readUntil := func(prefixes ...string) string {
		t.Helper()
		var got string
		for i := 0; i < 50; i++ {
			n, err := c.Read(buf)
			got += string(buf[:n])
			for _, pf := range prefixes {
				if strings.Contains(got, "\r\n"+pf) || strings.HasPrefix(got, pf) {
					return got
				}
			}
			if err != nil {
				t.Fatalf("read: %v (got %q)", err, got)
			}
		}
		return got
	}
	readUntil("OK")
	plain := func(secret string) string {
		return base64.StdEncoding.EncodeToString([]byte("alice\x00" + cluster.ClusterLogin + "\x00" + secret))
	}
	io.WriteString(c, "XCLIENT ADDR=192.0.2.9 PORT=5000 SESSION=front-7 TTL=5\r\n")
	if got := readUntil("OK", "NO"); !strings.HasPrefix(got, "OK") {
		t.Fatalf("XCLIENT: %q", got)
	}
	io.WriteString(c, `AUTHENTICATE "PLAIN" "`+plain("wrong-secret-0123456789")+`"`+"\r\n")
	if got := readUntil("OK", "NO"); !strings.HasPrefix(got, "NO") {
		t.Fatalf("wrong secret: %q", got)
	}
	release := holds.Hold(p.alice.Home)
	io.WriteString(c, `AUTHENTICATE "PLAIN" "`+plain(testClusterSecret)+`"`+"\r\n")
	if got := readUntil("OK", "NO"); !strings.HasPrefix(got, "NO (TRYLATER)") {
		t.Fatalf("cluster login of a held user: %q", got)
	}
	release()
	io.WriteString(c, `AUTHENTICATE "PLAIN" "`+plain(testClusterSecret)+`"`+"\r\n")
	if got := readUntil("OK", "NO"); !strings.HasPrefix(got, "OK") {
		t.Fatalf("cluster login: %q", got)
	}
	io.WriteString(c, "LISTSCRIPTS\r\n")
	if got := readUntil("OK", "NO"); !strings.HasPrefix(got, "OK") {
		t.Fatalf("LISTSCRIPTS: %q", got)
	}
	if l := p.b.log.String(); !strings.Contains(l, "ip=192.0.2.9") || !strings.Contains(l, "front_session=front-7") {
		t.Errorf("b's log:\n%s", l)
	}
}
