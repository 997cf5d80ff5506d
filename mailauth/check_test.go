package mailauth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// spfZone is a table of SPF policies served to both implementations.
// 192.0.2.10 is the client; the names resolve only here.
var spfZone = []string{
	`ip4.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`,
	`fail.test. TXT "v=spf1 ip4:198.51.100.1 -all"`,
	`soft.test. TXT "v=spf1 ~all"`,
	`neutral.test. TXT "v=spf1 ?all"`,
	`nospf.test. TXT "some other text"`,
	`a.test. TXT "v=spf1 a -all"`, `a.test. A 192.0.2.10`,
	`amask.test. TXT "v=spf1 a:host.amask.test/28 -all"`, `host.amask.test. A 192.0.2.1`,
	`mx.test. TXT "v=spf1 mx -all"`, `mx.test. MX 10 mail.mx.test.`, `mail.mx.test. A 192.0.2.10`,
	`mxother.test. TXT "v=spf1 mx -all"`, `mxother.test. MX 10 mail.mxother.test.`, `mail.mxother.test. A 203.0.113.5`,
	`incl.test. TXT "v=spf1 include:ip4.test -all"`,
	`inclfail.test. TXT "v=spf1 include:fail.test ~all"`,
	`inclnone.test. TXT "v=spf1 include:nospf.test -all"`,
	`redir.test. TXT "v=spf1 redirect=ip4.test"`,
	`redirfail.test. TXT "v=spf1 redirect=fail.test"`,
	`exists.test. TXT "v=spf1 exists:%{ir}.%{l1r-}.e.exists.test -all"`, `10.2.0.192.bob.e.exists.test. A 127.0.0.2`,
	`macro.test. TXT "v=spf1 exists:%{d2}.%{h}.m.macro.test -all"`, `macro.test.client.example.m.macro.test. A 127.0.0.2`,
	`ip6.test. TXT "v=spf1 ip6:2001:db8::/32 -all"`,
	`two.test. TXT "v=spf1 -all"`, `two.test. TXT "v=spf1 +all"`,
	`syntax.test. TXT "v=spf1 ip4:192.0.2.300 -all"`,
	`unknownmech.test. TXT "v=spf1 foo:bar -all"`,
	`void.test. TXT "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"`,
	`deep0.test. TXT "v=spf1 include:deep1.test -all"`,
	`deep1.test. TXT "v=spf1 include:deep2.test -all"`,
	`deep2.test. TXT "v=spf1 include:deep3.test -all"`,
	`deep3.test. TXT "v=spf1 include:deep4.test -all"`,
	`deep4.test. TXT "v=spf1 include:deep5.test -all"`,
	`deep5.test. TXT "v=spf1 include:deep6.test -all"`,
	`deep6.test. TXT "v=spf1 include:deep7.test -all"`,
	`deep7.test. TXT "v=spf1 include:deep8.test -all"`,
	`deep8.test. TXT "v=spf1 include:deep9.test -all"`,
	`deep9.test. TXT "v=spf1 include:deep10.test -all"`,
	`deep10.test. TXT "v=spf1 include:ip4.test -all"`,
	`nine.test. TXT "v=spf1 include:deep2.test -all"`,
	`broken.test. TXT "v=spf1 include:servfail.test -all"`,
}

// TestSPFAgainstPyspf: our SPF results equal pyspf's (Debian's
// python3-spf) on a table of policies, both asking the same DNS server.
func TestSPFAgainstPyspf(t *testing.T) {
	d := testenv.StartDNS(t, spfZone...)
	d.ServFail("servfail.test")
	d.ServFail("dnsdown.test")
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	cases := []struct {
		ip, sender, want string
	}{
		{"192.0.2.10", "bob@ip4.test", "pass"},
		{"192.0.2.10", "bob@fail.test", "fail"},
		{"192.0.2.10", "bob@soft.test", "softfail"},
		{"192.0.2.10", "bob@neutral.test", "neutral"},
		{"192.0.2.10", "bob@nospf.test", "none"},
		{"192.0.2.10", "bob@nxdomain.test", "none"},
		{"192.0.2.10", "bob@a.test", "pass"},
		{"192.0.2.10", "bob@amask.test", "pass"},
		{"192.0.2.20", "bob@amask.test", "fail"},
		{"192.0.2.10", "bob@mx.test", "pass"},
		{"192.0.2.10", "bob@mxother.test", "fail"},
		{"192.0.2.10", "bob@incl.test", "pass"},
		{"192.0.2.10", "bob@inclfail.test", "softfail"},
		{"192.0.2.10", "bob@inclnone.test", "permerror"},
		{"192.0.2.10", "bob@redir.test", "pass"},
		{"192.0.2.10", "bob@redirfail.test", "fail"},
		{"192.0.2.10", "bob@exists.test", "pass"},
		{"192.0.2.10", "alice@exists.test", "fail"},
		{"192.0.2.10", "x@macro.test", "pass"},
		{"2001:db8::1", "bob@ip6.test", "pass"},
		{"192.0.2.10", "bob@ip6.test", "fail"},
		{"192.0.2.10", "bob@two.test", "permerror"},
		{"192.0.2.10", "bob@syntax.test", "permerror"},
		{"192.0.2.10", "bob@unknownmech.test", "permerror"},
		{"192.0.2.10", "bob@void.test", "permerror"},
		{"192.0.2.10", "bob@deep0.test", "permerror"},
		{"192.0.2.10", "bob@nine.test", "pass"},
		{"192.0.2.10", "bob@broken.test", "temperror"},
		{"192.0.2.10", "bob@dnsdown.test", "temperror"},
	}
	var py strings.Builder
	for _, tc := range cases {
		fmt.Fprintf(&py, "%s %s\n", tc.ip, tc.sender)
	}
	out := runOracle(t, d.Addr, `
import spf
for line in sys.stdin.read().split("\n"):
    if line:
        ip, s = line.split()
        print(spf.check2(i=ip, s=s, h="client.example")[0])
`, []byte(py.String()))
	pyRes := strings.Split(out, "\n")
	if len(pyRes) != len(cases) {
		t.Fatalf("pyspf gave %d results:\n%s", len(pyRes), out)
	}
	for i, tc := range cases {
		got := string(c.checkSPF(context.Background(), net.ParseIP(tc.ip), "client.example", tc.sender))
		if got != pyRes[i] || got != tc.want {
			t.Errorf("%s from %s: courriel %s, pyspf %s, want %s", tc.sender, tc.ip, got, pyRes[i], tc.want)
		}
	}
}

// dmarcZone: example.org and friends, with SPF for 192.0.2.10.
var dmarcZone = []string{
	`reject.test. TXT "v=spf1 ip4:198.51.100.1 -all"`,
	`_dmarc.reject.test. TXT "v=DMARC1; p=reject"`,
	`quar.test. TXT "v=spf1 -all"`,
	`_dmarc.quar.test. TXT "v=DMARC1; p=quarantine"`,
	`none.test. TXT "v=spf1 -all"`,
	`_dmarc.none.test. TXT "v=DMARC1; p=none"`,
	`pass.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
	`_dmarc.pass.test. TXT "v=DMARC1; p=reject"`,
	`bounce.pass.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
	`strict.test. TXT "v=spf1 -all"`,
	`_dmarc.strict.test. TXT "v=DMARC1; p=reject; aspf=s"`,
	`bounce.strict.test. TXT "v=spf1 ip4:192.0.2.10 -all"`,
	`sp.test. TXT "v=spf1 -all"`,
	`_dmarc.sp.test. TXT "v=DMARC1; p=reject; sp=quarantine"`,
	`pct.test. TXT "v=spf1 -all"`,
	`_dmarc.pct.test. TXT "v=DMARC1; p=reject; pct=0"`,
	`_dmarc.down.test. TXT "v=DMARC1; p=reject"`,
	`_dmarc.downnone.test. TXT "v=DMARC1; p=none"`,
	`nopolicy.test. TXT "v=spf1 -all"`,
	`signed.test. TXT "v=spf1 -all"`,
	`_dmarc.signed.test. TXT "v=DMARC1; p=reject; adkim=r"`,
	`upper.test. TXT "v=spf1 -all"`,
	`_dmarc.upper.test. TXT "v=DMARC1; P=Reject"`,
	`multi.test. TXT "v=spf1 -all"`,
	`_dmarc.multi.test. TXT "v=DMARC1; p=reject"`,
	`_dmarc.multi.test. TXT "v=DMARC1; p=none"`,
	`other.test. TXT "v=spf1 -all"`,
	`_dmarc.other.test. TXT "site-verification=abc"`,
	`_dmarc.other.test. TXT "v=DMARC1; p=reject"`,
}

func msgFrom(from string) string {
	return "From: <" + from + ">\r\nTo: x@mx.test\r\nSubject: t\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n\r\nhello\r\n"
}

// TestDMARC: alignment, p/sp/pct and the decision, with DNS trouble a
// Defer only where the policy wants a decision.
func TestDMARC(t *testing.T) {
	d := testenv.StartDNS(t, dmarcZone...)
	d.ServFail("down.test")
	d.ServFail("downnone.test")
	d.ServFail("_dmarc.dnsfail.test")
	signed := testKeys(t, d, "mail.signed.test", "k")
	signer, err := NewSigner([]DomainKeys{signed})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, mailFrom, from string
		sign                 bool
		quarantineRejects    bool
		want                 Action
		dmarc                string
	}{
		{"reject", "a@reject.test", "a@reject.test", false, false, Reject, "dmarc=fail reason=\"p=reject\" header.from=reject.test"},
		{"reject as quarantine", "a@reject.test", "a@reject.test", false, true, Quarantine, "dmarc=fail"},
		{"quarantine", "a@quar.test", "a@quar.test", false, false, Quarantine, "dmarc=fail reason=\"p=quarantine\""},
		{"none", "a@none.test", "a@none.test", false, false, Accept, "dmarc=fail reason=\"p=none\""},
		{"SPF aligned", "a@pass.test", "a@pass.test", false, false, Accept, "dmarc=pass header.from=pass.test"},
		{"SPF relaxed alignment", "a@bounce.pass.test", "a@pass.test", false, false, Accept, "dmarc=pass"},
		{"SPF strict alignment", "a@bounce.strict.test", "a@strict.test", false, false, Reject, "dmarc=fail"},
		{"SPF passes for another domain", "a@pass.test", "a@reject.test", false, false, Reject, "dmarc=fail"},
		// A quoted local part may hold '@' (RFC 5321 §4.1.2, RFC 5322
		// §3.4.1): the domain follows the last one.
		{"quoted '@' in MAIL FROM", `"x@reject.test"@pass.test`, "a@pass.test", false, false, Accept, "dmarc=pass header.from=pass.test"},
		{"quoted '@' in MAIL FROM, as written", `"x@reject.test"@pass.test`, "a@pass.test", false, false, Accept, `smtp.mailfrom="\"x@reject.test\"@pass.test"`},
		{"quoted '@' in From", "a@pass.test", `"x@reject.test"@pass.test`, false, false, Accept, "dmarc=pass header.from=pass.test"},
		{"quoted '@' in one of two From addresses", "a@pass.test", `From: a@pass.test, "b@pass.test"@reject.test`, false, false, Reject, "header.from=reject.test"},
		{"subdomain policy", "a@x.sp.test", "a@x.sp.test", false, false, Quarantine, "dmarc=fail reason=\"p=quarantine\" header.from=x.sp.test"},
		{"pct=0 lowers reject", "a@pct.test", "a@pct.test", false, false, Quarantine, "dmarc=fail reason=\"p=quarantine\""},
		{"DKIM aligned (relaxed)", "a@signed.test", "a@mail.signed.test", true, false, Accept, "dmarc=pass"},
		{"DNS down, p=reject", "a@down.test", "a@down.test", false, false, Defer, "dmarc=temperror"},
		{"DNS down, p=none", "a@downnone.test", "a@downnone.test", false, false, Accept, "dmarc=temperror"},
		{"policy lookup fails", "a@dnsfail.test", "a@dnsfail.test", false, false, Accept, "dmarc=temperror"},
		{"no policy", "a@nopolicy.test", "a@nopolicy.test", false, false, Accept, "dmarc=none"},
		{"null sender, HELO identity", "", "a@reject.test", false, false, Reject, "dmarc=fail"},
		// RFC 7489 §6.6.1: every author domain is checked, the strictest
		// failure applies; a From net/mail cannot parse still names one.
		{"two From fields", "a@pass.test", "From: a@pass.test\r\nFrom: a@reject.test", false, false, Reject, "dmarc=fail reason=\"p=reject\" header.from=reject.test"},
		{"two addresses", "a@pass.test", "From: a@pass.test, b@reject.test", false, false, Reject, "header.from=reject.test"},
		{"address as display name", "a@pass.test", "From: ceo@reject.test <ceo@reject.test>", false, false, Reject, "header.from=reject.test"},
		{"unclosed comment", "a@pass.test", "From: ceo@reject.test (CEO", false, false, Reject, "header.from=reject.test"},
		{"trailing dot", "a@pass.test", "From: ceo@reject.test.", false, false, Reject, "header.from=reject.test"},
		{"trailing semicolon", "a@pass.test", "From: <ceo@reject.test>;", false, false, Reject, "header.from=reject.test"},
		{"no From", "a@pass.test", "Sender: a@pass.test", false, false, Accept, "dmarc=permerror"},
		// §6.6.3 and the ABNF's case-insensitive literals.
		{"p=Reject", "a@upper.test", "a@upper.test", false, false, Reject, "dmarc=fail reason=\"p=reject\""},
		{"two DMARC records", "a@multi.test", "a@multi.test", false, false, Accept, "dmarc=none reason=\"several DMARC records\""},
		{"another TXT beside the record", "a@other.test", "a@other.test", false, false, Reject, "dmarc=fail"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := NewChecker("mx.test", NewResolver(d.Addr), tc.quarantineRejects)
			c.sample = func() int { return 50 }
			msg := msgFrom(tc.from)
			if strings.Contains(tc.from, ":") { // a header of its own
				msg = tc.from + "\r\nTo: x@mx.test\r\nSubject: t\r\n\r\nhello\r\n"
			}
			if tc.sign {
				msg = sign(t, signer, msg)
			}
			v, err := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "client.example", MailFrom: tc.mailFrom},
				strings.NewReader(msg), int64(len(msg)))
			if err != nil {
				t.Fatal(err)
			}
			ar := strings.ReplaceAll(string(v.Fields), ";\r\n\t", "; ")
			if v.Action != tc.want || !strings.Contains(ar, tc.dmarc) {
				t.Errorf("%v, %s; want %v, %s", v.Action, ar, tc.want, tc.dmarc)
			}
			if (v.Action == Accept) != (v.Reason == "") {
				t.Errorf("reason %q with %v", v.Reason, v.Action)
			}
			if !strings.HasPrefix(ar, "Authentication-Results: mx.test; ") || !strings.HasSuffix(ar, "\r\n") || strings.Count(ar, "\r\n") != 1 {
				t.Errorf("field: %q", v.Fields)
			}
		})
	}
}

// TestDkimpySignedVerified: messages signed by dkimpy (RSA and Ed25519)
// pass our verification, and fail once changed.
func TestDkimpySignedVerified(t *testing.T) {
	d := testenv.StartDNS(t, `py.test. TXT "v=spf1 -all"`)
	rsaPEM, edSeed := dkimpyKeys(t, d, "py.test")
	const signScript = `
import dkim
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, b"py-rsa", b"py.test", sys.argv[2].encode(), canonicalize=(b"relaxed", b"simple"))
sig2 = dkim.sign(msg, b"py-ed", b"py.test", sys.argv[3].encode(), signature_algorithm=b"ed25519-sha256", canonicalize=(b"relaxed", b"relaxed"))
sys.stdout.buffer.write(sig + sig2 + msg)
`
	msg := msgFrom("alice@py.test")
	signed := runOracle(t, d.Addr, signScript, []byte(msg), rsaPEM, edSeed) + "\r\n"
	signed = strings.ReplaceAll(strings.ReplaceAll(signed, "\r\n", "\n"), "\n", "\r\n")
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	check := func(m string) string {
		v, err := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "client.example", MailFrom: "alice@py.test"},
			strings.NewReader(m), int64(len(m)))
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(string(v.Fields), ";\r\n\t", "; ")
	}
	ar := check(signed)
	if strings.Count(ar, "dkim=pass header.d=py.test") != 2 || !strings.Contains(ar, "dmarc=none") || !strings.Contains(ar, "spf=fail") {
		t.Errorf("dkimpy's signatures: %s", ar)
	}
	ar = check(strings.Replace(signed, "hello", "hellO", 1))
	if strings.Count(ar, "dkim=fail") != 2 {
		t.Errorf("changed body: %s", ar)
	}
	// A signature with l= (a body length) is not verified, since anything
	// appended would pass: RFC 8601's "policy", not a "fail".
	const lengthScript = `
import dkim
msg = sys.stdin.buffer.read()
sys.stdout.buffer.write(dkim.sign(msg, b"py-rsa", b"py.test", sys.argv[2].encode(), canonicalize=(b"relaxed", b"relaxed"), length=True) + msg)
`
	withL := runOracle(t, d.Addr, lengthScript, []byte(msg), rsaPEM, edSeed) + "\r\n"
	withL = strings.ReplaceAll(strings.ReplaceAll(withL, "\r\n", "\n"), "\n", "\r\n")
	if ar := check(withL); !strings.Contains(ar, "dkim=policy") || strings.Contains(ar, "dkim=fail") || !strings.Contains(withL, "l=") {
		t.Errorf("l= signature: %s", ar)
	}
}

// TestOwnResultsRemoved: Authentication-Results claiming our authserv-id
// (any case, after a comment) are removed from the header, others kept,
// and nothing else changes.
func TestOwnResultsRemoved(t *testing.T) {
	d := testenv.StartDNS(t)
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	msg := "Authentication-Results: MX.test; dkim=pass\r\n header.d=forged.example\r\n" +
		"Received: from a\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"Authentication-Results: (comment) mx.test.; dmarc=pass\r\n" +
		"Authentication-Results: mx.test.evil; dmarc=pass\r\n" +
		"Authentication-Results: \"mx.test\"; dkim=pass header.d=paypal.example\r\n" +
		"From: a@b.test\r\n\r\nAuthentication-Results: mx.test; in the body\r\n"
	v, err := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "h.test"}, strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	got := string(v.Header) + msg[v.HeaderEnd:]
	want := "Received: from a\r\n" +
		"Authentication-Results: other.example; spf=pass\r\n" +
		"Authentication-Results: mx.test.evil; dmarc=pass\r\n" +
		"From: a@b.test\r\n\r\nAuthentication-Results: mx.test; in the body\r\n"
	if v.Header == nil || got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	clean := "From: a@b.test\r\n\r\nx\r\n"
	if v, _ := c.Check(context.Background(), Input{IP: netip.MustParseAddr("192.0.2.10")}, strings.NewReader(clean), int64(len(clean))); v.Header != nil {
		t.Errorf("header rewritten without cause: %q", v.Header)
	}
}

// A header over maxHeaderBytes is not handed to DKIM or ARC verification,
// which keep every field in memory: a 9.6 MB message of one-word fields
// from any client of port 25 cost about 75 MiB each, 1.5 GiB for twenty
// at once. It is reported dkim=permerror; the first fields still give
// DMARC its From.
func TestHugeHeaderNotVerified(t *testing.T) {
	d := testenv.StartDNS(t)
	c := NewChecker("mx.test", NewResolver(d.Addr), false)
	var msg bytes.Buffer
	msg.WriteString("DKIM-Signature: v=1; a=rsa-sha256; d=example.org; s=sel; h=from; bh=x; b=y\r\nFrom: a@example.org\r\n")
	for msg.Len() < 9_600_000 {
		msg.WriteString("X-A: b\r\n")
	}
	msg.WriteString("\r\nbody\r\n")
	raw := msg.Bytes()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v, err := c.Check(t.Context(), Input{IP: netip.MustParseAddr("192.0.2.10"), Helo: "client.test", MailFrom: "a@example.org"}, bytes.NewReader(raw), int64(len(raw)))
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v.Fields, []byte("dkim=permerror")) || !bytes.Contains(v.Fields, []byte("header.from=example.org")) {
		t.Errorf("results:\n%s", v.Fields)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 24<<20 {
		t.Errorf("checking a 9.6 MB header allocated %d MiB", n>>20)
	}
}
