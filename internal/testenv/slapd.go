package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Bounds of the waits. Generous: CI runs -race on 2 shared cores.
const (
	readyTimeout = 30 * time.Second // slapd answering after exec
	stopTimeout  = 15 * time.Second // SIGTERM before SIGKILL
	portAttempts = 5                // fresh ports tried when one was taken meanwhile
	toolTimeout  = 60 * time.Second // one ldapmodify/slapadd run
)

// Slapd is one real OpenLDAP server owned by a test.
type Slapd struct {
	tools     tools
	opts      options
	dir       string // everything but the socket
	confDir   string // slapd.d (cn=config)
	socket    string // ldapi socket path
	ca        *CA
	ldapPort  int
	ldapsPort int
	log       *tailBuffer // every run's output, shown when the test fails

	mu   sync.Mutex
	proc *process // guarded by mu; nil while stopped
}

// process is one run of slapd.
type process struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed when cmd.Wait returned
	err  error         // cmd.Wait's result, set before done is closed
}

// StartSlapd builds a fresh directory in a temp dir (see doc.go), starts
// slapd on 127.0.0.1 and stops it when the test ends. It skips the test when
// OpenLDAP is not installed, or fails it when CI=true.
func StartSlapd(t testing.TB, opts ...Option) *Slapd {
	t.Helper()
	tl, err := findTools()
	if err != nil {
		skipOrFail(t, err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if !filepath.IsAbs(o.homeBase) || strings.ContainsAny(o.homeBase, "\x00\n\r") {
		t.Fatalf("testenv: WithHomeBase(%q): want an absolute path", o.homeBase)
	}
	o.homeBase = filepath.Clean(o.homeBase)

	s := &Slapd{tools: tl, opts: o, dir: t.TempDir(), ca: o.ca, log: &tailBuffer{max: 64 << 10}}
	if s.ca == nil {
		s.ca = NewCA(t)
	}
	s.confDir = filepath.Join(s.dir, "slapd.d")
	s.socket = socketPath(t, s.dir)
	s.build(t)

	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
		if t.Failed() {
			t.Logf("testenv: slapd output:\n%s", s.log.String())
		}
	})
	var lastErr error
	for range portAttempts {
		ports := FreePorts(t, 2)
		s.ldapPort, s.ldapsPort = ports[0], ports[1]
		if lastErr = s.launch(); lastErr == nil {
			break
		}
		if !errors.Is(lastErr, errAddrInUse) {
			t.Fatalf("testenv: %v", lastErr)
		}
	}
	if lastErr != nil {
		t.Fatalf("testenv: slapd could not get a port: %v", lastErr)
	}
	for _, l := range o.extraLDIF {
		s.Add(t, l)
	}
	return s
}

// socketPath is a short path for the ldapi socket: sun_path holds 108 bytes and
// t.TempDir() under a long test name does not fit.
func socketPath(t testing.TB, dir string) string {
	p := filepath.Join(dir, "ldapi")
	if len(p) < 100 {
		return p
	}
	short, err := os.MkdirTemp("", "slapd")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(short) })
	return filepath.Join(short, "ldapi")
}

// build writes the TLS files, cn=config and the data with slapadd.
func (s *Slapd) build(t testing.TB) {
	t.Helper()
	tlsDir := filepath.Join(s.dir, "tls")
	dataDir := filepath.Join(s.dir, "data")
	for _, d := range []string{tlsDir, dataDir, s.confDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	certFile, keyFile := s.ca.Issue(t, "127.0.0.1", "::1", "localhost")
	var schemas []string
	for _, name := range []string{"core", "cosine", "nis", "misc"} {
		if name == "misc" && s.opts.withoutMisc {
			continue
		}
		schemas = append(schemas, filepath.Join(s.tools.schemaDir, name+".ldif"))
	}
	config, err := renderConfig(configData{
		PidFile: filepath.Join(s.dir, "slapd.pid"), ArgsFile: filepath.Join(s.dir, "slapd.args"),
		CAFile: s.ca.CertFile(), CertFile: certFile, KeyFile: keyFile,
		ModulePath: s.tools.modulePath, SchemaFiles: schemas,
		Postfix: s.opts.withPostfix, PostfixSchema: postfixSchemaLDIF,
		ConfigPassword: ConfigPassword, AdminPassword: AdminPassword,
		PeerCred: peerCredDN(), DataDir: dataDir,
		SyncProv: s.opts.syncprov, Syncrepl: s.opts.syncrepl, UpdateRef: s.opts.updateRef,
	})
	if err != nil {
		t.Fatal(err)
	}
	data, err := renderFixture(s.opts.homeBase, s.opts.withPostfix)
	if err != nil {
		t.Fatal(err)
	}
	configFile := filepath.Join(s.dir, "config.ldif")
	dataFile := filepath.Join(s.dir, "data.ldif")
	writeFile(t, configFile, []byte(config), 0o600)
	writeFile(t, dataFile, []byte(data), 0o600)
	s.runTool(t, "", s.tools.slapadd, "-n0", "-F", s.confDir, "-l", configFile)
	if s.opts.syncrepl != "" || s.opts.noData {
		return // a consumer starts empty and gets everything from its provider
	}
	s.runTool(t, "", s.tools.slapadd, "-q", "-F", s.confDir, "-b", Suffix, "-l", dataFile)
}

var errAddrInUse = errors.New("address already in use")

// launch starts slapd on s's ports and waits until it answers.
func (s *Slapd) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return errors.New("slapd already running")
	}
	_ = os.Remove(s.socket) // a stale socket from a killed run blocks the bind
	urls := strings.Join([]string{s.URL() + "/", s.LDAPSURL() + "/", s.LDAPIURL()}, " ")
	// -d keeps slapd in the foreground as our child; level 32768 ("none")
	// still prints the messages logged at any level, such as a failed bind(2),
	// without per-operation noise.
	cmd := exec.Command(s.tools.slapd, "-d", "32768", "-h", urls, "-F", s.confDir)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	out := &tailBuffer{max: 64 << 10}
	w := io.MultiWriter(out, s.log)
	cmd.Stdout, cmd.Stderr = w, w
	// The kernel kills slapd if the test binary dies (timeout panic, kill -9):
	// no orphan keeps a port or a temp dir busy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start slapd: %w", err)
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := s.waitReady(p); err != nil {
		killProcess(p)
		msg := out.String()
		if strings.Contains(msg, "Address already in use") || strings.Contains(msg, "errno=98") {
			return fmt.Errorf("%w: %v: %s", errAddrInUse, err, msg)
		}
		return fmt.Errorf("%v; slapd said: %s", err, msg)
	}
	s.proc = p
	return nil
}

// waitReady polls until slapd answers a root DSE search on ldap://, accepts
// TCP on ldaps:// and has made its ldapi socket, or exits, or readyTimeout.
func (s *Slapd) waitReady(p *process) error {
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("slapd exited: %v", p.err)
		case <-time.After(50 * time.Millisecond):
		}
		if last = s.ping(); last == nil {
			return nil
		}
	}
	return fmt.Errorf("slapd not ready after %v: %v", readyTimeout, last)
}

func (s *Slapd) ping() error {
	d := &net.Dialer{Timeout: time.Second}
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(d))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(5 * time.Second)
	if _, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		0, 5, false, "(objectClass=*)", []string{"namingContexts"}, nil)); err != nil {
		return err
	}
	tc, err := d.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.ldapsPort)))
	if err != nil {
		return err
	}
	tc.Close()
	if _, err := os.Stat(s.socket); err != nil {
		return err
	}
	return nil
}

// Stop ends slapd (SIGTERM, then SIGKILL) and waits until it has exited, so
// its ports are closed. Data stays for Start.
func (s *Slapd) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(); err != nil {
		t.Fatalf("testenv: stop: %v", err)
	}
}

func (s *Slapd) stop() error {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	if !killProcess(p) {
		return errors.New("slapd did not exit after SIGKILL")
	}
	return nil
}

// Kill ends slapd with SIGKILL, as a crash or the OOM killer would, and
// waits until it has exited. Data stays for Start.
func (s *Slapd) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil && !killProcess(p) {
		t.Fatal("testenv: slapd did not exit after SIGKILL")
	}
}

// killProcess SIGKILLs p and waits (bounded) for it to be reaped.
func killProcess(p *process) bool {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return true
	case <-time.After(stopTimeout):
		return false
	}
}

// Start runs slapd again on the same ports with the same data, after Stop.
func (s *Slapd) Start(t testing.TB) {
	t.Helper()
	var err error
	// The ports were ours a moment ago; retry briefly if another test took one.
	for range portAttempts {
		if err = s.launch(); err == nil || !errors.Is(err, errAddrInUse) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: restart: %v", err)
	}
}

// URL is ldap://127.0.0.1:PORT (StartTLS offered).
func (s *Slapd) URL() string { return "ldap://127.0.0.1:" + strconv.Itoa(s.ldapPort) }

// LDAPSURL is ldaps://127.0.0.1:PORT.
func (s *Slapd) LDAPSURL() string { return "ldaps://127.0.0.1:" + strconv.Itoa(s.ldapsPort) }

// LDAPIURL is the ldapi:// URL of the Unix socket, where SASL EXTERNAL by this
// process's uid/gid manages cn=config (ldapadd -Y EXTERNAL -H URL).
func (s *Slapd) LDAPIURL() string { return "ldapi://" + url.PathEscape(s.socket) }

// CAFile is the PEM CA that signed the server certificate (127.0.0.1, ::1, localhost).
func (s *Slapd) CAFile() string { return s.ca.CertFile() }

// CA is the authority behind CAFile, to issue more certificates.
func (s *Slapd) CA() *CA { return s.ca }

func (s *Slapd) Suffix() string         { return Suffix }
func (s *Slapd) MailBase() string       { return MailBase }
func (s *Slapd) AdminDN() string        { return AdminDN }
func (s *Slapd) AdminPassword() string  { return AdminPassword }
func (s *Slapd) ReaderDN() string       { return ReaderDN }
func (s *Slapd) ReaderPassword() string { return ReaderPassword }
func (s *Slapd) ConfigDN() string       { return ConfigDN }
func (s *Slapd) ConfigPassword() string { return ConfigPassword }

// HomeBase is where the fixture's homes are (DefaultHomeBase or WithHomeBase).
func (s *Slapd) HomeBase() string { return s.opts.homeBase }

// Users is FixtureUsers(s.HomeBase()); empty WithoutPostfixSchema.
func (s *Slapd) Users() []FixtureUser {
	if !s.opts.withPostfix {
		return nil
	}
	return FixtureUsers(s.opts.homeBase)
}

// tailBuffer keeps the last max bytes written: slapd's output for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer // guarded by mu
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - b.max; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.TrimSpace(b.buf.String())
}
