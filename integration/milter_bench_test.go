package integration

import (
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// BenchmarkSMTPMilterRspamd measures what a real rspamd in the path costs:
// the same run as BenchmarkSMTPDelivery (built binary, real slapd, 4 KiB
// clean messages, pipelining client) at 16 concurrent sessions, once
// through a server without milters and once through a server with rspamd
// (Debian's 3.4, the tests' local configuration: proxy worker in milter
// mode with self_scan, no network checks) as its [[milter]]. Each op is one
// message on each server. It reports msgs/s and p50/p99 transaction latency
// (MAIL to the 250 after the final dot) of both, and what rspamd adds at
// p50 and p99.
//
//	go test -run XXX -bench SMTPMilterRspamd -benchtime 2000x ./integration/
//
// (with a count, not a duration: each call starts rspamd, some seconds).
func BenchmarkSMTPMilterRspamd(b *testing.B) {
	const sessions = 16
	r := startRspamd(b)
	disk := testenv.BenchDir(b)
	plain := startServer(b, withProduction(), withVmailIn(disk))
	filtered := startServer(b, withProduction(), withVmailIn(testenv.BenchDir(b)),
		withTOML(milterTOML(r.Addr, quoteList("smtp"), "tempfail")))
	body := "From: bench@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: bench\r\n" +
		"Message-ID: <bench@example.net>\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n\r\n" +
		strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n", 4096/66)
	for _, s := range []*server{plain, filtered} {
		// Warm the directory cache, rspamd's first scan (maps, regexps).
		if err := sendBench(s.SMTP, body, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	plainRate, plainLat := pipelinedLoad(b, plain.SMTP, body, b.N, sessions)
	rspamdRate, rspamdLat := pipelinedLoad(b, filtered.SMTP, body, b.N, sessions)
	b.StopTimer()
	for _, s := range []*server{plain, filtered} {
		if got := len(s.maildirFiles(b, "xomail", "new")); got != b.N+1 {
			b.Fatalf("%d files in new/ after %d acknowledged messages", got, b.N+1)
		}
	}
	if !strings.Contains(findAny(b, filtered), "X-Rspamd-Queue-Id:") {
		b.Fatal("rspamd did not see the messages")
	}
	pct := func(lat []time.Duration, p int) float64 {
		return float64(lat[min(len(lat)-1, len(lat)*p/100)].Microseconds()) / 1000
	}
	b.ReportMetric(plainRate, "msgs/s-plain")
	b.ReportMetric(rspamdRate, "msgs/s-rspamd")
	b.ReportMetric(pct(plainLat, 50), "p50-ms-plain")
	b.ReportMetric(pct(rspamdLat, 50), "p50-ms-rspamd")
	b.ReportMetric(pct(plainLat, 99), "p99-ms-plain")
	b.ReportMetric(pct(rspamdLat, 99), "p99-ms-rspamd")
	b.ReportMetric(pct(rspamdLat, 50)-pct(plainLat, 50), "added-p50-ms")
	b.ReportMetric(pct(rspamdLat, 99)-pct(plainLat, 99), "added-p99-ms")

	// The same with Postfix 3.7 and the same rspamd (smtpd_milters), when
	// a private instance can run here (root). Postfix answers 250 once its
	// queue file is safe, before the maildir copy; courriel after it.
	if !postfixAvailable() {
		return
	}
	b.StartTimer()
	pfPlain := startPostfix(b, "")
	pfRate, pfLat := pipelinedLoad(b, pfPlain.SMTP, body, b.N, sessions)
	pfFiltered := startPostfix(b, "inet:"+r.Addr)
	pfRspamdRate, pfRspamdLat := pipelinedLoad(b, pfFiltered.SMTP, body, b.N, sessions)
	b.StopTimer()
	if !pfPlain.waitDelivered(b.N) || !pfFiltered.waitDelivered(b.N) {
		b.Fatalf("postfix delivered %d and %d of %d", pfPlain.delivered(), pfFiltered.delivered(), b.N)
	}
	if !strings.Contains(pfFiltered.anyMessage(), "X-Rspamd-Queue-Id:") {
		b.Fatal("rspamd did not see Postfix's messages")
	}
	b.ReportMetric(pfRate, "msgs/s-postfix")
	b.ReportMetric(pfRspamdRate, "msgs/s-postfix-rspamd")
	b.ReportMetric(pct(pfRspamdLat, 50)-pct(pfLat, 50), "postfix-added-p50-ms")
	b.ReportMetric(pct(pfRspamdLat, 99)-pct(pfLat, 99), "postfix-added-p99-ms")
}

// pipelinedLoad sends n messages over sessions pipelining connections and
// returns the rate and the sorted latencies.
func pipelinedLoad(b *testing.B, addr, body string, n, sessions int) (float64, []time.Duration) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for range sessions {
		wg.Go(func() {
			c, err := dialPipelined(addr)
			if err != nil {
				b.Error(err)
				return
			}
			defer c.close()
			var mine []time.Duration
			for next.Add(1) <= int64(n) {
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
	if len(lat) == 0 {
		b.Fatal("nothing sent")
	}
	slices.Sort(lat)
	return float64(len(lat)) / elapsed.Seconds(), lat
}

// findAny returns one delivered message of xomail.
func findAny(b *testing.B, s *server) string {
	files := s.maildirFiles(b, "xomail", "new")
	if len(files) == 0 {
		return ""
	}
	m, _ := os.ReadFile(files[len(files)-1])
	return string(m)
}
