package delivery

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupSyncerBatches: callers arriving while an fsync runs are not
// released by it, and share the next one.
func TestGroupSyncerBatches(t *testing.T) {
	t.Parallel()
	dir, key := openTestDir(t)
	g := newGroupSyncer((*os.File).Sync)
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	var syncs atomic.Int32
	g.sync = func(*os.File) error {
		syncs.Add(1)
		started <- struct{}{}
		<-release
		return nil
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- g.Sync(dir, key) }()
	<-started // the first fsync is running

	const late = 10
	var wg sync.WaitGroup
	var lateDone atomic.Int32
	for range late {
		wg.Go(func() {
			if err := g.Sync(dir, key); err != nil {
				t.Error(err)
			}
			lateDone.Add(1)
		})
	}
	// Wait until all late callers have joined the pending batch (bounded).
	for i := 0; ; i++ {
		g.mu.Lock()
		n := 0
		for _, st := range g.dirs {
			if st.pending != nil {
				n = st.pending.n
			}
		}
		g.mu.Unlock()
		if n == late {
			break
		}
		if i == 10000 {
			t.Fatalf("only %d of %d late callers joined the pending batch", n, late)
		}
		time.Sleep(time.Millisecond)
	}

	release <- struct{}{} // finish fsync #1
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	<-started // fsync #2 started for the late callers
	if n := lateDone.Load(); n != 0 {
		t.Fatalf("%d late callers released by an fsync that started before they arrived", n)
	}
	close(release)
	wg.Wait()
	if n := syncs.Load(); n != 2 {
		t.Errorf("%d fsyncs for 1+%d callers, want 2", n, late)
	}
	g.mu.Lock()
	if len(g.dirs) != 0 {
		t.Errorf("%d directories still tracked after all syncs", len(g.dirs))
	}
	g.mu.Unlock()
}

func TestGroupSyncerError(t *testing.T) {
	t.Parallel()
	dir, key := openTestDir(t)
	g := newGroupSyncer((*os.File).Sync)
	boom := errors.New("boom")
	g.sync = func(*os.File) error { return boom }
	if err := g.Sync(dir, key); !errors.Is(err, boom) {
		t.Errorf("Sync = %v, want %v", err, boom)
	}
	g.sync = (*os.File).Sync
	if err := g.Sync(dir, key); err != nil {
		t.Errorf("Sync after recovery = %v", err)
	}
}

// openTestDir opens a fresh directory, closed at the end of the test, and
// returns its group commit key.
func openTestDir(t *testing.T) (*os.File, dirKey) {
	t.Helper()
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	key, err := keyOf(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, key
}
