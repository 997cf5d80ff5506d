package imap

import (
	"bufio"
	"bytes"
	"context"
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
	"sync/atomic"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/directory"
	"courriel/internal/testenv"
	"courriel/loginguard"
)

const testClusterSecret = "0123456789abcdef-cluster"

// syncLog is a log both nodes write and the test reads.
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

// clusterNode is one courriel IMAP server of a test cluster.
type clusterNode struct {
	name         string
	base         string // its maildir base (AllowedBase)
	srv          *Server
	plain, imaps net.Listener
	log          *syncLog
}

// clusterPair is two nodes, a and b, over one real slapd; alice is homed
// on b (mailHost: b) with her maildir under b's base, a is the front.
type clusterPair struct {
	slapd *testenv.Slapd
	ca    *testenv.CA
	a, b  *clusterNode
	alice testenv.FixtureUser
	// store delivers into b's maildirs and tells b's server.
	store *delivery.Store
}

type clusterTune struct {
	frontSecret string                   // default testClusterSecret
	hopTLS      bool                     // STARTTLS on the hops
	timeout     time.Duration            // ConnectTimeout; default 2 s
	deadMemory  time.Duration            // DeadNodeMemory; default cluster's
	bHomeAttr   string                   // b's home attribute; default mailHost
	ldif        string                   // more changes to the fixture
	mutateA     func(*Options)           // before a starts
	mutateB     func(*Options)           // before b starts
	bIMAP       func(real string) string // b's IMAP address as a knows it
	// external starts b elsewhere (another process) once slapd runs and
	// returns its IMAP address; b then has no server here.
	external func(p *clusterPair) string
}

func newClusterPair(t testing.TB, tune clusterTune) *clusterPair {
	t.Helper()
	parent := t.TempDir()
	baseA, baseB := filepath.Join(parent, "a"), filepath.Join(parent, "b")
	for _, d := range []string{baseA, baseB} {
		if err := os.Mkdir(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	s := testenv.StartSlapd(t, testenv.WithHomeBase(baseB))
	s.Modify(t, "dn: uid=alice,"+s.MailBase()+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: b\n")
	if tune.ldif != "" {
		s.Modify(t, tune.ldif)
	}
	p := &clusterPair{slapd: s, ca: s.CA()}
	for _, u := range s.Users() {
		if u.Login == "alice" {
			p.alice = u
		}
	}
	cert := p.ca.IssueCertificate(t, "localhost", "127.0.0.1")
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return ln
	}
	p.a = &clusterNode{name: "a", base: baseA, plain: listen(), imaps: listen(), log: &syncLog{}}
	p.b = &clusterNode{name: "b", base: baseB, plain: listen(), imaps: listen(), log: &syncLog{}}
	bAddr := p.b.plain.Addr().String()
	if tune.external != nil {
		bAddr = tune.external(p)
	}
	if tune.bIMAP != nil {
		bAddr = tune.bIMAP(bAddr)
	}
	timeout := tune.timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	var hopTLS *tls.Config
	if tune.hopTLS {
		hopTLS = &tls.Config{RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS12}
	}
	nodes := map[string]cluster.Node{
		"a": {IMAP: p.a.plain.Addr().String()},
		"b": {IMAP: bAddr},
	}
	for _, n := range []*clusterNode{p.a, p.b} {
		if n == p.b && tune.external != nil {
			continue
		}
		secret := testClusterSecret
		if n == p.a && tune.frontSecret != "" {
			secret = tune.frontSecret
		}
		c, err := cluster.New(cluster.Options{Self: n.name, Nodes: nodes, Secret: []byte(secret), TLS: hopTLS, ConnectTimeout: timeout, DeadNodeMemory: tune.deadMemory})
		if err != nil {
			t.Fatal(err)
		}
		homeAttr := "mailHost"
		if n == p.b && tune.bHomeAttr != "" {
			homeAttr = tune.bHomeAttr
		}
		d, err := directory.New(directory.Options{
			URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
			BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
			MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
			DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second, HomeAttribute: homeAttr,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		level := slog.LevelInfo
		if testing.Verbose() {
			level = slog.LevelDebug
		}
		o := Options{
			Auth: d, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
			Logger:      slog.New(slog.NewTextHandler(io.MultiWriter(n.log, verboseOut()), &slog.HandlerOptions{Level: level})),
			AllowedBase: n.base, Chown: os.Geteuid() == 0, Cluster: c,
			Guard:     loginguard.New(loginguard.Options{BaseDelay: -1, NetLimit: -1}),
			IdleCheck: 200 * time.Millisecond,
		}
		if n == p.a && tune.mutateA != nil {
			tune.mutateA(&o)
		}
		if n == p.b && tune.mutateB != nil {
			tune.mutateB(&o)
		}
		srv, err := NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		n.srv = srv
		go srv.Serve(n.plain, false)
		go srv.Serve(tls.NewListener(n.imaps, o.TLSConfig), true)
		t.Cleanup(func() { srv.Close() })
	}
	if p.b.srv == nil {
		return p
	}
	st, err := delivery.NewStore(delivery.Options{Hostname: "b.test", AllowedBase: baseB, Chown: os.Geteuid() == 0,
		OnDelivered: p.b.srv.Delivered})
	if err != nil {
		t.Fatal(err)
	}
	p.store = st
	return p
}

func verboseOut() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

// deliver stores one message for alice at b, as the SMTP hop would.
func (p *clusterPair) deliver(t testing.TB, subject string) {
	t.Helper()
	msg := "From: carol@example.org\r\nTo: alice@xoyize.xyz\r\nSubject: " + subject + "\r\n\r\nbody of " + subject + "\r\n"
	maildir := p.alice.Home + "/mailbox/"
	errs := p.store.Deliver(context.Background(), &delivery.Message{ID: subject, From: "carol@example.org",
		Body: bytes.NewReader([]byte(msg)), Arrived: time.Now()},
		[]delivery.Recipient{{Address: "alice@xoyize.xyz", Maildir: maildir, UID: p.alice.UID, GID: p.alice.GID}})
	if errs[0] != nil {
		t.Fatalf("deliver %s: %v", subject, errs[0])
	}
}

// maildirFiles lists the messages in new/ and cur/ of a maildir folder.
func maildirFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, sub := range []string{"new", "cur"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = string(b)
		}
	}
	return out
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("%s should stay empty, holds %v", dir, names)
	}
}

func needPython(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is not installed")
		}
		t.Skip("python3 is not installed")
	}
}

// clusterPy is the client side: Python's imaplib at the front node,
// connecting from 127.0.0.2 so that the client's address differs from
// the front's, and a raw COMPRESS=DEFLATE client. It prints what it
// reads, one fact a line; at "IDLING" the test delivers at the back.
const clusterPy = `
import imaplib, socket, ssl, sys, zlib
host, port, ca, user, pw, mode = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False

class Client(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, source_address=("127.0.0.2", 0))
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)

def out(*a):
    print(*a, flush=True)

if mode == "session":
    c = Client(host, int(port), ssl_context=ctx, timeout=30)
    typ, data = c.login(user, pw)
    out("login", typ, data[0].decode())
    out("caps", " ".join(c.capabilities))
    typ, data = c.status("INBOX", "(MESSAGES UIDNEXT)")
    out("status", typ, data[0].decode())
    typ, data = c.select("INBOX")
    out("select", typ, data[0].decode())
    typ, data = c.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    for item in data:
        if isinstance(item, tuple):
            out("subject", item[1].decode().strip())
    msg = b"From: alice@xoyize.xyz\r\nSubject: appended through a\r\n\r\nhello\r\n"
    typ, data = c.append("INBOX", r"(\Seen)", None, msg)
    out("append", typ, data[0].decode())
    # IDLE: the test delivers at the back when it reads IDLING.
    tag = c._new_tag().decode()
    c.send(("%s IDLE\r\n" % tag).encode())
    out("idle", c.readline().decode().strip())
    out("IDLING")
    while True:
        line = c.readline().decode().strip()
        if line.endswith("EXISTS"):
            out("idle-saw", line)
            break
        if not line:
            break
    c.send(b"DONE\r\n")
    while True:
        line = c.readline().decode().strip()
        if line.startswith(tag):
            out("idle-done", line)
            break
    out("logout", c.logout()[0])
elif mode == "login":
    c = Client(host, int(port), ssl_context=ctx, timeout=30)
    try:
        typ, data = c.login(user, pw)
        out("login", typ, data[0].decode())
        c.logout()
    except imaplib.IMAP4.error as e:
        out("refused", str(e))
elif mode == "compress":
    raw = socket.create_connection((host, int(port)), 30, source_address=("127.0.0.2", 0))
    s = ctx.wrap_socket(raw)
    f = s.makefile("rb")
    def cmd(tag, line):
        s.sendall(("%s %s\r\n" % (tag, line)).encode())
        while True:
            l = f.readline().decode()
            if l.startswith(tag + " "):
                return l.strip()
    f.readline()
    out("login", cmd("a", "LOGIN %s %s" % (user, pw)))
    out("compress", cmd("b", "COMPRESS DEFLATE"))
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    dec = zlib.decompressobj(-15)
    buf = b""
    def zsend(line):
        s.sendall(comp.compress(line.encode() + b"\r\n") + comp.flush(zlib.Z_SYNC_FLUSH))
    def zuntil(tag):
        global buf
        lines = []
        while True:
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    return lines
                buf += dec.decompress(chunk)
            line, buf = buf.split(b"\r\n", 1)
            lines.append(line.decode(errors="replace"))
            if line.startswith(tag.encode() + b" "):
                return lines
    zsend("c SELECT INBOX")
    for l in zuntil("c"):
        if "EXISTS" in l or l.startswith("c "):
            out("z-select", l)
    zsend("d FETCH 1:* (BODY.PEEK[])")
    lines = zuntil("d")
    out("z-fetch", lines[-1], sum(1 for l in lines if l.startswith("* ") and "FETCH" in l))
    zsend("e LOGOUT")
    out("z-logout", zuntil("e")[-1])
`

// runClusterPy runs clusterPy in mode against addr and returns its lines;
// onLine is called with each as it comes.
func runClusterPy(t *testing.T, p *clusterPair, addr, mode, user, pw string, onLine func(string)) []string {
	t.Helper()
	script := filepath.Join(t.TempDir(), "client.py")
	if err := os.WriteFile(script, []byte(clusterPy), 0o644); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("python3", script, host, port, p.ca.CertFile(), user, pw, mode)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if onLine != nil {
			onLine(sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("python %s: %v\nout: %q\nerr: %s", mode, err, lines, stderr.String())
	}
	return lines
}

// logLine is the first line of a log that contains s.
func logLine(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

func findLine(lines []string, prefix string) string {
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// A user homed on b reads, appends and idles through a; b's maildir has
// it all, a's maildir base stays empty, and b logs the client's address.
func TestClusterProxySession(t *testing.T) {
	needPython(t)
	for _, hopTLS := range []bool{false, true} {
		name := "plain-hop"
		if hopTLS {
			name = "starttls-hop"
		}
		t.Run(name, func(t *testing.T) {
			p := newClusterPair(t, clusterTune{hopTLS: hopTLS})
			p.deliver(t, "first")
			p.deliver(t, "second")
			lines := runClusterPy(t, p, p.a.imaps.Addr().String(), "session", "alice", p.alice.Password, func(l string) {
				if l == "IDLING" {
					p.deliver(t, "third, while idling")
				}
			})
			want := []string{
				"login OK [CAPABILITY ",
				`status OK "INBOX" (MESSAGES 2 UIDNEXT 3)`,
				"select OK 2",
				"subject Subject: first",
				"subject Subject: second",
				"append OK [APPENDUID",
				"idle + idling",
				"idle-saw * 4 EXISTS",
				"idle-done",
				"logout BYE",
			}
			for _, w := range want {
				if findLine(lines, w) == "" {
					t.Errorf("client did not read %q; it read:\n%s", w, strings.Join(lines, "\n"))
				}
			}
			// The login's OK carries the home node's capabilities after
			// login (no AUTH= any more), as Dovecot's proxy answers.
			if c := findLine(lines, "login "); !strings.HasSuffix(c, "] Logged in") || !strings.Contains(c, "COMPRESS=DEFLATE") || strings.Contains(c, "AUTH=") {
				t.Errorf("login reply: %q", c)
			}
			files := maildirFiles(t, filepath.Join(p.alice.Home, "mailbox"))
			var appended int
			for _, body := range files {
				if strings.Contains(body, "Subject: appended through a") {
					appended++
				}
			}
			if len(files) != 4 || appended != 1 {
				t.Errorf("b's maildir holds %d messages, %d appended through a; want 4 and 1", len(files), appended)
			}
			assertEmptyDir(t, p.a.base)
			// b trusted what a said of the client: its address, not a's.
			if l := logLine(p.b.log.String(), `msg="imap: login"`); !strings.Contains(l, " ip=127.0.0.2") || !strings.Contains(l, " via=127.0.0.1") {
				t.Errorf("b's log does not show the client's address:\n%s", l)
			}
			if l := p.a.log.String(); !strings.Contains(l, "passed through") {
				t.Errorf("a's log:\n%s", l)
			}
		})
	}
}

// COMPRESS=DEFLATE, turned on after login, passes through the front.
func TestClusterProxyCompress(t *testing.T) {
	needPython(t)
	p := newClusterPair(t, clusterTune{})
	for _, s := range []string{"one", "two", "three"} {
		p.deliver(t, s)
	}
	lines := runClusterPy(t, p, p.a.imaps.Addr().String(), "compress", "alice", p.alice.Password, nil)
	for _, w := range []string{"login a OK", "compress b OK", "z-select * 3 EXISTS", "z-select c OK", "z-fetch d OK", "z-logout e OK"} {
		if findLine(lines, w) == "" {
			t.Errorf("client did not read %q; it read:\n%s", w, strings.Join(lines, "\n"))
		}
	}
	if l := findLine(lines, "z-fetch"); !strings.HasSuffix(l, " 3") {
		t.Errorf("fetched through COMPRESS: %q, want 3 messages", l)
	}
	assertEmptyDir(t, p.a.base)
}

// countingListener accepts and counts connections and never answers: a
// home node that hangs.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int32{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), accepted
}

// A home node that does not answer: the login gets NO [UNAVAILABLE]
// after the connect timeout, and the next one at once, without a dial.
// A home node that is stopped: NO [UNAVAILABLE] too.
func TestClusterProxyHomeDown(t *testing.T) {
	needPython(t)
	hung, accepted := countingListener(t)
	// A memory longer than two logins take on a loaded machine.
	p := newClusterPair(t, clusterTune{timeout: 300 * time.Millisecond, deadMemory: time.Hour, bIMAP: func(string) string { return hung }})
	for i := 0; i < 2; i++ {
		lines := runClusterPy(t, p, p.a.imaps.Addr().String(), "login", "alice", p.alice.Password, nil)
		if l := findLine(lines, "refused"); !strings.Contains(l, "[UNAVAILABLE]") {
			t.Fatalf("login %d with the home node hung: %q", i+1, lines)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("the hung home node was dialled %d times, want 1 (then remembered as down)", n)
	}
	assertEmptyDir(t, p.a.base)

	// b stopped: its port refuses, then it is not dialled for a while.
	q := newClusterPair(t, clusterTune{timeout: 300 * time.Millisecond, deadMemory: time.Hour})
	q.b.srv.Close()
	for i := 0; i < 2; i++ {
		lines := runClusterPy(t, q, q.a.imaps.Addr().String(), "login", "alice", q.alice.Password, nil)
		if l := findLine(lines, "refused"); !strings.Contains(l, "[UNAVAILABLE]") {
			t.Fatalf("login %d with the home node stopped: %q", i+1, lines)
		}
	}
	if l := q.a.log.String(); !strings.Contains(l, "connection refused") || !strings.Contains(l, "did not answer a moment ago") {
		t.Errorf("a's log:\n%s", l)
	}
	assertEmptyDir(t, q.a.base)
}

// A front node with another secret than the home node's: the client's
// login is refused for now, and the home node counts a failed login.
func TestClusterProxyWrongSecret(t *testing.T) {
	needPython(t)
	p := newClusterPair(t, clusterTune{frontSecret: "not-the-cluster-secret-0123"})
	lines := runClusterPy(t, p, p.a.imaps.Addr().String(), "login", "alice", p.alice.Password, nil)
	if l := findLine(lines, "refused"); !strings.Contains(l, "[UNAVAILABLE]") {
		t.Fatalf("login through a front with a wrong secret: %q", lines)
	}
	if l := p.b.log.String(); !strings.Contains(l, "wrong cluster secret") || strings.Contains(l, `msg="imap: login"`) {
		t.Errorf("b's log:\n%s", l)
	}
	assertEmptyDir(t, p.a.base)
}

// rawIMAP is a line client for the back side's checks.
type rawIMAP struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialIMAP(t *testing.T, addr, from string) *rawIMAP {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	r := &rawIMAP{t: t, c: c, r: bufio.NewReader(c)}
	r.line()
	return r
}

func (r *rawIMAP) line() string {
	r.t.Helper()
	l, err := r.r.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

func (r *rawIMAP) cmd(tag, line string) []string {
	r.t.Helper()
	if _, err := io.WriteString(r.c, tag+" "+line+"\r\n"); err != nil {
		r.t.Fatal(err)
	}
	var out []string
	for {
		l := r.line()
		out = append(out, l)
		if strings.HasPrefix(l, tag+" ") {
			return out
		}
	}
}

func plainResp(authz, authc, pw string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + authc + "\x00" + pw))
}

// The back side: the cluster login with the right secret logs in as the
// user without a password; a wrong secret is a failed login; the ID a
// client sends counts only after that login; a user not at home here
// with no hop left, a held user and an unknown home node are
// NO [UNAVAILABLE].
func TestClusterBackSide(t *testing.T) {
	holds := cluster.NewHolds()
	p := newClusterPair(t, clusterTune{
		ldif: "dn: uid=bob,ou=mail,dc=xoyize,dc=xyz\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: nowhere\n",
		mutateB: func(o *Options) {
			o.Holds = holds
			o.MaxConnsPerIP = 1
		},
	})
	back := p.b.plain.Addr().String()

	// Wrong secret: refused, and counted as a failed login.
	r := dialIMAP(t, back, "")
	if got := last(r.cmd("a", "AUTHENTICATE PLAIN "+plainResp("alice", cluster.ClusterLogin, "wrong-secret-0123456"))); !strings.HasPrefix(got, "a NO [AUTHENTICATIONFAILED]") {
		t.Errorf("wrong cluster secret: %q", got)
	}
	// The right secret in clear, but from an address that is no node's.
	if got := last(dialIMAP(t, back, "127.0.0.3").cmd("o", "AUTHENTICATE PLAIN "+plainResp("alice", cluster.ClusterLogin, testClusterSecret))); !strings.HasPrefix(got, "o NO [AUTHENTICATIONFAILED]") {
		t.Errorf("cluster login in clear from outside the cluster: %q", got)
	}
	// Without the cluster's identity, plain text is no place for a login.
	if got := last(r.cmd("b", "AUTHENTICATE PLAIN "+plainResp("", "alice", p.alice.Password))); !strings.HasPrefix(got, "b NO [PRIVACYREQUIRED]") {
		t.Errorf("user login in plain text: %q", got)
	}

	// A second connection from a node's address is not capped before login
	// (MaxConnsPerIP is 1 on b; the first connection above is still open).
	r = dialIMAP(t, back, "")
	r.cmd("i", `ID ("x-originating-ip" "192.0.2.7" "x-originating-port" "4242" "x-proxy-ttl" "5" "x-session-id" "front-1")`)
	if got := last(r.cmd("a", "AUTHENTICATE PLAIN "+plainResp("alice", cluster.ClusterLogin, testClusterSecret))); !strings.HasPrefix(got, "a OK [CAPABILITY ") {
		t.Fatalf("cluster login: %q", got)
	}
	if got := r.cmd("s", "SELECT INBOX"); !strings.HasPrefix(last(got), "s OK") {
		t.Errorf("SELECT after the cluster login: %q", got)
	}
	if l := p.b.log.String(); !strings.Contains(l, "ip=192.0.2.7") || !strings.Contains(l, "front_session=front-1") {
		t.Errorf("b did not take the front's word after the cluster login:\n%s", l)
	}
	// Other addresses stay capped.
	dialIMAP(t, back, "127.0.0.2")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	c3, err := d.Dial("tcp", back)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	_ = c3.SetDeadline(time.Now().Add(10 * time.Second))
	if l, _ := bufio.NewReader(c3).ReadString('\n'); !strings.Contains(l, "BYE [UNAVAILABLE] Too many connections from your address") {
		t.Errorf("second connection from 127.0.0.2: %q", l)
	}

	// No hop left for a user homed elsewhere (bob: unknown node; alice
	// with ttl 1 seen from a node where she is not at home is tested in
	// TestClusterProxyTTL).
	r = dialIMAP(t, back, "")
	if got := last(r.cmd("a", "AUTHENTICATE PLAIN "+plainResp("bob", cluster.ClusterLogin, testClusterSecret))); !strings.HasPrefix(got, "a NO [UNAVAILABLE]") {
		t.Errorf("user with an unknown home node: %q", got)
	}
	// A held user.
	release := holds.Hold(p.alice.Home)
	r = dialIMAP(t, back, "")
	if got := last(r.cmd("a", "AUTHENTICATE PLAIN "+plainResp("alice", cluster.ClusterLogin, testClusterSecret))); !strings.HasPrefix(got, "a NO [UNAVAILABLE]") {
		t.Errorf("held user: %q", got)
	}
	release()
	// The front refuses bob too, without creating anything.
	{
		r = dialIMAP(t, p.a.plain.Addr().String(), "")
		r.cmd("t", "STARTTLS")
		tc := tls.Client(r.c, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1"})
		r.c, r.r = tc, bufio.NewReader(tc)
		bob := ""
		for _, u := range p.slapd.Users() {
			if u.Login == "bob" {
				bob = u.Password
			}
		}
		if got := last(r.cmd("l", "LOGIN bob "+bob)); !strings.HasPrefix(got, "l NO [UNAVAILABLE]") {
			t.Errorf("front, user with an unknown home node: %q", got)
		}
	}
	assertEmptyDir(t, p.a.base)
}

// Nodes that disagree about a user's home pass the session back and forth
// until the hop counter runs out: NO [UNAVAILABLE], no loop.
func TestClusterProxyTTL(t *testing.T) {
	needPython(t)
	// a reads mailHost (b), b reads mailRoutingAddress (a).
	p := newClusterPair(t, clusterTune{
		bHomeAttr: "mailRoutingAddress",
		ldif:      "dn: uid=alice,ou=mail,dc=xoyize,dc=xyz\nchangetype: modify\nadd: mailRoutingAddress\nmailRoutingAddress: a\n",
	})
	lines := runClusterPy(t, p, p.a.imaps.Addr().String(), "login", "alice", p.alice.Password, nil)
	if l := findLine(lines, "refused"); !strings.Contains(l, "[UNAVAILABLE]") {
		t.Fatalf("login with nodes that disagree: %q", lines)
	}
	logs := p.a.log.String() + p.b.log.String()
	if n := strings.Count(logs, "hop counter exhausted"); n != 1 {
		t.Errorf("hop counter exhausted %d times, want 1:\n%s", n, logs)
	}
	// Passed on with ttl 5, 4, 3, 2 and 1 (a, b, a, b, a); b refuses at 1,
	// and each refusal travels back.
	if n := strings.Count(logs, "home node unavailable"); n != 5 {
		t.Errorf("%d hops refused, want 5:\n%s", n, logs)
	}
	if n := strings.Count(logs, "passed through"); n != 0 {
		t.Errorf("%d sessions reported as passed through, want none", n)
	}
	assertEmptyDir(t, p.a.base)
}

// Either node ending a proxied session ends the other side too: the
// front's shutdown closes the home node's session, the home node's
// shutdown closes the client's connection at the front.
func TestClusterProxyEnds(t *testing.T) {
	for _, which := range []string{"front", "home"} {
		t.Run(which, func(t *testing.T) {
			p := newClusterPair(t, clusterTune{})
			c, err := tls.Dial("tcp", p.a.imaps.Addr().String(), &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			r := &rawIMAP{t: t, c: c, r: bufio.NewReader(c)}
			r.line()
			if got := last(r.cmd("a", "LOGIN alice "+p.alice.Password)); !strings.HasPrefix(got, "a OK") {
				t.Fatalf("LOGIN: %q", got)
			}
			if got := last(r.cmd("b", "SELECT INBOX")); !strings.HasPrefix(got, "b OK") {
				t.Fatalf("SELECT: %q", got)
			}
			sessions := func(s *Server) int { return s.conns.Len() }
			if sessions(p.a.srv) != 1 || sessions(p.b.srv) != 1 {
				t.Fatalf("sessions: a %d, b %d; want 1 and 1", sessions(p.a.srv), sessions(p.b.srv))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if which == "front" {
				p.a.srv.Shutdown(ctx)
				waitFor(t, "the home node's session to end", func() bool { return sessions(p.b.srv) == 0 })
			} else {
				p.b.srv.Shutdown(ctx)
				waitFor(t, "the front's session to end", func() bool { return sessions(p.a.srv) == 0 })
			}
			// The client reads what was left, then the end of the connection.
			for i := 0; i < 10; i++ {
				l, err := r.r.ReadString('\n')
				if err != nil {
					return
				}
				if which == "home" && !strings.HasPrefix(l, "* BYE") {
					t.Errorf("client read %q after the home node's shutdown", l)
				}
			}
			t.Error("the client's connection did not end")
		})
	}
}
