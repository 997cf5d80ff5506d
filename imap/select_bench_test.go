package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"
)

// BenchmarkLoginSelectWarm is the warm LOGIN+SELECT row of the side-by-side
// (BenchmarkBesideDovecot) alone, repeated: imaplib logs in and selects a
// folder of COURRIEL_BENCH_N small messages (20,000 by default) that an
// earlier session opened and left, the server's CPU sampled around it.
// Profiles (-cpuprofile) show the server's own work. With
// COURRIEL_BENCH_HEAVY set, the side-by-side's whole session (every
// envelope fetched, \Seen set everywhere) runs once before.
func BenchmarkLoginSelectWarm(b *testing.B) {
	e, script := selectBenchFolder(b, func(int) bool { return false })
	settle := func() {
		// The folder lingers until its stamps settle (bounded wait).
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if e.srv.reg.Lookup(e.maildir, "") == nil {
				return
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	runBenchScript(b, script, e.addr, "alice", "secret") // numbers the folder
	settle()
	if os.Getenv("COURRIEL_BENCH_HEAVY") != "" {
		// As in the side-by-side: a session that fetched every envelope
		// and body structure and set \Seen everywhere came before.
		heavy := filepath.Join(b.TempDir(), "bench.py")
		os.WriteFile(heavy, []byte(benchScript), 0o644)
		runBenchScript(b, heavy, e.addr, "alice", "secret")
		settle()
		debug.FreeOSMemory()
	}
	var wall, cpu float64
	b.ResetTimer()
	for range b.N {
		secs, cpuSecs := runBenchScriptCPU(b, script, e.addr, "alice", "secret", selfCPU)
		wall += secs["login_select"]
		cpu += cpuSecs["login_select"]
		b.StopTimer()
		settle()
		b.StartTimer()
	}
	b.ReportMetric(wall/float64(b.N), "wall_s/op")
	b.ReportMetric(cpu/float64(b.N), "server_cpu_s/op")
}

// BenchmarkLoginSelectCold is the side-by-side's cold LOGIN+SELECT row
// alone, repeated: imaplib logs in and selects a folder of
// COURRIEL_BENCH_N messages in cur/ that no server has seen (no uidlist,
// no index), each time in a new server, the server's CPU sampled around
// it. Profiles (-cpuprofile) show the server's own work.
func BenchmarkLoginSelectCold(b *testing.B) {
	e, script := selectBenchFolder(b, func(i int) bool { return i%2 == 0 })
	var wall, cpu float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e.srv.Close() // the last run's folder closed, lingering or not
		ents, _ := os.ReadDir(e.maildir)
		for _, f := range ents {
			if !f.IsDir() {
				os.Remove(filepath.Join(e.maildir, f.Name()))
			}
		}
		e.start()
		debug.FreeOSMemory()
		b.StartTimer()
		secs, cpuSecs := runBenchScriptCPU(b, script, e.addr, "alice", "secret", selfCPU)
		wall += secs["login_select"]
		cpu += cpuSecs["login_select"]
	}
	b.ReportMetric(wall/float64(b.N), "wall_s/op")
	b.ReportMetric(cpu/float64(b.N), "server_cpu_s/op")
}

// selectBenchFolder is the LOGIN+SELECT benchmarks' setup: a server whose
// INBOX holds COURRIEL_BENCH_N small messages in cur/ (\Seen where seen
// says so), and imaplib's LOGIN+SELECT script.
func selectBenchFolder(b *testing.B, seen func(i int) bool) (e *testEnv, script string) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip("python3 not installed")
	}
	e = newEnv(b)
	for _, d := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(e.maildir, d), 0o700)
	}
	for i := range benchN() {
		name := fmt.Sprintf("%d.M%dP1.bench,S=30,W=31:2,", 1672531200+i, i)
		if seen(i) {
			name += "S"
		}
		if err := os.WriteFile(filepath.Join(e.maildir, "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	script = filepath.Join(b.TempDir(), "login_select.py")
	os.WriteFile(script, []byte(benchSelectScript), 0o644)
	return e, script
}
