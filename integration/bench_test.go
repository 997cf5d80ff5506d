package integration

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// procStats reads a process's CPU time (user+system) and peak RSS.
func procStats(pid int) (cpu time.Duration, peakRSSKiB int64) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// Fields after the command name (which may contain spaces).
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu = time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			peakRSSKiB, _ = strconv.ParseInt(strings.Fields(l)[1], 10, 64)
		}
	}
	return cpu, peakRSSKiB
}

// rawFsyncLoop is the physical limit: write + fsync + rename + dir fsync.
func rawFsyncLoop(b *testing.B, dir string, total, workers int) float64 {
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	os.MkdirAll(filepath.Join(dir, "new"), 0o700)
	data := make([]byte, 4096)
	rand.Read(data)
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				n := next.Add(1)
				if n > int64(total) {
					return
				}
				name := strconv.FormatInt(n, 10)
				f, err := os.OpenFile(filepath.Join(dir, "tmp", name), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
				if err != nil {
					b.Error(err)
					return
				}
				f.Write(data)
				f.Sync()
				f.Close()
				os.Rename(filepath.Join(dir, "tmp", name), filepath.Join(dir, "new", name))
				d, _ := os.Open(filepath.Join(dir, "new"))
				d.Sync()
				d.Close()
			}
		})
	}
	wg.Wait()
	return float64(total) / time.Since(start).Seconds()
}

// BenchmarkSMTPDelivery measures durable deliveries end to end: the built
// binary, real slapd, 4 KiB messages over SMTP into a maildir, with 1 and 20
// concurrent sessions, beside a raw fsync loop on the same disk. Each op is
// one message; it reports msgs/s, p50/p99 transaction latency (MAIL to the
// 250 after the final dot), server CPU per message, the whole machine's CPU
// per message (server, client, slapd and kernel threads: everything shares
// the two cores), the server's peak RSS and the LDAP searches it sent per
// message (its /metrics; 0 with a warm cache).
//
// The client pipelines MAIL, RCPT and DATA (RFC 2920) as Postfix's smtp(8)
// and other MTAs do when PIPELINING is offered: two round trips a message.
// Maildirs and the raw loop live side by side in a testenv.BenchDir (see
// there why), so that both pay what their block group costs.
//
//	go test -run XXX -bench SMTPDelivery -benchtime 4000x ./integration/
func BenchmarkSMTPDelivery(b *testing.B) {
	for _, sessions := range []int{1, 20} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			disk := testenv.BenchDir(b)
			s := startServer(b, withProduction(), withVmailIn(disk), withHTTP())
			body := "From: bench@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: bench\r\n\r\n" +
				strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
			// Warm the directory cache and the connection pool.
			if err := sendBench(s.SMTP, body, nil); err != nil {
				b.Fatal(err)
			}
			cpu0, _ := procStats(s.cmd.Process.Pid)
			busy0 := machineBusy()
			searches0 := s.metric(b, "courriel_ldap_searches_total")
			var next atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range sessions {
				wg.Go(func() {
					c, err := dialPipelined(s.SMTP)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.close()
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						t0 := time.Now()
						if err := c.send("bench@example.net", "test0@hosted-domain.com", body); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			busy1 := machineBusy()
			cpu1, peak := procStats(s.cmd.Process.Pid)
			searches := s.metric(b, "courriel_ldap_searches_total") - searches0
			slices.Sort(lat)
			if len(lat) == 0 {
				b.Fatal("nothing sent")
			}
			if got := len(s.maildirFiles(b, "xomail", "new")); got != len(lat)+1 {
				b.Fatalf("%d files in new/ after %d acknowledged messages", got, len(lat)+1)
			}
			rate := float64(len(lat)) / elapsed.Seconds()
			raw := rawFsyncLoop(b, filepath.Join(s.vmail, "rawloop"), max(200, b.N), sessions) // beside the maildirs: same block group
			b.ReportMetric(rate, "msgs/s")
			b.ReportMetric(raw, "raw-fsync-loop/s")
			b.ReportMetric(rate/raw, "ratio-to-raw")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*9/10].Microseconds())/1000, "p90-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(len(lat)), "cpu-ms/msg")
			b.ReportMetric(float64((busy1-busy0).Microseconds())/1000/float64(len(lat)), "machine-cpu-ms/msg")
			b.ReportMetric(float64(peak)/1024, "peak-rss-MiB")
			b.ReportMetric(searches/float64(len(lat)), "ldap-searches/msg")
		})
	}
}

// metric reads one unlabelled counter or gauge from the server's /metrics.
func (s *server) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("%s not in /metrics (%v)", name, sc.Err())
	return 0
}

// machineBusy is the CPU time all cores spent outside idle and iowait since
// boot (/proc/stat), in USER_HZ ticks converted to a Duration.
func machineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n") // "cpu  user nice system idle iowait irq softirq steal ..."
	var ticks int64
	for i, f := range strings.Fields(line)[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseInt(f, 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// pipelinedClient speaks just enough SMTP to send one message per two round
// trips: MAIL, RCPT and DATA in one write, then the body and the dot.
type pipelinedClient struct {
	conn net.Conn
	r    *bufio.Reader
	buf  []byte
}

func dialPipelined(addr string) (*pipelinedClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &pipelinedClient{conn: conn, r: bufio.NewReader(conn)}
	if err := c.expect(220); err != nil {
		conn.Close()
		return nil, err
	}
	if _, err := conn.Write([]byte("EHLO bench.example.net\r\n")); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.expect(250); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// expect reads one (possibly multiline) reply and checks its code.
func (c *pipelinedClient) expect(code int) error {
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || line[:3] != strconv.Itoa(code) {
			return fmt.Errorf("want %d, got %q", code, line)
		}
		if line[3] == ' ' {
			return nil
		}
	}
}

// send transmits body, which must have CRLF lines and no line starting with a
// dot, and waits for the final reply.
func (c *pipelinedClient) send(from, to, body string) error {
	c.buf = fmt.Appendf(c.buf[:0], "MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nDATA\r\n", from, to)
	if _, err := c.conn.Write(c.buf); err != nil {
		return err
	}
	for _, code := range []int{250, 250, 354} {
		if err := c.expect(code); err != nil {
			return err
		}
	}
	c.buf = append(append(c.buf[:0], body...), ".\r\n"...)
	if _, err := c.conn.Write(c.buf); err != nil {
		return err
	}
	return c.expect(250)
}

func (c *pipelinedClient) close() {
	c.conn.Write([]byte("QUIT\r\n"))
	c.conn.Close()
}

func sendBench(addr, body string, _ *testing.B) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := sendOn(c, body); err != nil {
		return err
	}
	return c.Quit()
}

func sendOn(c *gosmtp.Client, body string) error {
	if err := c.Mail("bench@example.net", nil); err != nil {
		return err
	}
	if err := c.Rcpt("test0@hosted-domain.com", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(body)); err != nil {
		return err
	}
	return w.Close()
}

// BenchmarkSubmissionToSink: 20 authenticated sessions on 587 submit 4 KiB
// messages for a foreign domain; courriel queues them durably and its queue
// runner delivers them to a loopback MTA through a static route with TLS
// verify. Reports accepted msgs/s (250 to DATA) and delivered msgs/s (until
// the sink has them all).
//
//	go test -run XXX -bench SubmissionToSink -benchtime 1000x ./integration/
func BenchmarkSubmissionToSink(b *testing.B) {
	const sessions = 20
	ca := testenv.NewCA(b)
	k := startSinkTB(b, ca)
	s := startServerWithCA(b, ca, withProduction(), withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	body := "From: alice@example.org\r\nTo: r@foreign.example\r\nSubject: bench\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range sessions {
		wg.Go(func() {
			c, err := gosmtp.DialStartTLS(s.Sub, &tls.Config{ServerName: "localhost", RootCAs: s.ca.Pool()})
			if err != nil {
				b.Error(err)
				return
			}
			defer c.Close()
			if err := c.Auth(plainAuth("alice", testenv.AlicePassword)); err != nil {
				b.Error(err)
				return
			}
			for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
				if err := c.SendMail("alice@example.org", []string{fmt.Sprintf("r%d@foreign.example", n)}, strings.NewReader(body)); err != nil {
					b.Error(err)
					return
				}
			}
			c.Quit()
		})
	}
	wg.Wait()
	accepted := time.Since(start)
	deadline := time.Now().Add(5 * time.Minute)
	for len(k.messages()) < b.N && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	delivered := time.Since(start)
	b.StopTimer()
	if got := len(k.messages()); got != b.N {
		b.Fatalf("sink got %d of %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/accepted.Seconds(), "accepted-msgs/s")
	b.ReportMetric(float64(b.N)/delivered.Seconds(), "delivered-msgs/s")
}
