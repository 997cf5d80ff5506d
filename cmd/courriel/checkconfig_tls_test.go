package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// chainCert is one certificate of a test chain and its key.
type chainCert struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// issueChainCert signs a certificate for cn and key (a new one when nil)
// by parent (self-signed when nil), valid from notBefore to notAfter.
func issueChainCert(t *testing.T, cn string, key *ecdsa.PrivateKey, ca bool, parent *chainCert, notBefore, notAfter time.Time) *chainCert {
	t.Helper()
	var err error
	if key == nil {
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: notBefore, NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: ca,
	}
	if ca {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{cn}
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &chainCert{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (c *chainCert) keyPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// check-config warns of a certificate the users' clients refuse although
// it loads (Postfix and Dovecot serve it without a word, and the admin
// hears of it from users), and of a private key every user can read; the
// certificate is still served (ok, not FAIL), as MTAs on port 25 do not
// verify.
func TestCheckConfigCertificateChain(t *testing.T) {
	t.Parallel()
	now := time.Now()
	root := issueChainCert(t, "Test Root", nil, true, nil, now.Add(-48*time.Hour), now.Add(365*24*time.Hour))
	inter := issueChainCert(t, "Test Intermediate", nil, true, root, now.Add(-48*time.Hour), now.Add(90*24*time.Hour))
	// The same intermediate key in a certificate that lapsed: the file
	// kept an old copy.
	oldInter := issueChainCert(t, "Test Intermediate", inter.key, true, root, now.Add(-48*time.Hour), now.Add(-time.Hour))
	leaf := issueChainCert(t, "xoyize.xyz", nil, false, inter, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	oldLeaf := issueChainCert(t, "xoyize.xyz", nil, false, inter, now.Add(-48*time.Hour), now.Add(-time.Hour))
	self := issueChainCert(t, "xoyize.xyz", nil, false, nil, now.Add(-time.Hour), now.Add(60*24*time.Hour))
	dir := t.TempDir()
	rootFile := filepath.Join(dir, "root.pem")
	if err := os.WriteFile(rootFile, root.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name    string
		cert    []byte
		key     *chainCert
		keyMode os.FileMode
		want    string // "": no warning about TLS
	}{
		{"full chain", cat(leaf.pem, inter.pem), leaf, 0o600, ""},
		{"full chain with the root", cat(leaf.pem, inter.pem, root.pem), leaf, 0o600, ""},
		{"leaf alone (cert.pem)", leaf.pem, leaf, 0o600, `the leaf's issuer "CN=Test Intermediate" is neither in the file`},
		{"expired intermediate", cat(leaf.pem, oldInter.pem), leaf, 0o600, `certificate #2 ("CN=Test Intermediate") is valid only from`},
		{"self-signed", self.pem, self, 0o600, `self-signed ("CN=xoyize.xyz")`},
		{"key readable by all", cat(leaf.pem, inter.pem), leaf, 0o644, "is readable by every user (mode 0644)"},
		// The leaf's own dates are another warning's; its chain is fine.
		{"expired leaf", cat(oldLeaf.pem, inter.pem), oldLeaf, 0o600, "is valid only from"},
		{"key readable by its group", cat(leaf.pem, inter.pem), leaf, 0o640, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := t.TempDir()
			certFile, keyFile := filepath.Join(d, "fullchain.pem"), filepath.Join(d, "privkey.pem")
			if err := os.WriteFile(certFile, tt.cert, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(keyFile, tt.key.keyPEM(t), tt.keyMode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(keyFile, tt.keyMode); err != nil { // whatever the umask
				t.Fatal(err)
			}
			data := strings.Replace(serveConfig(t, fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile)),
				"[queue]\n", fmt.Sprintf("[queue]\nca_path = %q\n", rootFile), 1)
			p := filepath.Join(d, "config.toml")
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
			if !strings.Contains(out, "ok   tls: certificate "+certFile+"\n") {
				t.Errorf("certificate not taken:\n%s", out)
			}
			var warns []string
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "warn tls:") {
					warns = append(warns, l)
				}
			}
			switch {
			case tt.want == "" && len(warns) > 0:
				t.Errorf("unexpected warnings:\n%s", strings.Join(warns, "\n"))
			case tt.want != "" && (len(warns) != 1 || !strings.Contains(warns[0], tt.want)):
				t.Errorf("warnings %q, want one with %q:\n%s", warns, tt.want, out)
			}
		})
	}
}

// A listener's own certificate serves another name than myhostname (that
// is what it is for): serve takes it with a warning, and check-config
// warns too instead of failing for the configuration that runs; the
// [tls] certificate must still be valid for myhostname.
func TestCheckConfigListenerCertificateNames(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	mainCert, mainKey := ca.Issue(t, "xoyize.xyz")
	otherCert, otherKey := ca.Issue(t, "mail.example.org")
	imapCert, imapKey := ca.Issue(t, "imap.hosted-domain.com")
	tests := []struct {
		name          string
		tls           string
		want, notWant string
	}{
		{"listener's own name",
			fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[tls.listeners.imaps]\ncert_file = %q\nkey_file = %q\n", mainCert, mainKey, imapCert, imapKey),
			"warn tls: certificate " + imapCert + " (of imaps) is not valid for xoyize.xyz but for imap.hosted-domain.com", "FAIL tls"},
		{"main certificate of another name",
			fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", otherCert, otherKey),
			"FAIL tls: certificate names: " + otherCert + " is not valid for [xoyize.xyz]", "warn tls: certificate " + otherCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(p, []byte(serveConfig(t, tt.tls)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
			if !strings.Contains(out, tt.want) || strings.Contains(out, tt.notWant) {
				t.Errorf("want %q and not %q:\n%s", tt.want, tt.notWant, out)
			}
		})
	}
}

// TLS 1.3 only on port 25 makes senders without it fall back to clear
// text (STARTTLS there is opportunistic): check-config says so, and only
// there.
func TestCheckConfigMinVersionOnPort25(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	cert, key := ca.Issue(t, "xoyize.xyz")
	pair := fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	tests := []struct {
		name, listen, tls string
		warn              bool
	}{
		{"1.3 everywhere", "127.0.0.1:0", pair + "min_version = \"1.3\"\n", true},
		{"1.3 on port 25 alone", "127.0.0.1:0", pair + "[tls.listeners.smtp]\nmin_version = \"1.3\"\n", true},
		{"1.3 but 1.2 on port 25", "127.0.0.1:0", pair + "min_version = \"1.3\"\n[tls.listeners.smtp]\nmin_version = \"1.2\"\n", false},
		{"1.3 on imaps", "127.0.0.1:0", pair + "[tls.listeners.imaps]\nmin_version = \"1.3\"\n", false},
		{"no port 25", "", pair + "min_version = \"1.3\"\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			data := strings.Replace(serveConfig(t, tt.tls), "smtp = \"\"\n", fmt.Sprintf("smtp = %q\n", tt.listen), 1)
			p := filepath.Join(t.TempDir(), "config.toml")
			if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
			if got := strings.Contains(out, "warn tls: min_version 1.3 on the smtp listener"); got != tt.warn {
				t.Errorf("warned %v, want %v:\n%s", got, tt.warn, out)
			}
		})
	}
}
