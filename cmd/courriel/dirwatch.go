package main

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"courriel/directory"
)

// liveWatcher runs the directory change watcher of the current directory
// client: a SIGHUP that replaces the client (a rotated reader password, a
// new replica URL) replaces the watcher too.
type liveWatcher struct {
	flush func() // the live directory's FlushCache

	mu     sync.Mutex
	parent context.Context // guarded by mu; the server's, set by start
	cur    *directory.Watcher
	cancel context.CancelFunc
	done   chan struct{} // closed when cur's Run returned
}

// begin records the server's context, under which watchers run, and
// starts one on d when on.
func (l *liveWatcher) begin(ctx context.Context, d *directory.Directory, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.parent = ctx
	if on {
		l.startLocked(d)
	}
}

// restart watches d instead of the running watcher's directory (or starts
// watching: a SIGHUP turned watch_changes on); no-op before begin.
func (l *liveWatcher) restart(d *directory.Directory) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.parent != nil {
		l.startLocked(d)
	}
}

func (l *liveWatcher) startLocked(d *directory.Directory) {
	l.stopLocked()
	wctx, cancel := context.WithCancel(l.parent)
	w, done := d.NewWatcher(l.flush), make(chan struct{})
	go func() {
		defer close(done)
		w.Run(wctx)
	}()
	l.cur, l.cancel, l.done = w, cancel, done
}

// stop ends the running watcher and waits for it.
func (l *liveWatcher) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopLocked()
}

func (l *liveWatcher) stopLocked() {
	if l.cancel != nil {
		l.cancel()
		<-l.done
		l.cancel, l.done = nil, nil
	}
	l.cur = nil
}

// Status is the running watcher's; zero when none runs.
func (l *liveWatcher) Status() directory.WatchStatus {
	l.mu.Lock()
	w := l.cur
	l.mu.Unlock()
	if w == nil {
		return directory.WatchStatus{}
	}
	return w.Status()
}

// registerWatchMetrics exports the directory change watcher's state: whether
// cached answers follow the replica now, or only their TTL.
func registerWatchMetrics(reg *prometheus.Registry, w *liveWatcher) {
	if reg == nil {
		return
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_directory_watch_connected",
			Help: "1 while the persistent sync search on the directory replica reports changes; 0: cached answers expire by TTL only.",
		}, func() float64 {
			if w.Status().Connected {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "courriel_directory_watch_changes_total",
			Help: "Directory changes reported by the sync search (each one flushed the lookup cache), since the watcher started.",
		}, func() float64 { return float64(w.Status().Changes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "courriel_directory_watch_last_change_timestamp_seconds",
			Help: "Unix time of the last directory change reported; 0 when none yet.",
		}, func() float64 {
			t := w.Status().LastChange
			if t.IsZero() {
				return 0
			}
			return float64(t.UnixNano()) / 1e9
		}),
	)
}
