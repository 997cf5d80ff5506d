package mailauth

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// oraclePython is the interpreter of Debian's dkimpy (python3-dkim) and
// pyspf (python3-spf), the independent implementations the tests compare
// with: the one named in dkimverify's #! line, since a python3 earlier on
// PATH (pyenv, a venv) does not see Debian's packages. Missing: a skip, or
// in CI a failure.
func oraclePython(t *testing.T) string {
	t.Helper()
	fail := func(msg string) string {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI needs python3-dkim and python3-spf (scripts/test installs them)", msg)
		}
		t.Skip(msg)
		return ""
	}
	p, err := exec.LookPath("dkimverify")
	if err != nil {
		return fail("dkimverify (python3-dkim) not installed")
	}
	f, err := os.Open(p)
	if err != nil {
		return fail(err.Error())
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	py := strings.TrimSpace(strings.TrimPrefix(line, "#!"))
	if py == "" || strings.Contains(py, " ") {
		py = "/usr/bin/python3"
	}
	if err := exec.Command(py, "-c", "import dkim, spf, dns.resolver").Run(); err != nil {
		return fail("python3-dkim or python3-spf missing: " + err.Error())
	}
	return py
}

// pyResolver points dnspython, which dkimpy and pyspf use, at the test's
// DNS server.
const pyResolver = `
import sys, dns.resolver
_r = dns.resolver.Resolver(configure=False)
_host, _port = sys.argv[1].rsplit(":", 1)
_r.nameservers = [_host]
_r.port = int(_port)
dns.resolver.default_resolver = _r
`

// runOracle runs script (after pyResolver) with the DNS address and args,
// message on stdin, and returns its standard output.
func runOracle(t *testing.T, dnsAddr, script string, stdin []byte, args ...string) string {
	t.Helper()
	py := oraclePython(t)
	if _, _, err := net.SplitHostPort(dnsAddr); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, append([]string{"-c", pyResolver + script, dnsAddr}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oracle: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
