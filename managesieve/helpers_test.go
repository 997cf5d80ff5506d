package managesieve

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/directory"
	"courriel/internal/testenv"
	"courriel/loginguard"
)

// env is a server on a kernel-chosen loopback port in front of a real
// slapd, with the fixture users' homes under homeBase.
type env struct {
	slapd    *testenv.Slapd
	ca       *testenv.CA
	homeBase string
	addr     string
	srv      *Server
}

func newEnv(t testing.TB, tune func(*Options)) *env {
	t.Helper()
	return newEnvIn(t, t.TempDir(), tune)
}

// newEnvIn is newEnv with the homes in parent/vmail.
func newEnvIn(t testing.TB, parent string, tune func(*Options)) *env {
	t.Helper()
	homeBase := filepath.Join(parent, "vmail")
	if err := os.Mkdir(homeBase, 0o711); err != nil {
		t.Fatal(err)
	}
	s := testenv.StartSlapd(t, testenv.WithHomeBase(homeBase))
	d, err := directory.New(directory.Options{
		URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + s.MailBase(),
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	ca := s.CA()
	cert := ca.IssueCertificate(t, "localhost", "127.0.0.1")
	o := Options{
		Auth: d, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		AllowedBase: homeBase, Chown: os.Geteuid() == 0,
		// No delay in tests: the guard's counting is tested in loginguard.
		Guard: loginguard.New(loginguard.Options{BaseDelay: -1, NetLimit: -1}),
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tune != nil {
		tune(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &env{slapd: s, ca: ca, homeBase: homeBase, addr: ln.Addr().String(), srv: srv}
}

func (e *env) user(t testing.TB, login string) testenv.FixtureUser {
	t.Helper()
	for _, u := range e.slapd.Users() {
		if u.Login == login {
			return u
		}
	}
	t.Fatalf("no fixture user %s", login)
	return testenv.FixtureUser{}
}

// client is a raw ManageSieve connection.
type client struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

func (e *env) dial(t testing.TB) *client {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	cl := &client{t: t, conn: c, r: bufio.NewReader(c)}
	cl.response() // greeting
	return cl
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads lines up to and including the OK/NO/BYE line, literals
// included, and returns them joined with \n (literal contents as they are).
func (c *client) response() string {
	c.t.Helper()
	var out []string
	for range 100000 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (so far %q)", err, out)
		}
		line = strings.TrimSuffix(line, "\r\n")
		if i := strings.LastIndexByte(line, '{'); i >= 0 && strings.HasSuffix(line, "}") {
			n, err := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
			if err == nil {
				buf := make([]byte, n)
				if _, err := io.ReadFull(c.r, buf); err != nil {
					c.t.Fatal(err)
				}
				line = line[:i] + string(buf)
				rest, _ := c.r.ReadString('\n')
				line += strings.TrimSuffix(rest, "\r\n")
			}
		}
		out = append(out, line)
		if strings.HasPrefix(line, "OK") || strings.HasPrefix(line, "NO") || strings.HasPrefix(line, "BYE") {
			return strings.Join(out, "\n")
		}
	}
	c.t.Fatal("no end of response")
	return ""
}

func (c *client) cmd(s string) string {
	c.t.Helper()
	c.send(s + "\r\n")
	return c.response()
}

func (c *client) startTLS(e *env) {
	c.t.Helper()
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "OK") {
		c.t.Fatalf("STARTTLS: %s", r)
	}
	tc := tls.Client(c.conn, e.ca.ClientTLSConfig("localhost"))
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn, c.r = tc, bufio.NewReader(tc)
	caps := c.response()
	if !strings.Contains(caps, `"SASL" "PLAIN"`) {
		c.t.Fatalf("capabilities after STARTTLS: %s", caps)
	}
}

func plain(authz, user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(authz + "\x00" + user + "\x00" + pass))
}

// login dials, starts TLS and logs in as login.
func (e *env) login(t testing.TB, login string) *client {
	t.Helper()
	c := e.dial(t)
	c.startTLS(e)
	u := e.user(t, login)
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + plain("", u.Login, u.Password) + `"`); r != `OK "Logged in."` {
		t.Fatalf("login: %s", r)
	}
	return c
}

func lit(s string) string { return fmt.Sprintf("{%d+}\r\n%s", len(s), s) }

// dialRaw connects without reading the greeting.
func dialRaw(e *env) (*client, error) {
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &client{conn: c, r: bufio.NewReader(c)}, nil
}
