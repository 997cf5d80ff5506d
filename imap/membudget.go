package imap

import (
	"sync"
	"time"
)

// Most of what a session reads it streams: a message to FETCH BODY[] or
// BINARY[1] from its file (mimescan.go), an APPEND literal to the
// folder's tmp/, a large message's parts to SEARCH TEXT from its file.
// What is still read whole into memory (a message whose structure is
// beyond the scanner's bounds) takes its bytes from memBudget, one for the
// server: a session that cannot have its share waits for it, up to
// Options.BufferedWait, then gets NO [UNAVAILABLE]. Ten sessions
// FETCHing BINARY[1] of a 59 MB message held 2.5 GiB (QA).

const (
	// DefaultMaxBufferedBytes is Options.MaxBufferedBytes's default: a
	// few messages of the APPEND limit at a time, read whole and in CRLF
	// form.
	DefaultMaxBufferedBytes = 256 << 20
	// DefaultBufferedWait is Options.BufferedWait's default.
	DefaultBufferedWait = 20 * time.Second
)

// memBudget is a semaphore of bytes, granted in the order asked for, so
// that a large request is not passed over for good by small ones. A
// request for more than the total waits for the whole budget.
type memBudget struct {
	mu    sync.Mutex
	total int64
	used  int64           // guarded by mu
	queue []*budgetWaiter // guarded by mu; first come, first served
}

type budgetWaiter struct {
	n       int64
	granted bool // guarded by memBudget.mu
	ready   chan struct{}
}

func newMemBudget(total int64) *memBudget { return &memBudget{total: total} }

// acquire takes n bytes (the whole budget when n is more), waiting up to
// wait, or until done is closed; it returns what it took (0: nothing,
// the wait ran out).
func (b *memBudget) acquire(n int64, wait time.Duration, done <-chan struct{}) int64 {
	n = min(max(n, 0), b.total)
	b.mu.Lock()
	if len(b.queue) == 0 && b.used+n <= b.total {
		b.used += n
		b.mu.Unlock()
		return n
	}
	if wait <= 0 {
		b.mu.Unlock()
		return 0
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.queue = append(b.queue, w)
	b.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.ready:
		return n
	case <-t.C:
	case <-done:
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted {
		return n // granted as the wait ran out
	}
	for i, q := range b.queue {
		if q == w {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			break
		}
	}
	b.grantLocked() // those behind it may fit now
	return 0
}

// release gives back n bytes that acquire took.
func (b *memBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.grantLocked()
}

func (b *memBudget) grantLocked() {
	for len(b.queue) > 0 && b.used+b.queue[0].n <= b.total {
		w := b.queue[0]
		b.queue = b.queue[1:]
		b.used += w.n
		w.granted = true
		close(w.ready)
	}
}

// inUse is what is taken, for tests.
func (b *memBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errBusy answers a command that could not have its memory in time.
var errBusy = no("UNAVAILABLE", "Server busy, try again later")

// holdMem makes the session's share of the budget at least n bytes, for
// buffers it keeps until trimBuffers drops them: the end of the command.
func (s *session) holdMem(n int64) error {
	n = min(n, s.srv.mem.total) // more is the whole budget
	if n <= s.heldMem {
		return nil
	}
	got := s.srv.mem.acquire(n-s.heldMem, s.srv.opts.BufferedWait, s.srv.conns.Done())
	if got == 0 {
		s.logger.Warn("imap: no memory in time for a large message", "bytes", n, "held", s.heldMem)
		return errBusy
	}
	s.heldMem += got
	return nil
}

// releaseMem gives the session's share back.
func (s *session) releaseMem() {
	s.srv.mem.release(s.heldMem)
	s.heldMem = 0
}
