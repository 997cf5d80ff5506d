package integration

import (
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// BenchmarkBesidePostfix measures courriel and Postfix 3.7 in the seed's
// setup (internal/testenv.StartPostfix: the same slapd, the same maildirs,
// the same disk) in one run, with Postfix's own load generator smtp-source:
// 4 KiB messages to test0@hosted-domain.com (an alias resolved through the
// directory), one connection per message, the way most MTAs arrive.
//
//	go test -run XXX -bench BesidePostfix -benchtime 1x ./integration/
//
// For each session count it runs COURRIEL_BENCH_ROUNDS (default 3)
// alternating rounds and reports medians, with the lowest and highest
// rates and per-round ratios (-min, -max): per server, the rate at which
// smtp-source got its 250s (accepted/s) and the rate at which the messages
// were in the maildir (delivered/s: the same for courriel, which answers 250
// only once the copy is on disk; Postfix delivers after its 250), the
// server's CPU per message, and courriel's ratio to Postfix. "latency" runs
// one connection at a time with a Go client and reports p50/p99 of a whole
// transaction (connect to the reply to QUIT). b.N is ignored: the message
// counts are fixed so that each figure covers the same work.
func BenchmarkBesidePostfix(b *testing.B) {
	source := requireTool(b, "smtp-source")
	disk := testenv.PublicBenchDir(b)
	s := startServer(b, withProduction(), withVmailIn(disk), withHTTP())
	pf := testenv.StartPostfix(b, s.slapd)
	delivered := func() int { return len(s.maildirFiles(b, "xomail", "new")) }
	type benched struct {
		name      string
		addr      string
		cpu       func() time.Duration
		delivered func() int
		// queued, when set, counts what is accepted and not yet
		// delivered, more cheaply than a listing of the maildir (which
		// holds tens of thousands of files by the last round, and whose
		// listing every few milliseconds would take a processor from the
		// server being measured).
		queued func() int
	}
	courrielCPU := func(s *server) func() time.Duration {
		return func() time.Duration { c, _ := procStats(s.cmd.Process.Pid); return c }
	}
	servers := []benched{
		{"courriel", s.SMTP, courrielCPU(s), delivered, nil},
		{"postfix", pf.Addr, pf.CPU, delivered, pf.Queued},
	}
	// The machine's ceiling: a second courriel whose maildirs are in
	// memory (tmpfs: fsync and syncfs return at once), so that what it
	// reaches is the dialogue's cost alone, SMTP and the load generator on
	// these cores, with nothing made durable. Its ratio to the same
	// Postfix bounds what any durable protocol can reach here.
	if mem, ok := testenv.InMemoryDir(b); ok {
		m := startServer(b, withProduction(), withVmailIn(mem))
		servers = append(servers, benched{"courriel-memory", m.SMTP, courrielCPU(m),
			func() int { return len(m.maildirFiles(b, "xomail", "new")) }, nil})
	}
	// Warm them: directory caches, Postfix's daemons, courriel's pool.
	for _, srv := range servers {
		runSource(b, source, srv.addr, 1, 20)
	}
	for _, srv := range servers {
		if srv.name != "postfix" { // Postfix shares courriel's maildir
			waitDelivered(b, srv.delivered, map[string]int{"courriel": 40, "courriel-memory": 20}[srv.name])
		}
	}

	rounds := envInt("COURRIEL_BENCH_ROUNDS", 3)
	for _, load := range []struct{ sessions, messages int }{{16, 3000}, {20, 3000}, {1, 600}} {
		b.Run(fmt.Sprintf("sessions=%d", load.sessions), func(b *testing.B) {
			// Alternating rounds, who goes first turning, so that every
			// server meets the same neighbours; each figure is the median
			// of its rounds, and each round's ratio is courriel's rate over
			// Postfix's in that round.
			figures := map[string][]float64{}
			for round := range rounds {
				rates := map[string]float64{}
				for i := range servers {
					srv := servers[(i+round)%len(servers)]
					before := srv.delivered()
					cpu0 := srv.cpu()
					busy0 := machineBusy()
					start := time.Now()
					sourceCPU := runSource(b, source, srv.addr, load.sessions, load.messages)
					accepted := time.Since(start)
					if srv.queued != nil {
						waitDelivered(b, func() int { return load.messages - srv.queued() }, load.messages)
					}
					waitDelivered(b, srv.delivered, before+load.messages)
					done := time.Since(start)
					cpu := srv.cpu() - cpu0
					perMsg := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(load.messages) }
					rates[srv.name] = float64(load.messages) / done.Seconds()
					add := func(name string, v float64) { figures[srv.name+name] = append(figures[srv.name+name], v) }
					add("-accepted/s", float64(load.messages)/accepted.Seconds())
					add("-delivered/s", rates[srv.name])
					add("-cpu-ms/msg", perMsg(cpu))
					// The load generator and everything else on the two
					// cores: when idle is near 0, the figure is the
					// machine's, not the server's.
					add("-source-cpu-ms/msg", perMsg(sourceCPU))
					add("-machine-idle-%", 100*(1-float64(machineBusy()-busy0)/float64(2*done)))
				}
				figures["ratio"] = append(figures["ratio"], rates["courriel"]/rates["postfix"])
				if r, ok := rates["courriel-memory"]; ok {
					figures["memory-ratio"] = append(figures["memory-ratio"], r/rates["postfix"])
				}
			}
			for name, vs := range figures {
				slices.Sort(vs)
				b.ReportMetric(vs[len(vs)/2], name)
				if strings.HasSuffix(name, "ratio") || strings.HasSuffix(name, "delivered/s") {
					b.ReportMetric(vs[0], name+"-min")
					b.ReportMetric(vs[len(vs)-1], name+"-max")
				}
			}
			// The disk's floor for one copy per message with these many
			// writers, each for itself: create, write, fsync, rename, fsync
			// the directory.
			b.ReportMetric(rawFsyncLoop(b, filepath.Join(disk, fmt.Sprintf("rawloop%d", load.sessions)), 600, load.sessions), "raw-fsync-loop/s")
		})
	}
	b.Run("latency", func(b *testing.B) {
		body := "From: bench@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: latency\r\n\r\n" +
			strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
		report := func(name string, lat []time.Duration) {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, name+"-p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, name+"-p99-ms")
		}
		// Beside each courriel transaction, in turn, so that all three see
		// the same neighbours: the disk's share on its own (one durable
		// write: create, 4 KiB, fsync, rename, fsync the directory) and
		// the dialogue's (connect, EHLO, QUIT: round trips and the
		// scheduler, nothing stored).
		raw := newRawWriter(b, filepath.Join(disk, "rawlatency"))
		var rawLat, dialogue []time.Duration
		for _, srv := range servers {
			lat := make([]time.Duration, 0, 400)
			for range 400 {
				t0 := time.Now()
				if err := sendBench(srv.addr, body, nil); err != nil {
					b.Fatalf("%s: %v", srv.name, err)
				}
				lat = append(lat, time.Since(t0))
				if srv.name == "courriel" {
					rawLat = append(rawLat, raw.write(b))
					dialogue = append(dialogue, ehloQuit(b, srv.addr))
				}
			}
			report(srv.name, lat)
		}
		report("raw-fsync", rawLat)
		report("courriel-ehlo-quit", dialogue)
	})
}

// ehloQuit times a connection that says EHLO and QUIT.
func ehloQuit(b *testing.B, addr string) time.Duration {
	b.Helper()
	t0 := time.Now()
	c, err := textproto.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, _, err := c.ReadResponse(220); err != nil {
		b.Fatal(err)
	}
	for _, cmd := range []struct {
		line string
		code int
	}{{"EHLO bench.example", 250}, {"QUIT", 221}} {
		if err := c.PrintfLine("%s", cmd.line); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadResponse(cmd.code); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0)
}

// rawWriter makes durable writes of 4 KiB into a maildir-like dir, the
// way the fsync floor is measured everywhere here.
type rawWriter struct {
	dir  string
	data []byte
	n    int
}

func newRawWriter(b *testing.B, dir string) *rawWriter {
	b.Helper()
	for _, sub := range []string{"tmp", "new"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	return &rawWriter{dir: dir, data: make([]byte, 4096)}
}

// write makes one durable write (tmp/, fsync, rename into new/, fsync
// new/) and returns how long it took.
func (w *rawWriter) write(b *testing.B) time.Duration {
	b.Helper()
	w.n++
	t0 := time.Now()
	tmp, dst := filepath.Join(w.dir, "tmp", strconv.Itoa(w.n)), filepath.Join(w.dir, "new", strconv.Itoa(w.n))
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	_, werr := f.Write(w.data)
	serr := f.Sync()
	f.Close()
	rerr := os.Rename(tmp, dst)
	d, err := os.Open(filepath.Join(w.dir, "new"))
	if err != nil {
		b.Fatal(err)
	}
	derr := d.Sync()
	d.Close()
	if err := errors.Join(werr, serr, rerr, derr); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

// runSource runs smtp-source: messages of 4 KiB over sessions concurrent
// connections, one connection per message. It returns the CPU smtp-source
// used.
func runSource(b *testing.B, source, addr string, sessions, messages int) time.Duration {
	b.Helper()
	cmd := exec.Command(source, "-s", strconv.Itoa(sessions), "-m", strconv.Itoa(messages), "-l", "4096",
		"-f", "bench@example.net", "-t", "test0@hosted-domain.com", addr)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		// smtp-source is silent when every message got its 250.
		b.Fatalf("smtp-source against %s: %v\n%s", addr, err, out)
	}
	return cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// waitDelivered waits (at most two minutes) until the maildir holds want files.
func waitDelivered(b *testing.B, count func() int, want int) {
	b.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for count() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d messages in the maildir after 2 minutes, want %d", count(), want)
		}
		time.Sleep(10 * time.Millisecond) // each look costs the measured server a little
	}
}
