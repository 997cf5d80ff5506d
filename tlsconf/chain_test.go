package tlsconf_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"courriel/tlsconf"
)

// intermediate returns a CA under root valid from notBefore to notAfter;
// key, when not nil, is its key (an older certificate of the same CA).
func intermediate(t *testing.T, root *testCA, key *ecdsa.PrivateKey, notBefore, notAfter time.Time) *testCA {
	t.Helper()
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(t), Subject: pkix.Name{CommonName: "test intermediate"},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, key.Public(), root.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// A certificate installed by a renewal (a timer, nobody running
// check-config) whose chain the users' clients will refuse is said in the
// log when loaded, with the cause in the file's terms; the pair is served
// all the same, as Postfix and Dovecot serve it.
func TestChainWarningOnLoad(t *testing.T) {
	t.Parallel()
	now := time.Now()
	root := newTestCA(t, "test root")
	inter := intermediate(t, root, nil, now.Add(-48*time.Hour), now.Add(90*24*time.Hour))
	lapsed := intermediate(t, root, inter.key.(*ecdsa.PrivateKey), now.Add(-48*time.Hour), now.Add(-time.Hour))
	leaf := inter.issue(t, leafOpts{})
	selfDir := t.TempDir()
	selfCert, selfKey, err := tlsconf.SelfSigned(selfDir, []string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert []byte // nil: the self-signed pair
		want string // "": no warning
	}{
		{"full chain", bytes.Join([][]byte{leaf.certPEM, inter.pem}, nil), ""},
		{"full chain and root", bytes.Join([][]byte{leaf.certPEM, inter.pem, root.pem}, nil), ""},
		{"leaf alone", leaf.certPEM, `the leaf's issuer "CN=test intermediate" is neither in the file`},
		{"lapsed intermediate", bytes.Join([][]byte{leaf.certPEM, lapsed.pem}, nil), `certificate #2 ("CN=test intermediate") is valid only from`},
		{"self-signed", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			certFile, keyFile := selfCert, selfKey
			if tt.cert != nil {
				certFile, keyFile = writePair(t, t.TempDir(), testPair{certPEM: tt.cert, keyPEM: leaf.keyPEM})
			}
			log, buf := newLogger(t)
			m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Logger: log, ClientRoots: root.pool()})
			if err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			warned := strings.Contains(out, "clients that verify will refuse this certificate chain")
			switch {
			case tt.want == "" && warned:
				t.Errorf("warned:\n%s", out)
			// The text handler escapes the quotes of the error's value.
			case tt.want != "" && (!warned || !strings.Contains(out, strings.ReplaceAll(tt.want, `"`, `\"`))):
				t.Errorf("want a warning with %q:\n%s", tt.want, out)
			}
			if tt.want != "" {
				if got := m.VerifyChain(root.pool(), now); got == nil || !strings.Contains(got.Error(), tt.want) {
					t.Errorf("VerifyChain = %v, want %q", got, tt.want)
				}
				if _, err := dial(t, serveEcho(t, m.ServerConfig()), tlsconfClient(root)); err == nil {
					t.Error("a verifying client took the chain")
				}
			}
		})
	}
}
