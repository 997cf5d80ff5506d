package integration

import (
	"crypto"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
	"courriel/mailauth"
)

// BenchmarkInboundChecks: 16 sessions send 4 KiB messages carrying an
// Ed25519 and an RSA signature to port 25, with the checks off and on (SPF
// for MAIL FROM and HELO, both signatures verified, DMARC; DNS from the
// test's server, then the server's cache). Each op is one message; it
// reports msgs/s, the server's CPU and the DNS queries per message.
//
//	go test -run XXX -bench InboundChecks -benchtime 2000x ./integration/
func BenchmarkInboundChecks(b *testing.B) {
	const sessions = 16
	d := testenv.StartDNS(b,
		`example.net. TXT "v=spf1 ip4:127.0.0.0/8 -all"`, `_dmarc.example.net. TXT "v=DMARC1; p=reject"`,
		`client.example.net. TXT "v=spf1 a -all"`, `client.example.net. A 127.0.0.1`)
	paths, err := mailauth.GenerateKeys(b.TempDir(), "example.net", "bench")
	if err != nil {
		b.Fatal(err)
	}
	keys := map[mailauth.Algorithm]crypto.Signer{}
	for a, p := range paths {
		if keys[a], err = mailauth.LoadKey(p, a); err != nil {
			b.Fatal(err)
		}
		rec, _ := mailauth.TXTRecord(keys[a])
		d.Set(b, mailauth.DNSSelector("bench", a)+"._domainkey.example.net. TXT "+mailauth.ZoneStrings(rec))
	}
	signer, err := mailauth.NewSigner([]mailauth.DomainKeys{{Domain: "example.net", Selector: "bench", Keys: keys}})
	if err != nil {
		b.Fatal(err)
	}
	body := "From: bench@example.net\r\nTo: test0@hosted-domain.com\r\nSubject: bench\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b@example.net>\r\n\r\n" +
		strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
	sig, err := signer.Sign(strings.NewReader(body), int64(len(body)))
	if err != nil || len(sig) == 0 {
		b.Fatal(err)
	}
	body = string(sig) + body
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("checks=%v", on), func(b *testing.B) {
			s := startServer(b, withProduction(), withVmailIn(testenv.BenchDir(b)),
				withMailAuth(fmt.Sprintf("inbound_checks = %v\ndns_server = %q\n", on, d.Addr)))
			if err := sendBench(s.SMTP, body, nil); err != nil {
				b.Fatal(err)
			}
			cpu0, _ := procStats(s.cmd.Process.Pid)
			q0 := d.Queries()
			var next, sent atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			var once sync.Once
			for range sessions {
				wg.Go(func() {
					c, err := dialPipelined(s.SMTP)
					if err != nil {
						once.Do(func() { b.Error(err) })
						return
					}
					defer c.close()
					for next.Add(1) <= int64(b.N) {
						if err := c.send("bench@example.net", "test0@hosted-domain.com", body); err != nil {
							once.Do(func() { b.Error(err) })
							return
						}
						sent.Add(1)
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			cpu1, _ := procStats(s.cmd.Process.Pid)
			n := sent.Load()
			if n == 0 {
				b.Fatal("nothing sent")
			}
			files := s.maildirFiles(b, "xomail", "new")
			if len(files) != int(n)+1 {
				b.Fatalf("%d files after %d messages", len(files), n+1)
			}
			if on {
				data, err := os.ReadFile(files[len(files)-1])
				if err != nil || strings.Count(string(data), "dkim=pass") != 2 || !strings.Contains(string(data), "dmarc=pass") {
					b.Fatalf("checks did not pass: %v\n%s", err, data)
				}
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(n), "cpu-ms/msg")
			b.ReportMetric(float64(d.Queries()-q0)/float64(n), "dns-queries/msg")
		})
	}
}
