package queue

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
)

// ---- a tiny SMTP sink on 127.0.0.1:0 ----

type tx struct {
	from  string
	rcpts []string
	data  string
	tls   bool
	user  string // AUTH identity, "" if none
	utf8  bool   // MAIL had SMTPUTF8
	// DSN parameters as the sink got them (sinkOptions.dsn): MAIL's RET
	// and ENVID, each RCPT's NOTIFY and ORCPT ("type;address").
	ret, envid    string
	notify, orcpt []string
}

type sinkOptions struct {
	startTLS    *tls.Config // offered as STARTTLS
	implicitTLS *tls.Config // the listener speaks TLS from the first byte
	// rcpt decides the reply to the n-th RCPT (from 0) overall; nil accepts.
	rcpt func(n int, to string) error
	// data decides the reply to the n-th DATA; nil accepts. It may block.
	data     func(n int) error
	user     string // AUTH PLAIN credentials accepted, if set
	password string
	noUTF8   bool // SMTPUTF8 not offered
	dsn      bool // DSN offered
	// rcptLimit, when set, answers 452 4.5.3 to the RCPTs of a transaction
	// past it, as a server's recipient limit does.
	rcptLimit int
	// greetAs, when set, is the name the sink gives in its greeting
	// instead of sink.test; ehloAs, the name its reply to EHLO begins
	// with (go-smtp's says "Hello CLIENT" and no name of its own).
	greetAs, ehloAs string
}

type sink struct {
	addr string
	o    sinkOptions

	mu     sync.Mutex
	conns  int         // guarded by mu
	closed int         // guarded by mu: connections ended
	live   []*sinkConn // guarded by mu: connections not ended
	rcpts  int         // guarded by mu
	datas  int         // guarded by mu
	txs    []tx        // guarded by mu
	delivs chan tx
}

func newSink(t testing.TB, o sinkOptions) *sink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: l.Addr().String(), o: o, delivs: make(chan tx, 100)}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(c *gosmtp.Conn) (gosmtp.Session, error) {
		return &sinkSession{s: s, c: c}, nil
	}))
	srv.Domain = "sink.test"
	srv.ErrorLog = nopLogger{}
	srv.TLSConfig = o.startTLS
	srv.EnableSMTPUTF8 = !o.noUTF8
	srv.EnableDSN = o.dsn
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l = &countingListener{Listener: l, s: s}
	if o.implicitTLS != nil {
		l = tls.NewListener(l, o.implicitTLS)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// countingListener counts TCP connections (go-smtp makes a new session
// after STARTTLS, so sessions are not connections).
type countingListener struct {
	net.Listener
	s *sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &sinkConn{Conn: c, s: l.s}
	l.s.mu.Lock()
	l.s.conns++
	l.s.live = append(l.s.live, sc)
	l.s.mu.Unlock()
	return sc, nil
}

// sinkConn counts the end of a connection, however it ends.
type sinkConn struct {
	net.Conn
	s       *sink
	once    sync.Once
	greeted bool // the greeting was written
}

// Write names the sink as sinkOptions.greetAs and ehloAs say: the
// greeting is its first write, the EHLO reply one write.
func (c *sinkConn) Write(p []byte) (int, error) {
	w := p
	if as := c.s.o.greetAs; as != "" && !c.greeted {
		w = bytes.Replace(w, []byte("220 sink.test "), []byte("220 "+as+" "), 1)
	}
	c.greeted = true
	if as := c.s.o.ehloAs; as != "" && bytes.HasPrefix(w, []byte("250-Hello ")) {
		w = bytes.Replace(w, []byte("250-Hello "), []byte("250-"+as+" Hello "), 1)
	}
	if _, err := c.Conn.Write(w); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *sinkConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		c.s.closed++
		c.s.live = slices.DeleteFunc(c.s.live, func(x *sinkConn) bool { return x == c })
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// openConns is how many connections the sink has not seen end.
func (s *sink) openConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns - s.closed
}

// dropAll closes every connection from the server side, as a server does
// with a connection idle for too long, and returns how many it closed.
func (s *sink) dropAll() int {
	s.mu.Lock()
	live := slices.Clone(s.live)
	s.mu.Unlock()
	for _, c := range live {
		c.Close()
	}
	return len(live)
}

func (s *sink) counts() (conns, txs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, len(s.txs)
}

func (s *sink) transactions() []tx {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tx(nil), s.txs...)
}

type sinkSession struct {
	s    *sink
	c    *gosmtp.Conn
	user string
	cur  tx
}

func (ss *sinkSession) Reset()        { ss.cur = tx{} }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, opts *gosmtp.MailOptions) error {
	if ss.s.o.user != "" && ss.user == "" {
		return gosmtp.ErrAuthRequired
	}
	ss.cur = tx{from: from, utf8: opts != nil && opts.UTF8}
	if opts != nil {
		ss.cur.ret, ss.cur.envid = string(opts.Return), opts.EnvelopeID
	}
	return nil
}

func (ss *sinkSession) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	ss.s.mu.Lock()
	n := ss.s.rcpts
	ss.s.rcpts++
	ss.s.mu.Unlock()
	if ss.s.o.rcpt != nil {
		if err := ss.s.o.rcpt(n, to); err != nil {
			return err
		}
	}
	if l := ss.s.o.rcptLimit; l > 0 && len(ss.cur.rcpts) >= l {
		return smtpErr(452, gosmtp.EnhancedCode{4, 5, 3}, "too many recipients")
	}
	ss.cur.rcpts = append(ss.cur.rcpts, to)
	var notify []string
	var orcpt string
	if opts != nil {
		for _, n := range opts.Notify {
			notify = append(notify, string(n))
		}
		if opts.OriginalRecipient != "" {
			orcpt = strings.ToLower(string(opts.OriginalRecipientType)) + ";" + opts.OriginalRecipient
		}
	}
	ss.cur.notify = append(ss.cur.notify, strings.Join(notify, ","))
	ss.cur.orcpt = append(ss.cur.orcpt, orcpt)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	n := ss.s.datas
	ss.s.datas++
	ss.s.mu.Unlock()
	if ss.s.o.data != nil {
		if err := ss.s.o.data(n); err != nil {
			return err
		}
	}
	t := ss.cur
	t.data = string(b)
	_, t.tls = ss.c.TLSConnectionState()
	t.user = ss.user
	ss.s.mu.Lock()
	ss.s.txs = append(ss.s.txs, t)
	ss.s.mu.Unlock()
	select {
	case ss.s.delivs <- t:
	default: // nobody is counting (benchmarks)
	}
	return nil
}

func (ss *sinkSession) AuthMechanisms() []string {
	if ss.s.o.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		if user != ss.s.o.user || pass != ss.s.o.password {
			return gosmtp.ErrAuthFailed
		}
		ss.user = user
		return nil
	}), nil
}

func smtpErr(code int, enh gosmtp.EnhancedCode, msg string) error {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: enh, Message: msg}
}

// ---- a test CA ----

type testCA struct {
	pool *x509.CertPool
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "courriel test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{pool: pool, cert: cert, key: key}
}

// serverConfig returns a TLS config with a leaf for names (DNS names or IPs).
func (ca *testCA) serverConfig(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// ---- a clock that moves only when told ----

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ---- a resolver from maps ----

type fakeResolver struct {
	mx  map[string][]*net.MX // missing: not found
	ips map[string][]string  // missing: not found
	err error                // when set, every lookup fails with it (temporary)

	mu    sync.Mutex
	asked []string // guarded by mu: every name looked up, as asked
}

// key records a name asked and returns it without its final dot, as the
// maps have it.
func (r *fakeResolver) key(name string) string {
	r.mu.Lock()
	r.asked = append(r.asked, name)
	r.mu.Unlock()
	return strings.TrimSuffix(name, ".")
}

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (r *fakeResolver) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	name = r.key(name)
	if r.err != nil {
		return nil, r.err
	}
	mx, ok := r.mx[name]
	if !ok {
		return nil, notFound(name)
	}
	out := make([]*net.MX, len(mx))
	for i, m := range mx {
		c := *m
		out[i] = &c
	}
	return out, nil
}

func (r *fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	host = r.key(host)
	if r.err != nil {
		return nil, r.err
	}
	ips, ok := r.ips[host]
	if !ok {
		return nil, notFound(host)
	}
	var out []net.IPAddr
	for _, s := range ips {
		out = append(out, net.IPAddr{IP: net.ParseIP(s)})
	}
	return out, nil
}

// dialTo returns a Dialer that sends port-25 connections to 127.0.0.1 to
// the sink and refuses every other address.
func dialTo(sinkAddr string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != "127.0.0.1:25" {
			return nil, errors.New("connection refused (test dialer)")
		}
		var d net.Dialer
		return d.DialContext(ctx, network, sinkAddr)
	}
}

// ---- the queue under test ----

type harness struct {
	t    *testing.T
	q    *Queue
	done chan string // job ends
	stop context.CancelFunc
	ran  chan struct{}
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// baseOptions are the options every test starts from.
func baseOptions(t *testing.T, dir string, clock *fakeClock) Options {
	return Options{
		Dir:          dir,
		Hostname:     "mta.test",
		TLSPolicy:    PolicyNone,
		Now:          clock.Now,
		PollInterval: 20 * time.Millisecond,
		Resolver:     &fakeResolver{},
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("no dialer configured in this test")
		},
		ConnectTimeout: 5 * time.Second,
		CommandTimeout: 10 * time.Second,
	}
}

// start opens the queue and runs it until the test ends.
// openClient opens the spool of o as `courriel queue` does beside a
// running server (Options.Client), closed when the test ends.
func openClient(t *testing.T, o Options) *Queue {
	t.Helper()
	o.Client = true
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func start(t *testing.T, o Options) *harness {
	t.Helper()
	return startWith(t, o, nil)
}

// startWith is start with prep, when set, run on the queue before Run (a
// test's hooks).
func startWith(t *testing.T, o Options, prep func(*Queue)) *harness {
	t.Helper()
	h := &harness{t: t, done: make(chan string, 1000), ran: make(chan struct{}), logs: &lockedBuffer{}}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.MultiWriter(h.logs, t.Output()), nil))
	}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	q.onJobDone = func(id string) { h.done <- id }
	if prep != nil {
		prep(q)
	}
	h.q = q
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() {
		defer close(h.ran)
		if err := q.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(h.close)
	return h
}

// close stops the runner and closes the queue; safe to call twice.
func (h *harness) close() {
	h.stop()
	<-h.ran
	h.q.Close()
}

// waitJob waits for the next job to end.
func (h *harness) waitJob() string {
	h.t.Helper()
	select {
	case id := <-h.done:
		return id
	case <-time.After(20 * time.Second):
		h.t.Fatal("no delivery job ended within 20s")
		return ""
	}
}

// waitUntil waits, job by job, until cond holds.
func (h *harness) waitUntil(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(20 * time.Second)
	for !cond() {
		select {
		case <-h.done:
		case <-deadline:
			h.t.Fatalf("timed out waiting until %s", what)
		}
	}
}

func (h *harness) empty() bool {
	l, err := h.q.List()
	if err != nil {
		h.t.Fatal(err)
	}
	return len(l) == 0
}

func (h *harness) enqueue(from string, rcpts ...string) string {
	h.t.Helper()
	id, err := h.q.Enqueue(context.Background(), from, rcpts, []byte(testMessage))
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

const testMessage = "From: <alice@local.test>\r\nTo: <bob@remote.test>\r\nSubject: queue test\r\nMessage-ID: <1@local.test>\r\n\r\nHello.\r\n.leading dot\r\n"

// bounces collects what Options.Bounce is given.
type bounces struct {
	mu      sync.Mutex
	reports [][]byte
	utf8    []bool // guarded by mu: per report, whether its options ask for SMTPUTF8
	got     chan []byte
}

func newBounces() *bounces { return &bounces{got: make(chan []byte, 100)} }

// startRefused starts a queue that routes everything to a sink refusing
// every recipient for good (550 5.1.1), its bounces collected.
func startRefused(t *testing.T) (*harness, *bounces, *sink) {
	t.Helper()
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "user unknown")
	}})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn
	return start(t, o), b, s
}

func (b *bounces) fn(_ context.Context, _ *Message, report []byte, opts ...Option) error {
	var m Message
	for _, o := range opts {
		o(&m)
	}
	b.mu.Lock()
	b.reports = append(b.reports, report)
	b.utf8 = append(b.utf8, m.SMTPUTF8)
	b.mu.Unlock()
	b.got <- report
	return nil
}

func (b *bounces) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reports)
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// smtp-sink is known by its greeting, not by an answer on the port it was
// given: another test's server that got the port is not taken for it.
func TestNoOtherTestsServer(t *testing.T) {
	t.Parallel()
	other := newSink(t, sinkOptions{})
	if smtpSinkListens(other.addr, make(chan struct{})) {
		t.Errorf("a server that is not smtp-sink was taken for it")
	}
}
