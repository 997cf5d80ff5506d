package integration

import (
	"crypto/tls"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGHUP: a renewed certificate is served to new connections, connections
// already open go on; a bad configuration is refused and the server keeps
// running; a changed log level is applied.
func TestSIGHUPReload(t *testing.T) {
	s := startServer(t)
	dial := func() *tls.Conn {
		t.Helper()
		c, err := tls.Dial("tcp", s.IMAPS, &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := dial()
	defer before.Close()
	oldSerial := before.ConnectionState().PeerCertificates[0].SerialNumber

	// Renew: a new certificate written over the old files.
	cert, key := s.ca.Issue(t, "localhost", "127.0.0.1", "xoyize.xyz")
	cfg, _ := os.ReadFile(s.config)
	certPath, keyPath := tomlValue(string(cfg), "cert_file"), tomlValue(string(cfg), "key_file")
	copyFile(t, cert, certPath)
	copyFile(t, key, keyPath)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(s.logs(), "SIGHUP: certificate reloaded") })
	after := dial()
	defer after.Close()
	if after.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Error("the renewed certificate is not served")
	}
	// The old connection still works: read the greeting.
	before.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := before.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "* OK") {
		t.Errorf("old connection: %q %v", buf[:n], err)
	}

	// A broken configuration is refused, the server goes on.
	good := string(cfg)
	os.WriteFile(s.config, []byte(good+"\nbogus_key = 1\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal", func() bool { return strings.Contains(s.logs(), "new configuration refused") })
	if out := swaksTo(t, s, "test0@hosted-domain.com"); !accepted(out) {
		t.Errorf("after a refused reload:\n%s", out)
	}
	os.WriteFile(s.config, []byte(strings.Replace(good, `log_level = "debug"`, `log_level = "warn"`, 1)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new log level", func() bool { return strings.Contains(s.logs(), "key=log_level value=warn") })
}

func tomlValue(cfg, key string) string {
	for _, l := range strings.Split(cfg, "\n") {
		if k, v, ok := strings.Cut(l, " = "); ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// SIGHUP applies new [ldap] settings: a rotated reader password works
// without a restart, and settings that do not work are refused.
func TestSIGHUPRotatesReaderPassword(t *testing.T) {
	s := startServer(t)
	cfg, _ := os.ReadFile(s.config)
	oldPW := s.slapd.ReaderPassword()
	const newPW = "rotated-reader-secret"
	s.slapd.Modify(t, "dn: "+s.slapd.ReaderDN()+"\nchangetype: modify\nreplace: userPassword\nuserPassword: "+newPW+"\n")

	// A wrong password in the new file is refused, the running one kept.
	os.WriteFile(s.config, []byte(strings.Replace(string(cfg), "bind_password = \""+oldPW+"\"", "bind_password = \"wrong\"", 1)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal", func() bool { return strings.Contains(s.logs(), "new [ldap] settings do not work") })

	os.WriteFile(s.config, []byte(strings.Replace(string(cfg), "bind_password = \""+oldPW+"\"", "bind_password = \""+newPW+"\"", 1)), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new settings", func() bool { return strings.Contains(s.logs(), "applied [ldap] settings") })
	if strings.Contains(s.logs(), newPW) {
		t.Error("the new password is in the log")
	}
	// A restart of slapd drops every pooled connection: only the rotated
	// password can open new ones.
	s.slapd.Stop(t)
	s.slapd.Start(t)
	if out := swaksTo(t, s, "alice@hosted-domain.com"); !accepted(out) {
		t.Errorf("after rotation:\n%s", out)
	}
}
