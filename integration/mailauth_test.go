package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// dkimOracle is the python3 of Debian's dkimpy and pyspf (the #! of
// dkimverify: a python3 earlier on PATH may not see Debian's packages).
func dkimOracle(t *testing.T) string {
	t.Helper()
	p := requireTool(t, "dkimverify")
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	py := strings.TrimSpace(strings.TrimPrefix(line, "#!"))
	if py == "" || strings.Contains(py, " ") {
		py = "/usr/bin/python3"
	}
	return py
}

// dkimpyVerify verifies every DKIM signature of msg with dkimpy, keys from
// the test's DNS server, and returns one "pass"/"fail" per signature of
// its header.
func dkimpyVerify(t *testing.T, d *testenv.DNS, msg []byte) string {
	t.Helper()
	const script = `
import sys, dns.resolver, dkim
r = dns.resolver.Resolver(configure=False)
h, p = sys.argv[1].rsplit(":", 1)
r.nameservers, r.port = [h], int(p)
dns.resolver.default_resolver = r
msg = sys.stdin.buffer.read()
hdr = msg.split(b"\r\n\r\n", 1)[0]
n = hdr.count(b"\nDKIM-Signature:") + hdr.startswith(b"DKIM-Signature:")
res = []
for i in range(n):
    try:
        ok = dkim.DKIM(msg).verify(idx=i)
    except dkim.ValidationError:
        ok = False
    res.append("pass" if ok else "fail")
print(" ".join(res))
`
	cmd := exec.Command(dkimOracle(t), "-c", script, d.Addr)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// crlf turns a stored copy (LF, as Dovecot's LDA writes) back into the
// message as it travelled.
func crlf(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

var txtRecordRe = regexp.MustCompile(`(?m)^(\S+\._domainkey\.\S+) 3600 IN TXT (.*)$`)

// dkimKeygen runs `courriel dkim keygen` and publishes what it prints on d;
// it returns the configuration snippet it printed, made active as its text
// says once the records are published.
func dkimKeygen(t *testing.T, d *testenv.DNS, dir, domain, sel string) string {
	t.Helper()
	out, err := run(t, "", binary, "dkim", "keygen", "-domain", domain, "-selector", sel, "-dir", dir)
	if err != nil {
		t.Fatalf("dkim keygen: %v\n%s", err, out)
	}
	recs := txtRecordRe.FindAllStringSubmatch(out, -1)
	if len(recs) != 2 {
		t.Fatalf("keygen printed %d records:\n%s", len(recs), out)
	}
	for _, r := range recs {
		if d != nil {
			d.Set(t, r[1]+" 3600 IN TXT "+r[2])
		}
	}
	for _, a := range []string{"ed25519", "rsa"} {
		fi, err := os.Stat(filepath.Join(dir, domain, sel+"-"+a+".pem"))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("key %s: %v %v", a, fi, err)
		}
	}
	_, conf, ok := strings.Cut(out, "[[mailauth.dkim]]")
	if !ok {
		t.Fatalf("no configuration printed:\n%s", out)
	}
	if !strings.HasSuffix(conf, "\nactive = false\n") {
		t.Fatalf("the configuration printed is not inactive:\n%s", out)
	}
	return "[[mailauth.dkim]]" + strings.TrimSuffix(conf, "false\n") + "true\n"
}

// TestDKIMSubmissionSigned: keys from `courriel dkim keygen`, published as
// it says; `dkim check` agrees with the DNS, then finds a changed record;
// mail submitted on 587 and 465, or on port 25 after AUTH, is stored (and
// so relayed) with an Ed25519 and an RSA signature that dkimpy verifies,
// while port 25 signs nothing for a client that did not log in.
func TestDKIMSubmissionSigned(t *testing.T) {
	requireTool(t, "swaks")
	dkimOracle(t)
	d := testenv.StartDNS(t)
	keys := t.TempDir()
	conf := dkimKeygen(t, d, keys, "hosted-domain.com", "t1")
	s := startServer(t, withMailAuth(fmt.Sprintf("inbound_checks = false\ndns_server = %q\n", d.Addr)+conf))

	out, err := run(t, "", binary, "dkim", "check", "-domain", "hosted-domain.com", "-config", s.config)
	if err != nil || strings.Count(out, ": ok") != 2 {
		t.Fatalf("dkim check: %v\n%s", err, out)
	}
	out, _ = run(t, "", binary, "check-config", "-q", "-config", s.config)
	for _, a := range []string{"ed25519", "rsa"} {
		if !strings.Contains(out, "ok   dkim: t1-"+a+"._domainkey.hosted-domain.com published") {
			t.Errorf("check-config:\n%s", out)
		}
	}

	ca := []string{"--tls-verify", "--tls-ca-path", s.ca.CertFile()}
	for _, port := range [][]string{{"--server", s.Sub, "--tls"}, {"--server", s.Subs, "--tlsc"}, {"--server", s.SMTP, "--tls"}} {
		args := append(append(port, "-au", "xomail", "-ap", testenv.XomailPassword,
			"--from", "test0@hosted-domain.com", "--to", "alice@hosted-domain.com",
			"--header", "Subject: signed  on submission", "--body", "Hello,\nsigned.\n"), ca...)
		if out, _ := run(t, "", "swaks", args...); !accepted(out) {
			t.Fatalf("swaks: %s", out)
		}
	}
	// A message that is all header (no body, no empty line: valid, RFC
	// 5322 §3.5) is signed too; it used to get 451 on every try.
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"alice@hosted-domain.com"},
		"From: test0@hosted-domain.com\r\nSubject: only a header\r\n"); err != nil {
		t.Fatalf("header-only submission: %v", err)
	}
	files := s.maildirFiles(t, "alice", "new")
	if len(files) != 4 {
		t.Fatalf("alice has %d messages", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got := dkimpyVerify(t, d, crlf(b)); got != "pass pass" {
			t.Errorf("dkimpy on the stored copy: %q\n%s", got, b)
		}
		if !bytes.Contains(b, []byte("a=ed25519-sha256")) || !bytes.Contains(b, []byte("a=rsa-sha256")) {
			t.Errorf("not both algorithms:\n%s", b)
		}
	}
	// Port 25 (here from a client the server does not trust) signs nothing.
	if out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "x@example.net", "--to", "bob@hosted-domain.com",
		"--header", "From: test0@hosted-domain.com"); !accepted(out) {
		t.Fatalf("port 25: %s", out)
	}
	if bf := s.maildirFiles(t, "bob", "new"); len(bf) != 1 {
		t.Fatalf("bob has %d messages", len(bf))
	} else if b, _ := os.ReadFile(bf[0]); bytes.Contains(b, []byte("DKIM-Signature")) {
		t.Errorf("port 25 signed:\n%s", b)
	}

	// Another key published for the RSA selector: check says so, exit 1.
	d.Remove("t1-rsa._domainkey.hosted-domain.com")
	d.Set(t, `t1-rsa._domainkey.hosted-domain.com. 3600 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong"`)
	out, err = run(t, "", binary, "dkim", "check", "-domain", "hosted-domain.com", "-config", s.config)
	if err == nil || !strings.Contains(out, "t1-rsa._domainkey.hosted-domain.com (active): MISMATCH") || !strings.Contains(out, "t1-ed25519._domainkey.hosted-domain.com (active): ok") {
		t.Errorf("dkim check after the change: %v\n%s", err, out)
	}
	// check-config: a record for another key fails (receivers would see
	// dkim=fail); a record not published yet only warns, so that
	// `check-config && systemctl reload` goes on.
	out, err = run(t, "", binary, "check-config", "-q", "-config", s.config)
	if err == nil || !strings.Contains(out, "FAIL dkim: t1-rsa._domainkey.hosted-domain.com published") {
		t.Errorf("check-config with another key published: %v\n%s", err, out)
	}
	d.Remove("t1-rsa._domainkey.hosted-domain.com")
	out, err = run(t, "", binary, "check-config", "-q", "-config", s.config)
	if err != nil || !strings.Contains(out, "warn dkim: t1-rsa._domainkey.hosted-domain.com is not published") ||
		!strings.Contains(out, `t1-rsa._domainkey.hosted-domain.com. IN TXT "v=DKIM1; k=rsa; p=`) {
		t.Errorf("check-config with the record missing: %v\n%s", err, out)
	}
}

// TestDMARCEndToEnd: port 25 with the checks on, DNS from the test's
// server; swaks sends as domains with each DMARC policy. p=reject gets
// 550 5.7.1 and nothing is stored, p=quarantine lands in .Junk, p=none and
// a pass in INBOX; each stored copy has exactly one Authentication-Results
// of ours (a forged one removed); DNS trouble under p=reject gets 451.
func TestDMARCEndToEnd(t *testing.T) {
	requireTool(t, "swaks")
	d := testenv.StartDNS(t,
		`reject.example. TXT "v=spf1 ip4:192.0.2.1 -all"`, `_dmarc.reject.example. TXT "v=DMARC1; p=reject"`,
		`quar.example. TXT "v=spf1 -all"`, `_dmarc.quar.example. TXT "v=DMARC1; p=quarantine"`,
		`none.example. TXT "v=spf1 -all"`, `_dmarc.none.example. TXT "v=DMARC1; p=none"`,
		`pass.example. TXT "v=spf1 ip4:127.0.0.0/8 -all"`, `_dmarc.pass.example. TXT "v=DMARC1; p=reject"`,
		`_dmarc.down.example. TXT "v=DMARC1; p=reject"`,
	)
	d.ServFail("down.example")
	s := startServer(t, withMailAuth(fmt.Sprintf("inbound_checks = true\ndns_server = %q\n", d.Addr)))
	send := func(domain string, extra ...string) string {
		args := append([]string{"--server", s.SMTP, "--ehlo", "client.example", "--from", "alice@" + domain, "--to", "bob@hosted-domain.com",
			"--header", "From: Alice <alice@" + domain + ">", "--header", "Subject: from " + domain}, extra...)
		out, _ := run(t, "", "swaks", args...)
		return out
	}
	inbox := func() []string { return s.maildirFiles(t, "bob", "new") }
	junk := func() []string { // IMAP moves what it has seen to cur/
		return append(s.maildirFiles(t, "bob", ".Junk/new"), s.maildirFiles(t, "bob", ".Junk/cur")...)
	}
	one := func(files []string, wantAR ...string) {
		t.Helper()
		if len(files) != 1 {
			t.Fatalf("%d files: %v", len(files), files)
		}
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		hdr, _, _ := strings.Cut(string(b), "\n\n")
		if n := strings.Count(hdr, "Authentication-Results:"); n != 1 {
			t.Errorf("%d Authentication-Results:\n%s", n, hdr)
		}
		ar := strings.ReplaceAll(hdr, ";\n\t", "; ")
		for _, w := range wantAR {
			if !strings.Contains(ar, w) {
				t.Errorf("no %q in\n%s", w, hdr)
			}
		}
		os.Remove(files[0])
	}

	if out := send("reject.example"); !strings.Contains(out, "550 5.7.1") || accepted(out) {
		t.Errorf("p=reject: %s", out)
	}
	if len(inbox())+len(junk()) != 0 {
		t.Fatal("a refused message was stored")
	}
	if out := send("quar.example"); !accepted(out) {
		t.Fatalf("p=quarantine: %s", out)
	}
	// What a user's client sees: the message in Junk, not in INBOX.
	{
		requireTool(t, "curl")
		o, err := run(t, "", "curl", "-sS", "--cacert", s.ca.CertFile(), "--user", "bob:"+testenv.BobPassword, "imaps://localhost"+s.IMAPS[strings.LastIndex(s.IMAPS, ":"):]+"/Junk?SUBJECT%20quar.example")
		if err != nil || !strings.Contains(o, "* SEARCH 1") {
			t.Errorf("IMAP SEARCH in Junk: %v %q", err, o)
		}
	}
	one(junk(), "Authentication-Results: xoyize.xyz; spf=fail smtp.mailfrom=alice@quar.example", `dmarc=fail reason="p=quarantine" header.from=quar.example`)
	if out := send("none.example"); !accepted(out) {
		t.Fatalf("p=none: %s", out)
	}
	one(inbox(), `dmarc=fail reason="p=none"`)
	if out := send("pass.example", "--add-header", "Authentication-Results: xoyize.xyz; dmarc=pass header.from=forged"); !accepted(out) {
		t.Fatalf("pass: %s", out)
	}
	one(inbox(), "spf=pass smtp.mailfrom=alice@pass.example", "dmarc=pass header.from=pass.example")
	if out := send("down.example"); !strings.Contains(out, "451 4.7.5") {
		t.Errorf("DNS down under p=reject: %s", out)
	}
	if len(inbox())+len(junk()) != 0 {
		t.Fatal("a deferred message was stored")
	}

	// dmarc_reject = "quarantine": p=reject goes to Junk instead.
	s2 := startServer(t, withMailAuth(fmt.Sprintf("inbound_checks = true\ndmarc_reject = \"quarantine\"\ndns_server = %q\n", d.Addr)))
	out, _ := run(t, "", "swaks", "--server", s2.SMTP, "--from", "alice@reject.example", "--to", "bob@hosted-domain.com",
		"--header", "From: alice@reject.example")
	if !accepted(out) || len(s2.maildirFiles(t, "bob", ".Junk/new")) != 1 {
		t.Errorf("p=reject as quarantine: %s", out)
	}
}

// TestDKIMRelayedAndDSN: the bytes relayed to another MTA carry the
// signatures of the author's domain, and the DSN the queue writes when
// that MTA refuses a recipient is signed for myhostname (MAILER-DAEMON's
// domain); dkimpy verifies both.
func TestDKIMRelayedAndDSN(t *testing.T) {
	dkimOracle(t)
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	k.mu.Lock()
	k.reject["bad@foreign.example"] = true
	k.mu.Unlock()
	d := testenv.StartDNS(t)
	keys := t.TempDir()
	conf := dkimKeygen(t, d, keys, "hosted-domain.com", "r1") + dkimKeygen(t, d, keys, "xoyize.xyz", "r1")
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)),
		withMailAuth(fmt.Sprintf("inbound_checks = false\ndns_server = %q\n", d.Addr)+conf))

	body := "From: test0@hosted-domain.com\r\nTo: friend@foreign.example\r\nSubject: relayed\r\n\r\nhello\r\n"
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"friend@foreign.example"}, body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sink to receive the message", func() bool { return len(k.messages()) > 0 })
	if got := dkimpyVerify(t, d, []byte(k.messages()[0].data)); got != "pass pass" {
		t.Errorf("relayed copy: %q\n%s", got, k.messages()[0].data)
	}

	// An 8-bit body is converted to quoted-printable before it is signed
	// (RFC 6376 §5.3): a next hop without 8BITMIME would otherwise get it
	// converted after the signature, and the body hash would fail.
	body8 := "From: test0@hosted-domain.com\r\nTo: friend@foreign.example\r\nSubject: 8-bit\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 cr\xc3\xa8me\r\n"
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"friend@foreign.example"}, body8); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the 8-bit message at the sink", func() bool { return len(k.messages()) > 1 })
	relayed := k.messages()[1].data
	if got := dkimpyVerify(t, d, []byte(relayed)); got != "pass pass" || strings.ContainsFunc(relayed, func(r rune) bool { return r >= 0x80 }) ||
		!strings.Contains(relayed, "caf=C3=A9 cr=C3=A8me") {
		t.Errorf("8-bit message relayed: %q, want signed 7-bit\n%s", got, relayed)
	}
	// UTF-8 text without MIME fields (RFC 2045 makes it us-ascii): once
	// converted it says charset=utf-8, so the reader decodes the text
	// sent, not mojibake.
	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"friend@foreign.example"},
		"From: test0@hosted-domain.com\r\nTo: friend@foreign.example\r\nSubject: no MIME\r\n\r\n\xc3\x87a marche\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the message without MIME fields at the sink", func() bool { return len(k.messages()) > 2 })
	relayed = k.messages()[2].data
	m, err := mail.ReadMessage(strings.NewReader(relayed))
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(quotedprintable.NewReader(m.Body))
	if got := dkimpyVerify(t, d, []byte(relayed)); got != "pass pass" || m.Header.Get("Content-Type") != "text/plain; charset=utf-8" ||
		m.Header.Get("Content-Transfer-Encoding") != "quoted-printable" || string(text) != "\xc3\x87a marche\r\n" {
		t.Errorf("message without MIME fields relayed: %q, text %q, want signed 7-bit UTF-8\n%s", got, text, relayed)
	}

	if err := submit(t, s, "xomail", testenv.XomailPassword, "test0@hosted-domain.com", []string{"bad@foreign.example"},
		"From: test0@hosted-domain.com\r\nSubject: will bounce\r\n\r\nbye\r\n"); err != nil {
		t.Fatal(err)
	}
	var dsn []byte
	waitFor(t, "the bounce", func() bool {
		for _, f := range s.maildirFiles(t, "xomail", "new") {
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte("multipart/report")) {
				dsn = b
				return true
			}
		}
		return false
	})
	if got := dkimpyVerify(t, d, crlf(dsn)); got != "pass pass" || !bytes.Contains(dsn, []byte("d=xoyize.xyz")) {
		t.Errorf("DSN: %q\n%s", got, dsn)
	}
}

// TestSRSForward: an alias forwarding outside (fwd@hosted-domain.com →
// someone@foreign.example) sends with an SRS sender of ours; a bounce to
// that address, from any client, goes back to the original sender, a
// forged one gets 550 5.1.1; when the next hop refuses the forward, the
// DSN reaches the original sender; a sender that failed SPF is forwarded
// from <>, so the same refusal bounces to nobody.
func TestSRSForward(t *testing.T) {
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	d := testenv.StartDNS(t,
		`example.net. TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`spamdom.example. TXT "v=spf1 ip4:192.0.2.1 -all"`)
	s := startServerWithCA(t, ca,
		withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n\"example.net\" = %q\n\"spamdom.example\" = %q\n", k.addr, k.addr, k.addr)),
		withMailAuth(fmt.Sprintf("inbound_checks = true\ndns_server = %q\nsrs_secret = \"a-test-secret-of-32-characters!!\"\n", d.Addr)))
	send := func(from, to string) string {
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--ehlo", "client.example", "--from", from, "--to", to,
			"--header", "Subject: via fwd")
		return out
	}
	if out := send("someone@example.net", "fwd@hosted-domain.com"); !accepted(out) {
		t.Fatalf("forward: %s", out)
	}
	waitFor(t, "the forward", func() bool { return len(k.messages()) == 1 })
	fwd := k.messages()[0]
	if !regexp.MustCompile(`^SRS0=[A-Z2-7]{8}=[A-Z2-7]{2}=example\.net=someone@xoyize\.xyz$`).MatchString(fwd.from) ||
		len(fwd.to) != 1 || fwd.to[0] != "someone@foreign.example" {
		t.Fatalf("forward sent as %+v", fwd)
	}

	// A later bounce from the next hop's side, to the SRS address.
	if out := send("<>", fwd.from); !accepted(out) {
		t.Fatalf("bounce to the SRS address: %s", out)
	}
	waitFor(t, "the bounce to come back", func() bool { return len(k.messages()) == 2 })
	if m := k.messages()[1]; m.from != "" || len(m.to) != 1 || m.to[0] != "someone@example.net" {
		t.Errorf("bounce relayed as %+v", m)
	}
	forged := strings.Replace(fwd.from, fwd.from[5:13], "AAAAAAAA", 1)
	if out := send("<>", forged); !strings.Contains(out, "550 5.1.1") {
		t.Errorf("forged SRS address: %s", out)
	}

	// The next hop refuses the forward: the DSN goes to the original sender.
	k.mu.Lock()
	k.reject["someone@foreign.example"] = true
	k.mu.Unlock()
	if out := send("someone@example.net", "fwd@hosted-domain.com"); !accepted(out) {
		t.Fatalf("forward: %s", out)
	}
	waitFor(t, "the DSN to the original sender", func() bool { return len(k.messages()) == 3 })
	if m := k.messages()[2]; m.from != "" || len(m.to) != 1 || m.to[0] != "someone@example.net" || !strings.Contains(m.data, "multipart/report") {
		t.Errorf("DSN: %+v", m)
	}

	// A sender that failed SPF: forwarded from <>, and refused without a
	// bounce to anyone.
	nullNotes := func() int { return strings.Count(s.logs(), "no notification for the null sender") }
	before := nullNotes()
	if out := send("x@spamdom.example", "fwd@hosted-domain.com"); !accepted(out) {
		t.Fatalf("forward of an SPF failure: %s", out)
	}
	waitFor(t, "the refused forward to be settled", func() bool { return nullNotes() > before })
	if n := len(k.messages()); n != 3 {
		t.Errorf("the sink got %d messages after an SPF-failed forward was refused, want 3: %+v", n, k.messages()[3:])
	}
	k.mu.Lock()
	delete(k.reject, "someone@foreign.example")
	k.mu.Unlock()
	if out := send("x@spamdom.example", "fwd@hosted-domain.com"); !accepted(out) {
		t.Fatalf("forward of an SPF failure: %s", out)
	}
	waitFor(t, "the SPF-failed forward", func() bool { return len(k.messages()) == 4 })
	if m := k.messages()[3]; m.from != "" || m.to[0] != "someone@foreign.example" {
		t.Errorf("SPF-failed forward sent as %+v", m)
	}
}

// TestSRSForwardOfForward: a message arriving from another forwarder's
// SRS0 address and forwarded again leaves from an SRS1 address of ours
// (short: no SRS0 inside an SRS0); a bounce to it goes straight to the
// first forwarder's SRS0 address, and a forged one gets 550 5.1.1.
func TestSRSForwardOfForward(t *testing.T) {
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	d := testenv.StartDNS(t, `fwd1.example. TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	s := startServerWithCA(t, ca,
		withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n\"fwd1.example\" = %q\n", k.addr, k.addr)),
		withMailAuth(fmt.Sprintf("inbound_checks = true\ndns_server = %q\nsrs_secret = \"a-test-secret-of-32-characters!!\"\n", d.Addr)))
	send := func(from, to string) string {
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--ehlo", "client.example", "--from", from, "--to", to,
			"--header", "Subject: via two forwards")
		return out
	}
	const first = "SRS0=Ab1X=TT=orig.example=someone@fwd1.example"
	if out := send(first, "fwd@hosted-domain.com"); !accepted(out) {
		t.Fatalf("forward: %s", out)
	}
	waitFor(t, "the forward", func() bool { return len(k.messages()) == 1 })
	fwd := k.messages()[0]
	if !regexp.MustCompile(`^SRS1=[A-Z2-7]{8}=fwd1\.example==Ab1X=TT=orig\.example=someone@xoyize\.xyz$`).MatchString(fwd.from) ||
		len(fwd.to) != 1 || fwd.to[0] != "someone@foreign.example" {
		t.Fatalf("forward sent as %+v", fwd)
	}
	if out := send("<>", fwd.from); !accepted(out) {
		t.Fatalf("bounce to the SRS1 address: %s", out)
	}
	waitFor(t, "the bounce to go to the first forwarder", func() bool { return len(k.messages()) == 2 })
	if m := k.messages()[1]; m.from != "" || len(m.to) != 1 || m.to[0] != first {
		t.Errorf("bounce relayed as %+v, want to %s", m, first)
	}
	forged := strings.Replace(fwd.from, "=fwd1.example=", "=evil.example=", 1)
	if out := send("<>", forged); !strings.Contains(out, "550 5.1.1") {
		t.Errorf("forged SRS1 address: %s", out)
	}
}

// TestChecksDoNotBlockOthers: while one session's checks wait for a DNS
// server that does not answer, another session's message is checked and
// accepted; the first completes once DNS answers.
func TestChecksDoNotBlockOthers(t *testing.T) {
	requireTool(t, "swaks")
	d := testenv.StartDNS(t,
		`slow.example. TXT "v=spf1 ip4:127.0.0.0/8 -all"`,
		`fast.example. TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	release := d.Hold("slow.example")
	defer release()
	s := startServer(t, withMailAuth(fmt.Sprintf("inbound_checks = true\ndns_server = %q\n", d.Addr)))
	slow := make(chan string, 1)
	go func() {
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "a@slow.example", "--to", "bob@hosted-domain.com")
		slow <- out
	}()
	waitFor(t, "the slow session's check to ask DNS", func() bool { return d.Held() > 0 })
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "b@fast.example", "--to", "alice@hosted-domain.com")
	if !accepted(out) {
		t.Fatalf("fast session: %s", out)
	}
	select {
	case o := <-slow:
		t.Fatalf("the slow session finished before its DNS answered: %s", o)
	default:
	}
	release()
	if o := <-slow; !accepted(o) {
		t.Fatalf("slow session: %s", o)
	}
	files := s.maildirFiles(t, "bob", "new")
	if len(files) != 1 {
		t.Fatalf("bob has %d messages", len(files))
	}
	// The answer that came late was used, not a timeout.
	if b, _ := os.ReadFile(files[0]); !bytes.Contains(b, []byte("spf=pass smtp.mailfrom=a@slow.example")) {
		t.Errorf("slow session's results:\n%s", b)
	}
}
