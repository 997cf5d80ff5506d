package logwriter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a destination that keeps every write apart; the first
// write can be made to wait for gate.
type recorder struct {
	gate    chan struct{} // nil: no wait
	entered chan struct{} // closed when the first write has started
	fail    error         // returned by the first write

	mu     sync.Mutex
	writes [][]byte
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	first := len(r.writes) == 0
	r.writes = append(r.writes, bytes.Clone(p))
	r.mu.Unlock()
	if first && r.entered != nil {
		close(r.entered)
	}
	if first && r.gate != nil {
		<-r.gate
	}
	if first && r.fail != nil {
		return 0, r.fail
	}
	return len(p), nil
}

func (r *recorder) all() (writes [][]byte, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes, string(bytes.Join(r.writes, nil))
}

func newLogger(w *Writer) *slog.Logger {
	return slog.New(NewHandler(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), w))
}

var lineRe = regexp.MustCompile(`^level=INFO msg=line g=(\d+) i=(\d+) pad=(?:"")?(x*)$`)

// TestConcurrentLinesWholeAndInOrder: many goroutines log at once; every
// line reaches the destination once, whole, and each goroutine's lines in
// the order it logged them.
func TestConcurrentLinesWholeAndInOrder(t *testing.T) {
	t.Parallel()
	dst := &recorder{}
	w := New(dst, 4096)
	log := newLogger(w)
	const goroutines, lines = 16, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range lines {
				log.Info("line", "g", g, "i", i, "pad", strings.Repeat("x", i%50))
				if i%7 == 0 {
					runtime.Gosched()
				}
			}
		})
	}
	wg.Wait()
	// Every Handle has returned: whatever it appended is written, by it
	// or by the goroutine that was writing, without Sync.
	writes, text := dst.all()
	next := make([]int, goroutines)
	n := 0
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		m := lineRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q: not a whole record", l)
		}
		g, _ := strconv.Atoi(m[1])
		i, _ := strconv.Atoi(m[2])
		if g >= goroutines || i != next[g] {
			t.Fatalf("line %q: want i=%d for g=%d", l, next[g], g)
		}
		if len(m[3]) != i%50 {
			t.Fatalf("line %q: padding cut", l)
		}
		next[g]++
		n++
	}
	if n != goroutines*lines {
		t.Errorf("%d lines written, want %d", n, goroutines*lines)
	}
	t.Logf("%d lines in %d writes", n, len(writes))
}

// TestLinesAppendedDuringAWriteGoInTheNext: while one goroutine's write
// is in progress, the others' lines are only appended, and the writing
// goroutine writes them all in one more write before it returns.
func TestLinesAppendedDuringAWriteGoInTheNext(t *testing.T) {
	t.Parallel()
	dst := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	w := New(dst, 1<<20)
	log := newLogger(w)
	done := make(chan struct{})
	go func() {
		log.Info("first")
		close(done)
	}()
	<-dst.entered
	for i := range 10 {
		log.Info("meanwhile", "i", i) // returns at once: a write is in progress
	}
	if writes, _ := dst.all(); len(writes) != 1 {
		t.Fatalf("%d writes while the first is in progress, want 1", len(writes))
	}
	close(dst.gate)
	<-done
	writes, text := dst.all()
	if len(writes) != 2 {
		t.Errorf("%d writes, want 2 (the first line, then the ten held)", len(writes))
	}
	want := "level=INFO msg=first\n"
	for i := range 10 {
		want += fmt.Sprintf("level=INFO msg=meanwhile i=%d\n", i)
	}
	if text != want {
		t.Errorf("written:\n%s\nwant:\n%s", text, want)
	}
}

// TestBoundedWhileWriting: with a write stuck, writers wait once the held
// lines reach the bound; no write is ever larger than the bound, and no
// line is lost.
func TestBoundedWhileWriting(t *testing.T) {
	t.Parallel()
	dst := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	const max = 200
	w := New(dst, max)
	line := strings.Repeat("y", 39) + "\n" // 40 octets
	var wg sync.WaitGroup
	wg.Go(func() { w.Write([]byte(line)); w.Flush() })
	<-dst.entered
	for range 4 {
		wg.Go(func() {
			for range 25 {
				w.Write([]byte(line))
				w.Flush()
			}
		})
	}
	// Wait (bounded) until the held lines fill the bound: the writers are
	// then blocked in Write.
	for i := 0; ; i++ {
		w.mu.Lock()
		held := len(w.held)
		w.mu.Unlock()
		if held+len(line) > max {
			break
		}
		if i > 1e7 {
			t.Fatal("the held lines never reached the bound")
		}
		runtime.Gosched()
	}
	w.mu.Lock()
	if len(w.held) > max {
		t.Errorf("%d octets held, bound %d", len(w.held), max)
	}
	w.mu.Unlock()
	close(dst.gate)
	wg.Wait()
	writes, text := dst.all()
	for _, wr := range writes {
		if len(wr) > max {
			t.Errorf("a write of %d octets, bound %d", len(wr), max)
		}
	}
	if want := strings.Repeat(line, 101); text != want {
		t.Errorf("%d octets written, want %d", len(text), len(want))
	}
}

// TestRecordLargerThanTheBound is held alone and written whole.
func TestRecordLargerThanTheBound(t *testing.T) {
	t.Parallel()
	dst := &recorder{}
	w := New(dst, 10)
	big := strings.Repeat("z", 100) + "\n"
	for _, s := range []string{"a\n", big, "b\n"} {
		w.Write([]byte(s))
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	writes, text := dst.all()
	if text != "a\n"+big+"b\n" || len(writes) != 3 {
		t.Errorf("%d writes %q", len(writes), text)
	}
}

// TestWriteError: the failing write's error reaches the goroutine that
// wrote; the lines after it are written.
func TestWriteError(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk on fire")
	dst := &recorder{fail: boom}
	w := New(dst, 4096)
	h := NewHandler(slog.NewTextHandler(w, nil), w)
	log := slog.New(h)
	w.Write([]byte("lost\n"))
	if err := w.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush: %v, want %v", err, boom)
	}
	log.Info("after")
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	writes, _ := dst.all()
	if len(writes) != 2 || !strings.Contains(string(writes[1]), "msg=after") {
		t.Errorf("writes %q, want the failed one then the line after", writes)
	}
}

// TestSyncWaitsForTheWriteInProgress: Sync returns only once what was
// appended before it is written, even by another goroutine.
func TestSyncWaitsForTheWriteInProgress(t *testing.T) {
	t.Parallel()
	dst := &recorder{gate: make(chan struct{}), entered: make(chan struct{})}
	w := New(dst, 4096)
	go func() { w.Write([]byte("one\n")); w.Flush() }()
	<-dst.entered
	w.Write([]byte("two\n")) // held: the first write is in progress
	synced := make(chan error)
	go func() { synced <- w.Sync() }()
	close(dst.gate)
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
	if _, text := dst.all(); text != "one\ntwo\n" {
		t.Errorf("written %q after Sync", text)
	}
}

// TestHold: a record logged with a held context waits for the next record
// logged without it (both in one write), or for release.
func TestHold(t *testing.T) {
	t.Parallel()
	dst := &recorder{}
	w := New(dst, 4096)
	log := newLogger(w)
	ctx, release := Hold(context.Background())
	log.InfoContext(ctx, "held")
	if writes, _ := dst.all(); len(writes) != 0 {
		t.Fatalf("%d writes while held", len(writes))
	}
	log.Info("next")
	writes, text := dst.all()
	if len(writes) != 1 || text != "level=INFO msg=held\nlevel=INFO msg=next\n" {
		t.Fatalf("writes %q, want the held record and the next in one", writes)
	}

	ctx, release = Hold(context.Background())
	log.InfoContext(ctx, "alone")
	if writes, _ := dst.all(); len(writes) != 1 {
		t.Fatalf("%d writes, want still 1 before release", len(writes))
	}
	release()
	if _, text := dst.all(); !strings.HasSuffix(text, "msg=alone\n") {
		t.Errorf("release did not write the held record: %q", text)
	}
	// After release the context holds nothing back.
	log.InfoContext(ctx, "late")
	if _, text := dst.all(); !strings.HasSuffix(text, "msg=late\n") {
		t.Errorf("a record after release was held: %q", text)
	}
}

// TestLazy: a record logged with a lazy context goes out with the next
// record written (one write for both, in order), and, when none comes,
// on its own once the delay has passed. In a synctest bubble: two lazy
// records logged one after the other are within the delay of each other
// however slow the run, and the timer's write is waited for, not polled.
func TestLazy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		dst := &recorder{}
		w := New(dst, 4096)
		w.SetLazyDelay(time.Hour) // nothing but the next record writes it
		log := newLogger(w)
		lazy := Lazy(context.Background())
		log.InfoContext(lazy, "connect")
		if writes, _ := dst.all(); len(writes) != 0 {
			t.Fatalf("%d writes after a lazy record", len(writes))
		}
		log.Info("accepted")
		writes, text := dst.all()
		if len(writes) != 1 || text != "level=INFO msg=connect\nlevel=INFO msg=accepted\n" {
			t.Fatalf("writes %q, want the lazy record and the next in one", writes)
		}
		const delay = 10 * time.Millisecond
		w.SetLazyDelay(delay)
		log.InfoContext(lazy, "disconnect")
		log.InfoContext(lazy, "connect")
		synctest.Wait()
		if writes, _ := dst.all(); len(writes) != 1 {
			t.Fatalf("lazy records written before their delay: %q", writes)
		}
		time.Sleep(delay)
		synctest.Wait() // the timer's write
		writes, text = dst.all()
		if len(writes) != 2 || !strings.HasSuffix(text, "msg=accepted\nlevel=INFO msg=disconnect\nlevel=INFO msg=connect\n") {
			t.Fatalf("writes %q after the delay, want the two lazy records in one", writes)
		}
		// The timer serves again once it has fired.
		log.InfoContext(lazy, "again")
		time.Sleep(delay)
		synctest.Wait()
		if writes, text = dst.all(); len(writes) != 3 || !strings.HasSuffix(text, "msg=again\n") {
			t.Fatalf("a lazy record after the first timer was not written: %q", writes)
		}
	})
}

// pcHandler keeps the records it gets.
type pcHandler struct {
	slog.Handler
	records *[]slog.Record
}

func (h pcHandler) Handle(ctx context.Context, r slog.Record) error {
	*h.records = append(*h.records, r)
	return h.Handler.Handle(ctx, r)
}

func (h pcHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return pcHandler{h.Handler.WithAttrs(attrs), h.records}
}

// TestLogAttrs: the same line as slog's LogAttrs, made without looking
// up the caller (no PC in the record), and nothing below the level.
func TestLogAttrs(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	var records []slog.Record
	h := pcHandler{slog.NewTextHandler(&out, &slog.HandlerOptions{
		Level: slog.LevelInfo,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}), &records}
	log := slog.New(h).With("conn_id", "C1")
	attrs := []slog.Attr{slog.String("msg_id", "M1"), slog.Int("size", 42), slog.String("to", "a b")}
	log.LogAttrs(context.Background(), slog.LevelInfo, "delivery", attrs...)
	want := out.String()
	out.Reset()
	LogAttrs(context.Background(), log, slog.LevelInfo, "delivery", attrs...)
	LogAttrs(context.Background(), log, slog.LevelDebug, "below the level", attrs...)
	if got := out.String(); got != want {
		t.Errorf("LogAttrs wrote %q, slog %q", got, want)
	}
	if len(records) != 2 || records[0].PC == 0 || records[1].PC != 0 {
		t.Errorf("records %d, PCs %v: want slog's with a PC, then one without", len(records), records)
	}
}
