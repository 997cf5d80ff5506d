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
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
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
    sys.stdin.readline() # the server's CPU is sampled before the next command
    return r
c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
s = time.perf_counter(); c.login(user, pw); r = c.select('INBOX'); print('login_select', '%.4f' % (time.perf_counter() - s), flush=True); sys.stdin.readline()
t('uid_fetch_flags', lambda: c.uid('FETCH', '1:*', '(FLAGS)'))
t('fetch_envelope', lambda: c.fetch('1:*', '(ENVELOPE)'))
t('fetch_bodystructure', lambda: c.fetch('1:*', '(BODYSTRUCTURE)'))
t('uid_search_from', lambda: c.uid('SEARCH', 'FROM', 'dupont'))
t('bodies_100', lambda: c.fetch('1:100', '(BODY.PEEK[])'))
t('store_seen_all', lambda: c.store('1:*', '+FLAGS', '\\Seen'))
# The same large FETCHes again, read as bytes until the tagged reply
# without imaplib's parsing: when the server has sent the last byte. The
# wall rows above are mostly the client's parsing of 20,000 lines.
def raw(tag, cmd):
    sock = c.sock
    sock.sendall(tag + b' ' + cmd + b'\r\n')
    end, tail = b'\r\n' + tag + b' ', b''
    while True:
        d = sock.recv(1 << 20)
        if not d: raise SystemExit('connection closed')
        tail = (tail + d)[-4096:]
        i = tail.rfind(end)
        if i >= 0 and tail.endswith(b'\r\n'):
            if tail[i + len(end):i + len(end) + 2] != b'OK': raise SystemExit('%r: %r' % (cmd, tail[i:]))
            return ('OK', None)
t('raw_uid_fetch_flags', lambda: raw(b'R1', b'UID FETCH 1:* (FLAGS)'))
t('raw_fetch_envelope', lambda: raw(b'R2', b'FETCH 1:* (ENVELOPE)'))
t('raw_fetch_bodystructure', lambda: raw(b'R3', b'FETCH 1:* (BODYSTRUCTURE)'))
c.logout()
`

// benchSelectScript is benchScript's first line alone: LOGIN and SELECT.
const benchSelectScript = `
import imaplib, ssl, sys, time
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl._create_unverified_context()
c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
s = time.perf_counter(); c.login(user, pw); r = c.select('INBOX'); print('login_select', '%.4f' % (time.perf_counter() - s), flush=True); sys.stdin.readline()
if r[0] != 'OK': raise SystemExit('select: %r' % (r,))
c.logout()
`

// BenchmarkBesideDovecot runs the same imaplib session against courriel and
// against Debian's Dovecot 2.3 (a daemon with its own TLS listener) on the
// same generated mailbox, cold (first look) and warm, and reports seconds
// per operation and the servers' CPU per run, then courriel's LOGIN +
// SELECT once more after a restart of its server. It needs root (Dovecot
// drops to nobody), dovecot and python3.
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
	selectScript := filepath.Join(b.TempDir(), "login_select.py") // not select.py: Python would import it as its select module
	os.WriteFile(selectScript, []byte(benchSelectScript), 0o644)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		genMailbox(b, e.maildir, n)
		dv := startDovecot(b, n)
		b.StartTimer()
		for _, run := range []string{"cold", "warm"} {
			// The corpus generation's garbage is the benchmark's, not
			// the server's: collected, and its memory given back to the
			// system (the runtime's background scavenger would do it
			// during the first operation), before courriel's CPU is
			// sampled.
			debug.FreeOSMemory()
			stopProfile := startBenchProfile(b, run)
			cpu0 := selfCPU()
			secs, cpu := runBenchScriptCPU(b, script, e.addr, "alice", "secret", selfCPU)
			b.ReportMetric((selfCPU() - cpu0).Seconds(), "courriel_"+run+"_cpu_s")
			stopProfile()
			reportBenchOps(b, "courriel_"+run+"_", secs, cpu)
			cpu0 = dv.cpu()
			secs, cpu = runBenchScriptCPU(b, script, dv.addr, "bench", "demo", dv.cpu)
			time.Sleep(200 * time.Millisecond) // the imap processes are reaped
			b.ReportMetric((dv.cpu() - cpu0).Seconds(), "dovecot_"+run+"_cpu_s")
			reportBenchOps(b, "dovecot_"+run+"_", secs, cpu)
			// Issue 13: resynchronisation with CONDSTORE/QRESYNC.
			reportCondstoreBench(b, run, e.addr, dv.addr)
		}
		// A new server process (here a new server in this one: nothing
		// kept in memory) opens the folder from what the last one left
		// on disk; Dovecot's warm row is the same, each of its sessions
		// being a new process.
		e.restart()
		debug.FreeOSMemory()
		cpu0 := selfCPU()
		secs, cpu := runBenchScriptCPU(b, selectScript, e.addr, "alice", "secret", selfCPU)
		b.ReportMetric((selfCPU() - cpu0).Seconds(), "courriel_restarted_cpu_s")
		reportBenchOps(b, "courriel_restarted_", secs, cpu)
		b.StopTimer()
		e.srv.Close()
	}
}

func runBenchScript(tb testing.TB, script, addr, user, pass string) map[string]float64 {
	secs, _ := runBenchScriptCPU(tb, script, addr, user, pass, nil)
	return secs
}

// runBenchScriptCPU runs the script and, when cpu is given, samples the
// server's CPU each time the script reports an operation done: the
// difference from the previous sample is that operation's server CPU (the
// server has answered before the client prints).
func runBenchScriptCPU(tb testing.TB, script, addr, user, pass string, cpu func() time.Duration) (secs, cpuSecs map[string]float64) {
	host, port, _ := net.SplitHostPort(addr)
	cmd := benchClient(script, host, port, user, pass)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	// benchScript waits for a line after each operation, so that the
	// sample is taken before the next command (LOGOUT ends Dovecot's imap
	// process, whose CPU then moves to the master's reaped children).
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	defer stdin.Close()
	secs, cpuSecs = map[string]float64{}, map[string]float64{}
	var last time.Duration
	if cpu != nil {
		last = cpu()
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		secs[f[0]] = v
		if cpu != nil {
			now := cpu()
			cpuSecs[f[0]] = (now - last).Seconds()
			last = now
		}
		stdin.Write([]byte("\n")) // scripts that do not wait leave it unread
	}
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("imaplib: %v\n%s%s", err, out.Bytes(), stderr.Bytes())
	}
	return secs, cpuSecs
}

// benchClient is the command that runs a Python client script, pinned
// to the machine's last CPU with taskset, or as COURRIEL_BENCH_CLIENT_CPU
// says: a CPU list for taskset, or "any" for no pinning. Where the client
// runs decides the wall rows in which its own parsing dominates (imaplib
// reading 20,000 FETCH lines takes longer than either server needs to
// send them): on this two-CPU virtual machine, a client on CPU 0 parsed
// the same replies up to 1.5 times slower than one on CPU 1, against
// courriel and Dovecot alike (eight fresh clients each, alternating). The
// servers are not pinned.
func benchClient(args ...string) *exec.Cmd {
	cpu := os.Getenv("COURRIEL_BENCH_CLIENT_CPU")
	if cpu == "" && runtime.NumCPU() > 1 {
		cpu = strconv.Itoa(runtime.NumCPU() - 1)
	}
	if _, err := exec.LookPath("taskset"); err != nil || cpu == "" || cpu == "any" {
		return exec.Command("python3", args...)
	}
	return exec.Command("taskset", append([]string{"-c", cpu, "python3"}, args...)...)
}

// reportBenchOps reports each operation's seconds, and its server CPU in
// seconds where it was sampled.
func reportBenchOps(b *testing.B, prefix string, secs, cpu map[string]float64) {
	for op, v := range secs {
		b.ReportMetric(v, prefix+op+"_s")
		if c, ok := cpu[op]; ok {
			b.ReportMetric(c, prefix+op+"_cpu_s")
		}
	}
}

// startBenchProfile writes a CPU profile of courriel's own run when
// COURRIEL_BENCH_CPUPROFILE is set (PATH.cold, PATH.warm): the server runs
// in this process, and the profile leaves out the corpus generation.
func startBenchProfile(tb testing.TB, run string) (stop func()) {
	p := os.Getenv("COURRIEL_BENCH_CPUPROFILE")
	if p == "" {
		return func() {}
	}
	f, err := os.Create(p + "." + run)
	if err != nil {
		tb.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
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

// cpu is the CPU of Dovecot's master, of its live children (imap,
// imap-login with its TLS, auth…) and of every child it reaped. The live
// processes' comes from schedstat, in nanoseconds: /proc/PID/stat counts
// in ticks of 10 ms, coarser than the small rows (a session's FETCH of
// 100 bodies takes a few milliseconds). Reaped children are known in
// ticks alone; none is reaped during a session's commands.
func (d *dovecotServer) cpu() time.Duration {
	master := d.cmd.Process.Pid
	reaped := procTicks(master, true) - procTicks(master, false)
	total := time.Duration(reaped)*time.Second/100 + procRunTime(master)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == master {
			continue
		}
		if procParent(pid) == master {
			total += procRunTime(pid)
		}
	}
	return total
}

// procRunTime is the time a live process's threads spent on a CPU, from
// /proc/PID/task/*/schedstat.
func procRunTime(pid int) time.Duration {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(data))
		if len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// procStatFields are the fields of /proc/PID/stat after the command name.
func procStatFields(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}

func procParent(pid int) int {
	f := procStatFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// procTicks is a process's utime+stime, with its reaped children's when
// children is set.
func procTicks(pid int, children bool) int64 {
	f := procStatFields(pid)
	if len(f) < 15 {
		return 0
	}
	idx := []int{11, 12} // utime stime
	if children {
		idx = append(idx, 13, 14) // cutime cstime
	}
	var ticks int64
	for _, i := range idx {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return ticks
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
	// Dovecot binds its own listener.
	port := testenv.FreePort(tb)
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
