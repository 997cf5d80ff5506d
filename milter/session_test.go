package milter

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"courriel/internal/testenv"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deadAddr is a loopback address nobody listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	return testenv.RefusingAddr(t)
}

var testInfo = ConnInfo{Client: netip.MustParseAddrPort("192.0.2.7:40000"), Hostname: "mx.example.org", Helo: "client.example.net", Listener: "smtp"}

func TestDeadMilterPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy Policy
		want   *Reply
	}{
		{Tempfail, &Reply{451, "4.7.1", "Service unavailable - try again later"}},
		{Accept, nil},
		{Reject, &Reply{550, "5.7.1", "Command rejected"}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			var logs syncBuffer
			c, err := NewChain([]Config{{Address: "inet:" + deadAddr(t), DefaultAction: tc.policy, ConnectTimeout: time.Second}},
				slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // three messages, on two SMTP sessions
				s := c.NewSession(testInfo, nil)
				v := s.Mail("a@example.net", "ID1")
				if (v.Reply == nil) != (tc.want == nil) || (v.Reply != nil && *v.Reply != *tc.want) {
					t.Fatalf("message %d: Mail = %v, want %v", i, v.Reply, tc.want)
				}
				if tc.want == nil {
					if v := s.Rcpt("b@example.org"); v.Reply != nil {
						t.Fatalf("Rcpt = %v", v.Reply)
					}
					msg := "Subject: x\r\n\r\nbody\r\n"
					if r := s.Message(strings.NewReader(msg), Spool{}); r.Reply != nil || r.Discard || stored(t, r) != msg {
						t.Fatalf("Message = %+v", r)
					}
				}
				if i != 1 {
					s.Close()
				}
			}
			if n := strings.Count(logs.String(), "milter unavailable"); n != 1 {
				t.Errorf("%d 'milter unavailable' lines, want 1:\n%s", n, logs.String())
			}
		})
	}
}

// A milter that takes the connection and never answers costs the connect
// timeout (negotiation included), then its policy applies.
func TestSilentMilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	c, err := NewChain([]Config{{Address: "inet:" + ln.Addr().String(), ConnectTimeout: 200 * time.Millisecond}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	if v := s.Mail("a@example.net", "ID1"); v.Reply == nil || v.Reply.Code != 451 {
		t.Fatalf("Mail = %v, want 451", v.Reply)
	}
}

// stored is the message a Result says to store.
func stored(t *testing.T, r *Result) string {
	t.Helper()
	body, err := io.ReadAll(io.NewSectionReader(r.Body, 0, r.Body.Size()))
	if err != nil {
		t.Fatal(err)
	}
	return string(r.Header) + string(body)
}

// recorder is a milter (the library's server side) that records what it
// is told and answers with respond.
type recorder struct {
	gomilter.NoOpMilter
	mu      *sync.Mutex
	events  *[]string
	respond func(stage string) *gomilter.Response
	eom     func(m gomilter.Modifier)
}

func (r *recorder) note(e string) {
	r.mu.Lock()
	*r.events = append(*r.events, e)
	r.mu.Unlock()
}

func (r *recorder) answer(stage string) (*gomilter.Response, error) {
	if r.respond != nil {
		if resp := r.respond(stage); resp != nil {
			return resp, nil
		}
	}
	return gomilter.RespContinue, nil
}

func (r *recorder) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("connect " + host + " " + family + " " + addr + " j=" + m.Get(gomilter.MacroMTAFQDN) + " client_addr=" + m.Get(gomilter.MacroClientAddr))
	return r.answer("connect")
}

func (r *recorder) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("helo " + name)
	return r.answer("helo")
}

func (r *recorder) MailFrom(from, _ string, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("mail " + from + " i=" + m.Get(gomilter.MacroQueueId) + " auth=" + m.Get(gomilter.MacroAuthAuthen) + " host=" + m.Get(gomilter.MacroMailHost))
	return r.answer("mail")
}

func (r *recorder) RcptTo(rcpt, _ string, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("rcpt " + rcpt + " host=" + m.Get(gomilter.MacroRcptHost))
	return r.answer("rcpt " + rcpt)
}

func (r *recorder) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("header " + name + "=" + value)
	return r.answer("header")
}

func (r *recorder) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("body " + string(chunk))
	return r.answer("body")
}

func (r *recorder) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	r.note("eom i=" + m.Get(gomilter.MacroQueueId))
	if r.eom != nil {
		r.eom(m)
	}
	return r.answer("eom")
}

func (r *recorder) Abort(m gomilter.Modifier) error {
	r.note("abort")
	return nil
}

// serveRecorder starts a milter server; it returns its address and events.
func serveRecorder(t *testing.T, respond func(string) *gomilter.Response, eom func(gomilter.Modifier)) (string, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var events []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(gomilter.WithMilter(func() gomilter.Milter {
		return &recorder{mu: &mu, events: &events, respond: respond, eom: eom}
	}), gomilter.WithActions(gomilter.AllClientSupportedActionMasks))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "inet:" + ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), events...)
	}
}

// TestQuotedSenderHost: {mail_host} is the domain after the last '@' of a
// sender whose quoted local part holds one.
func TestQuotedSenderHost(t *testing.T) {
	addr, events := serveRecorder(t, nil, nil)
	c, err := NewChain([]Config{{Address: addr}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := c.NewSession(testInfo, nil)
	defer s.Close()
	if v := s.Mail(`"x@y"@example.net`, "QID1"); v.Reply != nil {
		t.Fatal(v.Reply)
	}
	if v := s.Rcpt("b@example.org"); v.Reply != nil {
		t.Fatal(v.Reply)
	}
	want := `mail "x@y"@example.net i=QID1 auth= host=example.net`
	if got := events(); !slices.Contains(got, want) {
		t.Errorf("no %q among %q", want, got)
	}
}

func TestEventsAndChain(t *testing.T) {
	// Two milters: the first adds a header, the second must see it.
	first, _ := serveRecorder(t, nil, func(m gomilter.Modifier) { m.AddHeader("X-First", "seen") })
	second, events := serveRecorder(t, func(stage string) *gomilter.Response {
		if strings.Contains(stage, "refused@example.org") {
			r, _ := gomilter.RejectWithCodeAndReason(550, "5.1.1 no such user here")
			return r
		}
		return nil
	}, nil)
	c, err := NewChain([]Config{{Address: first}, {Address: second}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := testInfo
	s := c.NewSession(info, nil)
	defer s.Close()
	s.SetAuth("xomail", "PLAIN")
	if v := s.Mail("a@example.net", "QID1"); v.Reply != nil {
		t.Fatal(v.Reply)
	}
	if v := s.Rcpt("b@example.org"); v.Reply != nil {
		t.Fatal(v.Reply)
	}
	if v := s.Rcpt(`"x@y"@Example.com`); v.Reply != nil {
		t.Fatal(v.Reply)
	}
	if v := s.Rcpt("refused@example.org"); v.Reply == nil || *v.Reply != (Reply{550, "5.1.1", "no such user here"}) {
		t.Fatalf("Rcpt = %v", v.Reply)
	}
	res := s.Message(strings.NewReader("Received: from x\r\nSubject: hi\r\n\r\nbody\r\n"), Spool{})
	if res.Reply != nil || !res.Modified {
		t.Fatalf("Message = %+v", res)
	}
	if want := "Received: from x\r\nSubject: hi\r\nX-First: seen\r\n\r\nbody\r\n"; stored(t, res) != want {
		t.Errorf("message %q, want %q", stored(t, res), want)
	}
	got := strings.Join(events(), "\n")
	for _, want := range []string{
		// No reverse name: "unknown", as Postfix says; the address is real.
		"connect unknown tcp4 192.0.2.7 j=mx.example.org client_addr=192.0.2.7",
		"helo client.example.net",
		"mail a@example.net i=QID1 auth=xomail host=example.net",
		"rcpt b@example.org host=example.org",
		// {rcpt_host} follows the last '@', as a quoted local part may hold
		// one; so does {mail_host} (TestQuotedSenderHost).
		`rcpt "x@y"@Example.com host=Example.com`,
		"header Subject=hi",
		"header X-First=seen",
		"body body\r\n",
		"eom i=QID1",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("event %q missing:\n%s", want, got)
		}
	}
}

func TestEndOfMessageActions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		resp  *gomilter.Response
		eom   func(gomilter.Modifier)
		check func(t *testing.T, r *Result)
	}{
		{"discard", gomilter.RespDiscard, nil, func(t *testing.T, r *Result) {
			if !r.Discard || r.Reply != nil {
				t.Errorf("%+v", r)
			}
		}},
		{"tempfail", gomilter.RespTempFail, nil, func(t *testing.T, r *Result) {
			if r.Reply == nil || r.Reply.Code != 451 {
				t.Errorf("%+v", r)
			}
		}},
		{"quarantine", nil, func(m gomilter.Modifier) { m.Quarantine("virus found") }, func(t *testing.T, r *Result) {
			if !r.Junk || !strings.Contains(r.JunkReason, "virus found") {
				t.Errorf("%+v", r)
			}
		}},
		{"spam header", nil, func(m gomilter.Modifier) { m.AddHeader("X-Spam", "Yes") }, func(t *testing.T, r *Result) {
			if !r.Junk {
				t.Errorf("%+v", r)
			}
		}},
		{"envelope", nil, func(m gomilter.Modifier) {
			m.ChangeFrom("<new@example.org>", "")
			m.AddRecipient("<added@example.org>", "")
			m.DeleteRecipient("<b@example.org>")
		}, func(t *testing.T, r *Result) {
			if r.From == nil || *r.From != "new@example.org" || strings.Join(r.AddRcpts, ",") != "added@example.org" ||
				strings.Join(r.DelRcpts, ",") != "b@example.org" {
				t.Errorf("%+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, _ := serveRecorder(t, func(stage string) *gomilter.Response {
				if stage == "eom" {
					return tc.resp
				}
				return nil
			}, tc.eom)
			c, err := NewChain([]Config{{Address: addr}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := c.NewSession(testInfo, nil)
			defer s.Close()
			s.Mail("a@example.net", "Q")
			s.Rcpt("b@example.org")
			tc.check(t, s.Message(strings.NewReader("Subject: hi\r\n\r\nbody\r\n"), Spool{}))
			// The session goes on: a second transaction works.
			if v := s.Mail("a@example.net", "Q2"); v.Reply != nil {
				t.Errorf("second Mail: %v", v.Reply)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	addr, _ := serveRecorder(t, nil, nil)
	if err := Probe(Config{Address: addr}); err != nil {
		t.Errorf("live milter: %v", err)
	}
	if err := Probe(Config{Address: "inet:" + deadAddr(t)}); err == nil {
		t.Error("dead milter answers")
	}
}
