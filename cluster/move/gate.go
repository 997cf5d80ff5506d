package move

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"courriel/delivery"
)

// ErrMoving is the cause of a local copy refused because its maildir is in
// a home being moved, or moved away from this node.
var ErrMoving = errors.New("move: the mailbox is being moved to another node")

// Deliverer stores local copies (*delivery.Store, or the Sieve filter
// around it): what Gate wraps.
type Deliverer interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}

// Gate stands in front of every local delivery of a node (cmd wraps its
// local deliverer with it) and answers the question the hold alone cannot:
// has every copy that started before the move finished? cluster.Holds is
// consulted by the protocols when they accept a copy; a copy accepted just
// before the hold is still written afterwards. The Gate counts the copies
// being written per maildir, refuses (temporarily) new copies into a closed
// home, and Drain waits until those already admitted are done: a copy is
// either admitted before Close, and then Drain waits for it, or refused
// after it, and then it stays in the sender's or the queue's hands. The
// check and the count are under one lock, so there is no third case.
//
// A home stays closed after a successful move (its copies are refused
// until an import brings the user back): a copy whose recipient was looked
// up before the directory changed must not recreate an empty maildir at
// the old path. Safe for concurrent use; the nil *Gate admits everything.
type Gate struct {
	mu       sync.Mutex
	closed   map[string]int // home -> closers; guarded by mu
	inflight map[string]int // maildir (clean) -> copies being written; guarded by mu
	changed  chan struct{}  // closed and replaced when inflight shrinks; guarded by mu
}

// NewGate returns a gate with every home open.
func NewGate() *Gate {
	return &Gate{closed: map[string]int{}, inflight: map[string]int{}, changed: make(chan struct{})}
}

// under says whether path is dir or inside it (both clean, absolute).
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/") || dir == "/"
}

// Close refuses new copies into home (a maildir inside it) until reopen is
// called (once; more calls do nothing). Not calling reopen leaves the home
// closed: what a finished move does.
func (g *Gate) Close(home string) (reopen func()) {
	k := filepath.Clean(home)
	g.mu.Lock()
	g.closed[k]++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.closed[k]--; g.closed[k] <= 0 {
				delete(g.closed, k)
			}
			g.mu.Unlock()
		})
	}
}

// Open lifts every closure of home: the user was imported back here.
func (g *Gate) Open(home string) {
	g.mu.Lock()
	delete(g.closed, filepath.Clean(home))
	g.mu.Unlock()
}

// IsClosed says whether copies into home are refused.
func (g *Gate) IsClosed(home string) bool {
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed[filepath.Clean(home)] > 0
}

func (g *Gate) closedLocked(maildir string) bool {
	for home := range g.closed {
		if under(maildir, home) {
			return true
		}
	}
	return false
}

// enter admits a copy into maildir, false when its home is closed.
func (g *Gate) enter(maildir string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.closed) > 0 && g.closedLocked(maildir) {
		return false
	}
	g.inflight[maildir]++
	return true
}

func (g *Gate) leave(maildir string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inflight[maildir]--; g.inflight[maildir] <= 0 {
		delete(g.inflight, maildir)
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// Drain waits until no copy admitted into home is being written, or ctx
// ends. Close home first, or new copies may keep it busy.
func (g *Gate) Drain(ctx context.Context, home string) error {
	k := filepath.Clean(home)
	for {
		g.mu.Lock()
		busy := 0
		for md, n := range g.inflight {
			if under(md, k) {
				busy += n
			}
		}
		ch := g.changed
		g.mu.Unlock()
		if busy == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Wrap returns next behind the gate.
func (g *Gate) Wrap(next Deliverer) Deliverer { return gatedDeliverer{g: g, next: next} }

type gatedDeliverer struct {
	g    *Gate
	next Deliverer
}

func (d gatedDeliverer) Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error {
	if d.g == nil {
		return d.next.Deliver(ctx, m, rcpts)
	}
	errs := make([]error, len(rcpts))
	admitted := make([]delivery.Recipient, 0, len(rcpts))
	index := make([]int, 0, len(rcpts))
	for i, r := range rcpts {
		md := filepath.Clean(r.Maildir)
		if !d.g.enter(md) {
			// delivery.ErrHeld too: the caller queues the copy, which waits
			// out the move and goes where the user is then.
			errs[i] = &delivery.Error{Temporary: true, Reason: "mailbox being moved to another node", Err: fmt.Errorf("%w (%w)", ErrMoving, delivery.ErrHeld)}
			continue
		}
		defer d.g.leave(md)
		admitted = append(admitted, r)
		index = append(index, i)
	}
	if len(admitted) == 0 {
		return errs
	}
	for j, err := range d.next.Deliver(ctx, m, admitted) {
		errs[index[j]] = err
	}
	return errs
}
