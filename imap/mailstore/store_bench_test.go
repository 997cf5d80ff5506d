package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkStoreSeenAll is the folder side of STORE +FLAGS \Seen 1:* on a
// folder of COURRIEL_BENCH_N unseen messages (20,000 by default): one
// rename per message, the change log, the modseq records. Each round sets
// \Seen on all of them, then takes it away again outside the timing. It
// reports the process's user and system CPU per STORE besides the wall
// time (the renames are system time, the rest mostly user time).
func BenchmarkStoreSeenAll(b *testing.B) {
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
		name := fmt.Sprintf("%d.M%dP1.bench,S=2048,W=2100:2,", 1672531200+i, i)
		if err := os.WriteFile(filepath.Join(dir, "cur", name), []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	st, err := OpenStore(dir, Owner{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		b.Fatal(err)
	}
	defer mb.Release()
	w, view := mb.Watch()
	defer w.Close()
	if len(view) != n {
		b.Fatalf("%d in view, want %d", len(view), n)
	}
	other, _ := mb.Watch() // another session, told of the changes
	defer other.Close()
	var user, sys time.Duration
	b.ResetTimer()
	for range b.N {
		u0, s0 := benchCPU()
		_, ok, err := mb.StoreFlags(view, StoreAdd, []string{`\Seen`}, w)
		u1, s1 := benchCPU()
		user, sys = user+u1-u0, sys+s1-s0
		if err != nil {
			b.Fatal(err)
		}
		if !ok[n-1] {
			b.Fatal("last message not stored")
		}
		b.StopTimer()
		if _, _, err := mb.StoreFlags(view, StoreRemove, []string{`\Seen`}, w); err != nil {
			b.Fatal(err)
		}
		w.Changes(true) // as the sessions do after a command
		other.Changes(true)
		b.StartTimer()
	}
	b.ReportMetric(user.Seconds()/float64(b.N), "user_s/op")
	b.ReportMetric(sys.Seconds()/float64(b.N), "sys_s/op")
}

// benchCPU is the process's user and system CPU so far.
func benchCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}
