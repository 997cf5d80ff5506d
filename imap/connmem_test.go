package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// connMemGoal is the most an idle IMAPS connection (logged in, INBOX
// selected, IDLE) may cost the server: heap and stacks, TLS included
// (issue 12: at most 24 KiB; one goroutine, no read or write buffer while
// idle).
const connMemGoal = 24 << 10

// TestIdleConnMemory opens many TLS connections from a child process (so
// that the client's memory is not counted), has each log in, SELECT INBOX
// and IDLE, then measures the server's heap and stacks per connection.
func TestIdleConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_CONNMEM_N")); err == nil && v > 0 {
		n = v
	}
	if per := idleConnMemory(t, n, false); per > connMemGoal && !raceEnabled {
		t.Errorf("an idle connection costs %d bytes, goal %d", per, connMemGoal)
	}
}

// TestIdleCompressedConnMemory reports what an idle connection costs once
// COMPRESS=DEFLATE is on (issue 13): DEFLATE's two windows and tables come
// on top, so it is a figure, not a goal.
func TestIdleCompressedConnMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 200 connections")
	}
	idleConnMemory(t, 200, true)
}

// idleConnMemory has n connections log in, SELECT and IDLE (after COMPRESS
// DEFLATE when compress) and returns the server's heap and stacks per
// connection.
func idleConnMemory(t *testing.T, n int, compress bool) int64 {
	e := newEnv(t, func(o *Options) {
		o.MaxConnsPerIP = n + 10
		// One user from one address n times: far above the per user+IP limit.
		o.MaxUserIPConns = n + 10
		o.IdleCheck = DefaultIdleCheck
	})
	writeMaildirMsg(t, e.maildir, "cur", "1.M1P1.test:2,S", testMessage(1, "a@example.org", "hello"))
	ms := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	// Warm up shared state (the mailbox, TLS session tickets keys) with
	// one connection so that only per-connection memory is measured.
	warm := e.login(nil)
	if _, err := warm.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	before := ms()
	pssBefore := pss()

	cmd := exec.Command(os.Args[0], "-test.run=^TestIdleConnMemoryClient$")
	cmd.Env = append(os.Environ(), "COURRIEL_CONNMEM_ADDR="+e.addr, "COURRIEL_CONNMEM_N="+strconv.Itoa(n),
		"COURRIEL_CONNMEM_COMPRESS="+strconv.FormatBool(compress))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
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
	waitFor(t, "sessions", func() bool {
		return e.srv.conns.Len() == n+1
	})
	after := ms()
	per := (int64(after) - int64(before)) / int64(n)
	t.Logf("%d idle IMAPS connections (compressed: %v): %.1f KiB heap+stack each (%d goroutines)", n, compress, float64(per)/1024, runtime.NumGoroutine())
	if pb, pa := pssBefore, pss(); pb > 0 && pa > 0 {
		// The process's proportional set size: what the kernel charges,
		// the runtime's free but unreturned pages included.
		t.Logf("PSS: %.1f KiB per connection", float64(pa-pb)/float64(n))
		// The same once the runtime's scavenger has given back the pages
		// that the 1,000 handshakes left free (it does within seconds):
		// what an idle server holds.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapIdle-m.HeapReleased < 1<<20 {
				break
			}
		}
		t.Logf("PSS once the free pages are returned: %.1f KiB per connection", float64(pss()-pb)/float64(n))
	}
	return per
}

// TestIdleConnMemoryClient is the child of TestIdleConnMemory.
func TestIdleConnMemoryClient(t *testing.T) {
	addr := os.Getenv("COURRIEL_CONNMEM_ADDR")
	if addr == "" {
		t.Skip("child process of TestIdleConnMemory")
	}
	n, _ := strconv.Atoi(os.Getenv("COURRIEL_CONNMEM_N"))
	pass := os.Getenv("COURRIEL_CONNMEM_PASS") // TestClusterProxiedConnMemory's fixture user
	if pass == "" {
		pass = "secret"
	}
	conns := make([]*tls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	fail := func(format string, args ...any) {
		fmt.Printf("FAIL "+format+"\n", args...)
		t.FailNow()
	}
	for i := 0; i < n; i++ {
		c, err := tls.Dial("tcp", addr, clientTLS())
		if err != nil {
			fail("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		expect := func(prefix string) {
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					fail("conn %d: %v", i, err)
				}
				if strings.HasPrefix(l, prefix) {
					return
				}
				if !strings.HasPrefix(l, "* ") {
					fail("conn %d: %q waiting for %q", i, l, prefix)
				}
			}
		}
		expect("* OK")
		if os.Getenv("COURRIEL_CONNMEM_COMPRESS") == "true" {
			fmt.Fprintf(c, "a LOGIN alice %s\r\nz COMPRESS DEFLATE\r\n", pass)
			expect("a OK")
			expect("z OK")
			fc := newFlateConn(c)
			br = bufio.NewReader(fc)
			fmt.Fprintf(fc, "b SELECT INBOX\r\nc IDLE\r\n")
		} else {
			fmt.Fprintf(c, "a LOGIN alice %s\r\nb SELECT INBOX\r\nc IDLE\r\n", pass)
			expect("a OK")
		}
		expect("b OK")
		expect("+ ")
		c.SetDeadline(time.Time{})
	}
	fmt.Println("READY")
	io.Copy(io.Discard, os.Stdin)
}

// pss is the test process's proportional set size in KiB (0 when
// /proc/self/smaps_rollup is not readable).
func pss() int64 {
	data, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}
