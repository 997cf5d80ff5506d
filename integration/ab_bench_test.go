package integration

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// BenchmarkSMTPSourceAB compares two courriel builds on this package's
// BesidePostfix workload (smtp-source, 4 KiB, one connection per message)
// without Postfix: the binary of COURRIEL_BENCH_BASELINE (say, a build of
// the commit before a change) and this tree's, each with its own slapd, the
// same disk, in alternating rounds, so that both see the same neighbours.
// It reports each build's range over the rounds: msgs/s and server CPU per
// message. COURRIEL_BENCH_SYNC_BASE and COURRIEL_BENCH_SYNC_NEW set their
// [delivery] sync (the same binary twice compares two modes).
//
//	go build -o /tmp/base/courriel ./cmd/courriel   # on the baseline commit
//	COURRIEL_BENCH_BASELINE=/tmp/base/courriel go test -run XXX -bench SMTPSourceAB -benchtime 1x ./integration/
func BenchmarkSMTPSourceAB(b *testing.B) {
	base := os.Getenv("COURRIEL_BENCH_BASELINE")
	if base == "" {
		b.Skip("COURRIEL_BENCH_BASELINE names the baseline binary")
	}
	source := requireTool(b, "smtp-source")
	disk := testenv.PublicBenchDir(b)
	builds := []struct {
		name string
		s    *server
	}{
		{"base", startServer(b, withProduction(), withVmailIn(disk+"/base"), withBinary(base), withDeliverySync(os.Getenv("COURRIEL_BENCH_SYNC_BASE")))},
		{"new", startServer(b, withProduction(), withVmailIn(disk+"/new"), withDeliverySync(os.Getenv("COURRIEL_BENCH_SYNC_NEW")))},
	}
	for _, sessions := range []int{16, 1} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			messages := 1500
			if sessions == 1 {
				messages = 400
			}
			rates := map[string][]float64{}
			cpus := map[string][]float64{}
			for _, bl := range builds {
				runSource(b, source, bl.s.SMTP, 1, 20) // warm the caches
			}
			for round := range 4 {
				for i := range builds {
					bl := builds[(i+round)%2] // who goes first alternates
					cpu0, _ := procStats(bl.s.cmd.Process.Pid)
					start := time.Now()
					runSource(b, source, bl.s.SMTP, sessions, messages)
					elapsed := time.Since(start)
					cpu, _ := procStats(bl.s.cmd.Process.Pid)
					rates[bl.name] = append(rates[bl.name], float64(messages)/elapsed.Seconds())
					cpus[bl.name] = append(cpus[bl.name], float64((cpu-cpu0).Microseconds())/1000/float64(messages))
				}
			}
			for _, bl := range builds {
				b.ReportMetric(slices.Min(rates[bl.name]), bl.name+"-min-msgs/s")
				b.ReportMetric(slices.Max(rates[bl.name]), bl.name+"-max-msgs/s")
				b.ReportMetric(slices.Min(cpus[bl.name]), bl.name+"-min-cpu-ms/msg")
				b.ReportMetric(slices.Max(cpus[bl.name]), bl.name+"-max-cpu-ms/msg")
				slices.Sort(cpus[bl.name])
				b.ReportMetric((cpus[bl.name][1]+cpus[bl.name][2])/2, bl.name+"-median-cpu-ms/msg")
			}
		})
	}
}
