package smtp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/internal/testenv"
)

// ---- fakes ----

// fakeDir is a small directory:
//
//	mailbox.example  DomainMailbox: alice, bob (maildrops of their own)
//	hosted.example   DomainHosted:  info -> alice; team -> alice, bob, carol@remote.example;
//	                                 fwd, fwd2 -> dave@remote.example; same -> alice, Alice (one maildrop)
//	down.example     classification unavailable
//	anything else    foreign
//
// users: alice/secret (sends as alice@mailbox.example, info@hosted.example
// and "x@y"@mailbox.example).
type fakeDir struct {
	mu          sync.Mutex
	unavailable bool // every call fails with ErrUnavailable
	authCalls   atomic.Int32
	resolveHook func(addr string) error
	classified  []string // "addr class" of every ResolveClassified; guarded by mu
}

func (d *fakeDir) resolved() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.classified...)
}

func mbox(local string) directory.Destination {
	a := local + "@mailbox.example"
	return directory.Destination{Address: a, Mailbox: &directory.Mailbox{
		Address: a, Maildir: "/var/vmail/" + local + "/mailbox/", UID: 20000, GID: 20000,
		Home: "/var/vmail/" + local, Addresses: []string{a}, Login: local}}
}

func (d *fakeDir) down() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unavailable
}

func (d *fakeDir) setDown(v bool) {
	d.mu.Lock()
	d.unavailable = v
	d.mu.Unlock()
}

func (d *fakeDir) ClassifyDomain(_ context.Context, domain string) (directory.DomainClass, error) {
	if d.down() || domain == "down.example" {
		return 0, fmt.Errorf("fake: %w", directory.ErrUnavailable)
	}
	switch domain {
	case "mailbox.example", "mx.test":
		return directory.DomainMailbox, nil
	case "hosted.example":
		return directory.DomainHosted, nil
	}
	return directory.DomainForeign, nil
}

// ResolveClassified takes class for granted, as the directory does.
func (d *fakeDir) ResolveClassified(_ context.Context, addr string, class directory.DomainClass) (directory.Resolution, error) {
	d.mu.Lock()
	d.classified = append(d.classified, fmt.Sprint(addr, " ", class))
	d.mu.Unlock()
	if d.down() {
		return directory.Resolution{}, directory.ErrUnavailable
	}
	if d.resolveHook != nil {
		if err := d.resolveHook(addr); err != nil {
			return directory.Resolution{}, err
		}
	}
	remote := func(a string) directory.Destination { return directory.Destination{Address: a, Remote: true} }
	var dests []directory.Destination
	switch strings.ToLower(addr) {
	case "alice@mailbox.example", "info@hosted.example":
		dests = []directory.Destination{mbox("alice")}
	case "bob@mailbox.example":
		dests = []directory.Destination{mbox("bob")}
	case `"john doe"@mailbox.example`, "john.doe@mailbox.example": // the directory's key is the external form
		dests = []directory.Destination{mbox(strings.ToLower(addr[:strings.LastIndexByte(addr, '@')]))}
	case "team@hosted.example":
		dests = []directory.Destination{mbox("alice"), mbox("bob"), remote("carol@remote.example")}
	case "fwd@hosted.example", "fwd2@hosted.example":
		dests = []directory.Destination{remote("dave@remote.example")}
	case "same@hosted.example":
		a2 := mbox("alice")
		a2.Address = "Alice@mailbox.example"
		dests = []directory.Destination{mbox("alice"), a2}
	case "unavail@hosted.example":
		return directory.Resolution{}, fmt.Errorf("fake: %w", directory.ErrUnavailable)
	default:
		return directory.Resolution{}, fmt.Errorf("fake %q: %w", addr, directory.ErrNotFound)
	}
	return directory.Resolution{Recipient: addr, Destinations: dests}, nil
}

func (d *fakeDir) Authenticate(_ context.Context, login, password string) (directory.User, error) {
	d.authCalls.Add(1)
	if d.down() || login == "broken" {
		return directory.User{}, directory.ErrUnavailable
	}
	if login == "alice" && password == "secret" {
		return directory.User{Login: "alice", Home: "/var/vmail/alice", Maildir: "/var/vmail/alice/mailbox/", UID: 20000, GID: 20000}, nil
	}
	return directory.User{}, directory.ErrInvalidCredentials
}

func (d *fakeDir) SenderLogins(_ context.Context, addr string) ([]string, error) {
	if d.down() {
		return nil, directory.ErrUnavailable
	}
	switch strings.ToLower(addr) {
	case "alice@mailbox.example", "info@hosted.example", `"x@y"@mailbox.example`:
		return []string{"alice"}, nil
	case "bob@mailbox.example":
		return []string{"bob"}, nil
	case `"john doe"@mailbox.example`:
		return []string{"jdoe"}, nil
	case "unavail@hosted.example":
		return nil, fmt.Errorf("fake: %w", directory.ErrUnavailable)
	case "dave@remote.example": // fwd's maildrop, as the seed's query finds it
		return []string{"fwd"}, nil
	}
	return nil, directory.ErrNotFound
}

type delivered struct {
	msg   *delivery.Message
	body  []byte // msg.Body, read during Deliver (a spooled body is gone after)
	rcpts []delivery.Recipient
}

// contentBytes reads a whole delivery.Content.
func contentBytes(c delivery.Content) []byte {
	if c == nil {
		return nil
	}
	b, err := io.ReadAll(io.NewSectionReader(c, 0, c.Size()))
	if err != nil {
		panic(err)
	}
	return b
}

type fakeDeliverer struct {
	mu      sync.Mutex
	got     []delivered
	fail    func(r delivery.Recipient) error // nil: success
	block   chan struct{}                    // when set, Deliver signals entered then waits for it
	entered chan struct{}
}

func (f *fakeDeliverer) Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error {
	if f.block != nil {
		f.entered <- struct{}{}
		<-f.block
	}
	errs := make([]error, len(rcpts))
	var ok []delivery.Recipient
	for i, r := range rcpts {
		if f.fail != nil {
			errs[i] = f.fail(r)
		}
		if errs[i] == nil {
			ok = append(ok, r)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(ok) > 0 {
		f.got = append(f.got, delivered{m, contentBytes(m.Body), ok})
	}
	return errs
}

func (f *fakeDeliverer) all() []delivered {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]delivered(nil), f.got...)
}

// copies counts the stored copies per maildrop address.
func (f *fakeDeliverer) copies() map[string]int {
	n := map[string]int{}
	for _, d := range f.all() {
		for _, r := range d.rcpts {
			n[r.Address]++
		}
	}
	return n
}

type queued struct {
	from  string
	rcpts []string // remote
	local []delivery.Recipient
	data  []byte
	env   *queue.Message // the remote recipients, with Accept's options applied
	every *queue.Message // every copy, remote then local, with Accept's options applied
}

// fakeQueue is the queue's Accept: it records the message and, as the real
// queue does once the message is queued, makes the first attempt at the
// local copies through local.
type fakeQueue struct {
	mu    sync.Mutex
	got   []queued
	fail  error
	local *fakeDeliverer
}

func (q *fakeQueue) Accept(ctx context.Context, _, from string, remote []string, local []delivery.Recipient, content delivery.Content, opts ...queue.Option) (string, []error, error) {
	data := contentBytes(content)
	env := &queue.Message{From: from}
	for _, r := range remote {
		env.Recipients = append(env.Recipients, queue.Recipient{Addr: r})
	}
	every := &queue.Message{From: from}
	every.Recipients = slices.Clone(env.Recipients)
	for _, r := range local {
		every.Recipients = append(every.Recipients, queue.Recipient{Addr: r.Address, Local: &queue.LocalTarget{OrigTo: r.OrigTo}})
	}
	for _, o := range opts {
		o(env)
		o(every)
	}
	q.mu.Lock()
	if q.fail != nil {
		q.mu.Unlock()
		return "", nil, q.fail
	}
	q.got = append(q.got, queued{from, slices.Clone(remote), slices.Clone(local), data, env, every})
	id := fmt.Sprintf("Q%d", len(q.got))
	q.mu.Unlock()
	var errs []error
	if len(local) > 0 {
		errs = q.local.Deliver(ctx, &delivery.Message{ID: id, From: from, Body: bytes.NewReader(data)}, local)
	}
	return id, errs, nil
}

// remote is what was queued for remote recipients.
func (q *fakeQueue) remote() []queued {
	var out []queued
	for _, m := range q.all() {
		if len(m.rcpts) > 0 {
			out = append(out, m)
		}
	}
	return out
}

func (q *fakeQueue) all() []queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]queued(nil), q.got...)
}

// fakeClock is Now and Sleep for the throttling: sleeping advances it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	c.slept += d
}

func (c *fakeClock) totalSlept() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slept
}

// ---- TLS ----

// testTLS returns a server config and a client config trusting it, from a
// CA made for the test.
func testTLS(t testing.TB) (*tls.Config, *tls.Config) {
	t.Helper()
	ca := testenv.NewCA(t)
	return &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "mx.test", "127.0.0.1")}, MinVersion: tls.VersionTLS12},
		&tls.Config{RootCAs: ca.Pool(), ServerName: "mx.test", MinVersion: tls.VersionTLS12}
}

// ---- server under test ----

type env struct {
	srv   *Server
	addr  string
	dir   *fakeDir
	deliv *fakeDeliverer
	queue *fakeQueue
	clock *fakeClock
	ctls  *tls.Config // client side
	done  chan error
}

func newEnv(t *testing.T, kind Kind, mutate func(*Options)) *env {
	t.Helper()
	return newEnvOn(t, kind, mutate, nil)
}

// newEnvOn is newEnv with the listener wrapped by wrap (nil: as is).
func newEnvOn(t *testing.T, kind Kind, mutate func(*Options), wrap func(net.Listener) net.Listener) *env {
	t.Helper()
	stls, ctls := testTLS(t)
	deliv := &fakeDeliverer{}
	e := &env{dir: &fakeDir{}, deliv: deliv, queue: &fakeQueue{local: deliv},
		clock: &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}, ctls: ctls, done: make(chan error, 1)}
	o := Options{
		Kind: kind, Hostname: "mx.test", Directory: e.dir, Deliverer: e.deliv, Queue: e.queue,
		TLSConfig: stls, Now: e.clock.Now, Sleep: e.clock.Sleep, SpoolDir: t.TempDir(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		LookupAddr: func(context.Context, string) ([]string, error) { return []string{"localhost."}, nil },
	}
	if mutate != nil {
		mutate(&o)
	}
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.srv, e.addr = srv, ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	go func() { e.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-e.done
	})
	return e
}

// ---- raw client ----

type raw struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	last []string // lines of the last reply
}

func (e *env) dialRaw(t testing.TB) *raw {
	t.Helper()
	return e.dialRawFrom(t, "")
}

func (e *env) dialRawFrom(t testing.TB, local string) *raw {
	t.Helper()
	r := e.dialRawNoGreetFrom(t, local)
	r.expect("220 ")
	return r
}

// dialNoGreet connects without reading the greeting.
func (e *env) dialNoGreet(t testing.TB) *raw { return e.dialRawNoGreetFrom(t, "") }

func (e *env) dialRawNoGreetFrom(t testing.TB, local string) *raw {
	d := net.Dialer{Timeout: 5 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	if e.srv.o.Kind == Submissions {
		tc := tls.Client(c, e.ctls)
		c = tc
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, conn: c, r: bufio.NewReader(c)}
}

func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatalf("write %q: %v", sanitize(s, 80), err)
	}
}

// reply reads one whole reply and returns its last line ("" on EOF).
func (r *raw) reply() string {
	r.t.Helper()
	r.last = nil
	for {
		line, err := r.r.ReadString('\n')
		if err != nil {
			if line != "" {
				r.last = append(r.last, line)
			}
			return strings.TrimRight(line, "\r\n")
		}
		line = strings.TrimRight(line, "\r\n")
		r.last = append(r.last, line)
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

func (r *raw) expect(prefix string) string {
	r.t.Helper()
	got := r.reply()
	if !strings.HasPrefix(got, prefix) {
		r.t.Fatalf("want reply %q..., got %q (all: %q)", prefix, got, r.last)
	}
	return got
}

func (r *raw) cmd(line, prefix string) string {
	r.t.Helper()
	r.send(line + "\r\n")
	return r.expect(prefix)
}

func (r *raw) startTLS(cfg *tls.Config) {
	r.t.Helper()
	r.cmd("STARTTLS", "220 ")
	tc := tls.Client(r.conn, cfg)
	if err := tc.Handshake(); err != nil {
		r.t.Fatal(err)
	}
	r.conn = tc
	r.r = bufio.NewReader(tc)
}

// closed reports whether the server closes the connection, reading past
// any last replies (reads EOF, not a timeout).
func (r *raw) closed() bool {
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := r.r.ReadString('\n')
		if err != nil {
			return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)
		}
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// plainAuth is the base64 PLAIN initial response.
func plainAuth(login, pass string) string {
	return b64("\x00" + login + "\x00" + pass)
}

func b64(s string) string { return base64Std.EncodeToString([]byte(s)) }

var base64Std = base64.StdEncoding
