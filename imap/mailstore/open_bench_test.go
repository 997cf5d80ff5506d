package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkOpenLargeFolder opens a folder of COURRIEL_BENCH_N messages
// (20,000 by default) that was opened and released before, as a new
// session's SELECT does once the previous one left: Open, Watch, Status,
// Release; then the same without courriel-state; then a first open ever
// (cold: no uidlist, every file numbered); then an open of the folder kept
// loaded after its last release. The first open is outside the timing.
func BenchmarkOpenLargeFolder(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("COURRIEL_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	dir := filepath.Join(b.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		fl := ""
		if i%2 == 0 {
			fl = "S"
		}
		name := fmt.Sprintf("%d.M%dP1.bench,S=2048,W=2100:2,%s", 1672531200+i, i, fl)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	// The first open's listing is then well after the last change:
	// its stamps are settled.
	time.Sleep(fineStampMargin + 100*time.Millisecond)
	st, err := OpenStore(dir, Owner{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := NewRegistry()
	reg.keepBudget = -1 // loaded from the files each time, but in "kept"
	open := func() {
		mb, err := reg.Open(st, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		if err := mb.Sync(false); err != nil {
			b.Fatal(err)
		}
		w, view := mb.Watch()
		if s := mb.Status(); int(s.Messages) != n || len(view) != n {
			b.Fatalf("%d messages, %d in view, want %d", s.Messages, len(view), n)
		}
		w.Close()
		mb.Release()
	}
	open()
	// The first open wrote the uidlist and the modseq file: the folder
	// lingers until their stamps settle and are confirmed (bounded wait).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		reg.mu.Lock()
		n := len(reg.boxes)
		reg.mu.Unlock()
		if n == 0 || time.Now().After(deadline) {
			break
		}
	}
	b.Run("state", func(b *testing.B) {
		for range b.N {
			open()
		}
	})
	// Without courriel-state (the first open after an upgrade, or after
	// another program changed the uidlist): the uidlist parsed, the
	// directories listed, the modseq file parsed.
	b.Run("full", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			if err := os.Remove(filepath.Join(dir, StateFileName)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			open()
		}
	})
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			for _, f := range []string{StateFileName, "dovecot-uidlist", ModSeqFileName, IndexFileName} {
				if err := os.Remove(filepath.Join(dir, f)); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			open()
		}
	})
	b.Run("kept", func(b *testing.B) {
		kreg := NewRegistry()
		kreg.clock = func() time.Time { return time.Now().Add(time.Minute) } // stamps settled at once
		mb, err := kreg.Open(st, "INBOX")
		if err != nil {
			b.Fatal(err)
		}
		mb.Release()
		reg = kreg
		b.ResetTimer()
		for range b.N {
			open()
		}
	})
}
