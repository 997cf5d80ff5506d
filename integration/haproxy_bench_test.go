package integration

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// contribChecks are the lines of contrib/haproxy.cfg that make its
// health checks (default-server, option httpchk, http-check), so the
// benchmark measures the documented settings.
func contribChecks(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "contrib", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.TrimSpace(l)
		for _, p := range []string{"default-server ", "option httpchk ", "http-check "} {
			if strings.HasPrefix(f, p) {
				lines = append(lines, f)
			}
		}
	}
	if len(lines) != 3 {
		t.Fatalf("contrib/haproxy.cfg: check lines %q, want default-server, option httpchk and http-check", lines)
	}
	return lines
}

// The documented HAProxy configuration is one HAProxy accepts.
func TestHAProxyContribConfig(t *testing.T) {
	bin := requireTool(t, "haproxy")
	out, err := exec.Command(bin, "-c", "-f", filepath.Join("..", "contrib", "haproxy.cfg")).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	if l := contribChecks(t)[0]; !strings.Contains(l, "send-proxy-v2") || !strings.Contains(l, "port 8025") {
		t.Errorf("contrib/haproxy.cfg: %q: no PROXY v2 headers, or checks not on the http listener", l)
	}
}

// startBannerServer is the other node of the benchmark's backend: it
// greets every connection as a different SMTP server and closes it.
func startBannerServer(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Write([]byte("220 other.example ESMTP\r\n"))
				c.Read(make([]byte, 512)) // the PROXY header, then the client's QUIT or close
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkHAProxyFailover: HAProxy with contrib/haproxy.cfg's checks
// balances SMTP over courriel and another server; courriel is killed
// (SIGKILL) while clients connect through HAProxy every 5 ms. It prints
// how long HAProxy went on sending connections to the dead courriel (the
// start of the last connection that did not reach the other server) and
// when it marked it down (issue 18's goal: 2 s at most). retries 0: each
// connection sent to the dead node fails at once instead of waiting for a
// retry, so the client sees every one.
func BenchmarkHAProxyFailover(b *testing.B) {
	requireTool(b, "haproxy")
	checks := contribChecks(b)
	var lastFail, down []time.Duration
	failed := 0
	for range b.N {
		b.StopTimer()
		s := startServer(b, withProduction(), withHTTP(), withTOML("[proxy_protocol]\ntrusted_networks = [\"127.0.0.1\"]\n"))
		other := startBannerServer(b)
		// No redispatch here: every connection HAProxy sends to the dead
		// node shows as a failure to the client.
		// The checks ask courriel's /healthz; the other server is not
		// checked (always up).
		defaults := "  retries 0\n"
		for _, l := range checks {
			defaults += "  " + strings.Replace(l, "port 8025", "port "+port(s.HTTP), 1) + "\n"
		}
		h := startHAProxy(b, defaults, map[string][]haproxyServer{
			"smtp": {{"courriel", s.SMTP, "check"}, {"other", other, ""}},
		})
		// Both up: courriel has answered through HAProxy.
		deadline := time.Now().Add(20 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", h.Front["smtp"], time.Second)
			if err == nil {
				l := firstLine(c)
				c.Close()
				if strings.Contains(l, "xoyize.xyz") {
					break
				}
			}
			if time.Now().After(deadline) {
				b.Fatal("courriel never answered through haproxy")
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
		t0 := time.Now()
		s.stop(syscall.SIGKILL)
		// A new connection every 5 ms, each on its own goroutine, so a
		// slow one does not delay the next: the last one that started
		// and did not reach the other server went to the dead node.
		type probe struct {
			start time.Duration
			ok    bool
		}
		results := make(chan probe, 4096)
		probes := 0
		var downAt time.Duration
		for time.Since(t0) < 10*time.Second && (downAt == 0 || time.Since(t0) < downAt+time.Second) && probes < cap(results) {
			probes++
			go func(start time.Duration) {
				ok := false
				if c, err := net.DialTimeout("tcp", h.Front["smtp"], 5*time.Second); err == nil {
					ok = strings.HasPrefix(firstLine(c), "220 other.example")
					c.Close()
				}
				results <- probe{start, ok}
			}(time.Since(t0))
			if downAt == 0 && strings.Contains(h.logs(), "smtp/courriel is DOWN") {
				downAt = time.Since(t0)
			}
			time.Sleep(5 * time.Millisecond)
		}
		var last time.Duration
		for range probes {
			if p := <-results; !p.ok {
				failed++
				last = max(last, p.start)
			}
		}
		b.StopTimer()
		if downAt == 0 {
			b.Fatalf("haproxy never marked the killed courriel down:\n%s", h.logs())
		}
		lastFail, down = append(lastFail, last), append(down, downAt)
		b.Logf("round: the last connection sent to the dead node started %v after the kill, marked down after %v", last.Round(time.Millisecond), downAt.Round(time.Millisecond))
	}
	slices.Sort(lastFail)
	slices.Sort(down)
	b.ReportMetric(float64(lastFail[len(lastFail)/2].Milliseconds()), "ms-until-last-send-to-dead")
	b.ReportMetric(float64(lastFail[len(lastFail)-1].Milliseconds()), "max-ms-until-last-send")
	b.ReportMetric(float64(down[len(down)/2].Milliseconds()), "ms-until-marked-down")
	b.ReportMetric(float64(failed)/float64(b.N), "failed-conns/round")
}
