package imap

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchScript runs the operations of issue 12's table over TLS with
// Python's imaplib and prints "op seconds" lines.
const benchScript = `
import imaplib, ssl, sys, time
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl._create_unverified_context()
def t(name, f):
    s = time.perf_counter(); r = f(); e = time.perf_counter() - s
    if r[0] != 'OK': raise SystemExit('%s: %r' % (name, r))
    print(name, '%.4f' % e, flush=True)
    return r
c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
s = time.perf_counter(); c.login(user, pw); r = c.select('INBOX'); print('login_select', '%.4f' % (time.perf_counter() - s), flush=True)
t('uid_fetch_flags', lambda: c.uid('FETCH', '1:*', '(FLAGS)'))
t('fetch_envelope', lambda: c.fetch('1:*', '(ENVELOPE)'))
t('fetch_bodystructure', lambda: c.fetch('1:*', '(BODYSTRUCTURE)'))
t('uid_search_from', lambda: c.uid('SEARCH', 'FROM', 'dupont'))
t('bodies_100', lambda: c.fetch('1:100', '(BODY.PEEK[])'))
t('store_seen_all', lambda: c.store('1:*', '+FLAGS', '\\Seen'))
c.logout()
`

// BenchmarkBesideDovecot runs the same imaplib session against courriel and
// against Debian's Dovecot 2.3 (a daemon with its own TLS listener) on the
// same generated mailbox, cold (first look) and warm, and reports seconds
// per operation and the servers' CPU per run. It needs root (Dovecot drops
// to nobody), dovecot and python3.
func BenchmarkBesideDovecot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("Dovecot needs root")
	}
	for _, tool := range []string{"dovecot", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	n := benchN()
	script := filepath.Join(b.TempDir(), "bench.py")
	os.WriteFile(script, []byte(benchScript), 0o644)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		genMailbox(b, e.maildir, n)
		dv := startDovecot(b, n)
		b.StartTimer()
		for _, run := range []string{"cold", "warm"} {
			cpu0 := selfCPU()
			for op, secs := range runBenchScript(b, script, e.addr, "alice", "secret") {
				b.ReportMetric(secs, "courriel_"+run+"_"+op+"_s")
			}
			b.ReportMetric((selfCPU() - cpu0).Seconds(), "courriel_"+run+"_cpu_s")
			cpu0 = dv.cpu()
			for op, secs := range runBenchScript(b, script, dv.addr, "bench", "demo") {
				b.ReportMetric(secs, "dovecot_"+run+"_"+op+"_s")
			}
			time.Sleep(200 * time.Millisecond) // the imap processes are reaped
			b.ReportMetric((dv.cpu() - cpu0).Seconds(), "dovecot_"+run+"_cpu_s")
			// Issue 13: resynchronisation with CONDSTORE/QRESYNC.
			reportCondstoreBench(b, run, e.addr, dv.addr)
		}
		b.StopTimer()
		e.srv.Close()
	}
}

func runBenchScript(tb testing.TB, script, addr, user, pass string) map[string]float64 {
	host, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command("python3", script, host, port, user, pass).CombinedOutput()
	if err != nil {
		tb.Fatalf("imaplib: %v\n%s", err, out)
	}
	res := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 {
			v, _ := strconv.ParseFloat(f[1], 64)
			res[f[0]] = v
		}
	}
	return res
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type dovecotServer struct {
	addr string
	cmd  *exec.Cmd
}

// cpu is the CPU of Dovecot's master and of every process it reaped
// (imap, imap-login, auth).
func (d *dovecotServer) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / 100
}

func startDovecot(tb testing.TB, n int) *dovecotServer {
	dir, err := os.MkdirTemp("", "courriel-dovecot-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	mail := filepath.Join(dir, "mail")
	genMailbox(tb, mail, n)
	exec.Command("chown", "-R", "65534:65534", mail).Run()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
		"-days", "2", "-subj", "/CN=localhost").CombinedOutput(); err != nil {
		tb.Fatalf("openssl: %v\n%s", err, out)
	}
	// Dovecot binds its own listener: a port the kernel just gave out.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := filepath.Join(dir, "dovecot.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`protocols = imap
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
ssl = required
ssl_cert = <%[2]s
ssl_key = <%[3]s
auth_mechanisms = plain
passdb {
  driver = static
  args = password=demo
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=%[4]s mail=maildir:%[4]s
}
first_valid_uid = 0
first_valid_gid = 0
default_internal_user = nobody
default_login_user = nobody
service imap-login {
  chroot =
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = %[5]d
    ssl = yes
  }
}
service anvil {
  chroot =
}
protocol imap {
  mail_plugins = imap_zlib
}
`, dir, cert, key, mail, port)), 0o644)
	cmd := exec.Command("dovecot", "-F", "-c", conf)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(20 * time.Second); ; {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "dovecot.log"))
			tb.Fatalf("dovecot did not listen on %s: %v\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &dovecotServer{addr: addr, cmd: cmd}
}
