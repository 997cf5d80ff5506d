package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// listenAt starts a sink on addr (a loopback address of its own on port
// 25, as an MX host is reached) presenting cert over STARTTLS.
func listenAt(t *testing.T, addr string, cert tls.Certificate) *sink {
	t.Helper()
	k := &sink{reject: map[string]bool{}}
	srv := gosmtp.NewServer(k)
	srv.Domain = "sink.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	k.addr, k.srv = ln.Addr().String(), srv
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return k
}

// The binary delivers by MX to hosts on port 25 of their own loopback
// addresses (127.0.0.25-27, root only), with [queue] dane, mta_sts and
// tlsrpt on, the DNS answered by the in-test server acting as a validating
// resolver, and the MTA-STS policies served over HTTPS on 127.0.0.25:443.
//   - example.test: MTA-STS enforce listing its MX, certificate valid → delivered.
//   - dane.test: a certificate no CA vouches for, pinned by DANE-EE → delivered
//     although tls_policy is verify.
//   - bad.test: MTA-STS enforce not listing its MX (whose certificate is
//     valid, so verify alone would deliver) → deferred, nothing received.
func TestOutboundReceiverPolicies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("binds port 25 and 443 of loopback addresses: root only")
	}
	ca := testenv.NewCA(t)
	other := testenv.NewCA(t)
	good := listenAt(t, "127.0.0.25:25", ca.IssueCertificate(t, "mx.example.test"))
	daneCert := other.IssueCertificate(t, "mx.dane.test")
	daneSink := listenAt(t, "127.0.0.26:25", daneCert)
	bad := listenAt(t, "127.0.0.27:25", ca.IssueCertificate(t, "mx.bad.test"))
	leaf, err := x509.ParseCertificate(daneCert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pin := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)

	policies := map[string]string{
		"mta-sts.example.test": "version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n",
		"mta-sts.bad.test":     "version: STSv1\nmode: enforce\nmx: mx2.bad.test\nmax_age: 86400\n",
	}
	ln, err := net.Listen("tcp", "127.0.0.25:443")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := policies[r.Host]
			if !ok || r.URL.Path != "/.well-known/mta-sts.txt" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprint(w, p)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "mta-sts.example.test", "mta-sts.bad.test")}},
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })

	d := testenv.StartDNS(t,
		"example.test. MX 10 mx.example.test.",
		"mx.example.test. A 127.0.0.25",
		`_mta-sts.example.test. TXT "v=STSv1; id=1"`,
		"mta-sts.example.test. A 127.0.0.25",
		`_smtp._tls.example.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@example.test"`,
		"dane.test. MX 10 mx.dane.test.",
		"mx.dane.test. A 127.0.0.26",
		"_25._tcp.mx.dane.test. TLSA 3 1 1 "+hex.EncodeToString(pin[:]),
		"bad.test. MX 10 mx.bad.test.",
		"mx.bad.test. A 127.0.0.27",
		`_mta-sts.bad.test. TXT "v=STSv1; id=1"`,
		"mta-sts.bad.test. A 127.0.0.25",
		". NS a.root-servers.net.",
	)
	d.Validating()
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("dns_server = %q\ndane = true\ndnssec_resolver = %q\nmta_sts = true\ntlsrpt = true\n", d.Addr, d.Addr)))

	body := "Subject: receiver policies\r\n\r\nhello\r\n"
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"bob@example.test", "carol@dane.test", "dave@bad.test"}, body); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "example.test and dane.test deliveries", func() bool { return len(good.messages()) == 1 && len(daneSink.messages()) == 1 })
	for name, k := range map[string]*sink{"example.test": good, "dane.test": daneSink} {
		if m := k.messages()[0]; !m.tls {
			t.Errorf("%s: delivered without TLS", name)
		}
	}
	waitFor(t, "bad.test deferred", func() bool {
		return strings.Contains(s.logs(), "to=<dave@bad.test>") && strings.Contains(s.logs(), "not listed in the MTA-STS policy of bad.test")
	})
	if n := len(bad.messages()); n != 0 {
		t.Errorf("bad.test's MX received %d messages", n)
	}
	logs := s.logs()
	for _, want := range []string{
		`to=<bob@example.test> relay=mx.example.test[127.0.0.25]:25`,
		`tls="TLS 1.3 (mta-sts enforce (example.test))"`,
		`tls="TLS 1.3 (dane (mx.dane.test))"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q", want)
		}
	}
	out, _ := run(t, "", binary, "check-config", "-config", s.config)
	if !strings.Contains(out, "ok   dane: "+d.Addr+" validates DNSSEC") {
		t.Errorf("check-config:\n%s", out)
	}
	out, _ = run(t, "", binary, "queue", "-config", s.config, "list")
	if !strings.Contains(out, "dave@bad.test") || !strings.Contains(out, "MTA-STS") {
		t.Errorf("queue list does not show why bad.test waits:\n%s", out)
	}
	// The policy is cached in the queue's directory; TLSRPT counts too
	// after a clean stop.
	if _, err := os.Stat(filepath.Join(s.dir, "queue", "mta-sts", "example.test.json")); err != nil {
		t.Errorf("MTA-STS cache: %v", err)
	}
	s.stop(syscall.SIGTERM)
	day, _ := filepath.Glob(filepath.Join(s.dir, "queue", "tlsrpt", "*.json"))
	if len(day) != 1 {
		t.Fatalf("TLSRPT day files: %v", day)
	}
	b, _ := os.ReadFile(day[0])
	for _, want := range []string{`"domain":"example.test","type":"sts"`, `"domain":"dane.test","type":"tlsa"`, `"domain":"bad.test","type":"sts"`, `validation-failure`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("TLSRPT counts lack %s: %s", want, b)
		}
	}

	// The day is over (the file renamed to an earlier day): at start the
	// server mails example.test's report to the rua of its _smtp._tls
	// record, from <>, through the queue and the same MX rules.
	if err := os.Rename(day[0], filepath.Join(filepath.Dir(day[0]), "2026-01-02.json")); err != nil {
		t.Fatal(err)
	}
	s.start()
	waitFor(t, "the TLSRPT report", func() bool { return len(good.messages()) == 2 })
	rep := good.messages()[1]
	if rep.from != "" || len(rep.to) != 1 || rep.to[0] != "tlsrpt@example.test" || !rep.tls {
		t.Errorf("report sent as from %q to %q (tls %v)", rep.from, rep.to, rep.tls)
	}
	for _, want := range []string{"TLS-Report-Domain: example.test", "TLS-Report-Submitter: xoyize.xyz", `report-type="tlsrpt"`,
		"Content-Type: application/tlsrpt+gzip", `filename="xoyize.xyz!example.test!1767312000!1767398399.json.gz"`} {
		if !strings.Contains(rep.data, want) {
			t.Errorf("report lacks %q:\n%s", want, rep.data)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(day[0]), "2026-01-02.json")); !os.IsNotExist(err) {
		t.Errorf("the reported day is still kept: %v", err)
	}
}
