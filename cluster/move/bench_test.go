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

// BenchmarkMoveHome times a move's copy of a home of COURRIEL_BENCH_N
// (default 10,000) 4 KB messages over loopback TCP to the fake hop, with
// the real importer (staging, syncfs, rename), under testenv.BenchDir
// (COURRIEL_BENCH_DIR for another file system). held-s is what the user
// waits held (logins refused, mail queued), total-s the whole copy:
//
//   - full: the whole home sent held (NoPreCopy, and how moves went
//     before pre-copies);
//   - precopy: pre-copied while the user works, then the changes held
//     (none);
//   - precopy-500-changed: 500 messages changed while the pre-copy is
//     sent (200 delivered, 200 flagged, 100 expunged, the uidlist
//     rewritten), then the changes held.
//
// Not counted: ending sessions, the directory write and its replica
// (the same with or without a pre-copy).
//
//	go test -run XXX -bench MoveHome -benchtime 1x ./cluster/move/
func BenchmarkMoveHome(b *testing.B) {
	count := 10000
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_BENCH_N")); err == nil && v > 0 {
		count = v
	}
	base := testenv.BenchDir(b) // fresh inodes: see its comment
	_, d := startDirectory(b, filepath.Join(base, "dir"))
	for _, bc := range []struct {
		name    string
		pre     bool
		changed int
	}{{"full", false, 0}, {"precopy", true, 0}, {"precopy-500-changed", true, 500}} {
		b.Run(bc.name, func(b *testing.B) {
			var pre, held time.Duration
			var bytes int64
			for i := range b.N {
				b.StopTimer()
				run := filepath.Join(base, fmt.Sprintf("%s-%d", bc.name, i))
				src := filepath.Join(run, "a", "xomail")
				bench := newBenchHome(b, src, count)
				dst := filepath.Join(run, "b")
				if err := os.Mkdir(dst, 0o755); err != nil {
					b.Fatal(err)
				}
				hop := startHop(b, NewImporter(ImportOptions{Directory: otherNodeFS{d, filepath.Join(base, "dir"), dst}, Chown: os.Geteuid() == 0}))
				c, err := cluster.New(cluster.Options{Self: "a", Secret: []byte(testSecret), Nodes: map[string]cluster.Node{"b": {SMTP: hop.ln.Addr().String()}}})
				if err != nil {
					b.Fatal(err)
				}
				node, _, _ := c.Home("b")
				ctx := context.Background()
				b.StartTimer()

				t0 := time.Now()
				var final *Archive
				if bc.pre {
					a, err := PreCopy("xomail", src, NewMoveID(), Limits{})
					if err != nil {
						b.Fatal(err)
					}
					done := make(chan error, 1)
					go func() { done <- bench.change(bc.changed) }()
					if err := SendImport(ctx, c, node, "xomail", a); err != nil {
						b.Fatal(err)
					}
					if err := <-done; err != nil {
						b.Fatal(err)
					}
					bytes = a.Bytes()
					pre += time.Since(t0)
					t0 = time.Now() // the hold
					if final, err = a.Changes(true, Limits{}); err != nil {
						b.Fatal(err)
					}
				} else {
					if final, err = Scan("xomail", src, Limits{}); err != nil {
						b.Fatal(err)
					}
					bytes = final.Bytes()
				}
				if err := SendImport(ctx, c, node, "xomail", final); err != nil {
					b.Fatal(err)
				}
				held += time.Since(t0)
				b.StopTimer()
				if got := len(listDir(b, filepath.Join(dst, "xomail/mailbox/cur"))); got != count+bc.changed*200/500-bc.changed*100/500 {
					b.Fatalf("%d messages moved", got)
				}
				_ = os.RemoveAll(run)
				b.StartTimer()
			}
			b.StopTimer()
			n := float64(b.N)
			b.ReportMetric(float64(count), "msgs")
			b.ReportMetric(held.Seconds()/n, "held-s")
			b.ReportMetric((pre+held).Seconds()/n, "total-s")
			b.ReportMetric(float64(bytes)/1e6, "MB")
		})
	}
}

// benchHome is a home of count 4 KB messages in cur/, with their uidlist.
type benchHome struct {
	src   string
	count int
	body  []byte
}

func newBenchHome(b *testing.B, src string, count int) *benchHome {
	for _, sub := range []string{"mailbox/cur", "mailbox/new", "mailbox/tmp", "sieve"} {
		if err := os.MkdirAll(filepath.Join(src, sub), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	h := &benchHome{src: src, count: count, body: []byte("Subject: x\n\n" + strings.Repeat("0123456789abcdef", 255) + "\n")}
	for i := range count {
		if err := os.WriteFile(filepath.Join(src, "mailbox/cur", h.name(i)+":2,S"), h.body, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	if err := h.uidlist(0, count); err != nil {
		b.Fatal(err)
	}
	return h
}

func (h *benchHome) name(i int) string {
	return fmt.Sprintf("1700000000.M%dP1Q%d.node-a,S=%d", i, i, len(h.body))
}

func (h *benchHome) uidlist(from, to int) error {
	var u strings.Builder
	u.WriteString("3 V1700000000 N" + strconv.Itoa(to+1) + " G00\n")
	for i := from; i < to; i++ {
		fmt.Fprintf(&u, "%d :%s\n", i+1, h.name(i))
	}
	tmp := filepath.Join(h.src, "mailbox/dovecot-uidlist.tmp")
	if err := os.WriteFile(tmp, []byte(u.String()), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(h.src, "mailbox/dovecot-uidlist"))
}

// change changes n messages as a user and deliveries would, spread over
// the mailbox: 2/5 delivered (into cur/, as if already seen), 2/5
// flagged (renamed), 1/5 expunged (the oldest), the uidlist rewritten.
func (h *benchHome) change(n int) error {
	if n == 0 {
		return nil
	}
	cur := filepath.Join(h.src, "mailbox/cur")
	gone := n / 5
	for i := range n * 2 / 5 {
		if err := os.WriteFile(filepath.Join(cur, h.name(h.count+i)+":2,S"), h.body, 0o600); err != nil {
			return err
		}
	}
	for k := range n * 2 / 5 {
		i := gone + k*(h.count-gone)/(n*2/5)
		if err := os.Rename(filepath.Join(cur, h.name(i)+":2,S"), filepath.Join(cur, h.name(i)+":2,FS")); err != nil {
			return err
		}
	}
	for i := range gone {
		if err := os.Remove(filepath.Join(cur, h.name(i)+":2,S")); err != nil {
			return err
		}
	}
	return h.uidlist(gone, h.count+n*2/5)
}
