package tlsconf_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOpenSSLClient handshakes with the real `openssl s_client`, as a
// distribution's MTA or a scanner would. Each refused case is first shown to
// succeed against a lax server, so a refusal cannot come from the client's
// own defaults (OpenSSL 3 disables TLS 1.1 at its default security level,
// hence @SECLEVEL=0).
func TestOpenSSLClient(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") == "true" { // scripts/test installs it
			t.Fatal("openssl not installed")
		}
		t.Skip("openssl not installed")
	}
	ca, strict, lax := newServers(t, 2048)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		ok   bool
		want string // in the output when ok
	}{
		{"tls1_2", []string{"-tls1_2"}, true, "Protocol version: TLSv1.2"},
		{"tls1_3", []string{"-tls1_3"}, true, "Protocol version: TLSv1.3"},
		{"tls1_2 ECDHE-RSA-AES128-GCM-SHA256", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"}, true, "Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256"},
		{"tls1_2 ECDHE-RSA-CHACHA20-POLY1305", []string{"-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"}, true, "Ciphersuite: ECDHE-RSA-CHACHA20-POLY1305"},
		{"tls1_1", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, ""},
		{"tls1", []string{"-tls1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, ""},
		{"tls1_2 AES128-SHA", []string{"-tls1_2", "-cipher", "AES128-SHA"}, false, ""},
		{"tls1_2 AES128-GCM-SHA256", []string{"-tls1_2", "-cipher", "AES128-GCM-SHA256"}, false, ""},
		{"tls1_2 ECDHE-RSA-AES128-SHA", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA"}, false, ""},
		{"tls1_2 ECDHE-RSA-AES128-SHA256", []string{"-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if !tt.ok {
				if out, err := sClient(t, openssl, lax, caFile, tt.args); err != nil {
					t.Fatalf("control: the lax server refused too (%v):\n%s", err, out)
				}
			}
			out, err := sClient(t, openssl, strict, caFile, tt.args)
			if tt.ok != (err == nil) {
				t.Fatalf("s_client %v: err = %v, want ok=%v\n%s", tt.args, err, tt.ok, out)
			}
			if tt.ok && (!strings.Contains(out, tt.want) || !strings.Contains(out, "Verification: OK")) {
				t.Errorf("s_client %v: output lacks %q or a verified chain:\n%s", tt.args, tt.want, out)
			}
		})
	}
}

// sClient runs one s_client handshake (stdin empty, so it quits after the
// handshake) and returns its combined output; err is nil on exit status 0.
func sClient(t *testing.T, openssl, addr, caFile string, args []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"s_client", "-connect", addr, "-servername", "localhost",
		"-CAfile", caFile, "-verify_return_error", "-brief"}, args...)
	cmd := exec.CommandContext(ctx, openssl, argv...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	return string(out), err
}
