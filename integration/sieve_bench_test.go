package integration

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// fiftyRules is a user's script of 50 rules, as filters grow: header,
// address and size tests filing into folders; the benchmark's messages
// match none, so every rule is evaluated and the implicit keep stores them.
func fiftyRules() string {
	var b strings.Builder
	b.WriteString(`require ["fileinto", "mailbox", "imap4flags", "envelope"];` + "\n")
	for i := range 50 {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, "if header :contains \"subject\" \"project-%d\" { fileinto :create \"Projects.P%d\"; stop; }\n", i, i)
		case 1:
			fmt.Fprintf(&b, "if address :domain :is \"from\" \"list%d.example\" { fileinto :create \"Lists.L%d\"; stop; }\n", i, i)
		case 2:
			fmt.Fprintf(&b, "if allof (header :matches \"to\" \"*team%d*\", size :over 1M) { addflag \"$Big%d\"; }\n", i, i)
		case 3:
			fmt.Fprintf(&b, "if envelope :localpart :is \"from\" \"robot%d\" { fileinto :create \"Robots\"; stop; }\n", i)
		case 4:
			fmt.Fprintf(&b, "if anyof (header :is \"x-tag\" \"t%d\", header :contains \"list-id\" \"id%d\") { fileinto :create \"Tagged\"; stop; }\n", i, i)
		}
	}
	return b.String()
}

// BenchmarkSieveDelivery: delivery msgs/s over 16 SMTP sessions to four
// users, each with a 50-rule Sieve script, beside the same users without
// a script and with Sieve off (the built binary, real slapd; 4 KiB
// messages, pipelined). p50/p99 and the server's CPU per message show what
// the scripts cost, and what looking for a missing one costs.
//
//	go test -run XXX -bench SieveDelivery -benchtime 4000x ./integration/
func BenchmarkSieveDelivery(b *testing.B) {
	users := []string{"xomail", "alice", "bob", "zoe"}
	for _, c := range []struct {
		name       string
		withScript bool
		toml       string
	}{
		{"sieve=off", false, "[sieve]\nenabled = false\n"},
		{"script=none", false, ""},
		{"script=50-rules", true, ""},
	} {
		withScript := c.withScript
		b.Run(c.name+"/sessions=16", func(b *testing.B) {
			disk := testenv.BenchDir(b)
			s := startServer(b, withProduction(), withVmailIn(disk), withTOML(c.toml))
			if withScript {
				for _, u := range users {
					installScriptTB(b, s, u, "rules", fiftyRules())
				}
			}
			body := "From: bench@example.net\r\nTo: someone@xoyize.xyz\r\nSubject: bench\r\n\r\n" +
				strings.Repeat(strings.Repeat("x", 62)+"\r\n", 4096/64)
			for _, u := range users { // warm the directory cache and the script cache
				c, err := dialPipelined(s.SMTP)
				if err != nil {
					b.Fatal(err)
				}
				if err := c.send("bench@example.net", u+"@xoyize.xyz", body); err != nil {
					b.Fatal(err)
				}
				c.close()
			}
			cpu0, _ := procStats(s.cmd.Process.Pid)
			var next atomic.Int64
			var mu sync.Mutex
			var lat []time.Duration
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					c, err := dialPipelined(s.SMTP)
					if err != nil {
						b.Error(err)
						return
					}
					defer c.close()
					var mine []time.Duration
					for {
						n := next.Add(1)
						if n > int64(b.N) {
							break
						}
						t0 := time.Now()
						if err := c.send("bench@example.net", users[n%int64(len(users))]+"@xoyize.xyz", body); err != nil {
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
			cpu1, _ := procStats(s.cmd.Process.Pid)
			if len(lat) == 0 {
				b.Fatal("nothing sent")
			}
			stored := 0
			for _, u := range users {
				stored += len(s.maildirFiles(b, u, "new"))
			}
			if stored != len(lat)+len(users) {
				b.Fatalf("%d files in the INBOXes after %d acknowledged messages", stored, len(lat)+len(users))
			}
			if strings.Contains(s.logs(), "sieve: script failed") {
				b.Fatal("a script failed: the figures would be of INBOX deliveries")
			}
			slices.Sort(lat)
			b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "msgs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/1000/float64(len(lat)), "cpu-ms/msg")
		})
	}
}

// installScriptTB is installScript for benchmarks.
func installScriptTB(tb testing.TB, s *server, user, name, src string) {
	tb.Helper()
	home := filepath.Join(s.vmail, user)
	mustTB(tb, mkdirAll(filepath.Join(home, "sieve")))
	mustTB(tb, writeFile(filepath.Join(home, "sieve", name+".sieve"), src))
	mustTB(tb, symlink("sieve/"+name+".sieve", filepath.Join(home, ".dovecot.sieve")))
}
