package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// CA is a throwaway certificate authority for one test. Immutable after NewCA.
type CA struct {
	cert     *x509.Certificate
	key      *ecdsa.PrivateKey
	certPEM  []byte
	certFile string
}

// NewCA makes an ECDSA P-256 CA and writes its certificate (PEM) in a test
// temp dir.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: CA key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: "courriel test CA", Organization: []string{"courriel tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testenv: CA certificate: %v", err)
	}
	ca := &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.certFile = filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, ca.certFile, ca.certPEM, 0o644)
	return ca
}

// CertFile is the CA certificate in PEM.
func (c *CA) CertFile() string { return c.certFile }

// Certificate is the CA's own certificate (a DANE-TA anchor, or to append
// to a server's chain).
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Pool is a fresh pool holding only this CA.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.cert)
	return p
}

// ClientTLSConfig verifies servers against this CA only.
func (c *CA) ClientTLSConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: c.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// Issue signs a server+client certificate for hosts (IP literals become IP
// SANs, the rest DNS names; none means 127.0.0.1, ::1 and localhost) and
// writes the certificate and its PKCS#8 key as PEM files in a test temp dir.
func (c *CA) Issue(t testing.TB, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := c.issuePEM(t, hosts)
	dir := t.TempDir()
	certFile = filepath.Join(dir, "cert.pem")
	keyFile = filepath.Join(dir, "key.pem")
	writeFile(t, certFile, certPEM, 0o644)
	writeFile(t, keyFile, keyPEM, 0o600)
	return certFile, keyFile
}

// IssueCertificate is Issue without files, for a tls.Config.
func (c *CA) IssueCertificate(t testing.TB, hosts ...string) tls.Certificate {
	t.Helper()
	certPEM, keyPEM := c.issuePEM(t, hosts)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("testenv: key pair: %v", err)
	}
	return cert
}

func (c *CA) issuePEM(t testing.TB, hosts []string) (certPEM, keyPEM []byte) {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: leaf key: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatalf("testenv: leaf certificate: %v", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: leaf key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
}

func randomSerial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("testenv: serial: %v", err)
	}
	return n.Add(n, big.NewInt(1)) // RFC 5280 §4.1.2.2: positive
}

func writeFile(t testing.TB, name string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(name, data, perm); err != nil {
		t.Fatalf("testenv: %v", err)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a server the test starts on it. Another process may take it before the
// server binds: callers retry on EADDRINUSE. It is taken below the
// kernel's ephemeral range (FreePorts).
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}

// FreePorts returns n distinct ports on 127.0.0.1 that were free a moment
// ago. They are picked at random below the kernel's ephemeral range
// (ip_local_port_range), where a listener on port 0 or a client's socket
// never gets a port: a port the kernel handed out and took back would be
// the next one it gives another test's listener, whose connections would
// then reach the wrong server. Every port stays bound until all are
// picked, so none is given twice, and each is reserved for the rest of
// the test (reservePort) from FreePorts in the other test processes that
// `go test ./...` runs at the same time.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	lo, hi := unassignedRange()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if tries < 1000 {
			p := lo + mrand.IntN(hi-lo)
			if !reservePort(t, p) {
				continue
			}
			addr = "127.0.0.1:" + strconv.Itoa(p)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if tries >= 1000 {
				t.Fatalf("testenv: free port: %v", err)
			}
			continue
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// reservePort takes port p for the rest of the test from every other
// FreePorts caller on the machine: a lock (flock) on a file named after
// it, held until the test's cleanup. Between FreePorts and the server's
// bind the port is unbound, and another test process picking the same
// random port then would start its server on it too (measured: about one
// pair in 12,000); the lock, not the bind, keeps the two apart. False
// when another test holds p; true too when locks cannot be taken at all
// (the pick stays random, as before).
func reservePort(t testing.TB, p int) bool {
	dir := filepath.Join(os.TempDir(), "courriel-testenv-ports")
	// Sticky, as /tmp: nobody removes another's lock file (a lock held
	// on a removed file keeps nobody out).
	if err := os.MkdirAll(dir, os.ModePerm|os.ModeSticky); err != nil {
		return true
	}
	os.Chmod(dir, os.ModePerm|os.ModeSticky) // whatever the umask made: every user's tests share it
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return false // not ours to judge: leave the port alone
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	t.Cleanup(func() { f.Close() })
	return true
}

// unassignedRange is the range of ports FreePorts picks from: the 12,000
// ports below the ephemeral range (and above the well-known and the demo's
// ports), or, when the range cannot be read, Linux's default one.
func unassignedRange() (lo, hi int) {
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				first = v
			}
		}
	}
	hi = first
	lo = max(hi-12000, 15000)
	if lo >= hi { // an ephemeral range that starts low: above it instead
		return 61000, 65000
	}
	return lo, hi
}

// RefusingAddr is a loopback address that refuses connections, held until
// the test ends: a port bound and never listened on. A port merely closed
// is free for the kernel to give the next listener, another test's
// server running meanwhile, which would then get the connections meant
// to be refused.
func RefusingAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}
