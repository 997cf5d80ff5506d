package queue

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// oddServer is an SMTP server on 127.0.0.1 whose every reply a test
// writes: greeting, then one reply per command line (answer), the
// message's lines after a 354 read until the final dot. It records what
// it was sent. Each connection ends after 200 lines or when answer says
// "" (hang up) or at QUIT.
type oddServer struct {
	addr     string
	greeting string
	// tls, when set, is what a STARTTLS answered 2xx starts (set
	// before the first connection).
	tls *tls.Config
	// answer returns the reply (one or more lines, CRLF added) to a
	// command line (CRLF removed); n counts the commands of the
	// connection from 0. "" hangs up.
	answer func(n int, cmd string) string

	mu    sync.Mutex
	cmds  []string // guarded by mu: every command line, all connections
	datas []string // guarded by mu: each message received after a 354
	conns int      // guarded by mu
}

func newOddServer(t *testing.T, greeting string, answer func(n int, cmd string) string) *oddServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s := &oddServer{addr: ln.Addr().String(), greeting: greeting, answer: answer}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *oddServer) serve(c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	s.conns++
	s.mu.Unlock()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(reply string) {
		for _, l := range strings.Split(reply, "\n") {
			w.WriteString(l + "\r\n")
		}
		w.Flush()
	}
	say(s.greeting)
	for n := range 200 {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.mu.Lock()
		s.cmds = append(s.cmds, line)
		s.mu.Unlock()
		reply := s.answer(n, line)
		if reply == "" {
			return
		}
		say(reply)
		if strings.HasPrefix(reply, "354") {
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(l)
			}
			s.mu.Lock()
			s.datas = append(s.datas, data.String())
			s.mu.Unlock()
			say(s.answer(n, "."))
		}
		if strings.HasPrefix(strings.ToUpper(line), "QUIT") {
			return
		}
		// A reply is its last line's (readReply).
		if last := reply[strings.LastIndex(reply, "\n")+1:]; verb(line) == "STARTTLS" && last[0] == '2' && s.tls != nil {
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c = tc
			r, w = bufio.NewReader(c), bufio.NewWriter(c)
		}
	}
}

func (s *oddServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *oddServer) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.datas...)
}

// verb is a command line's verb, upper case.
func verb(cmd string) string {
	v, _, _ := strings.Cut(cmd, " ")
	return strings.ToUpper(v)
}

// plainAnswer answers as a plain server whose EHLO reply ends with
// ehlo's lines (its keywords, "\n" between them) and that accepts
// everything; rcpt, when set, answers RCPT.
func plainAnswer(ehlo string, rcpt func(cmd string) string) func(n int, cmd string) string {
	return func(n int, cmd string) string {
		switch verb(cmd) {
		case "EHLO":
			if ehlo == "" {
				return "250 odd.test"
			}
			return "250-odd.test\n" + continued(ehlo)
		case "RCPT":
			if rcpt != nil {
				return rcpt(cmd)
			}
		case "DATA":
			return "354 go ahead"
		case "QUIT":
			return "221 bye"
		}
		return "250 2.0.0 ok"
	}
}

// continued makes the lines of a multi-line reply: "250-" before each
// but the last, which gets "250 ".
func continued(lines string) string {
	l := strings.Split(lines, "\n")
	for i := range l {
		sep := "-"
		if i == len(l)-1 {
			sep = " "
		}
		l[i] = "250" + sep + l[i]
	}
	return strings.Join(l, "\n")
}

// startOdd starts a queue routing remote.test to srv, its DSNs collected.
func startOdd(t *testing.T, srv *oddServer, tweak func(*Options)) (*harness, *bounces) {
	t.Helper()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": srv.addr}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn
	if tweak != nil {
		tweak(&o)
	}
	return start(t, o), b
}

// A server whose EHLO names a SIZE smaller than the message is not sent
// it: the message bounces 5.3.4 before MAIL, as Postfix's smtp(8) bounces
// it ("message size N exceeds size limit M of server H"), instead of
// being sent whole for the server to refuse (or take, when it does not
// check its own limit). SIZE without a limit, SIZE 0 and a SIZE that is
// no number say nothing of the message.
func TestServerSizeLimit(t *testing.T) {
	t.Parallel()
	size := len(testMessage)
	for _, tc := range []struct {
		name string
		ehlo string
		sent bool
	}{
		{"smaller than the message", fmt.Sprintf("SIZE %d", size-1), false},
		{"smaller, with PIPELINING", fmt.Sprintf("PIPELINING\nSIZE %d", size-1), false},
		{"the message's size", fmt.Sprintf("SIZE %d", size), true},
		{"larger", "SIZE 10240000", true},
		{"no limit named", "SIZE", true},
		{"zero: no fixed limit", "SIZE 0", true},
		{"no number", "SIZE 10M", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", plainAnswer(tc.ehlo, nil))
			h, b := startOdd(t, srv, nil)
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			if !h.empty() {
				m, _, _ := h.q.Show(id)
				t.Fatalf("message still queued: %+v", m.Recipients)
			}
			mails := 0
			for _, c := range srv.commands() {
				if verb(c) == "MAIL" {
					mails++
				}
			}
			if tc.sent {
				if len(srv.messages()) != 1 || b.count() != 0 {
					t.Fatalf("messages received %d, DSNs %d; want the message delivered", len(srv.messages()), b.count())
				}
				return
			}
			if mails != 0 || len(srv.messages()) != 0 {
				t.Errorf("commands %q: want no MAIL", srv.commands())
			}
			dsn := string(recv(t, b.got, "the bounce"))
			for _, want := range []string{
				"Status: 5.3.4\r\n",
				fmt.Sprintf("Diagnostic-Code: X-Courriel; message size %d exceeds size limit %d of\r\n server 127.0.0.1[127.0.0.1]:", size, size-1),
				fmt.Sprintf("<bob@remote.test>: message size %d exceeds size limit %d of server\r\n127.0.0.1[127.0.0.1]:", size, size-1),
			} {
				if !strings.Contains(dsn, want) {
					t.Errorf("DSN lacks %q:\n%s", want, dsn)
				}
			}
		})
	}
}

// The size declared in MAIL, and checked against the server's SIZE, is
// that of what is sent: the forwards' trace (WithRemoteHeader) goes on top
// of a copy that leaves, and was left out, so a server at its limit took
// the MAIL and refused the data as larger than declared.
func TestSizeCountsTheRemoteHeader(t *testing.T) {
	t.Parallel()
	trace := "Delivered-To: alias@local.test\r\n"
	sent := len(trace) + len(testMessage)
	for _, tc := range []struct {
		name  string
		limit int
		sent  bool
	}{
		{"the size sent", sent, true},
		{"the message's size alone", len(testMessage), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", plainAnswer(fmt.Sprintf("SIZE %d", tc.limit), nil))
			h, b := startOdd(t, srv, nil)
			if _, _, err := h.q.Accept(context.Background(), "M1", "alice@local.test", []string{"bob@remote.test"}, nil,
				delivery.MemContent(testMessage), WithRemoteHeader([]byte(trace))); err != nil {
				t.Fatal(err)
			}
			h.waitJob()
			if !tc.sent {
				dsn := string(recv(t, b.got, "the bounce"))
				if want := fmt.Sprintf("message size %d exceeds size limit %d", sent, tc.limit); !strings.Contains(dsn, want) {
					t.Errorf("DSN lacks %q:\n%s", want, dsn)
				}
				return
			}
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("messages received %d, DSNs %d; want the message", len(msgs), b.count())
			}
			got := strings.ReplaceAll("\r\n"+msgs[0], "\r\n..", "\r\n.")[2:] // dot-stuffing undone
			for _, c := range srv.commands() {
				if verb(c) == "MAIL" && !strings.HasSuffix(c, fmt.Sprintf(" SIZE=%d", len(got))) {
					t.Errorf("%q for %d bytes sent", c, len(got))
				}
			}
			if len(got) != sent {
				t.Errorf("%d bytes sent, want %d", len(got), sent)
			}
		})
	}
}

// A server that refuses EHLO gets HELO, as Postfix's smtp(8) falls back
// to it after any reply to EHLO but 2xx and 421 (go-smtp's client, after
// 500 and 502 only), and the message goes in plain SMTP; 421 to EHLO, or
// a refused HELO, is the host refusing to talk: the message waits.
func TestEHLORefusedFallsBackToHELO(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		ehlo, helo string
		sent       bool
		wantCmds   []string // the first commands
	}{
		{"500", "500 5.5.1 command unrecognized", "250 odd.test", true, []string{"EHLO mta.test", "HELO mta.test", "MAIL FROM:<alice@local.test>"}},
		{"501", "501 5.5.4 syntax error", "250 odd.test", true, []string{"EHLO mta.test", "HELO mta.test", "MAIL FROM:<alice@local.test>"}},
		{"554", "554 5.7.1 no ESMTP here", "250 odd.test", true, []string{"EHLO mta.test", "HELO mta.test", "MAIL FROM:<alice@local.test>"}},
		{"450", "450 4.3.2 try HELO", "250 odd.test", true, []string{"EHLO mta.test", "HELO mta.test", "MAIL FROM:<alice@local.test>"}},
		{"421 ends the session", "421 4.3.2 closing", "250 odd.test", false, []string{"EHLO mta.test"}},
		{"HELO refused too", "501 5.5.4 syntax error", "554 5.7.1 go away", false, []string{"EHLO mta.test", "HELO mta.test"}},
		{"HELO refused after 502", "502 5.5.2 no", "554 5.7.1 go away", false, []string{"EHLO mta.test", "HELO mta.test"}},
		// The refusal of EHLO is what is reported, and the host, which
		// answered, is not dead.
		{"hung up on HELO", "554 5.7.1 no ESMTP for you", "", false, []string{"EHLO mta.test", "HELO mta.test"}},
		// And so after 500 or 502, when go-smtp's client says HELO
		// itself: its HELO's EOF was reported, and made the host dead.
		{"hung up on HELO after 502", "502 5.5.2 no ESMTP", "", false, []string{"EHLO mta.test", "HELO mta.test"}},
		{"hung up on HELO after 500", "500 5.5.1 command unrecognized", "", false, []string{"EHLO mta.test", "HELO mta.test"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test", func(n int, cmd string) string {
				switch verb(cmd) {
				case "EHLO":
					return tc.ehlo
				case "HELO":
					if strings.HasPrefix(tc.ehlo, "421") {
						return ""
					}
					return tc.helo
				}
				return plainAnswer("", nil)(n, cmd)
			})
			h, b := startOdd(t, srv, nil)
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			cmds := srv.commands()
			if len(cmds) < len(tc.wantCmds) || !slices.Equal(cmds[:len(tc.wantCmds)], tc.wantCmds) {
				t.Errorf("commands %q, want them to begin with %q", cmds, tc.wantCmds)
			}
			if n := len(slices.DeleteFunc(slices.Clone(cmds), func(c string) bool { return verb(c) != "HELO" })); n > 1 {
				t.Errorf("commands %q: HELO sent %d times", cmds, n)
			}
			if tc.sent {
				if !h.empty() || len(srv.messages()) != 1 {
					t.Fatalf("commands %q: want the message delivered", cmds)
				}
				return
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatalf("the message left the queue: %v", err)
			}
			want := tc.helo
			if want == "" || verb(tc.ehlo) == "421" {
				want = tc.ehlo
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Status[0] != '4' || r.Reply != want {
				t.Errorf("recipient %+v, want pending with a 4.x.x status and %q", r, want)
			}
			if len(srv.messages()) != 0 || b.count() != 0 {
				t.Errorf("%d messages, %d DSNs: want none", len(srv.messages()), b.count())
			}
			if verb(tc.ehlo) == "421" {
				return // a 421 makes the host dead, as a 421 greeting
			}
			id = h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			if m, _, err := h.q.Show(id); err != nil || m.Recipients[0].Reply != want {
				t.Errorf("the next message: %v %+v, want %q again, not a dead destination", err, m.Recipients, want)
			}
		})
	}
}

// A reply whose lines change code (RFC 5321 §4.2.1 forbids it) is read as
// Postfix's smtp(8) reads it, by its last line's code: the recipient it
// answers gets that fate, and the others of the transaction theirs. It
// failed the connection, deferring every recipient, at every retry.
func TestReplyChangingCode(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			ehlo := "8BITMIME"
			if pipelining {
				ehlo = "PIPELINING"
			}
			srv := newOddServer(t, "220 odd.test ESMTP", plainAnswer(ehlo, func(cmd string) string {
				switch {
				case strings.Contains(cmd, "<gone@"):
					return "550-5.1.1 no such user\n551 5.1.1 here"
				case strings.Contains(cmd, "<later@"):
					return "250-ok, but\n452 4.2.2 mailbox full"
				}
				return "250 2.1.5 ok"
			}))
			h, b := startOdd(t, srv, nil)
			id := h.enqueue("alice@local.test", "gone@remote.test", "bob@remote.test", "later@remote.test")
			h.waitJob()
			if got := srv.messages(); len(got) != 1 {
				t.Fatalf("commands %q: %d messages received, want 1", srv.commands(), len(got))
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]State{"gone@remote.test": StateFailed, "bob@remote.test": StateDelivered, "later@remote.test": StatePending}
			for _, r := range m.Recipients {
				if r.State != want[r.Addr] {
					t.Errorf("%s: %s (%s), want %s", r.Addr, r.State, r.Reply, want[r.Addr])
				}
			}
			dsn := string(recv(t, b.got, "the bounce"))
			if !strings.Contains(dsn, "Status: 5.1.1\r\n") || !strings.Contains(dsn, "Diagnostic-Code: smtp; 551 5.1.1 no such user here\r\n") {
				t.Errorf("DSN:\n%s", dsn)
			}
		})
	}
}

// A server that stops reading the data (a tarpit, a hung content filter)
// fails the attempt once a write has waited DataTimeout, as Postfix's
// smtp_data_xfer_timeout (180 s) has it; the bound by size alone held the
// session and its slot for hours with a large message (5 min and a
// second per KiB: 2 h 45 min for 10 MB).
func TestServerThatStopsReadingTheData(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r, w := bufio.NewReader(c), bufio.NewWriter(c)
		say := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
		say("220 tarpit.test ESMTP")
		for range 10 {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch verb(strings.TrimSpace(line)) {
			case "EHLO":
				say("250 tarpit.test")
			case "DATA":
				say("354 go ahead")
				<-done // and never read again
				return
			default:
				say("250 ok")
			}
		}
	}()
	srv := &oddServer{addr: ln.Addr().String()}
	h, b := startOdd(t, srv, func(o *Options) {
		o.DataTimeout = 300 * time.Millisecond
		// A small send buffer (no autotuning), so that what the
		// kernel takes unread is small whatever its settings.
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				c.(*net.TCPConn).SetWriteBuffer(32 << 10)
			}
			return c, err
		}
	})
	// Larger than what the socket buffers take unread.
	body := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 2<<10)
	id, err := h.q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte("Subject: big\r\n\r\n"+body))
	if err != nil {
		t.Fatal(err)
	}
	// Without DataTimeout the write would wait out the whole bound
	// (CommandTimeout plus a second per KiB: over an hour here), and
	// waitJob's 20 s would fail.
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if r := m.Recipients[0]; r.State != StatePending || r.Status != "4.4.2" || !strings.Contains(r.Reply, "timeout") {
		t.Errorf("recipient %+v, want it deferred 4.4.2 after a timeout", r)
	}
	if b.count() != 0 {
		t.Error("a DSN was sent")
	}
}

// The DSN quotes the server's reply as it was (RFC 3464 §2.3.6), as
// Postfix does: a reply without an enhanced code, or with one of the
// wrong class, gets a status made of its code (class.0.0) in the Status
// field only; the Diagnostic-Code and the text for people said "550
// 5.0.0 no such user" where the server had said "550 no such user".
func TestDSNQuotesTheReplyAsItWas(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ reply, status string }{
		{"550 no such user", "5.0.0"},
		{"550 4.1.1 wrong class", "5.0.0"},
		{"553 5.1.3 bad address", "5.1.3"},
	} {
		t.Run(tc.reply, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", plainAnswer("PIPELINING", func(string) string { return tc.reply }))
			h, b := startOdd(t, srv, nil)
			h.enqueue("alice@local.test", "bob@remote.test")
			dsn := string(recv(t, b.got, "the bounce"))
			for _, want := range []string{
				"Status: " + tc.status + "\r\n",
				"Diagnostic-Code: smtp; " + tc.reply + "\r\n",
				"<bob@remote.test>: host 127.0.0.1 said: " + tc.reply + "\r\n",
			} {
				if !strings.Contains(dsn, want) {
					t.Errorf("DSN lacks %q:\n%s", want, dsn)
				}
			}
			h.waitUntil("the message leaves", h.empty)
		})
	}
}

// A recipient the best MX host defers with a 4xx reply (greylisting, an
// overloaded or full host) is tried at once on the next MX host, as
// Postfix's smtp(8) tries it (smtp_mx_session_limit, two sessions per
// delivery): the backup MX that takes it gets the message, instead of
// the message waiting for the primary until it expires. A 5xx is the
// recipient's fate; the backup is not asked. What the data went to
// without a reply is never sent elsewhere.
func TestDeferredRecipientTriedOnNextMX(t *testing.T) {
	t.Parallel()
	accept := plainAnswer("PIPELINING", nil)
	for _, tc := range []struct {
		name       string
		primary    func(n int, cmd string) string
		backup     func(n int, cmd string) string
		want       State
		wantStatus string
		backupMsgs int
	}{
		{"450 to RCPT", func(n int, cmd string) string {
			if verb(cmd) == "RCPT" {
				return "450 4.7.1 greylisted, try again later"
			}
			return accept(n, cmd)
		}, accept, StateDelivered, "2.0.0", 1},
		{"451 to MAIL", func(n int, cmd string) string {
			if verb(cmd) == "MAIL" {
				return "451 4.3.0 temporary local problem"
			}
			return accept(n, cmd)
		}, accept, StateDelivered, "2.0.0", 1},
		{"421 to RCPT", func(n int, cmd string) string {
			if verb(cmd) == "RCPT" {
				return "421 4.3.2 too busy"
			}
			return accept(n, cmd)
		}, accept, StateDelivered, "2.0.0", 1},
		{"452 to the data", func(n int, cmd string) string {
			if cmd == "." {
				return "452 4.3.1 insufficient system storage"
			}
			return accept(n, cmd)
		}, accept, StateDelivered, "2.0.0", 1},
		{"550 to RCPT: not asked again", func(n int, cmd string) string {
			if verb(cmd) == "RCPT" {
				return "550 5.1.1 no such user"
			}
			return accept(n, cmd)
		}, accept, StateFailed, "5.1.1", 0},
		{"deferred by both", func(n int, cmd string) string {
			if verb(cmd) == "RCPT" {
				return "450 4.7.1 greylisted"
			}
			return accept(n, cmd)
		}, func(n int, cmd string) string {
			if verb(cmd) == "RCPT" {
				return "451 4.3.0 backup busy"
			}
			return accept(n, cmd)
		}, StatePending, "4.3.0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			primary := newOddServer(t, "220 mx1.remote.test ESMTP", tc.primary)
			backup := newOddServer(t, "220 mx2.remote.test ESMTP", tc.backup)
			h, _ := startOdd(t, primary, func(o *Options) {
				o.Routes = nil
				o.Resolver = &fakeResolver{
					mx:  map[string][]*net.MX{"remote.test": {{Host: "mx1.remote.test.", Pref: 10}, {Host: "mx2.remote.test.", Pref: 20}}},
					ips: map[string][]string{"mx1.remote.test": {"127.0.0.1"}, "mx2.remote.test": {"127.0.0.2"}},
				}
				to := map[string]string{"127.0.0.1:25": primary.addr, "127.0.0.2:25": backup.addr}
				o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, network, to[addr])
				}
			})
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			var r Recipient
			if m, _, err := h.q.Show(id); err == nil {
				r = m.Recipients[0]
			} else {
				r.State, r.Status = StateDelivered, "2.0.0" // delivered and gone, or bounced and gone
				if tc.want == StateFailed {
					r.State, r.Status = StateFailed, "5.1.1"
				}
			}
			if r.State != tc.want || r.Status != tc.wantStatus {
				t.Errorf("recipient %s %s (%s), want %s %s", r.State, r.Status, r.Reply, tc.want, tc.wantStatus)
			}
			if got := len(backup.messages()); got != tc.backupMsgs {
				t.Errorf("the backup MX got %d messages, want %d (its commands %q)", got, tc.backupMsgs, backup.commands())
			}
			if tc.backupMsgs == 0 && tc.want == StateFailed && len(backup.commands()) > 0 {
				t.Errorf("the backup MX was asked: %q", backup.commands())
			}
			if tc.want == StatePending && r.Attempts != 1 {
				t.Errorf("attempts %d, want 1", r.Attempts)
			}
		})
	}
}

// A greeting or EHLO reply whose lines change code is read by its last
// line's code, as Postfix's smtp(8) reads it: go-smtp's client (Go's
// textproto) took a line of another code for more text and waited for
// the command timeout (5 min), the destination then found dead.
func TestSetupReplyChangingCode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, greeting, ehlo string
		sent                 bool
		wantReply            string
	}{
		{"greeting 220 then 554", "220-odd.test hello\n554 5.7.1 go away", "250 odd.test", false, "554 odd.test hello 5.7.1 go away"},
		{"EHLO 250 then 550: HELO", "220 odd.test ESMTP", "250-odd.test\n250-PIPELINING\n550 5.5.1 not today", true, ""},
		{"EHLO 500 then 250", "220 odd.test ESMTP", "500-odd.test\n250 8BITMIME", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, tc.greeting, func(n int, cmd string) string {
				if verb(cmd) == "EHLO" {
					return tc.ehlo
				}
				return plainAnswer("", nil)(n, cmd)
			})
			// A reply misread waits out the command timeout: longer
			// than waitJob waits, so that it fails the test.
			h, _ := startOdd(t, srv, func(o *Options) { o.CommandTimeout = time.Minute })
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			if tc.sent {
				if !h.empty() || len(srv.messages()) != 1 {
					t.Errorf("commands %q: want the message delivered", srv.commands())
				}
				return
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatal(err)
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Reply != tc.wantReply {
				t.Errorf("recipient %s %q, want pending with %q", r.State, r.Reply, tc.wantReply)
			}
		})
	}
}

func TestWholeReplies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, out, left string }{
		{"220 a\r\n", "220 a\r\n", ""},
		{"220-a\r\n220 b\r\n250", "220-a\r\n220 b\r\n", "250"},
		{"220-a\r\n554-b\r\n554 c\r\n", "554-a\r\n554-b\r\n554 c\r\n", ""},
		{"250-a\n550 b\n", "550-a\n550 b\n", ""},
		{"250-a\r\n250-b\r\n", "", "250-a\r\n250-b\r\n"},
		{"250\r\n", "250\r\n", ""},
		{"garbage\r\n220 a\r\n", "garbage\r\n220 a\r\n", ""},
		{"250-a\r\nxx\r\n250 b\r\n", "250-a\r\nxx\r\n250 b\r\n", ""},
	} {
		in := []byte(tc.in)
		if out := string(wholeReplies(&in)); out != tc.out || string(in) != tc.left {
			t.Errorf("wholeReplies(%q) = %q, left %q; want %q, left %q", tc.in, out, in, tc.out, tc.left)
		}
	}
}

// The next host is the next one down the MX list, as Postfix goes down
// it: a better host that could not be reached is not dialled again for
// the recipients a worse one deferred.
func TestDeferredRecipientTriedOnTheHostsAfter(t *testing.T) {
	t.Parallel()
	accept := plainAnswer("PIPELINING", nil)
	greylist := newOddServer(t, "220 mx2.remote.test ESMTP", func(n int, cmd string) string {
		if verb(cmd) == "RCPT" {
			return "450 4.7.1 greylisted"
		}
		return accept(n, cmd)
	})
	last := newOddServer(t, "220 mx3.remote.test ESMTP", accept)
	var mu sync.Mutex
	dials := map[string]int{}
	h, _ := startOdd(t, greylist, func(o *Options) {
		o.Routes = nil
		o.Resolver = &fakeResolver{
			mx: map[string][]*net.MX{"remote.test": {
				{Host: "mx1.remote.test.", Pref: 10}, {Host: "mx2.remote.test.", Pref: 20}, {Host: "mx3.remote.test.", Pref: 30}}},
			ips: map[string][]string{"mx1.remote.test": {"127.0.0.1"}, "mx2.remote.test": {"127.0.0.2"}, "mx3.remote.test": {"127.0.0.3"}},
		}
		to := map[string]string{"127.0.0.2:25": greylist.addr, "127.0.0.3:25": last.addr}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
			if to[addr] == "" {
				return nil, errors.New("connection refused (test dialer)")
			}
			var d net.Dialer
			return d.DialContext(ctx, network, to[addr])
		}
	})
	h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	if !h.empty() || len(last.messages()) != 1 {
		t.Errorf("mx3 got %d messages, want the message", len(last.messages()))
	}
	mu.Lock()
	defer mu.Unlock()
	if dials["127.0.0.1:25"] != 1 || dials["127.0.0.2:25"] != 1 || dials["127.0.0.3:25"] != 1 {
		t.Errorf("dials %v, want one to each host", dials)
	}
}

// Of two MX hosts of one preference, the one not tried gets what the
// other deferred, whichever the shuffle put first: the hosts after the
// one tried are those of the list its session was chosen from. A new
// lookup shuffled them again, and when the host tried came last nothing
// was tried after it: the message waited for the retry, half the time.
// Each message is deferred by the first host it reaches. The shuffle
// is the test's: each lookup reverses the order the one before gave, so
// that each host comes first for some messages, and a second lookup for
// a message (nextHost's, before the fix) puts the host tried last; with
// the global random source the test passed without the fix once in
// 4,096 runs.
func TestDeferredRecipientTriedOnEqualMX(t *testing.T) {
	t.Parallel()
	accept := plainAnswer("PIPELINING", nil)
	var mu sync.Mutex
	seen := map[string]bool{} // the recipients a host answered
	answer := func(n int, cmd string) string {
		if verb(cmd) == "RCPT" {
			mu.Lock()
			defer mu.Unlock()
			if !seen[cmd] {
				seen[cmd] = true
				return "450 4.7.1 greylisted, try again later"
			}
		}
		return accept(n, cmd)
	}
	mxa := newOddServer(t, "220 mxa.remote.test ESMTP", answer)
	mxb := newOddServer(t, "220 mxb.remote.test ESMTP", answer)
	h, _ := startOdd(t, mxa, func(o *Options) {
		o.Routes = nil
		o.Resolver = &fakeResolver{
			mx:  map[string][]*net.MX{"remote.test": {{Host: "mxa.remote.test.", Pref: 10}, {Host: "mxb.remote.test.", Pref: 10}}},
			ips: map[string][]string{"mxa.remote.test": {"127.0.0.1"}, "mxb.remote.test": {"127.0.0.2"}},
		}
		lookups := 0
		o.shuffle = func(n int, swap func(i, j int)) {
			mu.Lock()
			defer mu.Unlock()
			if lookups++; lookups%2 == 0 {
				for i := range n / 2 {
					swap(i, n-1-i)
				}
			}
		}
		to := map[string]string{"127.0.0.1:25": mxa.addr, "127.0.0.2:25": mxb.addr}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, to[addr])
		}
	})
	const messages = 4
	for i := range messages {
		id := h.enqueue("alice@local.test", fmt.Sprintf("bob%d@remote.test", i))
		h.waitJob()
		if m, _, err := h.q.Show(id); err == nil {
			t.Errorf("message %d: still queued, %s %s (%s)", i, m.Recipients[0].State, m.Recipients[0].Status, m.Recipients[0].Reply)
		}
	}
	if a, b := len(mxa.messages()), len(mxb.messages()); a+b != messages || a == 0 || b == 0 {
		t.Errorf("the MX hosts got %d and %d messages, want %d in all, some on each", a, b, messages)
	}
}

// A "[host]" route (a relayhost, as a rule) is one host: what it defers
// waits for the retry, its other addresses are not dialled for it.
func TestDeferredByBracketedRouteNotTriedElsewhere(t *testing.T) {
	t.Parallel()
	srv := newOddServer(t, "220 relay.test ESMTP", func(n int, cmd string) string {
		if verb(cmd) == "RCPT" {
			return "450 4.7.1 rate limited"
		}
		return plainAnswer("", nil)(n, cmd)
	})
	var mu sync.Mutex
	dials := 0
	h, _ := startOdd(t, srv, func(o *Options) {
		o.Routes = map[string]string{"remote.test": "[relay.test]:25"}
		o.Resolver = &fakeResolver{ips: map[string][]string{"relay.test": {"127.0.0.1", "127.0.0.2"}}}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			var d net.Dialer
			return d.DialContext(ctx, network, srv.addr)
		}
	})
	id := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	m, _, err := h.q.Show(id)
	if err != nil || m.Recipients[0].State != StatePending {
		t.Fatalf("want the message deferred: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if dials != 1 {
		t.Errorf("%d dials, want 1", dials)
	}
}

// Every name the queue looks up is absolute (its final dot), so that the
// resolver asks for it alone, as Postfix's smtp(8) does with the
// resolver's search turned off. Go's resolver tried, after an NXDOMAIN,
// the names of resolv.conf's search list or of the host name's domain:
// on mail.example.org, mail for the nonexistent typo.test went where
// typo.test.example.org led (a wildcard), instead of bouncing.
func TestLookupsAreAbsolute(t *testing.T) {
	t.Parallel()
	srv := newOddServer(t, "220 mx.remote.test ESMTP", plainAnswer("", nil))
	for _, tc := range []struct {
		name   string
		routes map[string]string
		rcpt   string
		want   []string
	}{
		{"MX", nil, "bob@remote.test", []string{"remote.test.", "mx1.remote.test."}},
		{"no MX", nil, "bob@nomx.test", []string{"nomx.test.", "nomx.test."}},
		{"no such domain", nil, "bob@typo.test", []string{"typo.test.", "typo.test."}},
		{"nexthop by MX", map[string]string{"*": "relay.test"}, "bob@elsewhere.test", []string{"relay.test.", "mx1.remote.test."}},
		{"[nexthop]", map[string]string{"*": "[relay.test]"}, "bob@elsewhere.test", []string{"relay.test."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := &fakeResolver{
				mx: map[string][]*net.MX{
					"remote.test": {{Host: "mx1.remote.test.", Pref: 10}},
					"relay.test":  {{Host: "mx1.remote.test.", Pref: 10}},
				},
				ips: map[string][]string{"mx1.remote.test": {"127.0.0.1"}, "nomx.test": {"127.0.0.1"}, "relay.test": {"127.0.0.1"}},
			}
			h, _ := startOdd(t, srv, func(o *Options) {
				o.Routes = tc.routes
				o.Resolver = res
				o.Dialer = dialTo(srv.addr)
			})
			h.enqueue("alice@local.test", tc.rcpt)
			h.waitJob()
			res.mu.Lock()
			defer res.mu.Unlock()
			if !slices.Equal(res.asked, tc.want) {
				t.Errorf("names looked up %q, want %q", res.asked, tc.want)
			}
		})
	}
}

// EHLO refused after STARTTLS falls back to HELO too, as Postfix's
// smtp(8) does there; refused again, the host refuses to talk and the
// message waits, as before TLS. The refusal bounced the message at once.
func TestEHLORefusedAfterSTARTTLS(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, tc := range []struct {
		name string
		helo string
		sent bool
	}{
		{"HELO taken", "250 odd.test", true},
		{"HELO refused", "554 5.7.1 go away", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", func(n int, cmd string) string {
				switch verb(cmd) {
				case "EHLO":
					if n == 0 {
						return "250-odd.test\n250 STARTTLS"
					}
					return "554 5.5.1 no EHLO here"
				case "STARTTLS":
					return "220 2.0.0 go ahead"
				case "HELO":
					return tc.helo
				}
				return plainAnswer("", nil)(n, cmd)
			})
			srv.tls = ca.serverConfig(t, "odd.test")
			h, b := startOdd(t, srv, func(o *Options) { o.TLSPolicy = PolicyMay })
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			cmds := srv.commands()
			if want := []string{"EHLO mta.test", "STARTTLS", "EHLO mta.test", "HELO mta.test"}; len(cmds) < 4 || !slices.Equal(cmds[:4], want) {
				t.Errorf("commands %q, want them to begin with %q", cmds, want)
			}
			if tc.sent {
				if !h.empty() || len(srv.messages()) != 1 {
					t.Errorf("commands %q: want the message delivered", cmds)
				}
				return
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatalf("the message left the queue: %v", err)
			}
			if r := m.Recipients[0]; r.State != StatePending || r.Status != "4.7.1" {
				t.Errorf("recipient %+v, want pending with 4.7.1", r)
			}
			if b.count() != 0 {
				t.Error("a DSN for a host that would not talk")
			}
		})
	}
}

// A server that refuses a message while it comes in (too large, a virus)
// and hangs up has its refusal read after the failed write, as Postfix's
// smtp(8) reads such a premature reply: a 552 bounces the message at once
// where the write error deferred it, to be sent whole again at every
// retry until it expired. Recipients of a later transaction, never sent
// to, only wait.
func TestRefusalBeforeTheEndOfTheData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reply  string // before hanging up; "" none
		rcpts  int
		states map[State]int
		status string
	}{
		{"552, bounced", "552 5.3.4 message too big", 1, map[State]int{StateFailed: 1}, "5.3.4"},
		{"451, deferred", "451 4.3.0 try later", 1, map[State]int{StatePending: 1}, "4.3.0"},
		{"no reply: the write error", "", 1, map[State]int{StatePending: 1}, "4.4.2"},
		{"later transaction not refused", "552 5.3.4 message too big", rcptsPerTransaction + 3, map[State]int{StateFailed: rcptsPerTransaction, StatePending: 3}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						c.SetDeadline(time.Now().Add(20 * time.Second))
						r, w := bufio.NewReader(c), bufio.NewWriter(c)
						say := func(s string) { w.WriteString(s + "\r\n"); w.Flush() }
						say("220 big.test ESMTP")
						for range 200 {
							line, err := r.ReadString('\n')
							if err != nil {
								return
							}
							switch verb(strings.TrimSpace(line)) {
							case "EHLO":
								say("250 big.test")
							case "DATA":
								say("354 go ahead")
								io.CopyN(io.Discard, r, 200<<10)
								if tc.reply != "" {
									say(tc.reply)
								}
								return
							default:
								say("250 ok")
							}
						}
					}()
				}
			}()
			h, b := startOdd(t, &oddServer{addr: ln.Addr().String()}, nil)
			var rcpts []string
			for i := range tc.rcpts {
				rcpts = append(rcpts, fmt.Sprintf("r%d@remote.test", i))
			}
			// Larger than what the kernel's socket buffers take unread.
			body := strings.Repeat(strings.Repeat("x", 998)+"\r\n", 9<<10)
			id, err := h.q.Enqueue(t.Context(), "alice@local.test", rcpts, []byte("Subject: big\r\n\r\n"+body))
			if err != nil {
				t.Fatal(err)
			}
			h.waitJob()
			states := map[State]int{}
			status := ""
			if m, _, err := h.q.Show(id); err == nil {
				for _, r := range m.Recipients {
					states[r.State]++
					status = r.Status
					if r.State == StatePending && r.Status[0] != '4' {
						t.Errorf("%s pending with %s", r.Addr, r.Status)
					}
				}
			} else {
				states[StateFailed] = tc.rcpts // bounced whole, and gone
			}
			if !maps.Equal(states, tc.states) {
				t.Errorf("recipients %v, want %v", states, tc.states)
			}
			if tc.status != "" && tc.states[StatePending] > 0 && status != tc.status {
				t.Errorf("status %s, want %s", status, tc.status)
			}
			if tc.states[StateFailed] > 0 {
				dsn := string(recv(t, b.got, "the bounce"))
				if !strings.Contains(dsn, "Diagnostic-Code: smtp; "+tc.reply+"\r\n") {
					t.Errorf("DSN:\n%s", dsn)
				}
			}
		})
	}
}

// An MX record that names an address is a host at that address, as
// Postfix 3.7 takes it (dns_lookup.c valid_rr_name: "numeric domain
// name"; smtp_addr.c connects to it without a lookup), IPv4 or IPv6:
// such mail was bounced (5.4.4) where Postfix delivers it. One of our
// own addresses is still a loop. A domain whose MX records name no host
// at all (malformed names, the unspecified address) has a broken DNS,
// an answer rather than a failure to get one: its mail bounces 5.4.4 at
// once, as Postfix finds such an MX reply malformed and bounces; it
// waited for the queue lifetime. A relayhost so published is a
// configuration problem, and its mail waits (4.3.5).
func TestMXNamingAddresses(t *testing.T) {
	t.Parallel()
	srv := newOddServer(t, "220 mx.remote.test ESMTP", plainAnswer("", nil))
	for _, tc := range []struct {
		name      string
		mx        []*net.MX
		relayhost bool
		want      State
		status    string
		dialed    string // the address connected to, "" none
	}{
		{"IPv4 address", []*net.MX{{Host: "127.0.0.1.", Pref: 10}}, false, StateDelivered, "2.0.0", "127.0.0.1:25"},
		{"IPv6 address", []*net.MX{{Host: "2001:db8::1", Pref: 10}}, false, StateDelivered, "2.0.0", "[2001:db8::1]:25"},
		{"IPv4-mapped IPv6 address", []*net.MX{{Host: "::ffff:127.0.0.1", Pref: 10}}, false, StateDelivered, "2.0.0", "127.0.0.1:25"},
		{"an address before a host", []*net.MX{{Host: "2001:db8::1", Pref: 10}, {Host: "mx1.remote.test.", Pref: 20}}, false, StateDelivered, "2.0.0", "[2001:db8::1]:25"},
		{"our own address", []*net.MX{{Host: "192.0.2.7.", Pref: 10}}, false, StateFailed, "5.4.6", ""},
		{"our own address after a host", []*net.MX{{Host: "mx1.remote.test.", Pref: 10}, {Host: "192.0.2.7.", Pref: 20}}, false, StateDelivered, "2.0.0", "127.0.0.1:25"},
		{"no host name", []*net.MX{{Host: "bad_name!.", Pref: 10}, {Host: "0.0.0.0.", Pref: 20}, {Host: "fe80::1%eth0", Pref: 30}}, false, StateFailed, "5.4.4", ""},
		{"one usable host", []*net.MX{{Host: "no host.", Pref: 10}, {Host: "mx1.remote.test.", Pref: 20}}, false, StateDelivered, "2.0.0", "127.0.0.1:25"},
		{"relayhost of an address", []*net.MX{{Host: "127.0.0.1.", Pref: 10}}, true, StateDelivered, "2.0.0", "127.0.0.1:25"},
		{"relayhost of no host", []*net.MX{{Host: "no host.", Pref: 10}}, true, StatePending, "4.3.5", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := &fakeResolver{
				mx:  map[string][]*net.MX{"remote.test": tc.mx, "relay.test": tc.mx},
				ips: map[string][]string{"mx1.remote.test": {"127.0.0.1"}},
			}
			var mu sync.Mutex
			var dialed []string
			h, b := startOdd(t, srv, func(o *Options) {
				o.Routes = nil
				o.Resolver = res
				o.LocalAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.7")}
				o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
					mu.Lock()
					dialed = append(dialed, addr)
					mu.Unlock()
					if addr != "127.0.0.1:25" && addr != "[2001:db8::1]:25" {
						return nil, errors.New("connection refused (test dialer)")
					}
					var d net.Dialer
					return d.DialContext(ctx, network, srv.addr)
				}
				if tc.relayhost {
					o.Relayhost = &Relayhost{Addr: "relay.test"}
				}
			})
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			r := Recipient{State: StateDelivered, Status: "2.0.0"}
			if m, _, err := h.q.Show(id); err == nil {
				r = m.Recipients[0]
			} else if b.count() > 0 {
				dsn := string(<-b.got)
				r.State, r.Status = StateFailed, regexp.MustCompile(`Status: (\S+)`).FindStringSubmatch(dsn)[1]
			}
			if r.State != tc.want || r.Status != tc.status {
				t.Errorf("recipient %s %s (%s), want %s %s", r.State, r.Status, r.Reply, tc.want, tc.status)
			}
			mu.Lock()
			defer mu.Unlock()
			if want := []string{tc.dialed}; tc.dialed == "" && len(dialed) > 0 || tc.dialed != "" && !slices.Equal(dialed, want) {
				t.Errorf("dialed %q, want %q", dialed, tc.dialed)
			}
			res.mu.Lock()
			defer res.mu.Unlock()
			for _, name := range res.asked {
				if _, err := netip.ParseAddr(strings.TrimSuffix(name, ".")); err == nil || strings.Contains(name, "0.0.0.0") {
					t.Errorf("address looked up as a name: %q (lookups %q)", name, res.asked)
				}
			}
		})
	}
}

// A cached session whose server does not answer the RSET that checks it
// before the next message is given up after the RSET timeout (Postfix's
// smtp_rset_timeout, 20 s), not the command timeout (5 min), and the
// message goes at once on a new connection, with no failed attempt, as
// Postfix's smtp_reuse_common drops a session whose RSET probe fails
// and connects anew. The command timeout here is an hour: the message
// waits it when the RSET's reply is bounded by it.
func TestSilentRSETOnCachedSession(t *testing.T) {
	t.Parallel()
	for _, pipelining := range []bool{false, true} {
		t.Run(fmt.Sprintf("pipelining=%v", pipelining), func(t *testing.T) {
			t.Parallel()
			ehlo := "8BITMIME"
			if pipelining {
				ehlo = "PIPELINING"
			}
			silent := make(chan struct{})
			t.Cleanup(func() { close(silent) })
			accept := plainAnswer(ehlo, nil)
			srv := newOddServer(t, "220 odd.test ESMTP", func(n int, cmd string) string {
				if verb(cmd) == "RSET" {
					<-silent // no reply while the client waits
					return ""
				}
				return accept(n, cmd)
			})
			h, b := startOdd(t, srv, func(o *Options) {
				o.CommandTimeout = time.Hour
				o.ConnectionCacheTime = time.Hour
				o.rsetTimeout = 50 * time.Millisecond
			})
			for i := range 2 {
				h.enqueue("alice@local.test", fmt.Sprintf("bob%d@remote.test", i))
				h.waitJob()
				if !h.empty() {
					t.Fatalf("message %d still queued; commands %q", i, srv.commands())
				}
			}
			srv.mu.Lock()
			conns := srv.conns
			srv.mu.Unlock()
			if got := len(srv.messages()); got != 2 || conns != 2 || b.count() != 0 {
				t.Errorf("%d messages on %d connections, %d DSNs; want 2 on 2, none", got, conns, b.count())
			}
			if !slices.Contains(srv.commands(), "RSET") {
				t.Errorf("commands %q: the cached session was not checked", srv.commands())
			}
		})
	}
}

// The reply to STARTTLS is read as every other reply, by its last line's
// code, and any 2xx starts TLS, as Postfix's smtp(8) reads it
// (smtp_chat_resp, code / 100 == 2): a reply whose lines change code
// ("220-" then "454 ") waited for the command timeout, and a 250 was
// taken for a refusal. TLS is required here, so a refusal defers.
func TestSTARTTLSReplyChangingCode(t *testing.T) {
	t.Parallel()
	ca := newCA(t)
	for _, tc := range []struct {
		name, reply string
		tls         bool
		wantReply   string // the recipient's, when not sent
	}{
		{"220 then 454: refused", "220-2.0.0 ready\n454 4.7.0 TLS not available", false, "STARTTLS refused: 454 2.0.0 ready 4.7.0 TLS not available"},
		{"454 then 220: TLS", "454-4.7.0 not yet\n220 2.0.0 go ahead", true, ""},
		{"250: TLS", "250 2.0.0 go ahead", true, ""},
		{"454: refused", "454 4.7.0 TLS not available", false, "STARTTLS refused: 454 4.7.0 TLS not available"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", func(n int, cmd string) string {
				switch verb(cmd) {
				case "EHLO":
					if n == 0 {
						return "250-odd.test\n250 STARTTLS"
					}
					return "250 odd.test"
				case "STARTTLS":
					return tc.reply
				}
				return plainAnswer("", nil)(n, cmd)
			})
			srv.tls = ca.serverConfig(t, "odd.test")
			h, b := startOdd(t, srv, func(o *Options) { o.TLSPolicy = PolicyEncrypt })
			id := h.enqueue("alice@local.test", "bob@remote.test")
			h.waitJob()
			cmds := srv.commands()
			if tc.tls {
				if want := []string{"EHLO mta.test", "STARTTLS", "EHLO mta.test"}; len(cmds) < 3 || !slices.Equal(cmds[:3], want) {
					t.Errorf("commands %q, want them to begin with %q", cmds, want)
				}
				if !h.empty() || len(srv.messages()) != 1 {
					t.Errorf("commands %q: want the message delivered", cmds)
				}
				return
			}
			m, _, err := h.q.Show(id)
			if err != nil {
				t.Fatalf("the message left the queue: %v", err)
			}
			if r := m.Recipients[0]; r.State != StatePending || !strings.Contains(r.Reply, tc.wantReply) {
				t.Errorf("recipient %s %q, want pending with %q", r.State, r.Reply, tc.wantReply)
			}
			if len(srv.messages()) != 0 || b.count() != 0 {
				t.Errorf("%d messages, %d DSNs: want none", len(srv.messages()), b.count())
			}
		})
	}
}
