package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// checkEnv is a complete, valid configuration against s.
type checkEnv struct {
	slapd                         *testenv.Slapd
	cert, key, vmail, queue, smtp string
	submission                    string
	readerPassword                string
	passwordFile                  bool   // bind_password_file instead of bind_password
	extra                         string // appended TOML
}

func (e checkEnv) write(t *testing.T) string {
	t.Helper()
	pwKey, pw := "bind_password", e.readerPassword
	if e.passwordFile {
		pwKey, pw = "bind_password_file", filepath.Join(t.TempDir(), "ldap-password")
		if err := os.WriteFile(pw, []byte(e.readerPassword+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`myhostname = "xoyize.xyz"
[listen]
smtp = %q
submission = %q
submissions = ""
imaps = ""
managesieve = ""
[tls]
cert_file = %q
key_file = %q
[ldap]
urls = [%q]
ca_file = %q
bind_dn = %q
%s = %q
search_base = %q
timeout = "3s"
dial_timeout = "2s"
[delivery]
maildir_base = %q
[queue]
dir = %q
`, e.smtp, e.submission, e.cert, e.key, e.slapd.URL(), e.slapd.CAFile(), e.slapd.ReaderDN(), pwKey, pw, e.slapd.MailBase(), e.vmail, e.queue) + e.extra
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "xoyize.xyz")
	otherCert, otherKey := ca.Issue(t, "mail.example.org")
	good := checkEnv{slapd: s, cert: cert, key: key, vmail: t.TempDir(), queue: t.TempDir(),
		smtp: "127.0.0.1:0", readerPassword: s.ReaderPassword()}

	code, out, errOut := runCmd(t, "", "check-config", "-config", good.write(t))
	if code != 0 || !strings.Contains(out, "configuration OK") || !strings.Contains(out, `bind_dn = "cn=mailAccountReader`) ||
		!strings.Contains(out, `bind_password = "(hidden)"`) || strings.Contains(out, s.ReaderPassword()) {
		t.Fatalf("good config: exit %d\n%s\n%s", code, out, errOut)
	}
	// The effective configuration includes defaults the file did not set.
	if !strings.Contains(out, `negative_cache_ttl = "10s"`) || !strings.Contains(out, "message_size_limit = 10240000") ||
		!strings.Contains(out, `min_version = "1.2"`) || !strings.Contains(out, `sync = "auto"`) {
		t.Errorf("defaults not printed:\n%s", out)
	}

	// Secrets are not printed: the SRS key forges addresses we relay to.
	withSRS := good
	withSRS.extra = "[mailauth]\nsrs_secret = \"SRSSECRETVALUE-0123456789\"\n"
	if code, out, _ := runCmd(t, "", "check-config", "-config", withSRS.write(t)); strings.Contains(out, "SRSSECRETVALUE") || !strings.Contains(out, `srs_secret = "(hidden)"`) {
		t.Errorf("srs_secret shown (exit %d):\n%s", code, out)
	}

	// A password read from bind_password_file is not shown as set: the
	// output, pasted back, must not set both.
	fromFile := good
	fromFile.passwordFile = true
	code, out, _ = runCmd(t, "", "check-config", "-config", fromFile.write(t))
	if code != 0 || !strings.Contains(out, `bind_password = ""`) || !strings.Contains(out, "bind_password_file = ") || strings.Contains(out, s.ReaderPassword()) {
		t.Errorf("password from a file: exit %d\n%s", code, out)
	}

	// The admin's scripts compile as global ones: they may require
	// [sieve] global_extensions (Pigeonhole's sieve_global_extensions).
	before := filepath.Join(t.TempDir(), "before.sieve")
	if err := os.WriteFile(before, []byte("require \"spamtest\";\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withGlobal := good
	withGlobal.extra = fmt.Sprintf("[sieve]\nglobal_extensions = \"spamtest\"\nbefore = [%q]\n", before)
	if code, out, _ := runCmd(t, "", "check-config", "-config", withGlobal.write(t)); code != 0 || !strings.Contains(out, "sieve: admin script "+before+" compiles") ||
		!strings.Contains(out, `global_extensions = "spamtest"`) {
		t.Errorf("admin script requiring a global extension: exit %d\n%s", code, out)
	}

	// Every error of an admin script is shown, as sievec shows them.
	broken := filepath.Join(t.TempDir(), "after.sieve")
	if err := os.WriteFile(broken, []byte("require \"fileinto\";\nfrobnicate;\nkeep;\nfileinto;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withBroken := good
	withBroken.extra = fmt.Sprintf("[sieve]\nafter = [%q]\n", broken)
	if code, out, _ := runCmd(t, "", "check-config", "-config", withBroken.write(t)); code == 0 ||
		!regexp.MustCompile(`FAIL sieve: admin script .*line 2.*line 4`).MatchString(out) {
		t.Errorf("admin script with two errors: exit %d\n%s", code, out)
	}

	// An extension name courriel does not know is a warning, as
	// Pigeonhole's, not a problem: the start is not refused.
	unknownExt := good
	unknownExt.extra = "[sieve]\nextensions = \"+editheadr\"\n"
	if code, out, _ := runCmd(t, "", "check-config", "-config", unknownExt.write(t)); code != 0 || !strings.Contains(out, "configuration OK") ||
		!strings.Contains(out, "warn sieve.extensions: ignored unknown extension 'editheadr' while configuring available extensions\n") {
		t.Errorf("unknown sieve extension: exit %d\n%s", code, out)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	deadMilter := testenv.RefusingAddr(t)
	tests := []struct {
		name string
		mod  func(*checkEnv)
		want string
	}{
		{"wrong reader password", func(e *checkEnv) { e.readerPassword = "wrong" }, "FAIL ldap: connect and bind"},
		{"certificate for another name", func(e *checkEnv) { e.cert, e.key = otherCert, otherKey }, "FAIL tls: certificate names"},
		{"certificate and key mismatch", func(e *checkEnv) { e.key = otherKey }, "FAIL tls: certificate"},
		{"maildir base missing", func(e *checkEnv) { e.vmail = "/nonexistent/vmail" }, "FAIL maildir base /nonexistent/vmail"},
		{"port busy", func(e *checkEnv) { e.smtp = busy.Addr().String() }, "FAIL listen smtp"},
		{"two listeners on one port", func(e *checkEnv) { e.smtp, e.submission = deadMilter, "0.0.0.0:"+port(deadMilter) },
			"FAIL listen submission 0.0.0.0:" + port(deadMilter) + ": the smtp listener binds " + deadMilter + " already"},
		{"milter down", func(e *checkEnv) {
			e.extra = "[[milter]]\naddress = \"inet:" + deadMilter + "\"\nconnect_timeout = \"2s\"\n"
		}, "FAIL milter inet:" + deadMilter + " answers (for smtp)"},
	}
	for _, tt := range tests {
		e := good
		tt.mod(&e)
		code, out, _ := runCmd(t, "", "check-config", "-q", "-config", e.write(t))
		if code != 1 || !strings.Contains(out, tt.want) || !strings.Contains(out, "problem(s)") {
			t.Errorf("%s: exit %d, want 1 and %q:\n%s", tt.name, code, tt.want, out)
		}
	}
	s.Stop(t)
	code, out, _ = runCmd(t, "", "check-config", "-q", "-config", good.write(t))
	if code != 1 || !strings.Contains(out, "FAIL ldap") {
		t.Errorf("slapd down: exit %d\n%s", code, out)
	}
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

func TestSameSocket(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:25", "127.0.0.1:25", true},
		{"127.0.0.1:25", "127.0.0.1:587", false},
		{"127.0.0.1:25", "127.0.0.2:25", false},
		{":25", "127.0.0.1:25", true},
		{"0.0.0.0:25", "[::1]:25", true},
		{"[::]:993", "192.0.2.1:993", true},
		{"[::1]:25", "[0:0:0:0:0:0:0:1]:25", true},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"Mail.Example:25", "mail.example:25", true},
	} {
		if got := sameSocket(c.a, c.b); got != c.want {
			t.Errorf("sameSocket(%q, %q) = %v", c.a, c.b, got)
		}
	}
}
