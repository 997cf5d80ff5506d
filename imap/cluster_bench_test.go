package imap

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/directory"
	"courriel/loginguard"
)

// The figures of issue 18 for IMAP through a front node, each against
// the same server reached directly:
//
//	go test ./imap -run '^$' -bench ClusterProxy -benchtime 1x
//	go test ./imap -run TestClusterProxiedConnMemory -v
//
// BenchmarkClusterProxyStress runs Dovecot's imaptest (stress: random
// commands of 10 clients, logins and logouts included) for
// COURRIEL_IMAPTEST_SECS seconds (default 10) at b directly, then at a;
// BenchmarkClusterProxyLoginSelect times a fresh IMAPS connection's
// LOGIN and SELECT both ways.

func imaptestBin(tb testing.TB) string {
	p := os.Getenv("IMAPTEST_PREFIX")
	if p == "" {
		p = "/opt/imaptest"
	}
	bin := filepath.Join(p, "bin", "imaptest")
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("imaptest is required in CI: %v", err)
		}
		tb.Skipf("imaptest not available: %v", err)
	}
	return bin
}

// writeMbox writes n small messages in mbox format for imaptest's APPENDs.
func writeMbox(tb testing.TB, n int) string {
	tb.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "From sender%d@example.org Mon Jan  1 00:00:00 2024\n", i)
		fmt.Fprintf(&b, "From: Sender %d <sender%d@example.org>\nTo: alice@xoyize.xyz\nSubject: message %d of the stress corpus\n", i, i, i)
		fmt.Fprintf(&b, "Message-ID: <%d@stress.example.org>\nDate: Mon, 1 Jan 2024 00:00:%02d +0000\n\n", i, i%60)
		for l := 0; l < 10+i%40; l++ {
			fmt.Fprintf(&b, "line %d of message %d, some words to make it look like mail.\n", l, i)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(tb.TempDir(), "stress.mbox")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// imaptestRate runs imaptest's stress at addr (implicit TLS) and returns
// the commands per second of its totals.
func imaptestRate(tb testing.TB, bin, addr, mbox, pass string, secs int) (float64, string) {
	tb.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+60)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "host="+host, "port="+port, "user=alice", "pass="+pass,
		"mbox="+mbox, "clients=10", "msgs=50", "secs="+strconv.Itoa(secs), "ssl=any-cert", "seed=1", "logout=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("imaptest at %s: %v\n%s", addr, err, out)
	}
	lines := strings.Split(string(out), "\n")
	// After "Totals:" come the header, the probabilities (lines with
	// '%') and the counts.
	for i, l := range lines {
		if strings.TrimSpace(l) != "Totals:" {
			continue
		}
		for j := i + 2; j < len(lines); j++ {
			if strings.Contains(lines[j], "%") || strings.TrimSpace(lines[j]) == "" {
				continue
			}
			total := 0
			for _, f := range strings.Fields(lines[j]) {
				n, err := strconv.Atoi(f)
				if err != nil {
					tb.Fatalf("imaptest totals %q", lines[j])
				}
				total += n
			}
			return float64(total) / float64(secs), lines[i+1] + "\n" + lines[j]
		}
	}
	tb.Fatalf("imaptest printed no totals:\n%s", out)
	return 0, ""
}

func benchPair(b *testing.B) *clusterPair {
	return newClusterPair(b, clusterTune{
		mutateA: func(o *Options) { o.MaxUserIPConns = 1000; o.Logger = slog.New(slog.DiscardHandler) },
		mutateB: func(o *Options) { o.MaxUserIPConns = 1000; o.Logger = slog.New(slog.DiscardHandler) },
	})
}

func BenchmarkClusterProxyStress(b *testing.B) {
	bin := imaptestBin(b)
	secs := 10
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_IMAPTEST_SECS")); err == nil && v > 0 {
		secs = v
	}
	mbox := writeMbox(b, 200)
	for i := 0; i < b.N; i++ {
		p := benchPair(b)
		// Alternated, twice each, so that a neighbour's burst on the
		// shared cores weighs on both.
		var direct, proxied, addedCPU []float64
		for round := 0; round < 3; round++ {
			// Both nodes are this process: its CPU per command is b's
			// directly, a's and b's through a.
			cpu0 := selfCPU()
			d, dt := imaptestRate(b, bin, p.b.imaps.Addr().String(), mbox, p.alice.Password, secs)
			cpu1 := selfCPU()
			pr, pt := imaptestRate(b, bin, p.a.imaps.Addr().String(), mbox, p.alice.Password, secs)
			cpu2 := selfCPU()
			dCPU := float64((cpu1 - cpu0).Microseconds()) / (d * float64(secs))
			pCPU := float64((cpu2 - cpu1).Microseconds()) / (pr * float64(secs))
			b.Logf("round %d: direct %.0f commands/s (%.0f µs CPU each), proxied %.0f (%.0f µs)\ndirect:\n%s\nproxied:\n%s",
				round+1, d, dCPU, pr, pCPU, dt, pt)
			direct, proxied, addedCPU = append(direct, d), append(proxied, pr), append(addedCPU, pCPU-dCPU)
		}
		slices.Sort(addedCPU)
		b.ReportMetric(addedCPU[1], "front_cpu_µs/cmd")
		d, pr := slices.Max(direct), slices.Max(proxied)
		b.ReportMetric(d, "direct_cmds/s")
		b.ReportMetric(pr, "proxied_cmds/s")
		b.ReportMetric(100*pr/d, "proxied_%_of_direct")
		// 10 clients each waiting for its reply: the time per command of
		// one client is 10/rate.
		b.ReportMetric((10/pr-10/d)*1000, "added_ms/cmd")
	}
}

// loginSelect opens an IMAPS connection to addr, logs in, selects INBOX
// and logs out; it returns the time from the dial to SELECT's OK.
func loginSelect(tb testing.TB, addr, pass string) time.Duration {
	start := time.Now()
	c, err := tls.Dial("tcp", addr, clientTLS())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	expect := func(prefix string) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				tb.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
			if !strings.HasPrefix(l, "* ") {
				tb.Fatalf("%q waiting for %q", l, prefix)
			}
		}
	}
	expect("* OK")
	fmt.Fprintf(c, "a LOGIN alice %s\r\n", pass)
	expect("a OK")
	fmt.Fprintf(c, "b SELECT INBOX\r\n")
	expect("b OK")
	d := time.Since(start)
	fmt.Fprintf(c, "c LOGOUT\r\n")
	expect("c OK")
	return d
}

func BenchmarkClusterProxyLoginSelect(b *testing.B) {
	p := benchPair(b)
	for i := 0; i < 20; i++ {
		p.deliver(b, "message "+strconv.Itoa(i))
	}
	const n = 50
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	for i := 0; i < b.N; i++ {
		var direct, proxied []time.Duration
		for j := 0; j < n; j++ {
			direct = append(direct, loginSelect(b, p.b.imaps.Addr().String(), p.alice.Password))
			proxied = append(proxied, loginSelect(b, p.a.imaps.Addr().String(), p.alice.Password))
		}
		d, pr := median(direct), median(proxied)
		b.ReportMetric(float64(d.Microseconds())/1000, "direct_ms")
		b.ReportMetric(float64(pr.Microseconds())/1000, "proxied_ms")
		b.ReportMetric(float64((pr-d).Microseconds())/1000, "added_ms")
	}
}

// commandLatency logs in at addr, selects INBOX and returns the median
// time of n sequential commands (FETCH of 20 messages' flags and sizes,
// NOOP, STATUS in turn), each waiting for its reply.
func commandLatency(tb testing.TB, addr, pass string, n int) time.Duration {
	c, err := tls.Dial("tcp", addr, clientTLS())
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
	br := bufio.NewReader(c)
	expect := func(tag string) {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				tb.Fatalf("waiting for %s: %v", tag, err)
			}
			if strings.HasPrefix(l, tag+" OK") {
				return
			}
			if !strings.HasPrefix(l, "* ") {
				tb.Fatalf("%q waiting for %s", l, tag)
			}
		}
	}
	br.ReadString('\n')
	fmt.Fprintf(c, "a LOGIN alice %s\r\nb SELECT INBOX\r\n", pass)
	expect("a")
	expect("b")
	cmds := []string{"UID FETCH 1:20 (FLAGS RFC822.SIZE)", "NOOP", "STATUS INBOX (MESSAGES UNSEEN)"}
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		tag := "c" + strconv.Itoa(i)
		start := time.Now()
		fmt.Fprintf(c, "%s %s\r\n", tag, cmds[i%len(cmds)])
		expect(tag)
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// BenchmarkClusterProxyCommand is the time one client waits for a
// command's reply, through the front node and directly (medians of 900,
// alternated in blocks of 300), and the CPU the front adds per command.
func BenchmarkClusterProxyCommand(b *testing.B) {
	p := benchPair(b)
	for i := 0; i < 20; i++ {
		p.deliver(b, "message "+strconv.Itoa(i))
	}
	for i := 0; i < b.N; i++ {
		// Warm: the index is built, the directory's caches are filled.
		commandLatency(b, p.b.imaps.Addr().String(), p.alice.Password, 30)
		commandLatency(b, p.a.imaps.Addr().String(), p.alice.Password, 30)
		var direct, proxied []time.Duration
		var directCPU, proxiedCPU time.Duration
		for j := 0; j < 3; j++ {
			c0 := selfCPU()
			direct = append(direct, commandLatency(b, p.b.imaps.Addr().String(), p.alice.Password, 300))
			c1 := selfCPU()
			proxied = append(proxied, commandLatency(b, p.a.imaps.Addr().String(), p.alice.Password, 300))
			directCPU, proxiedCPU = directCPU+c1-c0, proxiedCPU+selfCPU()-c1
		}
		slices.Sort(direct)
		slices.Sort(proxied)
		d, pr := direct[1], proxied[1]
		// The login is in both; 900 commands each way.
		b.ReportMetric(float64((proxiedCPU-directCPU).Microseconds())/900, "front_cpu_µs/cmd")
		b.ReportMetric(float64(d.Microseconds())/1000, "direct_ms/cmd")
		b.ReportMetric(float64(pr.Microseconds())/1000, "proxied_ms/cmd")
		b.ReportMetric(float64((pr-d).Microseconds())/1000, "added_ms/cmd")
	}
}

// backNodeEnv is what the parent tells TestClusterBackNode.
type backNodeEnv struct {
	URL, CAFile, ReaderDN, ReaderPassword, MailBase, Base, Secret string
}

// TestClusterProxiedConnMemory measures what an idle proxied IMAPS
// connection (logged in through the front, INBOX selected, IDLE) costs
// the front node: heap and stacks per connection, TLS to the client and
// the connection to the home node included. The home node runs in a
// child process, the clients in another, so that only the front's memory
// is counted. A figure, beside TestIdleConnMemory's direct one.
func TestClusterProxiedConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 200 proxied connections")
	}
	n := 200
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_CONNMEM_N")); err == nil && v > 0 {
		n = v
	}
	if os.Getenv("COURRIEL_CONNMEM_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 64
	}
	var child *exec.Cmd
	var childIn io.WriteCloser
	p := newClusterPair(t, clusterTune{
		mutateA: func(o *Options) {
			o.MaxUserIPConns, o.MaxConnsPerIP = n+10, n+10
			o.Logger = slog.New(slog.DiscardHandler)
		},
		external: func(p *clusterPair) string {
			env, _ := json.Marshal(backNodeEnv{URL: p.slapd.URL(), CAFile: p.slapd.CAFile(), ReaderDN: p.slapd.ReaderDN(),
				ReaderPassword: p.slapd.ReaderPassword(), MailBase: p.slapd.MailBase(), Base: p.b.base, Secret: testClusterSecret})
			child = exec.Command(os.Args[0], "-test.run=^TestClusterBackNode$")
			child.Env = append(os.Environ(), "COURRIEL_CLUSTER_BACK="+string(env), "COURRIEL_CONNMEM_N="+strconv.Itoa(n))
			childIn, _ = child.StdinPipe()
			out, _ := child.StdoutPipe()
			child.Stderr = os.Stderr
			if err := child.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { childIn.Close(); child.Wait() })
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
					go io.Copy(io.Discard, out)
					return a
				}
			}
			t.Fatal("the back node did not start")
			return ""
		},
	})
	var stack0, stack1 uint64
	ms := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		stack0, stack1 = stack1, m.StackInuse
		return m.HeapInuse + m.StackInuse
	}
	// One proxied session first: shared state (TLS keys, the directory's
	// connections, the pools) is not per connection.
	loginSelect(t, p.a.imaps.Addr().String(), p.alice.Password)
	before := ms()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnMemoryClient$")
	cmd.Env = append(os.Environ(), "COURRIEL_CONNMEM_ADDR="+p.a.imaps.Addr().String(), "COURRIEL_CONNMEM_N="+strconv.Itoa(n),
		"COURRIEL_CONNMEM_PASS="+p.alice.Password)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "READY") || strings.HasPrefix(l, "FAIL") {
				ready <- l
				break
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-ready:
		if l != "READY" {
			t.Fatalf("client: %s", l)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("client did not get its connections idling")
	}
	waitFor(t, "proxied sessions", func() bool {
		return p.a.srv.conns.Len() == n
	})
	per := (int64(ms()) - int64(before)) / int64(n)
	if f := os.Getenv("COURRIEL_CONNMEM_HEAPPROFILE"); f != "" {
		if out, err := os.Create(f); err == nil {
			pprof.Lookup("heap").WriteTo(out, 0)
			out.Close()
		}
	}
	t.Logf("%d idle proxied IMAPS connections at the front node: %d KiB heap+stack each, %d KiB of it stacks (%d goroutines)",
		n, per>>10, (int64(stack1)-int64(stack0))/int64(n)>>10, runtime.NumGoroutine())
	assertEmptyDir(t, p.a.base)
}

// TestClusterBackNode is the home node of TestClusterProxiedConnMemory,
// in a process of its own.
func TestClusterBackNode(t *testing.T) {
	raw := os.Getenv("COURRIEL_CLUSTER_BACK")
	if raw == "" {
		t.Skip("child process of TestClusterProxiedConnMemory")
	}
	var e backNodeEnv
	if err := json.Unmarshal([]byte(raw), &e); err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(os.Getenv("COURRIEL_CONNMEM_N"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.New(cluster.Options{Self: "b", Secret: []byte(e.Secret), Nodes: map[string]cluster.Node{
		"a": {IMAP: "127.0.0.1:1"}, "b": {IMAP: ln.Addr().String()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.New(directory.Options{
		URLs: []string{e.URL}, StartTLS: true, CAFile: e.CAFile, RequireCert: true,
		BindDN: e.ReaderDN, BindPassword: e.ReaderPassword, BaseDN: e.MailBase,
		MailboxDomains: []string{"xoyize.xyz"}, AuthBindDN: "uid=%u," + e.MailBase,
		DialTimeout: 2 * time.Second, RequestTimeout: 5 * time.Second, HomeAttribute: "mailHost",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	srv, err := NewServer(Options{Auth: d, Logger: slog.New(slog.DiscardHandler), AllowedBase: e.Base,
		Chown: os.Geteuid() == 0, Cluster: c, MaxUserIPConns: n + 10, MaxConnsPerIP: n + 10,
		Guard: loginguard.New(loginguard.Options{BaseDelay: -1, NetLimit: -1})})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln, false)
	defer srv.Close()
	fmt.Println("ADDR " + ln.Addr().String())
	io.Copy(io.Discard, os.Stdin)
}
