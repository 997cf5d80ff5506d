package imap

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"courriel/directory"
	"courriel/internal/testenv"
)

// fakeAuth is an Authenticator over a map; unavailable makes it fail as a
// directory that is down.
type fakeAuth struct {
	mu          sync.Mutex
	users       map[string]fakeUser
	unavailable bool
	calls       int
}

type fakeUser struct {
	password string
	user     directory.User
}

func (a *fakeAuth) Authenticate(_ context.Context, login, password string) (directory.User, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.unavailable {
		return directory.User{}, directory.ErrUnavailable
	}
	u, ok := a.users[login]
	if !ok || u.password != password {
		return directory.User{}, directory.ErrInvalidCredentials
	}
	return u.user, nil
}

func (a *fakeAuth) add(base, login, password string) string {
	home := filepath.Join(base, login)
	maildir := home + "/mailbox/"
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.users == nil {
		a.users = map[string]fakeUser{}
	}
	a.users[login] = fakeUser{password: password, user: directory.User{
		Login: login, Home: home, Maildir: maildir, UID: os.Getuid(), GID: os.Getgid(),
	}}
	return maildir
}

type testEnv struct {
	t       testing.TB
	auth    *fakeAuth
	srv     *Server
	addr    string // implicit TLS
	plain   string // plain with STARTTLS
	base    string
	maildir string // user "alice", password "secret"
	opts    Options
}

func newEnv(t testing.TB, mutate ...func(*Options)) *testEnv {
	t.Helper()
	return newEnvIn(t, t.TempDir(), mutate...)
}

// newEnvOnTmpfs is newEnv with the users' maildirs on a tmpfs mounted with
// opts (see testenv.MountTmpfs): a file system that fills up. It is
// unmounted once the server has stopped.
func newEnvOnTmpfs(t testing.TB, opts string, mutate ...func(*Options)) *testEnv {
	t.Helper()
	base := t.TempDir()
	testenv.MountTmpfs(t, base, opts)
	return newEnvIn(t, base, mutate...)
}

// newEnvIn is newEnv with the users' homes under base.
func newEnvIn(t testing.TB, base string, mutate ...func(*Options)) *testEnv {
	t.Helper()
	e := &testEnv{t: t, auth: &fakeAuth{}, base: base}
	e.maildir = e.auth.add(base, "alice", "secret")
	e.auth.add(base, "bob", "hunter2")
	e.opts = Options{
		Auth:      e.auth,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{testenv.NewCA(t).IssueCertificate(t, "localhost", "127.0.0.1")}},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		FailDelay: 10 * time.Millisecond, MaxFailDelay: 40 * time.Millisecond,
		IdleCheck: 200 * time.Millisecond,
	}
	for _, m := range mutate {
		m(&e.opts)
	}
	e.start()
	return e
}

func (e *testEnv) start() {
	t := e.t
	srv, err := NewServer(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tls.NewListener(ln, e.opts.TLSConfig), true)
	go srv.Serve(pln, false)
	e.srv, e.addr, e.plain = srv, ln.Addr().String(), pln.Addr().String()
	t.Cleanup(func() { srv.Close() })
}

// restart closes the server and starts a new one on new ports, same maildirs.
func (e *testEnv) restart() {
	e.srv.Close()
	e.start()
}

func clientTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }

func (e *testEnv) dial(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c, err := imapclient.DialTLS(e.addr, &imapclient.Options{TLSConfig: clientTLS(), UnilateralDataHandler: h})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func (e *testEnv) login(h *imapclient.UnilateralDataHandler) *imapclient.Client {
	e.t.Helper()
	c := e.dial(h)
	if err := c.Login("alice", "secret").Wait(); err != nil {
		e.t.Fatalf("login: %v", err)
	}
	return c
}

// deliver writes a message into the INBOX's new/ as the delivery package
// does (LF endings, S= and W= in the name).
func (e *testEnv) deliver(name, body string) string {
	e.t.Helper()
	return writeMaildirMsg(e.t, e.maildir, "new", name, body)
}

func writeMaildirMsg(t testing.TB, dir, sub, name, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, s), 0o700)
	}
	crlf := int64(len(body))
	for i := 0; i < len(body); i++ {
		if body[i] == '\n' && (i == 0 || body[i-1] != '\r') {
			crlf++
		}
	}
	fname := fmt.Sprintf("%s,S=%d,W=%d", name, len(body), crlf)
	p := filepath.Join(dir, sub, fname)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return fname
}

func testMessage(i int, from, subject string) string {
	return fmt.Sprintf("From: %s\nTo: Alice <alice@example.org>\nSubject: %s\nDate: Mon, 02 Jan 2006 15:04:05 +0000\nMessage-ID: <m%d@example.org>\n\nHello number %d.\nSecond line.\n", from, subject, i, i)
}

func seqs(nums ...uint32) goimap.SeqSet { return goimap.SeqSetNum(nums...) }

// waitFor polls cond until it holds or the bound passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
