package integration

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// sink is a remote MTA on loopback: a go-smtp server recording what it
// accepts, with a switchable answer.
type sink struct {
	addr string
	srv  *gosmtp.Server
	mu   sync.Mutex
	got  []sunk
	// reject: RCPT addresses answered 550; deferAll: every RCPT gets 451.
	reject   map[string]bool
	deferAll bool
	// dataDelay holds the reply to each final dot; reading counts the
	// messages whose data was read (their reply maybe still held).
	dataDelay time.Duration
	reading   int
}

type sunk struct {
	from string
	to   []string
	data string
	tls  bool
}

func (k *sink) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	return &sinkSession{k: k, tls: isTLS}, nil
}

type sinkSession struct {
	k    *sink
	tls  bool
	from string
	to   []string
}

func (s *sinkSession) AuthMechanisms() []string { return nil }
func (s *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.k.mu.Lock()
	defer s.k.mu.Unlock()
	if s.k.deferAll {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	}
	if s.k.reject[to] {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	s.to = append(s.to, to)
	return nil
}
func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.reading++
	delay := s.k.dataDelay
	s.k.mu.Unlock()
	time.Sleep(delay)
	s.k.mu.Lock()
	s.k.got = append(s.k.got, sunk{from: s.from, to: s.to, data: string(b), tls: s.tls})
	s.k.mu.Unlock()
	return nil
}
func (s *sinkSession) Reset()        { s.from, s.to = "", nil }
func (s *sinkSession) Logout() error { return nil }

func startSink(t *testing.T, ca *testenv.CA) *sink { return startSinkTB(t, ca) }

// startServerDeferred starts a server whose mail for foreign.example goes
// to a sink that answers 4xx to everything: it stays queued, for the queue
// commands to see, until the test lets the sink take it (deferAll false).
func startServerDeferred(t *testing.T) (*server, *sink) {
	t.Helper()
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	k.mu.Lock()
	k.deferAll = true
	k.mu.Unlock()
	return startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr))), k
}

func startSinkTB(t testing.TB, ca *testenv.CA) *sink {
	t.Helper()
	k := &sink{reject: map[string]bool{}}
	srv := gosmtp.NewServer(k)
	srv.Domain = "sink.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "localhost", "127.0.0.1")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr, k.srv = ln.Addr().String(), srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return k
}

func (k *sink) messages() []sunk {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sunk(nil), k.got...)
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func submit(t *testing.T, s *server, user, pass, from string, to []string, body string) error {
	t.Helper()
	c, err := gosmtp.DialStartTLS(s.Sub, &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(plainAuth(user, pass)); err != nil {
		return err
	}
	return c.SendMail(from, to, strings.NewReader(body))
}

func TestQueueRemoteDelivery(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	k.mu.Lock()
	k.reject["bad@foreign.example"] = true
	k.mu.Unlock()

	body := "From: test0@hosted-domain.com\r\nTo: friend@foreign.example\r\nSubject: outbound\r\nMessage-ID: <out-1@hosted-domain.com>\r\n\r\nhello world\r\n"
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com",
		[]string{"friend@foreign.example", "other@foreign.example"}, body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sink to receive the message", func() bool { return len(k.messages()) > 0 })
	got := k.messages()
	if len(got) != 1 || got[0].from != "test0@hosted-domain.com" || len(got[0].to) != 2 || !got[0].tls ||
		!strings.Contains(got[0].data, "Subject: outbound") {
		t.Errorf("sink got %+v; want one TLS transaction with two recipients", got)
	}

	// An inbound message for a forwarded alias goes out through the queue.
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net", "--to", "fwd@hosted-domain.com", "--body", "forward me")
	if !accepted(out) {
		t.Fatalf("forward refused:\n%s", out)
	}
	waitFor(t, "the forward", func() bool { return len(k.messages()) == 2 })
	if m := k.messages()[1]; len(m.to) != 1 || m.to[0] != "someone@foreign.example" || !strings.Contains(m.data, "forward me") {
		t.Errorf("forward: %+v", m)
	}

	// A 5xx from the remote MTA bounces to the sender's maildir, as a DSN
	// a client can parse.
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"bad@foreign.example"},
		"Subject: will bounce\r\nMessage-ID: <bounce-me@hosted-domain.com>\r\n\r\nbye\r\n"); err != nil {
		t.Fatal(err)
	}
	var dsn string
	waitFor(t, "the bounce", func() bool {
		for _, f := range s.maildirFiles(t, "xomail", "new") {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), "multipart/report") {
				dsn = string(b)
				return true
			}
		}
		return false
	})
	for _, re := range []string{`(?m)^Return-Path: <>`, `report-type="?delivery-status`, `(?m)^Final-Recipient: rfc822; ?bad@foreign.example`,
		`(?m)^Action: failed`, `(?m)^Status: 5\.1\.1`, `no such user here`, `Message-ID: <bounce-me@hosted-domain.com>`} {
		if !regexp.MustCompile(re).MatchString(dsn) {
			t.Errorf("DSN lacks %s:\n%s", re, dsn)
		}
	}
	if python, err := lookPath("python3"); err == nil {
		script := `import email, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"))
print(m.get_content_type(), m.get_param("report-type"))
for p in m.walk(): print(p.get_content_type())
`
		f, _ := os.CreateTemp(t.TempDir(), "dsn")
		f.WriteString(dsn)
		f.Close()
		out, err := run(t, script, python, "-", f.Name())
		if err != nil || !strings.Contains(out, "multipart/report delivery-status") || !strings.Contains(out, "message/delivery-status") {
			t.Errorf("python email cannot parse the DSN: %v\n%s", err, out)
		}
	}
}

func lookPath(name string) (string, error) {
	for _, dir := range strings.Split(os.Getenv("PATH"), ":") {
		p := dir + "/" + name
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("not found")
}

// A full queue survives SIGKILL: after a restart, everything is delivered
// exactly once.
func TestQueueSurvivesSIGKILL(t *testing.T) {
	s, k := startServerDeferred(t)
	const n = 20
	for i := range n {
		body := fmt.Sprintf("Subject: queued %02d\r\n\r\nbody %02d\r\n", i, i)
		if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{fmt.Sprintf("r%02d@foreign.example", i)}, body); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := run(t, "", binary, "queue", "-config", s.config, "list")
	if !strings.Contains(out, fmt.Sprintf(" Kbytes in %d Requests.\n", n)) {
		t.Errorf("queue list:\n%s", out)
	}
	s.stop(syscall.SIGKILL)
	k.mu.Lock()
	k.deferAll = false
	k.mu.Unlock()
	s.start()
	if out, err := run(t, "", binary, "queue", "-config", s.config, "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	waitFor(t, "every queued message", func() bool { return len(k.messages()) >= n })
	time.Sleep(time.Second) // anything sent twice would show up now
	seen := map[string]int{}
	for _, m := range k.messages() {
		for _, r := range m.to {
			seen[r]++
		}
	}
	for i := range n {
		if r := fmt.Sprintf("r%02d@foreign.example", i); seen[r] != 1 {
			t.Errorf("%s delivered %d times", r, seen[r])
		}
	}
	waitFor(t, "an empty queue", func() bool {
		out, _ := run(t, "", binary, "queue", "-config", s.config, "list")
		return strings.Contains(out, "empty")
	})
}

// SIGTERM while the queue waits for a remote server's reply to its final
// dot: the delivery finishes within the grace period, its 250 recorded,
// so the restarted server does not send the message again (RFC 1047).
func TestQueueShutdownAwaitsFinalReply(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	k.mu.Lock()
	k.dataDelay = 4 * time.Second
	k.mu.Unlock()
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"r@foreign.example"}, "Subject: slow\r\n\r\nbody\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the data at the remote server", func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.reading > 0
	})
	time.Sleep(time.Second)
	s.stop(syscall.SIGTERM)
	logs := s.logs()
	if !regexp.MustCompile(`to=<r@foreign.example> relay=\S+ delay=\S+ dsn=2\.0\.0 status="sent \(250 `).MatchString(logs) ||
		strings.Contains(logs, "interrupted by shutdown") {
		t.Errorf("the delivery was not awaited:\n%s", logs)
	}
	waitFor(t, "the message at the remote server", func() bool { return len(k.messages()) > 0 })
	k.mu.Lock()
	k.dataDelay = 0
	k.mu.Unlock()
	s.start()
	if out, err := run(t, "", binary, "queue", "-config", s.config, "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	time.Sleep(2 * time.Second) // a copy sent again would show up now
	if n := len(k.messages()); n != 1 {
		t.Errorf("the remote server got %d copies, want 1", n)
	}
}
