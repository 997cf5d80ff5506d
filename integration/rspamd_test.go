package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// rspamd is a real rspamd (Debian's 3.4) with a minimal local
// configuration in a temp dir: only its proxy worker, in milter mode, on a
// loopback port, scanning by itself (self_scan); no redis, and every
// module that would look something up on the network is off.
type rspamd struct {
	t    testing.TB
	Addr string // host:port of the milter
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// rspamdConf is the whole rspamd.conf: Debian's common.conf (modules,
// scores, actions) and one worker.
const rspamdConf = `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "%s";
    .include "$CONFDIR/worker-proxy.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/worker-proxy.inc"
}
`

// rspamdLocal is local.d: what this configuration changes, besides the
// README's worker-proxy.inc and milter_headers.conf (readmeRspamd).
var rspamdLocal = map[string]string{
	// No network: a resolver that answers nothing at once.
	"options.inc": `dns { nameserver = ["127.0.0.1:1"]; timeout = 1s; retransmits = 1; }
`,
	// No greylisting (it needs redis); rewrite_subject above add_header.
	"actions.conf": `greylist = null;
rewrite_subject = 12;
subject = "***SPAM*** %s";
`,
	"classifier-bayes.conf": "enabled = false;\n",
}

// rspamdOff are the modules that need redis or the network.
var rspamdOff = []string{"rbl", "spf", "dkim", "dmarc", "dkim_signing", "arc", "asn", "fuzzy_check", "phishing",
	"mx_check", "greylist", "ratelimit", "neural", "replies", "reputation", "url_redirector", "dcc", "history_redis",
	"elastic", "clickhouse", "multimap", "emails", "surbl", "whitelist", "rspamd_update", "metadata_exporter"}

// rspamdRules are this test's own rules: a subject marker scores 10 (the
// add_header action: X-Spam: Yes), another 13 (rewrite_subject).
const rspamdRules = `
rspamd_config.COURRIEL_TEST_SPAM = {
  callback = function(task)
    local s = task:get_header('Subject')
    return s ~= nil and s:find('COURRIEL%-SPAM%-TEST') ~= nil
  end,
  score = 10.0,
  description = 'courriel test: spam by subject',
}
rspamd_config.COURRIEL_TEST_REWRITE = {
  callback = function(task)
    local s = task:get_header('Subject')
    return s ~= nil and s:find('COURRIEL%-REWRITE%-TEST') ~= nil
  end,
  score = 13.0,
  description = 'courriel test: subject rewrite',
}
`

// requireRspamd finds rspamd, or skips (fails in CI).
func requireRspamd(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("rspamd")
	if err != nil {
		for _, c := range []string{"/usr/bin/rspamd", "/usr/sbin/rspamd"} {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
		if os.Getenv("CI") == "true" {
			t.Fatal("rspamd is required in CI (scripts/test installs it)")
		}
		t.Skip("rspamd not installed")
	}
	return p
}

// startRspamd starts rspamd and waits until its milter port answers.
func startRspamd(t testing.TB) *rspamd {
	t.Helper()
	bin := requireRspamd(t)
	dir := t.TempDir()
	// rspamd binds a port it is given (rspamd failing to bind is retried
	// with another).
	for attempt := 0; ; attempt++ {
		r := &rspamd{t: t, dir: dir}
		r.Addr = "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
		files := map[string]string{"rspamd.conf": fmt.Sprintf(rspamdConf, r.Addr), "rspamd.local.lua": rspamdRules}
		for name, content := range rspamdLocal {
			files["local.d/"+name] = content
		}
		for _, name := range []string{"worker-proxy.inc", "milter_headers.conf"} {
			files["local.d/"+name] = readmeBlock(t, "# /etc/rspamd/local.d/"+name)
		}
		// The tests' client is on loopback, which rspamd counts as local
		// and would not give the headers to.
		files["local.d/milter_headers.conf"] += "skip_local = false;\nskip_authenticated = false;\n"
		for _, m := range rspamdOff {
			files["local.d/"+m+".conf"] = "enabled = false;\n"
		}
		for name, content := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{"db", "run"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		// -i: the test may run as root, and rspamd then wants a user to
		// drop to; its workers stay ours, in the temp dir.
		r.cmd = exec.Command(bin, "-f", "-i", "-c", filepath.Join(dir, "rspamd.conf"),
			"--var=LOCAL_CONFDIR="+dir, "--var=DBDIR="+filepath.Join(dir, "db"),
			"--var=RUNDIR="+filepath.Join(dir, "run"), "--var=LOGDIR="+dir)
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its workers die with it
		out, err := os.Create(filepath.Join(dir, "stdout.txt"))
		if err != nil {
			t.Fatal(err)
		}
		r.cmd.Stdout, r.cmd.Stderr = out, out
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out.Close()
		r.done = make(chan struct{})
		go func() { r.cmd.Wait(); close(r.done) }()
		if r.waitReady() {
			t.Cleanup(r.stop)
			return r
		}
		r.stop()
		if attempt == 2 {
			t.Fatalf("rspamd did not start:\n%s", r.logTail())
		}
	}
}

// waitReady waits (bounded: rspamd compiles its rules at start-up, some
// seconds) until the milter port accepts connections.
func (r *rspamd) waitReady() bool {
	deadline := time.Now().Add(120 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-r.done:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", r.Addr, time.Second)
		if err == nil {
			// The port was free when picked, but another test's server may
			// have taken it before rspamd did: only a milter's answer to
			// option negotiation says that rspamd holds it.
			ok := answersMilter(c)
			c.Close()
			return ok
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// answersMilter sends a milter option negotiation (SMFIC_OPTNEG: version
// 6, no actions, no protocol steps left out) and reports whether the peer
// answers with one.
func answersMilter(c net.Conn) bool {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	req := []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := c.Write(req); err != nil {
		return false
	}
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return false
	}
	n := uint32(head[0])<<24 | uint32(head[1])<<16 | uint32(head[2])<<8 | uint32(head[3])
	return head[4] == 'O' && n >= 13 && n < 1<<16
}

// stop ends rspamd and its workers, bounded.
func (r *rspamd) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	select {
	case <-r.done:
		return
	default:
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
	// The proxy worker may outlive the main process by a moment.
	for range 100 {
		c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *rspamd) logTail() string {
	b, _ := os.ReadFile(filepath.Join(r.dir, "rspamd.log"))
	o, _ := os.ReadFile(filepath.Join(r.dir, "stdout.txt"))
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return s + "\n" + string(o)
}

// milterTOML is a [[milter]] table.
func milterTOML(addr, listeners, policy string) string {
	return fmt.Sprintf("\n[[milter]]\naddress = %q\nlisteners = [%s]\ndefault_action = %q\nconnect_timeout = \"5s\"\ncommand_timeout = \"30s\"\ncontent_timeout = \"60s\"\n",
		"inet:"+addr, listeners, policy)
}

func quoteList(names ...string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

// readmeBlock returns the fenced code block of README.md whose first line
// is first, so that the README's setup is the one tested.
func readmeBlock(t testing.TB, first string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(b), "```")
	for i := 1; i < len(blocks); i += 2 {
		_, body, _ := strings.Cut(blocks[i], "\n") // the language tag line
		if strings.HasPrefix(body, first+"\n") || strings.HasPrefix(body, first+" ") {
			return body
		}
	}
	t.Fatalf("README.md has no code block starting with %q", first)
	return ""
}

// readmeMilterTOML is the README's [[milter]] for courriel, pointed at addr.
func readmeMilterTOML(t testing.TB, addr string) string {
	t.Helper()
	block := readmeBlock(t, "[[milter]]")
	if !strings.Contains(block, `"inet:127.0.0.1:11332"`) {
		t.Fatalf("README's [[milter]] changed:\n%s", block)
	}
	return "\n" + strings.Replace(block, `"inet:127.0.0.1:11332"`, `"inet:`+addr+`"`, 1)
}
