package integration

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

func TestSubmissionSwaks(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	ca := []string{"--tls-verify", "--tls-ca-path", s.ca.CertFile()}
	tests := []struct {
		name string
		args []string
		want string // regexp on the transcript
	}{
		{"587 PLAIN as uid", append([]string{"--server", s.Sub, "--tls", "-a", "PLAIN", "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com"}, ca...), `<[-~]  250 2\.0\.0 OK: queued`},
		{"587 LOGIN as address", append([]string{"--server", s.Sub, "--tls", "-a", "LOGIN", "-au", "test1@hosted-domain.com", "-ap", testenv.XomailPassword,
			"--from", "test1@hosted-domain.com", "--to", "bob@hosted-domain.com"}, ca...), `<[-~]  250 2\.0\.0 OK: queued`},
		{"465 implicit TLS", append([]string{"--server", s.Subs, "--tlsc", "-a", "PLAIN", "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "test1@hosted-domain.com", "--to", "contact@example.org"}, ca...), `<[-~]  250 2\.0\.0 OK: queued`},
		{"465 as alice by address", append([]string{"--server", s.Subs, "--tlsc", "-a", "LOGIN", "-au", "contact@example.org", "-ap", testenv.AlicePassword,
			"--from", "a.smith@hosted-domain.com", "--to", "test0@hosted-domain.com"}, ca...), `<[-~]  250 2\.0\.0 OK: queued`},
		{"587 sending as the maildrop", append([]string{"--server", s.Sub, "--tls", "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "xomail@xoyize.xyz", "--to", "alice@hosted-domain.com"}, ca...), `<[-~]  250 2\.0\.0 OK: queued`},
		{"587 AUTH before STARTTLS", []string{"--server", s.Sub, "-a", "PLAIN", "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com"}, `530 5\.7\.0|not supported|AUTH.*not advertised|No authentication type succeeded|Host did not advertise authentication`},
		{"587 MAIL before STARTTLS", []string{"--server", s.Sub, "--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com"}, `<(\*\*|~\*) 530 5\.7\.0`},
		{"587 MAIL without AUTH", append([]string{"--server", s.Sub, "--tls", "--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com"}, ca...), `<(\*\*|~\*) 530 5\.7\.0`},
		{"587 sender mismatch", append([]string{"--server", s.Sub, "--tls", "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "alice@hosted-domain.com", "--to", "bob@hosted-domain.com"}, ca...),
			`<(\*\*|~\*) +553 5\.7\.1 <alice@hosted-domain\.com>: Sender address rejected: not owned by user xomail`},
		{"587 bad password", append([]string{"--server", s.Sub, "--tls", "-au", "xomail", "-ap", "wrong",
			"--from", "test0@hosted-domain.com", "--to", "bob@hosted-domain.com"}, ca...), `<~\* 535 5\.7\.8|<\*\* 535 5\.7\.8`},
		// The seed's reject_sender_login_mismatch: on port 25 too, one of
		// our addresses needs its owner's login (answered at RCPT).
		{"25 owned sender without login", []string{"--server", s.SMTP, "--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com"},
			`<\*\* +553 5\.7\.1 <test0@hosted-domain\.com>: Sender address rejected: not logged in`},
	}
	for _, tt := range tests {
		out, _ := run(t, "", "swaks", tt.args...)
		if !regexp.MustCompile(tt.want).MatchString(out) {
			t.Errorf("%s: want %s\n%s", tt.name, tt.want, out)
		}
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 3 {
		t.Errorf("alice has %d messages, want 3", n)
	}
	// The secret copy's address never reaches anyone, nor a sender's
	// Return-Path (Postfix's message_drop_headers).
	out, _ := run(t, "", "swaks", append([]string{"--server", s.Sub, "--tls", "-au", "xomail", "-ap", testenv.XomailPassword,
		"--from", "test0@hosted-domain.com", "--to", "bob@hosted-domain.com,contact@example.org",
		"--header", "Bcc: contact@example.org", "--add-header", "Return-Path: <forged@evil.example>"}, ca...)...)
	if !regexp.MustCompile(`<[-~]  250 2\.0\.0 OK: queued`).MatchString(out) {
		t.Fatalf("submission with Bcc:\n%s", out)
	}
	for _, user := range []string{"bob", "alice"} {
		b, err := os.ReadFile(newestFile(t, s.maildirFiles(t, user, "new")))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b, []byte("X-Mailer: swaks")) || bytes.Contains(b, []byte("Bcc:")) || bytes.Contains(b, []byte("forged@evil.example")) ||
			!bytes.HasPrefix(b, []byte("Return-Path: <test0@hosted-domain.com>\n")) {
			t.Errorf("%s's copy keeps Bcc: or the sender's Return-Path:\n%s", user, b)
		}
	}
	if out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "x@example.net", "--to", "x@foreign.example"); !strings.Contains(out, "554 5.7.1") {
		t.Errorf("port 25 relays without AUTH:\n%s", out)
	}
}

// newestFile is the last written of files. Not the last by name: a copy
// stored at DATA (<sec>.M…) and one the queue stores (<sec>.K…) in the same
// second sort the other way round.
func newestFile(t *testing.T, files []string) string {
	t.Helper()
	var newest string
	var at time.Time
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if newest == "" || fi.ModTime().After(at) {
			newest, at = f, fi.ModTime()
		}
	}
	if newest == "" {
		t.Fatal("no file")
	}
	return newest
}
