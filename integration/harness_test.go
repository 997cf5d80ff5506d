package integration

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"

	"courriel/internal/testenv"
)

// binary is the courriel binary built once for the package by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "courriel-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "courriel")
	cmd := exec.Command("go", "build", "-o", binary, "courriel/cmd/courriel")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building courriel:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is one courriel serve process with its own ports, maildir base,
// queue and certificate.
type server struct {
	t      testing.TB
	slapd  *testenv.Slapd
	dir    string
	vmail  string
	config string
	ca     *testenv.CA
	SMTP   string // host:port of each listener
	Sub    string
	Subs   string
	IMAPS  string
	HTTP   string // with withHTTP
	Local  string // the local submission socket's path, with withLocalSocket
	Sieve  string // ManageSieve, with withManageSieve
	mu     sync.Mutex
	cmd    *exec.Cmd
	log    *bytes.Buffer
	done   chan struct{}
	bin    string // the courriel binary; the package's by default
	// wrap runs the binary through a command (e.g. unshare): its argv
	// before the binary's path.
	wrap []string
	// wantListeners is how many listeners the server must log before it
	// is ready; 0: those startServer configures.
	wantListeners int
}

type serverOption func(*serverSettings)

type serverSettings struct {
	logLevel  string      // default "debug": the tests read the log
	cacheTTL  string      // default "2s"
	negTTL    string      // default "1s"
	head      string      // TOML before the first table
	extra     string      // appended TOML
	ldapExtra string      // TOML keys added to the [ldap] table
	ca        *testenv.CA // issues the server certificate; trusted by the queue
	vmailIn   string      // parent of the vmail base; default the test's TempDir
	http      bool        // the http listener (metrics) on a kernel-chosen port
	local     bool        // the local submission socket (sendmail), in the test's directory
	sieve     bool        // the ManageSieve listener on a kernel-chosen port
	slapd     []testenv.Option
	// mailauth is the [mailauth] table with its sub-tables; by default
	// the inbound checks are off, so that no test asks the machine's DNS.
	mailauth string
	bin      string // another courriel binary (withBinary)
	sync     string // [delivery] sync, when set (withDeliverySync)
}

// withManageSieve starts the ManageSieve listener (server.Sieve).
func withManageSieve() serverOption { return func(o *serverSettings) { o.sieve = true } }

// withProduction runs with the settings of a production server: info logs
// and the default cache TTLs (benchmarks).
func withProduction() serverOption {
	return func(o *serverSettings) { o.logLevel, o.cacheTTL, o.negTTL = "info", "60s", "10s" }
}

// withBinary runs another courriel binary than the package's (a baseline
// build, for before/after benchmarks).
func withBinary(path string) serverOption { return func(o *serverSettings) { o.bin = path } }

// withDeliverySync sets [delivery] sync ("file", "filesystem", "journal").
func withDeliverySync(mode string) serverOption { return func(o *serverSettings) { o.sync = mode } }

// withVmailIn puts the maildirs under parent (benchmarks: a testenv.BenchDir).
func withVmailIn(parent string) serverOption { return func(o *serverSettings) { o.vmailIn = parent } }

// withLocalSocket turns the local submission socket on (server.Local),
// for courriel sendmail; off otherwise, so that tests do not share the
// default path.
func withLocalSocket() serverOption { return func(o *serverSettings) { o.local = true } }

// withHTTP turns the http listener on (server.HTTP): /metrics.
func withHTTP() serverOption { return func(o *serverSettings) { o.http = true } }

// withSlapd passes options to the test's slapd (e.g. testenv.WithExtraLDIF).
func withSlapd(opts ...testenv.Option) serverOption {
	return func(o *serverSettings) { o.slapd = append(o.slapd, opts...) }
}

// withMailAuth replaces the [mailauth] table (its keys and sub-tables).
func withMailAuth(toml string) serverOption { return func(o *serverSettings) { o.mailauth = toml } }

func withCA(ca *testenv.CA) serverOption { return func(o *serverSettings) { o.ca = ca } }

func startServerWithCA(t testing.TB, ca *testenv.CA, opts ...serverOption) *server {
	t.Helper()
	return startServer(t, append(opts, withCA(ca))...)
}

func plainAuth(user, pass string) sasl.Client { return sasl.NewPlainClient("", user, pass) }

func withTOML(s string) serverOption { return func(o *serverSettings) { o.extra += s } }

// withLDAPTOML adds keys to the [ldap] table.
func withLDAPTOML(s string) serverOption { return func(o *serverSettings) { o.ldapExtra += s } }

// withTopTOML sets top-level keys (they must come before the first table).
func withTopTOML(s string) serverOption { return func(o *serverSettings) { o.head += s } }

// requireTool skips (or, in CI, fails) when a client program is missing.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI (scripts/test installs it)", name)
		}
		t.Skipf("%s not installed", name)
	}
	return p
}

// startServer starts slapd (fixture homes under a temp vmail) and courriel.
func startServer(t testing.TB, opts ...serverOption) *server {
	t.Helper()
	set := serverSettings{logLevel: "debug", cacheTTL: "2s", negTTL: "1s", mailauth: "inbound_checks = false\n"}
	for _, o := range opts {
		o(&set)
	}
	dir := t.TempDir()
	vmail := filepath.Join(cmp.Or(set.vmailIn, dir), "vmail")
	if err := os.MkdirAll(vmail, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, dir: dir, vmail: vmail, bin: cmp.Or(set.bin, binary)}
	s.slapd = testenv.StartSlapd(t, append([]testenv.Option{testenv.WithHomeBase(vmail)}, set.slapd...)...)
	s.ca = set.ca
	if s.ca == nil {
		s.ca = testenv.NewCA(t)
	}
	cert, key := s.ca.Issue(t, "localhost", "127.0.0.1", "xoyize.xyz")
	// Port 0: the kernel picks, the server logs what it bound; no race with
	// other processes between picking a port and binding it.
	s.SMTP, s.Sub, s.Subs, s.IMAPS = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if set.http {
		s.HTTP = "127.0.0.1:0"
	}
	if set.local {
		s.Local = filepath.Join(dir, "run", "sendmail.sock")
	}
	if set.sieve {
		s.Sieve = "127.0.0.1:0"
	}
	syncLine := ""
	if set.sync != "" {
		syncLine = fmt.Sprintf("sync = %q\n", set.sync)
	}
	cfg := set.head + fmt.Sprintf(`myhostname = "xoyize.xyz"
log_level = %q
[listen]
smtp = %q
submission = %q
submissions = %q
imaps = %q
managesieve = %q
http = %q
local = %q
[tls]
cert_file = %q
key_file = %q
[ldap]
urls = [%q]
start_tls = true
ca_file = %q
bind_dn = %q
bind_password = %q
search_base = %q
auth_bind_userdn = "uid=%%u,%s"
cache_ttl = %q
negative_cache_ttl = %q
%s[delivery]
maildir_base = %q
%s[queue]
dir = %q
tls_policy = "verify"
ca_path = %q
`, set.logLevel, s.SMTP, s.Sub, s.Subs, s.IMAPS, s.Sieve, s.HTTP, s.Local, cert, key, s.slapd.URL(), s.slapd.CAFile(), s.slapd.ReaderDN(),
		s.slapd.ReaderPassword(), s.slapd.MailBase(), s.slapd.MailBase(), set.cacheTTL, set.negTTL, set.ldapExtra, vmail, syncLine, filepath.Join(dir, "queue"), s.ca.CertFile())
	cfg += set.extra + "\n[mailauth]\n" + set.mailauth
	s.config = filepath.Join(dir, "config.toml")
	if err := os.WriteFile(s.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(func() {
		s.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("courriel log:\n%s", s.logs())
		}
	})
	return s
}

func (s *server) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// lockedBuffer lets the process write while a test reads.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (s *server) start() {
	t := s.t
	t.Helper()
	s.mu.Lock()
	if s.log == nil {
		s.log = &bytes.Buffer{}
	}
	start := s.log.Len()
	s.mu.Unlock()
	argv := append(slices.Clone(s.wrap), s.bin, "serve", "-config", s.config)
	cmd := exec.Command(argv[0], argv[1:]...)
	if p := os.Getenv("COURRIEL_BENCH_CPUPROFILE"); p != "" {
		cmd.Env = append(os.Environ(), "COURRIEL_CPUPROFILE="+p)
	}
	w := lockedWriter{&s.mu, s.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	// Ready when the server has logged the address of every listener.
	listeners := 4
	if s.HTTP != "" {
		listeners++
	}
	if s.Local != "" {
		listeners++
	}
	if s.Sieve != "" {
		listeners++
	}
	if s.wantListeners > 0 {
		listeners = s.wantListeners
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		addrs := map[string]string{}
		for _, m := range listeningRe.FindAllStringSubmatch(s.logs()[start:], -1) {
			if m[1] != "mailq" { // the local socket's companion, counted with it
				addrs[m[1]] = m[2]
			}
		}
		if len(addrs) == listeners {
			s.SMTP, s.Sub, s.Subs, s.IMAPS, s.HTTP = addrs["smtp"], addrs["submission"], addrs["submissions"], addrs["imaps"], addrs["http"]
			if s.Sieve != "" {
				s.Sieve = addrs["managesieve"]
			}
			return
		}
		select {
		case <-done:
			t.Fatalf("courriel exited at start-up:\n%s", s.logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("courriel did not start listening:\n%s", s.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var listeningRe = regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)

// stop sends sig and waits (bounded) for the process to exit.
func (s *server) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// run runs a client program with a bounded time and returns its output.
func run(t *testing.T, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// maildirFiles lists the files in a user's maildir subdirectory.
func (s *server) maildirFiles(t testing.TB, user, sub string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.vmail, user, "mailbox", sub))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, filepath.Join(s.vmail, user, "mailbox", sub, e.Name()))
	}
	return out
}
