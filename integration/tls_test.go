package integration

import (
	"fmt"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// The running server's listeners, seen by openssl s_client: TLS 1.2 and 1.3
// accepted, 1.0/1.1 and weak suites refused, on every TLS listener; port
// 25 takes ECDHE with AES-CBC too (opportunistic: else clear text).
func TestOpenSSLListeners(t *testing.T) {
	openssl := requireTool(t, "openssl")
	s := startServer(t)
	type probe struct {
		name string
		args []string
		ok   bool
	}
	var probes []probe
	for _, l := range []struct {
		name string
		base []string
	}{
		{"imaps", []string{"-connect", s.IMAPS}},
		{"submissions", []string{"-connect", s.Subs}},
		{"submission starttls", []string{"-connect", s.Sub, "-starttls", "smtp"}},
		{"smtp starttls", []string{"-connect", s.SMTP, "-starttls", "smtp"}},
	} {
		probes = append(probes,
			probe{l.name + " tls1.3", append(l.base, "-tls1_3"), true},
			probe{l.name + " tls1.2 ECDHE-GCM", append(l.base, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"), true},
			probe{l.name + " tls1.1", append(l.base, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"), false},
			// Port 25 alone takes the ECDHE CBC suites of older MTAs,
			// which would go on in clear: Postfix's "medium".
			probe{l.name + " tls1.2 ECDHE-CBC", append(l.base, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"), l.name == "smtp starttls"},
			probe{l.name + " tls1.2 RSA-CBC", append(l.base, "-tls1_2", "-cipher", "AES128-SHA"), false},
		)
	}
	for _, p := range probes {
		args := append([]string{"s_client", "-brief", "-CAfile", s.ca.CertFile(), "-servername", "localhost"}, p.args...)
		out, err := run(t, "Q\n", openssl, args...)
		ok := err == nil && strings.Contains(out, "Protocol version")
		if ok != p.ok {
			t.Errorf("%s: handshake ok=%v, want %v\n%s", p.name, ok, p.ok, out)
		}
	}
}

// [[tls.certificates]]: a client asking for another mail domain's name
// (SNI) gets that domain's certificate on every listener, verified by
// openssl as Thunderbird would verify it; one asking for none gets the
// main pair.
func TestSNICertificates(t *testing.T) {
	openssl := requireTool(t, "openssl")
	ca := testenv.NewCA(t)
	cert2, key2 := ca.Issue(t, "mail.domain2.example")
	s := startServerWithCA(t, ca, withHTTP(), withTOML(fmt.Sprintf("[[tls.certificates]]\ncert_file = %q\nkey_file = %q\n", cert2, key2)))
	for _, l := range []struct {
		name string
		args []string
	}{
		{"imaps", []string{"-connect", s.IMAPS}},
		{"submission", []string{"-connect", s.Sub, "-starttls", "smtp"}},
		{"smtp", []string{"-connect", s.SMTP, "-starttls", "smtp"}},
	} {
		for _, name := range []string{"mail.domain2.example", "localhost"} {
			args := append([]string{"s_client", "-brief", "-CAfile", ca.CertFile(), "-servername", name, "-verify_hostname", name, "-verify_return_error"}, l.args...)
			out, err := run(t, "Q\n", openssl, args...)
			if err != nil || !strings.Contains(out, "Verification: OK") || !strings.Contains(out, "CN = "+name) {
				t.Errorf("%s, SNI %s: %v\n%s", l.name, name, err, out)
			}
		}
	}
	// Its expiry is exported as the main pair's is: an alert on a
	// failed renewal covers it.
	metrics, err := run(t, "", "curl", "-sS", "http://"+s.HTTP+"/metrics")
	if err != nil || !strings.Contains(metrics, `courriel_tls_certificate_not_after_seconds{file="`+cert2+`"}`) {
		t.Errorf("metrics: %v\n%s", err, metrics)
	}
	out, code := courriel(t, "check-config", "-config", s.config)
	if code != 0 || !strings.Contains(out, "ok   tls: certificate "+cert2+", for the clients that ask for mail.domain2.example") {
		t.Errorf("check-config: exit %d\n%s", code, out)
	}
}
