package delivery

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"courriel/internal/testenv"
)

// Run with a small -benchtime, e.g.
//
//	go test -run '^$' -bench . -benchtime 400x ./delivery/
//
// Each benchmark reports msgs/s measured over the whole run, including
// waiting for the last in-flight messages.

var benchConcurrency = []int{1, 20}

// runWorkers feeds b.Loop's iterations to g goroutines running op and
// reports msgs/s and the p50/p99 of one op (what a client waits for, at
// least: the disk's share of a transaction's latency).
func runWorkers(b *testing.B, g int, op func(worker, i int) error) {
	jobs := make(chan int, g)
	var wg sync.WaitGroup
	var failed atomic.Value
	lats := make([][]time.Duration, g)
	for w := range g {
		wg.Go(func() {
			for i := range jobs {
				t0 := time.Now()
				if err := op(w, i); err != nil {
					failed.CompareAndSwap(nil, err)
				}
				lats[w] = append(lats[w], time.Since(t0))
			}
		})
	}
	defer func() {
		all := slices.Concat(lats...)
		if len(all) == 0 {
			return
		}
		slices.Sort(all)
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}()
	start := time.Now()
	n := 0
	for b.Loop() {
		jobs <- n
		n++
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
}

// message4K is a 4 KiB message body with CRLF lines.
func message4K() []byte {
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n") // 74 bytes
	body := []byte("Subject: bench\r\nFrom: a@b.c\r\n\r\n")
	for len(body)+len(line) <= 4096 {
		body = append(body, line...)
	}
	return append(body, bytes.Repeat([]byte("x"), 4096-len(body)-2)...)
}

// BenchmarkRawFsyncLoop is the floor: create in tmp/, write 4 KiB, fsync,
// rename into new/, fsync new/ — each goroutine for itself, no checks, no
// sharing. Deliver must reach at least half of it. With prefill, new/
// already holds 100,000 files: what a large directory costs the kernel.
func BenchmarkRawFsyncLoop(b *testing.B) {
	data := message4K()
	for _, prefill := range []int{0, 100_000} {
		for _, g := range benchConcurrency {
			b.Run(fmt.Sprintf("prefill=%d/g=%d", prefill, g), func(b *testing.B) {
				md := testenv.BenchDir(b)
				for _, sub := range []string{"tmp", "new"} {
					if err := os.Mkdir(filepath.Join(md, sub), 0o700); err != nil {
						b.Fatal(err)
					}
				}
				if prefill > 0 {
					fillDir(b, filepath.Join(md, "new"), prefill)
					syscall.Sync()
				}
				rawLoop(b, md, g, data)
			})
		}
	}
}

func rawLoop(b *testing.B, md string, g int, data []byte) {
	dirs := make([]*os.File, g)
	for w := range dirs {
		d, err := os.Open(filepath.Join(md, "new"))
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		dirs[w] = d
	}
	runWorkers(b, g, func(w, i int) error {
		name := fmt.Sprintf("%d.M0P0Q%d.bench", time.Now().Unix(), i)
		tmp, dst := filepath.Join(md, "tmp", name), filepath.Join(md, "new", name)
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		return dirs[w].Sync()
	})
}

// BenchmarkDeliver measures Deliver of 4 KiB messages to one recipient
// whose maildir already exists, g at a time, into an empty maildir and into
// one whose new/ already holds 100,000 files (delivery never lists a
// directory: whatever slowdown there is is the kernel's, and
// BenchmarkRawFsyncLoop with the same prefill shows it).
func BenchmarkDeliver(b *testing.B) {
	body := message4K()
	for _, mode := range benchSyncModes(b) {
		for _, prefill := range []int{0, 100_000} {
			for _, g := range benchConcurrency {
				b.Run(fmt.Sprintf("sync=%v/prefill=%d/g=%d", mode, prefill, g), func(b *testing.B) {
					base := testenv.BenchDir(b)
					s := newStore(b, Options{AllowedBase: base, Sync: mode})
					rcpt := []Recipient{{Address: "xomail@xoyize.xyz", OrigTo: "test0@hosted-domain.com", Maildir: base + "/xomail/mailbox/"}}
					m := &Message{
						ID: "BENCH", From: "sender@example.org", Body: bytes.NewReader(body), Arrived: time.Now(),
						Header: []byte("Received: from client.example.org by mx.example.test; Mon, 1 Jan 2024 00:00:00 +0000\r\n"),
					}
					deliverOK(b, s, m, rcpt...) // creates the maildir
					if prefill > 0 {
						fillDir(b, base+"/xomail/mailbox/new", prefill)
						syscall.Sync() // no background writeback of the setup while measuring
					}
					runWorkers(b, g, func(_, _ int) error {
						return s.Deliver(context.Background(), m, rcpt)[0]
					})
				})
			}
		}
	}
}

// benchSyncModes: file and filesystem work on any file system, journal
// only where the benchmarks run on ext3/ext4 with a journal or XFS (see
// COURRIEL_BENCH_DIR in HACKING.md); elsewhere it would measure file.
func benchSyncModes(b *testing.B) []SyncMode {
	dir, err := os.Open(cmp.Or(os.Getenv("COURRIEL_BENCH_DIR"), os.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(dir.Fd()), &st); err != nil {
		b.Fatal(err)
	}
	modes := []SyncMode{SyncFile, SyncFilesystem}
	if autoSyncMode(dir, st.Dev) == SyncJournal {
		modes = append(modes, SyncJournal)
	}
	return modes
}

// fillDir creates n small files in dir quickly (no fsync: setup only).
func fillDir(b *testing.B, dir string, n int) {
	b.Helper()
	data := []byte("Subject: old\n\nold\n")
	var wg sync.WaitGroup
	var failed atomic.Value
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				name := fmt.Sprintf("1600000000.M%dP1Q%dR0000000000000000.prefill,S=18,W=21", i%1000000, i)
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
}
