package move

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/internal/testenv"
)

// BenchmarkMoveHome times what a user waits held: scanning a home of
// COURRIEL_BENCH_N (default 10,000) 4 KB messages, streaming it over
// loopback TCP to the fake hop and importing it (staging, syncfs, rename),
// under testenv.BenchDir (COURRIEL_BENCH_DIR for another file system).
//
//	go test -run XXX -bench MoveHome -benchtime 1x ./cluster/move/
func BenchmarkMoveHome(b *testing.B) {
	count := 10000
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_BENCH_N")); err == nil && v > 0 {
		count = v
	}
	base := testenv.BenchDir(b) // fresh inodes: see its comment
	_, d := startDirectory(b, filepath.Join(base, "dir"))
	src := filepath.Join(base, "a", "xomail")
	for _, sub := range []string{"mailbox/cur", "mailbox/new", "mailbox/tmp", "sieve"} {
		if err := os.MkdirAll(filepath.Join(src, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	body := []byte("Subject: x\n\n" + strings.Repeat("0123456789abcdef", 255) + "\n")
	var uidlist strings.Builder
	uidlist.WriteString("3 V1700000000 N" + strconv.Itoa(count+1) + " G00\n")
	for i := range count {
		name := fmt.Sprintf("1700000000.M%dP1Q%d.node-a,S=%d", i, i, len(body))
		if err := os.WriteFile(filepath.Join(src, "mailbox/cur", name+":2,S"), body, 0o600); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&uidlist, "%d :%s\n", i+1, name)
	}
	if err := os.WriteFile(filepath.Join(src, "mailbox/dovecot-uidlist"), []byte(uidlist.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	var scan, send time.Duration
	var bytes int64
	for i := range b.N {
		dst := filepath.Join(base, fmt.Sprintf("b%d", i))
		if err := os.Mkdir(dst, 0o755); err != nil {
			b.Fatal(err)
		}
		hop := startHop(b, NewImporter(ImportOptions{Directory: otherNodeFS{d, filepath.Join(base, "dir"), dst}, Chown: os.Geteuid() == 0}))
		c, err := cluster.New(cluster.Options{Self: "a", Secret: []byte(testSecret), Nodes: map[string]cluster.Node{"b": {SMTP: hop.ln.Addr().String()}}})
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		a, err := Scan("xomail", src, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		node, _, _ := c.Home("b")
		if err := SendImport(ctx, c, node, "xomail", a); err != nil {
			b.Fatal(err)
		}
		scan += t1.Sub(t0)
		send += time.Since(t1)
		bytes = a.Bytes()
	}
	b.StopTimer()
	held := (scan + send).Seconds() / float64(b.N)
	b.ReportMetric(float64(count), "msgs")
	b.ReportMetric(scan.Seconds()/float64(b.N), "scan-s")
	b.ReportMetric(send.Seconds()/float64(b.N), "send+import-s")
	b.ReportMetric(float64(count)/held, "msgs/s")
	b.ReportMetric(float64(bytes)/held/1e6, "MB/s")
}
