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
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sortThreadBenchScript times issue 13's SORT and THREAD figures with
// imaplib, courriel and Dovecot one connection each, the same command on
// one then the other, back to back, several rounds. The first round
// ("first") fills the servers' caches; the next ones are warm. Beside the
// wall time it reads the server's CPU from /proc (courriel: every thread
// of the benchmark process, which serves it; Dovecot: its imap process for
// this connection). It prints "server op round seconds cpu_seconds" and,
// for the first round, "answer server op sha256", so that the two answers
// can be compared.
const sortThreadBenchScript = `
import glob, hashlib, imaplib, os, ssl, sys, time
host, cport, dport, cpid, dmaster, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ctx = ssl._create_unverified_context()
def cpu_ns(pid):
    t = 0
    for f in glob.glob('/proc/%d/task/*/schedstat' % pid):
        try:
            t += int(open(f).read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return t
def dovecot_imap(master):
    best = None
    for d in glob.glob('/proc/[0-9]*'):
        try:
            st = open(d + '/stat').read()
        except OSError:
            continue
        comm = st[st.index('(')+1:st.rindex(')')]
        f = st[st.rindex(')')+2:].split()
        if comm == 'imap' and int(f[1]) == master:
            start = int(f[19])
            if best is None or start > best[0]:
                best = (start, int(d[6:]))
    if best is None: raise SystemExit('no dovecot imap process')
    return best[1]
def conn(port, user, pw):
    c = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
    c.login(user, pw)
    s = time.perf_counter()
    typ, d = c.select('INBOX')
    return c, int(d[0]), time.perf_counter() - s
cc, cn, cs = conn(cport, 'alice', 'secret')
dc, dn, ds = conn(dport, 'bench', 'demo')
if cn != dn: raise SystemExit('message counts differ: %d %d' % (cn, dn))
print('courriel select 0 %.4f 0' % cs)
print('dovecot select 0 %.4f 0' % ds)
servers = [('courriel', cc, cpid), ('dovecot', dc, dovecot_imap(dmaster))]
ops = [('sort_arrival', 'SORT', ['(ARRIVAL)', 'UTF-8', 'ALL']),
       ('sort_date', 'SORT', ['(DATE)', 'UTF-8', 'ALL']),
       ('sort_from', 'SORT', ['(FROM)', 'UTF-8', 'ALL']),
       ('thread_references', 'THREAD', ['REFERENCES', 'UTF-8', 'ALL'])]
for rnd in range(rounds):
    for op, verb, args in ops:
        for name, c, pid in servers:
            c0 = cpu_ns(pid)
            s = time.perf_counter()
            typ, d = c.uid(verb, *args)
            e = time.perf_counter() - s
            cpu = (cpu_ns(pid) - c0) / 1e9
            if typ != 'OK': raise SystemExit('%s %s: %s %r' % (name, op, typ, d))
            ans = b' '.join(x for x in d if isinstance(x, bytes))
            nums = len(ans.replace(b'(', b' ').replace(b')', b' ').split())
            if nums != cn: raise SystemExit('%s %s: %d numbers for %d messages' % (name, op, nums, cn))
            if rnd == 0:
                print('answer %s %s %s' % (name, op, hashlib.sha256(ans).hexdigest()[:16]))
            print('%s %s %d %.4f %.4f' % (name, op, rnd, e, cpu), flush=True)
cc.logout()
dc.logout()
`

// BenchmarkSortThreadDovecot measures warm UID SORT (DATE), UID SORT
// (FROM) and UID THREAD REFERENCES on the generated folder
// (COURRIEL_BENCH_N messages, default 20,000), courriel beside Debian's
// Dovecot 2.3 in one run: a first round that fills both caches, courriel
// restarted (its index read back from disk, as Dovecot's is by every new
// imap process), then COURRIEL_BENCH_ROUNDS rounds (default 6) in new
// sessions. It prints, per server and command, the first round ever, the
// first in the new session and the later rounds' min, median and max, in
// seconds of wall time and of the server's CPU.
// It needs root (Dovecot drops to nobody), dovecot and python3.
func BenchmarkSortThreadDovecot(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("Dovecot needs root")
	}
	for _, tool := range []string{"dovecot", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s not installed", tool)
		}
	}
	n := benchN()
	rounds := 6
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_BENCH_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	script := filepath.Join(b.TempDir(), "sortthread.py")
	os.WriteFile(script, []byte(sortThreadBenchScript), 0o644)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		genMailbox(b, e.maildir, n)
		dv := startDovecot(b, n)
		b.StartTimer()
		first := runSortThreadScript(b, script, e.addr, dv, 1)
		e.restart()
		warm := runSortThreadScript(b, script, e.addr, dv, rounds)
		b.StopTimer()
		for _, a := range first.answers {
			if a[1] != "courriel" {
				continue
			}
			for _, d := range first.answers {
				if d[1] == "dovecot" && d[2] == a[2] {
					same := "same answer"
					if d[3] != a[3] {
						same = "ANSWERS DIFFER"
					}
					b.Logf("%s: %s (%s %s)", a[2], same, a[3], d[3])
				}
			}
		}
		var table strings.Builder
		fmt.Fprintf(&table, "n=%d; seconds of wall time [server cpu]; cold: the first command ever (files read);\n"+
			"new session: the first after courriel's restart (index read from disk; Dovecot: a new imap process);\n"+
			"repeated: the %d rounds after it in that session, min–median–max\n", n, rounds-1)
		fmt.Fprintf(&table, "%-18s %-9s %-15s %-15s %-21s %s\n", "command", "server", "cold", "new session", "repeated wall", "repeated cpu")
		for _, op := range []string{"select", "sort_arrival", "sort_date", "sort_from", "thread_references"} {
			for _, srv := range []string{"courriel", "dovecot"} {
				k := srv + " " + op
				f := first.times[k]
				w, c := slices.Clone(warm.times[k]), slices.Clone(warm.cpu[k])
				if len(w) == 0 || len(f) == 0 {
					b.Fatalf("no figures for %s", k)
				}
				newWall, newCPU := w[0], c[0]
				if len(w) > 1 {
					w, c = w[1:], c[1:]
				}
				slices.Sort(w)
				slices.Sort(c)
				fmt.Fprintf(&table, "%-18s %-9s %-15s %-15s %-21s %s\n", op, srv,
					fmt.Sprintf("%.3f [%.3f]", f[0], first.cpu[k][0]),
					fmt.Sprintf("%.3f [%.3f]", newWall, newCPU),
					fmt.Sprintf("%.3f–%.3f–%.3f", w[0], w[len(w)/2], w[len(w)-1]),
					fmt.Sprintf("%.3f–%.3f–%.3f", c[0], c[len(c)/2], c[len(c)-1]))
				if op != "select" {
					b.ReportMetric(w[len(w)/2], srv+"_"+op+"_s")
					b.ReportMetric(c[len(c)/2], srv+"_"+op+"_cpu_s")
					b.ReportMetric(newWall, srv+"_"+op+"_newsession_s")
				}
			}
		}
		fmt.Print(table.String()) // the figures, whatever -v says
		e.srv.Close()
	}
}

type sortThreadFigures struct {
	times, cpu map[string][]float64 // "server op" → one value per round
	answers    [][]string           // "answer", server, op, hash
}

func runSortThreadScript(tb testing.TB, script, addr string, dv *dovecotServer, rounds int) sortThreadFigures {
	host, cport, _ := net.SplitHostPort(addr)
	_, dport, _ := net.SplitHostPort(dv.addr)
	out, err := exec.Command("python3", script, host, cport, dport, strconv.Itoa(os.Getpid()),
		strconv.Itoa(dv.cmd.Process.Pid), strconv.Itoa(rounds)).CombinedOutput()
	if err != nil {
		tb.Fatalf("imaplib: %v\n%s", err, out)
	}
	fig := sortThreadFigures{times: map[string][]float64{}, cpu: map[string][]float64{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "answer":
			fig.answers = append(fig.answers, f)
		case len(f) == 5:
			wall, _ := strconv.ParseFloat(f[3], 64)
			cpu, _ := strconv.ParseFloat(f[4], 64)
			k := f[0] + " " + f[1]
			fig.times[k] = append(fig.times[k], wall)
			fig.cpu[k] = append(fig.cpu[k], cpu)
		}
	}
	return fig
}

// BenchmarkSortThreadWarm runs one warm command per iteration over a
// connection to courriel on the generated folder, for profiles
// (-cpuprofile) of what BenchmarkSortThreadDovecot measures.
func BenchmarkSortThreadWarm(b *testing.B) {
	n := benchN()
	e := newEnv(b)
	genMailbox(b, e.maildir, n)
	c, err := tls.Dial("tcp", e.addr, clientTLS())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReaderSize(c, 1<<20)
	cmd := func(line string) {
		if _, err := fmt.Fprintf(c, "t %s\r\n", line); err != nil {
			b.Fatal(err)
		}
		for range 1000 {
			l, err := br.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(l, "t ") {
				if !strings.HasPrefix(l, "t OK") {
					b.Fatalf("%s: %s", line, l)
				}
				return
			}
		}
		b.Fatalf("%s: no tagged reply", line)
	}
	br.ReadString('\n') // greeting
	cmd("LOGIN alice secret")
	cmd("SELECT INBOX")
	for _, c := range []struct{ name, cmd string }{
		{"sort_arrival", "UID SORT (ARRIVAL) UTF-8 ALL"},
		{"sort_date", "UID SORT (DATE) UTF-8 ALL"},
		{"sort_from", "UID SORT (FROM) UTF-8 ALL"},
		{"thread_references", "UID THREAD REFERENCES UTF-8 ALL"},
	} {
		cmd(c.cmd) // the first fills the index
		b.Run(c.name, func(b *testing.B) {
			cpu0 := selfCPU() // the server, and this client reading the answer
			for b.Loop() {
				cmd(c.cmd)
			}
			b.ReportMetric(float64((selfCPU()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
