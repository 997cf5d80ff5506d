package testenv

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLDIFAttr(t *testing.T) {
	t.Parallel()
	tests := []struct{ value, want string }{
		{"/var/vmail/xomail", "a: /var/vmail/xomail"},
		{"", "a: "},
		{"Zoë", "a:: Wm/Dqw=="},
		{" lead", "a:: IGxlYWQ="},
		{"trail ", "a:: dHJhaWwg"},
		{":colon", "a:: OmNvbG9u"},
		{"<url", "a:: PHVybA=="},
		{"two\nlines", "a:: dHdvCmxpbmVz"},
		{"cr\r", "a:: Y3IN"},
		{"nul\x00", "a:: bnVsAA=="},
	}
	for _, tt := range tests {
		if got := ldifAttr("a", tt.value); got != tt.want {
			t.Errorf("ldifAttr(%q) = %q, want %q", tt.value, got, tt.want)
		}
	}
}

func TestSSHA(t *testing.T) {
	t.Parallel()
	a, err := sshaHash(ZoePassword)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := sshaHash(ZoePassword)
	if a == b {
		t.Error("two hashes share a salt")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "{SSHA}"))
	if err != nil || !strings.HasPrefix(a, "{SSHA}") || len(raw) != sha1.Size+8 {
		t.Fatalf("hash %q: %v", a, err)
	}
	sum := sha1.Sum(append([]byte(ZoePassword), raw[sha1.Size:]...))
	if string(sum[:]) != string(raw[:sha1.Size]) {
		t.Error("digest does not match password+salt")
	}
}

func TestSocketPathFitsSunPath(t *testing.T) {
	t.Parallel()
	for _, dir := range []string{t.TempDir(), filepath.Join(t.TempDir(), strings.Repeat("x", 150))} {
		if p := socketPath(t, dir); len(p) >= 108 {
			t.Errorf("socketPath(%d-byte dir) = %d bytes", len(dir), len(p))
		}
	}
}

// recorder is a testing.TB that records instead of stopping.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skipf(format string, args ...any)  { r.skip = fmt.Sprintf(format, args...) }

func TestSkipOrFail(t *testing.T) { // not parallel: Setenv
	missing := errors.New("OpenLDAP not installed")
	for _, ci := range []string{"true", "", "false"} {
		t.Setenv("CI", ci)
		r := &recorder{TB: t}
		skipOrFail(r, missing)
		if failed := r.fatal != ""; failed != (ci == "true") {
			t.Errorf("CI=%q: fatal=%q skip=%q", ci, r.fatal, r.skip)
		}
		if msg := r.fatal + r.skip; !strings.Contains(msg, "OpenLDAP not installed") {
			t.Errorf("CI=%q: message %q lacks the cause", ci, msg)
		}
	}
}

func TestRenderFixtureHomeBase(t *testing.T) {
	t.Parallel()
	out, err := renderFixture("/srv/mail dir", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "#") && strings.Contains(line, "/var/vmail") {
			t.Errorf("/var/vmail left in the fixture: %q", line)
		}
	}
	// A space inside a value is still an RFC 2849 SAFE-STRING.
	if !strings.Contains(out, "homedirectory: /srv/mail dir/alice\n") {
		t.Errorf("alice's home not rewritten:\n%s", out)
	}
	base, err := renderFixture(DefaultHomeBase, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(base, "postfixUser") || !strings.Contains(base, "cn=mailAccountReader") {
		t.Errorf("base-only fixture:\n%s", base)
	}
}

// The ports FreePorts gave one test process are not given by FreePorts
// in another before that test ends, though they are unbound meanwhile:
// two test processes starting servers on one port would send each
// other's mail to the wrong server.
func TestFreePortsReservedAcrossProcesses(t *testing.T) {
	if os.Getenv("TESTENV_RESERVE_PORTS") != "" {
		return // the child's half, below
	}
	t.Parallel()
	ports := FreePorts(t, 20)
	list := make([]string, len(ports))
	for i, p := range ports {
		list[i] = strconv.Itoa(p)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReservePortChild$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTENV_RESERVE_PORTS="+strings.Join(list, ","))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "reserved none") {
		t.Errorf("another process could reserve the ports of FreePorts %v:\n%s", ports, out)
	}
}

// TestReservePortChild is TestFreePortsReservedAcrossProcesses's other
// process: it tries to reserve the ports the parent holds.
func TestReservePortChild(t *testing.T) {
	list := os.Getenv("TESTENV_RESERVE_PORTS")
	if list == "" {
		t.Skip("run by TestFreePortsReservedAcrossProcesses")
	}
	var got []string
	for _, s := range strings.Split(list, ",") {
		p, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		if reservePort(t, p) {
			got = append(got, s)
		}
	}
	if len(got) == 0 {
		fmt.Println("reserved none")
	} else {
		fmt.Println("reserved", strings.Join(got, ","))
	}
}
