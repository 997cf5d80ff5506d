package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"courriel/internal/testenv"
)

// gtube is SpamAssassin's and rspamd's test pattern.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// swaksMsg sends one message with a subject and body; args are more swaks
// arguments.
func swaksMsg(t *testing.T, s *server, to, subject, body string, args ...string) string {
	t.Helper()
	a := append([]string{"--server", s.SMTP, "--from", "someone@example.net", "--to", to,
		"--ehlo", "client.example.net", "--header", "Subject: " + subject, "--body", body}, args...)
	out, _ := run(t, "", "swaks", a...)
	return out
}

// findMessage returns the one file of a maildir folder containing marker.
func findMessage(t *testing.T, s *server, user, folder, marker string) string {
	t.Helper()
	var found []string
	for _, f := range s.maildirFiles(t, user, folder) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), marker) {
			found = append(found, string(b))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d messages with %q in %s of %s, want 1", len(found), marker, folder, user)
	}
	return found[0]
}

func countWith(t *testing.T, s *server, user, folder, marker string) int {
	t.Helper()
	n := 0
	for _, f := range s.maildirFiles(t, user, folder) {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), marker) {
			n++
		}
	}
	return n
}

// TestMilterRspamd: courriel with a real rspamd as milter on port 25.
func TestMilterRspamd(t *testing.T) {
	requireTool(t, "swaks")
	r := startRspamd(t)
	// The README's [[milter]] (tempfail), and the accept policy.
	s := startServer(t, withTOML(readmeMilterTOML(t, r.Addr)))
	open := startServer(t, withTOML(milterTOML(r.Addr, quoteList("smtp"), "accept")))

	t.Run("gtube rejected at end of data with rspamd's reply", func(t *testing.T) {
		out := swaksMsg(t, s, "test0@hosted-domain.com", "gtube", gtube)
		if !regexp.MustCompile(`(?m)^<\*\* +554 5\.7\.1 Gtube pattern`).MatchString(out) {
			t.Fatalf("GTUBE not refused with rspamd's reply:\n%s", out)
		}
		if countWith(t, s, "xomail", "new", "GTUBE") != 0 {
			t.Error("GTUBE message stored")
		}
	})
	t.Run("clean message delivered with rspamd's headers", func(t *testing.T) {
		out := swaksMsg(t, s, "test0@hosted-domain.com", "clean one", "hello, marker-clean")
		if !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
		m := findMessage(t, s, "xomail", "new", "marker-clean")
		for _, re := range []string{`(?m)^X-Spamd-Result: default: False`, `(?m)^X-Rspamd-Queue-Id: \S+`, `(?m)^X-Rspamd-Server: \S+`,
			`(?m)^Received: from client\.example\.net`, `(?m)^Subject: clean one\r?$`} {
			if !regexp.MustCompile(re).MatchString(m) {
				t.Errorf("%s missing:\n%s", re, m)
			}
		}
		if strings.Contains(m, "X-Spam: Yes") {
			t.Errorf("clean message flagged:\n%s", m)
		}
		if n := len(s.maildirFiles(t, "xomail", ".Junk/new")); n != 0 {
			t.Errorf("%d messages in Junk", n)
		}
	})
	t.Run("large and empty bodies scanned", func(t *testing.T) {
		// 3 MB: rspamd gets the body in 64 KiB chunks from the spool
		// file; an empty body: one empty chunk, as the library needs.
		large := numberedLines(3_000_000, "\r\n")
		for _, tc := range []struct {
			marker string
			body   []byte
		}{{"marker-large", large}, {"marker-empty", nil}} {
			msg := append([]byte("From: <big@example.net>\r\nSubject: "+tc.marker+"\r\n\r\n"), tc.body...)
			if err := sendPlain(s.SMTP, "big@example.net", "test0@hosted-domain.com", msg); err != nil {
				t.Fatalf("%s: %v", tc.marker, err)
			}
			m := findMessage(t, s, "xomail", "new", "Subject: "+tc.marker+"\n")
			if !regexp.MustCompile(`(?m)^X-Rspamd-Queue-Id: \S+`).MatchString(m) {
				t.Errorf("%s: not scanned:\n%s", tc.marker, m[:min(len(m), 2000)])
			}
			_, got, _ := strings.Cut(m, "\n\n")
			if want := strings.ReplaceAll(string(tc.body), "\r\n", "\n"); got != want {
				t.Errorf("%s: stored body of %d octets, want %d", tc.marker, len(got), len(want))
			}
		}
	})
	t.Run("spam by a local rule lands in Junk", func(t *testing.T) {
		out := swaksMsg(t, s, "test0@hosted-domain.com", "COURRIEL-SPAM-TEST offer", "buy now, marker-spam")
		if !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
		m := findMessage(t, s, "xomail", ".Junk/new", "marker-spam")
		for _, re := range []string{`(?m)^X-Spam: Yes`, `COURRIEL_TEST_SPAM`} {
			if !regexp.MustCompile(re).MatchString(m) {
				t.Errorf("%s missing:\n%s", re, m)
			}
		}
		if countWith(t, s, "xomail", "new", "marker-spam") != 0 {
			t.Error("spam also in the INBOX")
		}
		if _, err := os.Stat(filepath.Join(s.vmail, "xomail", "mailbox", ".Junk", "maildirfolder")); err != nil {
			t.Errorf("Junk has no maildirfolder marker: %v", err)
		}
		// Subscribed, as Dovecot's LDA does when it creates a folder.
		if b, err := os.ReadFile(filepath.Join(s.vmail, "xomail", "mailbox", "subscriptions")); err != nil || !strings.Contains("\n"+string(b), "\nJunk\n") {
			t.Errorf("Junk not subscribed: %v %q", err, b)
		}
		// What the user sees: the message in the Junk folder over IMAPS.
		curl := requireTool(t, "curl")
		out, err := run(t, "", curl, "-sS", "--cacert", s.ca.CertFile(), "--user", "xomail:"+testenv.XomailPassword,
			"imaps://localhost:"+port(s.IMAPS)+"/Junk;UID=1")
		if err != nil || !strings.Contains(out, "marker-spam") || !strings.Contains(out, "X-Spam: Yes") {
			t.Errorf("curl Junk;UID=1: %v\n%s", err, out)
		}
	})
	t.Run("subject rewritten by rspamd", func(t *testing.T) {
		out := swaksMsg(t, s, "test0@hosted-domain.com", "COURRIEL-REWRITE-TEST hello", "marker-rewrite")
		if !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
		m := findMessage(t, s, "xomail", "new", "marker-rewrite")
		if !regexp.MustCompile(`(?m)^Subject: \*\*\*SPAM\*\*\* COURRIEL-REWRITE-TEST hello\r?$`).MatchString(m) {
			t.Errorf("subject not rewritten:\n%s", m)
		}
		if n := strings.Count(m, "\nSubject:"); n != 1 {
			t.Errorf("%d Subject fields", n)
		}
	})
	t.Run("rspamd stopped", func(t *testing.T) {
		r.stop()
		out := swaksMsg(t, s, "test0@hosted-domain.com", "while down", "marker-down-tempfail")
		if !regexp.MustCompile(`(?m)^<\*\* +451 4\.7\.1 `).MatchString(out) {
			t.Errorf("tempfail policy: want 451 4.7.1:\n%s", out)
		}
		if countWith(t, s, "xomail", "new", "marker-down-tempfail") != 0 {
			t.Error("stored despite the tempfail policy")
		}
		out = swaksMsg(t, open, "test0@hosted-domain.com", "while down", "marker-down-accept")
		if !accepted(out) {
			t.Errorf("accept policy: refused:\n%s", out)
		}
		if countWith(t, open, "xomail", "new", "marker-down-accept") != 1 {
			t.Error("accept policy: not delivered")
		}
		// A second message: the state change is logged once, not per message.
		swaksMsg(t, s, "test0@hosted-domain.com", "while down", "again")
		if n := strings.Count(s.logs(), "milter unavailable"); n != 1 {
			t.Errorf("%d 'milter unavailable' lines, want 1", n)
		}
	})
}

// testMilter is a milter written with the library's server side: it does
// what the Subject asks ("milter: ACTION"), for the actions rspamd does not
// send, and records the macros it was given.
type testMilter struct {
	gomilter.NoOpMilter
	rec     *macroRecord
	subject string
	from    string
}

type macroRecord struct {
	mu     sync.Mutex
	macros map[string]string
	host   string // SMFIC_CONNECT's address
}

func (m *testMilter) Connect(host, family string, port uint16, addr string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.rec.mu.Lock()
	m.rec.host = addr
	m.rec.mu.Unlock()
	return gomilter.RespContinue, nil
}

func (m *testMilter) MailFrom(from, _ string, mod gomilter.Modifier) (*gomilter.Response, error) {
	m.from, m.subject = from, ""
	m.record(mod, gomilter.MacroMTAFQDN, gomilter.MacroClientAddr, gomilter.MacroQueueId, gomilter.MacroAuthAuthen, gomilter.MacroAuthType, gomilter.MacroTlsVersion, gomilter.MacroDaemonName)
	return gomilter.RespContinue, nil
}

func (m *testMilter) RcptTo(rcpt, _ string, mod gomilter.Modifier) (*gomilter.Response, error) {
	if strings.HasPrefix(m.from, "rcptreject@") && strings.HasPrefix(rcpt, "bob@") {
		return gomilter.RejectWithCodeAndReason(550, "5.7.1 bob is not wanted here")
	}
	return gomilter.RespContinue, nil
}

func (m *testMilter) Header(name, value string, mod gomilter.Modifier) (*gomilter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		m.subject = value
	}
	return gomilter.RespContinue, nil
}

func (m *testMilter) record(mod gomilter.Modifier, names ...string) {
	m.rec.mu.Lock()
	defer m.rec.mu.Unlock()
	for _, n := range names {
		if v, ok := mod.GetEx(n); ok {
			m.rec.macros[n] = v
		}
	}
}

func (m *testMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	action, _ := strings.CutPrefix(m.subject, "milter: ")
	switch action {
	case "addrcpt":
		mod.AddRecipient("<alice@hosted-domain.com>", "")
	case "delrcpt":
		mod.DeleteRecipient("<bob@hosted-domain.com>")
	case "chfrom":
		mod.ChangeFrom("<changed@example.org>", "")
	case "headers":
		mod.AddHeader("X-Added", "added by milter")
		mod.InsertHeader(0, "X-First", "inserted first")
		mod.ChangeHeader(1, "Subject", "changed subject")
		mod.ChangeHeader(1, "X-Remove-Me", "")
		mod.AddHeader("X-Evil", "a\r\nBcc: victim@example.org") // refused: not a folded value
	case "body":
		mod.ReplaceBodyRawChunk([]byte("replaced body\nsecond line\n"))
	case "quarantine":
		mod.Quarantine("test says so")
	case "discard":
		return gomilter.RespDiscard, nil
	case "tempfail":
		return gomilter.RespTempFail, nil
	case "reject":
		return gomilter.RejectWithCodeAndReason(553, "5.7.0 custom refusal")
	case "accept":
		return gomilter.RespAccept, nil
	}
	return gomilter.RespContinue, nil
}

// startTestMilter serves testMilter on a kernel-chosen loopback port.
func startTestMilter(t *testing.T) (addr string, rec *macroRecord) {
	t.Helper()
	rec = &macroRecord{macros: map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &testMilter{rec: rec} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks),
	)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), rec
}

// TestMilterActions: every action a milter can answer, through the binary.
func TestMilterActions(t *testing.T) {
	requireTool(t, "swaks")
	addr, rec := startTestMilter(t)
	s := startServer(t, withTOML(milterTOML(addr, quoteList("smtp", "submission"), "tempfail")))

	for _, tc := range []struct {
		action string
		to     string
		reply  string // regexp on the transcript
		check  func(t *testing.T, marker string)
	}{
		{"continue", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			findMessage(t, s, "xomail", "new", mk)
		}},
		{"accept", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			findMessage(t, s, "xomail", "new", mk)
		}},
		{"reject", "test0@hosted-domain.com", `<\*\* +553 5\.7\.0 custom refusal`, func(t *testing.T, mk string) {
			if countWith(t, s, "xomail", "new", mk) != 0 {
				t.Error("rejected message stored")
			}
		}},
		{"tempfail", "test0@hosted-domain.com", `<\*\* +451 4\.7\.1 `, func(t *testing.T, mk string) {
			if countWith(t, s, "xomail", "new", mk) != 0 {
				t.Error("tempfailed message stored")
			}
		}},
		{"discard", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			if countWith(t, s, "xomail", "new", mk) != 0 {
				t.Error("discarded message stored")
			}
			if !waitLog(s, "message discarded by milter") {
				t.Error("discard not logged")
			}
		}},
		{"quarantine", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			findMessage(t, s, "xomail", ".Junk/new", mk)
		}},
		{"addrcpt", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			findMessage(t, s, "xomail", "new", mk)
			findMessage(t, s, "alice", "new", mk)
		}},
		{"delrcpt", "test0@hosted-domain.com,bob@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			findMessage(t, s, "xomail", "new", mk)
			if countWith(t, s, "bob", "new", mk) != 0 {
				t.Error("removed recipient got a copy")
			}
		}},
		{"chfrom", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			m := findMessage(t, s, "xomail", "new", mk)
			if !strings.HasPrefix(m, "Return-Path: <changed@example.org>") {
				t.Errorf("sender not changed:\n%s", m)
			}
		}},
		{"headers", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			m := findMessage(t, s, "xomail", "new", mk)
			head, _, _ := strings.Cut(m, "\n\n")
			for _, re := range []string{`(?m)^X-Added: added by milter$`, `(?m)^Subject: changed subject$`} {
				if !regexp.MustCompile(re).MatchString(head) {
					t.Errorf("%s missing:\n%s", re, head)
				}
			}
			// Inserted at the very top: before our Received (after the
			// Return-Path and Delivered-To delivery writes).
			if !regexp.MustCompile(`\AReturn-Path: [^\n]*\nX-Original-To: [^\n]*\nDelivered-To: [^\n]*\nX-First: inserted first\nReceived: `).MatchString(head) {
				t.Errorf("X-First not first:\n%s", head)
			}
			for _, bad := range []string{"X-Remove-Me", "milter: headers", "Bcc:", "X-Evil"} {
				if strings.Contains(head, bad) {
					t.Errorf("%q still in the header:\n%s", bad, head)
				}
			}
		}},
		{"body", "test0@hosted-domain.com", `<-  250 2\.0\.0 OK`, func(t *testing.T, mk string) {
			m := findMessage(t, s, "xomail", "new", mk)
			// (maildir files have LF line ends: the CRLF the milter
			// did not send was added, then stored as every message is)
			if _, body, _ := strings.Cut(m, "\n\n"); body != "replaced body\nsecond line\n" {
				t.Errorf("body %q", body)
			}
		}},
	} {
		t.Run(tc.action, func(t *testing.T) {
			marker := "marker-" + tc.action
			args := []string{"--header", "X-Remove-Me: please", "--header", "X-Marker: " + marker}
			out := swaksMsg(t, s, tc.to, "milter: "+tc.action, "body of "+marker, args...)
			if !regexp.MustCompile(tc.reply).MatchString(out) {
				t.Fatalf("want %s:\n%s", tc.reply, out)
			}
			tc.check(t, marker)
		})
	}

	// Two maildrops: the message goes through the queue, which must keep
	// the folder of each local copy.
	t.Run("quarantine through the queue", func(t *testing.T) {
		out := swaksMsg(t, s, "test0@hosted-domain.com,bob@hosted-domain.com", "milter: quarantine", "marker-quarantine-queue")
		if !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
		findMessage(t, s, "xomail", ".Junk/new", "marker-quarantine-queue")
		findMessage(t, s, "bob", ".Junk/new", "marker-quarantine-queue")
		if countWith(t, s, "bob", "new", "marker-quarantine-queue") != 0 {
			t.Error("also in bob's INBOX")
		}
	})

	t.Run("rcpt refused by milter", func(t *testing.T) {
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "rcptreject@example.net",
			"--to", "test0@hosted-domain.com,bob@hosted-domain.com", "--body", "marker-rcptreject")
		if !strings.Contains(out, "<** 550 5.7.1 bob is not wanted here") || !accepted(out) {
			t.Errorf("bob not refused alone:\n%s", out)
		}
		if countWith(t, s, "bob", "new", "marker-rcptreject") != 0 || countWith(t, s, "xomail", "new", "marker-rcptreject") != 1 {
			t.Error("copies wrong")
		}
	})

	t.Run("macros", func(t *testing.T) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.host != "127.0.0.1" {
			t.Errorf("connect address %q", rec.host)
		}
		for name, re := range map[string]string{"j": `^xoyize\.xyz$`, "{client_addr}": `^127\.0\.0\.1$`,
			"i": `^[A-Z2-7]{16}$`, "{daemon_name}": `^smtp$`} {
			if !regexp.MustCompile(re).MatchString(rec.macros[name]) {
				t.Errorf("macro %s = %q, want %s", name, rec.macros[name], re)
			}
		}
	})

	t.Run("submission: authenticated macros", func(t *testing.T) {
		out, err := run(t, "", "swaks", "--server", s.Sub, "--tls", "--tls-verify", "--tls-ca-path", s.ca.CertFile(),
			"-a", "PLAIN", "-au", "xomail", "-ap", testenv.XomailPassword, "--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com",
			"--header", "Subject: milter: continue", "--body", "marker-sub")
		if err != nil || !accepted(out) {
			t.Fatalf("swaks: %v\n%s", err, out)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.macros["{auth_authen}"] != "xomail" || rec.macros["{auth_type}"] != "PLAIN" || !strings.HasPrefix(rec.macros["{tls_version}"], "TLSv1.") ||
			rec.macros["{daemon_name}"] != "submission" {
			t.Errorf("macros %v", rec.macros)
		}
	})
}

// waitLog waits (bounded) for a log line: the server's output reaches the
// test through a pipe, a moment after the reply.
func waitLog(s *server, text string) bool {
	for range 100 {
		if strings.Contains(s.logs(), text) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// `courriel demo -milter ADDR` puts the milter on its port-25 listener
// with the tempfail policy; submission stays unfiltered.
func TestDemoMilter(t *testing.T) {
	requireTool(t, "swaks")
	addr, _ := startTestMilter(t)
	dead := testenv.RefusingAddr(t)
	dir := filepath.Join(t.TempDir(), "demo")
	// Not 127.0.0.1: the demo's fixed ports there may be another local
	// server's (or TestDemo's) while this runs.
	host := freeLoopbackHost(t, "2525", "2587", "2465", "2993", "3389", "8025", "14190")
	cmd := exec.Command(binary, "demo", "-dir", dir, "-listen", host, "-milter", "inet:"+addr, "-milter", "inet:"+dead)
	var mu sync.Mutex
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = lockedWriter{&mu, &out}, lockedWriter{&mu, &out}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("demo output:\n%s", out.String())
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range []string{"2525", "2587"} {
		for {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(host, p), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo not listening on %s", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The second milter is dead: tempfail, whatever the first one says.
	o, _ := run(t, "", "swaks", "--server", host+":2525", "--to", "test0@hosted-domain.com",
		"--from", "someone@example.net", "--header", "Subject: milter: continue")
	if !regexp.MustCompile(`(?m)^<\*\* +451 4\.7\.1 `).MatchString(o) {
		t.Errorf("port 25 with a dead milter: want 451 4.7.1:\n%s", o)
	}
	o, _ = run(t, "", "swaks", "--server", host+":2587", "--tls", "-au", "xomail", "-ap", "demo",
		"--from", "test0@hosted-domain.com", "--to", "alice@example.org")
	if !accepted(o) {
		t.Errorf("submission went through the milters:\n%s", o)
	}
}

// freeLoopbackHost is an address in 127.0.0.0/8, other than 127.0.0.1,
// where every one of ports is free at this moment.
func freeLoopbackHost(t *testing.T, ports ...string) string {
	t.Helper()
	for i := 0; i < 50; i++ {
		host := fmt.Sprintf("127.0.%d.%d", 1+rand.IntN(254), 1+rand.IntN(254))
		free := true
		for _, p := range ports {
			ln, err := net.Listen("tcp", net.JoinHostPort(host, p))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return host
		}
	}
	t.Fatalf("no loopback address with ports %v free", ports)
	return ""
}
