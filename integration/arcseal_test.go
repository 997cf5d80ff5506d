package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"courriel/internal/testenv"
)

// dkimpyARC runs dkimpy's arc_verify on msg (keys from the test's DNS
// server) and returns "cv instances".
func dkimpyARC(t *testing.T, d *testenv.DNS, msg []byte) string {
	t.Helper()
	const script = `
import sys, dns.resolver, dkim
r = dns.resolver.Resolver(configure=False)
h, p = sys.argv[1].rsplit(":", 1)
r.nameservers, r.port = [h], int(p)
dns.resolver.default_resolver = r
cv, res, why = dkim.arc_verify(sys.stdin.buffer.read())
print(cv.decode(), len(res), why)
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

// TestARCSealedForwardAndDKIMReload: what port 25 forwards outside (an
// alias to foreign.example) carries an ARC set sealed with myhostname's
// key over our Authentication-Results, which dkimpy's arc_verify passes;
// after a new selector is made active and SIGHUP sent, the next forward is
// sealed (and a submission signed) with the new key, without a restart.
func TestARCSealedForwardAndDKIMReload(t *testing.T) {
	requireTool(t, "swaks")
	dkimOracle(t)
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	d := testenv.StartDNS(t, `example.net. TXT "v=spf1 ip4:127.0.0.0/8 -all"`)
	keys := t.TempDir()
	first := dkimKeygen(t, d, keys, "xoyize.xyz", "a1")
	s := startServerWithCA(t, ca,
		withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)),
		withMailAuth(fmt.Sprintf("inbound_checks = true\ndns_server = %q\narc_seal_domain = \"xoyize.xyz\"\n", d.Addr)+first))

	forward := func(n int) sunk {
		t.Helper()
		out, _ := run(t, "", "swaks", "--server", s.SMTP, "--ehlo", "client.example", "--from", "someone@example.net",
			"--to", "fwd@hosted-domain.com", "--header", fmt.Sprintf("Subject: forward %d", n))
		if !accepted(out) {
			t.Fatalf("forward %d: %s", n, out)
		}
		waitFor(t, "the forward", func() bool { return len(k.messages()) == n })
		return k.messages()[n-1]
	}
	m := forward(1)
	if got := dkimpyARC(t, d, []byte(m.data)); !strings.HasPrefix(got, "pass 1") {
		t.Errorf("dkimpy arc_verify: %q\n%s", got, m.data)
	}
	for _, want := range []string{"ARC-Seal: i=1; a=rsa-sha256;", "cv=none", "d=xoyize.xyz; s=a1-rsa", "ARC-Authentication-Results: i=1; xoyize.xyz;", "spf=pass"} {
		if !strings.Contains(m.data, want) {
			t.Errorf("forward lacks %q:\n%s", want, m.data)
		}
	}

	// One message to a local user and to the forward: one copy is
	// accepted, so the local copy carries the same ARC set as the forward
	// (as with Postfix and OpenARC, whose milter seals the one message
	// every recipient gets; see docs/flow.md), and it verifies there too.
	// A message with only local copies is not sealed.
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--ehlo", "client.example", "--from", "someone@example.net",
		"--to", "fwd@hosted-domain.com,bob@hosted-domain.com", "--header", "Subject: forward and local")
	if !accepted(out) {
		t.Fatalf("forward and local: %s", out)
	}
	waitFor(t, "the forward", func() bool { return len(k.messages()) == 2 })
	waitFor(t, "the local copy", func() bool { return len(s.maildirFiles(t, "bob", "new")) == 1 })
	local, err := os.ReadFile(s.maildirFiles(t, "bob", "new")[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := dkimpyARC(t, d, local); !strings.HasPrefix(got, "pass 1") {
		t.Errorf("dkimpy arc_verify of the local copy: %q\n%s", got, local)
	}
	if fwd := k.messages()[1].data; !strings.Contains(fwd, "Subject: forward and local") || arcSeal(t, string(local)) != arcSeal(t, fwd) {
		t.Errorf("the local copy's ARC set is not the forward's:\n%s\n---\n%s", local, fwd)
	}
	out, _ = run(t, "", "swaks", "--server", s.SMTP, "--ehlo", "client.example", "--from", "someone@example.net",
		"--to", "bob@hosted-domain.com", "--header", "Subject: local only")
	if !accepted(out) {
		t.Fatalf("local only: %s", out)
	}
	waitFor(t, "the local copy", func() bool { return len(s.maildirFiles(t, "bob", "new")) == 2 })
	for _, f := range s.maildirFiles(t, "bob", "new") {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("Subject: local only")) && (bytes.Contains(b, []byte("ARC-Seal:")) || !bytes.Contains(b, []byte("Authentication-Results: xoyize.xyz;"))) {
			t.Errorf("a message with local copies only: sealed, or without our Authentication-Results:\n%s", b)
		}
	}
	// A new selector, made active in place of the first; SIGHUP.
	second := dkimKeygen(t, d, keys, "xoyize.xyz", "a2")
	cfg, _ := os.ReadFile(s.config)
	if !strings.Contains(string(cfg), first) {
		t.Fatal("configuration does not hold the first selector as written")
	}
	os.WriteFile(s.config, []byte(strings.Replace(string(cfg), first, second, 1)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the DKIM reload", func() bool { return strings.Contains(s.logs(), "SIGHUP: DKIM keys reloaded") })
	if strings.Contains(s.logs(), "take effect at the next restart") {
		t.Errorf("the new selector was left for a restart:\n%s", s.logs())
	}
	m = forward(3)
	if got := dkimpyARC(t, d, []byte(m.data)); !strings.HasPrefix(got, "pass 1") || !strings.Contains(m.data, "s=a2-rsa") {
		t.Errorf("after reload: dkimpy %q\n%s", got, m.data)
	}
	// A key file that no longer loads keeps the running keys.
	cfg, _ = os.ReadFile(s.config)
	os.WriteFile(s.config, []byte(strings.Replace(string(cfg), "a2-rsa.pem", "missing-rsa.pem", 1)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal", func() bool { return strings.Contains(s.logs(), "DKIM keys not reloaded, keeping the running ones") })
	m = forward(4)
	if got := dkimpyARC(t, d, []byte(m.data)); !strings.HasPrefix(got, "pass 1") || !strings.Contains(m.data, "s=a2-rsa") {
		t.Errorf("after a refused reload: dkimpy %q\n%s", got, m.data)
	}
}

// arcSeal is msg's ARC-Seal field, unfolded.
func arcSeal(t *testing.T, msg string) string {
	t.Helper()
	msg = "\n" + strings.ReplaceAll(msg, "\r\n", "\n")
	i := strings.Index(msg, "\nARC-Seal: ")
	if i < 0 {
		t.Fatalf("no ARC-Seal in\n%s", msg)
	}
	var b strings.Builder
	for j, line := range strings.Split(msg[i+1:], "\n") {
		if j > 0 && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
			break
		}
		b.WriteString(strings.TrimSpace(line))
	}
	return b.String()
}
