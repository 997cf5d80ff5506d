package integration

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// DSN (RFC 3461/3464) end to end: the built binary, a real slapd, Python's
// smtplib as the client, and go-smtp sinks as next hops.

// pySend sends one message with Python's smtplib and DSN parameters:
// through submission (STARTTLS, AUTH as xomail) when sub, else port 25.
// It returns the reply to the message, or the error smtplib raised.
func pySend(t *testing.T, s *server, sub bool, from string, to []string, mailOpts, rcptOpts []string, body string) string {
	t.Helper()
	python := requireTool(t, "python3")
	addr := s.SMTP
	if sub {
		addr = s.Sub
	}
	host, port, _ := net.SplitHostPort(addr)
	args, _ := json.Marshal(map[string]any{"host": host, "port": port, "sub": sub, "ca": s.ca.CertFile(),
		"user": "xomail", "pass": testenv.XomailPassword, "from": from, "to": to,
		"mail": mailOpts, "rcpt": rcptOpts, "body": body})
	script := `import json, smtplib, ssl, sys
a = json.loads(sys.argv[1])
c = smtplib.SMTP(a["host"], int(a["port"]), local_hostname="client.example.net")
c.ehlo()
if a["sub"]:
    c.starttls(context=ssl.create_default_context(cafile=a["ca"]))
    c.ehlo()
    c.login(a["user"], a["pass"])
print("DSN offered" if c.has_extn("dsn") else "DSN not offered")
try:
    c.sendmail(a["from"], a["to"], a["body"].encode(), mail_options=a["mail"] or [], rcpt_options=a["rcpt"] or [])
    print("sent")
except smtplib.SMTPException as e:
    print("refused", e)
c.quit()
`
	out, err := run(t, script, python, "-", string(args))
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	return out
}

// reports returns the DSNs (multipart/report) in user's maildir whose text
// matches every one of res.
func reports(t *testing.T, s *server, user string, res ...string) []string {
	t.Helper()
	var out []string
next:
	for _, f := range s.maildirFiles(t, user, "new") {
		b, _ := os.ReadFile(f)
		if !strings.Contains(string(b), "multipart/report") {
			continue
		}
		for _, re := range res {
			if !regexp.MustCompile(re).Match(b) {
				continue next
			}
		}
		out = append(out, string(b))
	}
	return out
}

// dsnSink is a next hop that offers DSN (or not) and records the DSN
// parameters it is given.
type dsnSink struct {
	addr     string
	mu       sync.Mutex
	got      []string        // guarded by mu: one line per transaction, MAIL and RCPT parameters
	data     []string        // guarded by mu
	rejected map[string]bool // guarded by mu: RCPTs answered 550
}

func startDSNSink(t *testing.T, ca *testenv.CA, offers bool) *dsnSink {
	t.Helper()
	k := &dsnSink{}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) { return &dsnSinkSession{k: k}, nil }))
	srv.Domain = "dsnsink.test"
	srv.EnableDSN = offers
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "localhost", "127.0.0.1")}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return k
}

func (k *dsnSink) transactions() ([]string, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.got...), append([]string(nil), k.data...)
}

type dsnSinkSession struct {
	k    *dsnSink
	line string
}

func (s *dsnSinkSession) AuthMechanisms() []string { return nil }
func (s *dsnSinkSession) Mail(from string, o *gosmtp.MailOptions) error {
	s.line = fmt.Sprintf("from=<%s> ret=%s envid=%s", from, o.Return, o.EnvelopeID)
	return nil
}
func (s *dsnSinkSession) Rcpt(to string, o *gosmtp.RcptOptions) error {
	s.k.mu.Lock()
	no := s.k.rejected[to]
	s.k.mu.Unlock()
	if no {
		return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	var n []string
	for _, x := range o.Notify {
		n = append(n, string(x))
	}
	s.line += fmt.Sprintf(" | to=<%s> notify=%s orcpt=%s;%s", to, strings.Join(n, ","), strings.ToLower(string(o.OriginalRecipientType)), o.OriginalRecipient)
	return nil
}
func (s *dsnSinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.got = append(s.k.got, s.line)
	s.k.data = append(s.k.data, string(b))
	s.k.mu.Unlock()
	return nil
}
func (s *dsnSinkSession) Reset()        { s.line = "" }
func (s *dsnSinkSession) Logout() error { return nil }

// TestDSNLocal: a local sender's NOTIFY=SUCCESS to a mailbox here gets a
// success DSN (Action: delivered, its ORCPT and ENVID) in its maildir, from
// the null sender; to an alias, Action: expanded; and the parameters'
// syntax is checked as Postfix does.
func TestDSNLocal(t *testing.T) {
	s := startServer(t)
	out := pySend(t, s, true, "test0@hosted-domain.com", []string{"bob@xoyize.xyz"},
		[]string{"RET=HDRS", "ENVID=abc"}, []string{"NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x@y"},
		"Subject: dsn local\r\nMessage-ID: <dsn-local@hosted-domain.com>\r\n\r\nthe body text\r\n")
	if !strings.Contains(out, "DSN offered") || !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	var dsn string
	waitFor(t, "the success DSN in the sender's maildir", func() bool {
		r := reports(t, s, "xomail", `Successful Mail Delivery Report`)
		if len(r) > 0 {
			dsn = r[0]
		}
		return len(r) > 0
	})
	for _, re := range []string{`(?m)^Return-Path: <>`, `(?m)^Original-Envelope-Id: abc\r?$`, `(?m)^Reporting-MTA: dns; ?xoyize.xyz`,
		`(?m)^Original-Recipient: rfc822; ?x@y\r?$`, `(?m)^Final-Recipient: rfc822; ?bob@xoyize.xyz`, `(?m)^Action: delivered`,
		`(?m)^Status: 2\.0\.0`, `Message-ID: <dsn-local@hosted-domain.com>`} {
		if !regexp.MustCompile(re).MatchString(dsn) {
			t.Errorf("success DSN lacks %s:\n%s", re, dsn)
		}
	}
	if strings.Contains(dsn, "the body text") {
		t.Errorf("the success DSN returns the body:\n%s", dsn)
	}
	if len(s.maildirFiles(t, "bob", "new")) != 1 {
		t.Errorf("bob has %d messages, want 1", len(s.maildirFiles(t, "bob", "new")))
	}

	// An alias (Postfix's virtual alias): expanded. The sender, ours,
	// logs in to use its address (reject_sender_login_mismatch).
	out = pySend(t, s, true, "test0@hosted-domain.com", []string{"alice@hosted-domain.com"},
		nil, []string{"NOTIFY=SUCCESS"}, "Subject: dsn alias\r\n\r\nhi\r\n")
	if !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	var expanded []string
	waitFor(t, "the expanded DSN", func() bool {
		expanded = reports(t, s, "xomail", `(?m)^Action: expanded`, `(?m)^Final-Recipient: rfc822; ?alice@hosted-domain.com`)
		return len(expanded) == 1
	})
	if strings.Contains(expanded[0], "Action: delivered") {
		t.Errorf("the expanded alias's copy is reported too:\n%s", expanded[0])
	}
	if n := len(reports(t, s, "xomail", `Successful Mail Delivery Report`)); n != 2 {
		t.Errorf("%d success DSNs, want 2 (alice's copy asks no more for one)", n)
	}

	// Syntax, as Postfix's smtpd.
	for _, tc := range []struct{ mail, rcpt, want string }{
		{"", "NOTIFY=NEVER,SUCCESS", "NOTIFY=NEVER cannot be combined"},
		{"", "ORCPT=rfc822;a+0D+0Ab@c", "Bad ORCPT parameter syntax"},
		{"ENVID=" + strings.Repeat("e", 101), "", "Bad ENVID parameter syntax"},
		{"RET=NONE", "", "Bad RET parameter syntax"},
	} {
		var mo, ro []string
		if tc.mail != "" {
			mo = []string{tc.mail}
		}
		if tc.rcpt != "" {
			ro = []string{tc.rcpt}
		}
		out := pySend(t, s, false, "someone@example.net", []string{"bob@xoyize.xyz"}, mo, ro, "Subject: x\r\n\r\nx\r\n")
		if !strings.Contains(out, "refused") || !strings.Contains(out, "501") || !strings.Contains(out, tc.want) {
			t.Errorf("%s %s: %s, want 501 %s", tc.mail, tc.rcpt, out, tc.want)
		}
	}
}

// TestDSNRemote: relayed to a next hop that offers DSN, the parameters go
// on (and no success DSN comes from here); to one that does not,
// NOTIFY=SUCCESS gets Action: relayed; NOTIFY=NEVER bounces nothing; a
// remote sender's success DSN goes to it through the queue.
func TestDSNRemote(t *testing.T) {
	ca := testenv.NewCA(t)
	withDSN := startDSNSink(t, ca, true)
	without := startDSNSink(t, ca, false)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"dsn.example\" = %q\n\"nodsn.example\" = %q\n\"foreign.example\" = %q\n",
		withDSN.addr, without.addr, withDSN.addr)))

	// 1. To a next hop that offers DSN.
	out := pySend(t, s, true, "test0@hosted-domain.com", []string{"friend@dsn.example", "other@dsn.example"},
		[]string{"RET=FULL", "ENVID=env+2B1"}, []string{"NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;orig@x.example"}, "Subject: relay\r\n\r\nbody\r\n")
	if !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	waitFor(t, "the relayed copy", func() bool { got, _ := withDSN.transactions(); return len(got) == 1 })
	got, _ := withDSN.transactions()
	want := "from=<test0@hosted-domain.com> ret=FULL envid=env+1" +
		" | to=<friend@dsn.example> notify=SUCCESS,DELAY orcpt=rfc822;orig@x.example" +
		" | to=<other@dsn.example> notify=SUCCESS,DELAY orcpt=rfc822;orig@x.example"
	if got[0] != want {
		t.Errorf("the next hop got\n %s\nwant\n %s", got[0], want)
	}

	// The first message is done with (a success DSN would have been
	// stored before its removal is logged).
	waitFor(t, "the first message to leave the queue", func() bool { return strings.Contains(s.logs(), "msg=removed") })

	// 2. To a next hop that does not: relayed.
	out = pySend(t, s, true, "test0@hosted-domain.com", []string{"friend@nodsn.example"},
		nil, []string{"NOTIFY=SUCCESS"}, "Subject: relay 2\r\n\r\nbody\r\n")
	if !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	waitFor(t, "the relayed DSN", func() bool {
		return len(reports(t, s, "xomail", `(?m)^Action: relayed`, `(?m)^Final-Recipient: rfc822; ?friend@nodsn.example`)) == 1
	})
	if r := reports(t, s, "xomail", `Successful Mail Delivery Report`); len(r) != 1 {
		t.Errorf("%d success DSNs, want the relayed one only (the next hop offering DSN reports the others)", len(r))
	}
	if got, _ := without.transactions(); len(got) != 1 || got[0] != "from=<test0@hosted-domain.com> ret= envid= | to=<friend@nodsn.example> notify= orcpt=;" {
		t.Errorf("the next hop without DSN got %q", got)
	}

	// 3. NOTIFY=NEVER: an unknown remote recipient bounces nothing,
	// FAILURE (the control) does.
	without.reject(t, "nobody@nodsn.example", "ghost@nodsn.example")
	for _, notify := range []string{"NEVER", "FAILURE"} {
		to := map[string]string{"NEVER": "nobody@nodsn.example", "FAILURE": "ghost@nodsn.example"}[notify]
		out = pySend(t, s, true, "test0@hosted-domain.com", []string{to}, nil, []string{"NOTIFY=" + notify}, "Subject: never\r\n\r\nbody\r\n")
		if !strings.Contains(out, "sent") {
			t.Fatalf("smtplib:\n%s", out)
		}
	}
	waitFor(t, "the FAILURE bounce", func() bool {
		return len(reports(t, s, "xomail", `(?m)^Action: failed`, `ghost@nodsn.example`)) == 1
	})
	waitFor(t, "the NEVER recipient's failure", func() bool {
		return strings.Contains(s.logs(), "no non-delivery notification: NOTIFY does not ask for it")
	})
	if r := reports(t, s, "xomail", `nobody@nodsn.example`); len(r) != 0 {
		t.Errorf("NOTIFY=NEVER bounced:\n%s", r[0])
	}

	// 4. A remote sender: its success DSN leaves from <> for it.
	out = pySend(t, s, false, "someone@foreign.example", []string{"bob@xoyize.xyz"},
		[]string{"ENVID=remote-1"}, []string{"NOTIFY=SUCCESS"}, "Subject: from afar\r\n\r\nbody\r\n")
	if !strings.Contains(out, "DSN offered") || !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	waitFor(t, "the success DSN at the sink", func() bool { got, _ := withDSN.transactions(); return len(got) == 2 })
	got, data := withDSN.transactions()
	if !strings.HasPrefix(got[1], "from=<> ") || !strings.Contains(got[1], "to=<someone@foreign.example>") {
		t.Errorf("success DSN envelope: %s", got[1])
	}
	for _, re := range []string{`(?m)^Action: delivered`, `(?m)^Original-Envelope-Id: remote-1`, `(?m)^Final-Recipient: rfc822; ?bob@xoyize.xyz`} {
		if !regexp.MustCompile(re).MatchString(data[1]) {
			t.Errorf("success DSN lacks %s:\n%s", re, data[1])
		}
	}
}

// reject makes the sink answer 550 to these RCPTs.
func (k *dsnSink) reject(t *testing.T, addrs ...string) {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.rejected == nil {
		k.rejected = map[string]bool{}
	}
	for _, a := range addrs {
		k.rejected[a] = true
	}
}

// TestDSNUTF8: the QA case end to end. A local sender's SMTPUTF8 message
// to ünï@noutf8.example, whose next hop does not offer SMTPUTF8, bounces
// 5.6.7, and the DSN stored in the sender's maildir is RFC 6533's, the
// address as it is everywhere (it used to read <??n??@noutf8.example>),
// and Python's email parser reads it without a defect.
func TestDSNUTF8(t *testing.T) {
	python := requireTool(t, "python3")
	ca := testenv.NewCA(t)
	noUTF8 := startDSNSink(t, ca, false) // go-smtp offers no SMTPUTF8 unless told
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"noutf8.example\" = %q\n", noUTF8.addr)))
	out := pySend(t, s, true, "test0@hosted-domain.com", []string{"ünï@noutf8.example"}, []string{"SMTPUTF8"}, nil,
		"Subject: hi\r\nTo: <ünï@noutf8.example>\r\n\r\nbody\r\n")
	if !strings.Contains(out, "sent") {
		t.Fatalf("smtplib:\n%s", out)
	}
	var dsn string
	waitFor(t, "the DSN in the sender's maildir", func() bool {
		r := reports(t, s, "xomail", `(?m)^Status: 5\.6\.7`)
		if len(r) > 0 {
			dsn = r[0]
		}
		return len(r) > 0
	})
	for _, re := range []string{`(?m)^Content-Type: text/plain; charset=utf-8\r?$`,
		`(?m)^<ünï@noutf8\.example>: SMTPUTF8 is required, but was not offered by host\r?$`,
		`(?m)^Content-Type: message/global-delivery-status\r?$`, `(?m)^Final-Recipient: utf-8; ünï@noutf8\.example\r?$`,
		`(?m)^Content-Type: message/global-headers\r?$`, `(?m)^To: <ünï@noutf8\.example>\r?$`} {
		if !regexp.MustCompile(re).MatchString(dsn) {
			t.Errorf("DSN lacks %s:\n%s", re, dsn)
		}
	}
	if strings.Contains(dsn, "??n") || strings.Contains(dsn, "rfc822-headers") || strings.Contains(dsn, "message/delivery-status") {
		t.Errorf("DSN masks the address or keeps the RFC 3464 types:\n%s", dsn)
	}
	if got, _ := noUTF8.transactions(); len(got) != 0 {
		t.Errorf("the next hop without SMTPUTF8 got %q", got)
	}
	got, err := run(t, dsn, python, "-c", `
import email, email.policy, sys
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts = list(m.iter_parts())
print([d for p in m.walk() for d in p.defects])
print([p.get_content_type() for p in parts])
print(parts[0].get_content().split("The mail system")[1].split()[0])
print([l for l in parts[1].get_payload()[0].get_payload(decode=True).decode().splitlines() if l.startswith("Final-Recipient")][0])
print(parts[2].get_payload()[0]["To"])
`)
	want := "[]\n['text/plain', 'message/global-delivery-status', 'message/global-headers']\n<ünï@noutf8.example>:\n" +
		"Final-Recipient: utf-8; ünï@noutf8.example\nünï@noutf8.example\n"
	if err != nil || got != want {
		t.Errorf("Python read the DSN as\n%s(%v)\nwant\n%s", got, err, want)
	}
}
