package imap

import (
	"sync"
	"sync/atomic"

	"courriel/imap/mailstore"
)

// A cold FETCH of ENVELOPE or BODYSTRUCTURE reads and parses each message
// file before it writes the response. Helper goroutines read and parse
// ahead of the writing loop, into the folder's cache, so that file reads
// and parsing run on another core while the session formats, encrypts and
// sends. The writing loop claims each message before writing it: one no
// helper has taken it parses itself (through the cache, as without
// helpers), one a helper is parsing it waits for. Helpers are bounded by
// the server's prefetchSlots (GOMAXPROCS-1 for all sessions): with one
// core, or when other sessions hold the slots, nothing changes.

// minPrefetch is the fewest messages worth a helper.
const minPrefetch = 64

// Message states of a prefetch.
const (
	pfFree    uint32 = iota // nobody took it yet
	pfParsing               // a helper is parsing it
	pfDone                  // a helper is done with it (cached, or failed: the writer tries again and reports)
	pfWriter                // the writer took it
)

type prefetcher struct {
	mb                *mailstore.Mailbox
	uids              []uint32
	wantEnv, wantBody bool
	next              atomic.Int64
	state             []atomic.Uint32
	stop              atomic.Bool
	mu                sync.Mutex
	done              sync.Cond // signalled under mu when a helper finishes a message
	wg                sync.WaitGroup
	started           int // helpers started, by startPrefetch only
}

// startPrefetch starts helpers for a FETCH of uids when it is worth it and
// slots are free; nil means none (claim and close accept nil).
func (s *session) startPrefetch(uids []uint32, items []fetchItem) *prefetcher {
	if len(uids) < minPrefetch {
		return nil
	}
	var wantEnv, wantBody bool
	for _, it := range items {
		switch it.kind {
		case fEnvelope:
			wantEnv = true
		case fBodyStructure, fBody:
			wantBody = true
		}
	}
	if !wantEnv && !wantBody {
		return nil
	}
	mb := s.sel.mb
	// Warm (the last message cached): nothing to parse ahead.
	if c := mb.Cached(uids[len(uids)-1]); (c.Envelope != nil || !wantEnv) && (c.Body != nil || !wantBody) {
		return nil
	}
	var p *prefetcher
	for p == nil || p.running() < cap(s.srv.prefetchSlots) {
		select {
		case s.srv.prefetchSlots <- struct{}{}:
		default:
			return p
		}
		if p == nil {
			p = &prefetcher{mb: mb, uids: uids, wantEnv: wantEnv, wantBody: wantBody, state: make([]atomic.Uint32, len(uids))}
			p.done.L = &p.mu
		}
		p.wg.Add(1)
		p.started++
		go p.run(s.srv.prefetchSlots)
	}
	return p
}

func (p *prefetcher) running() int { return p.started }

func (p *prefetcher) run(slots chan struct{}) {
	defer func() {
		<-slots
		p.wg.Done()
	}()
	var sc parseScratch
	for !p.stop.Load() {
		j := p.next.Add(1) - 1
		if j >= int64(len(p.uids)) {
			return
		}
		if !p.state[j].CompareAndSwap(pfFree, pfParsing) {
			continue // the writer got there first
		}
		// Errors are the writer's to report: it parses again when it
		// finds nothing cached.
		parseCached(p.mb, p.uids[j], nil, p.wantEnv, p.wantBody, &sc)
		if cap(sc.read) > maxKeptBuf {
			sc.read = nil
		}
		if cap(sc.crlf) > maxKeptBuf {
			sc.crlf = nil
		}
		p.state[j].Store(pfDone)
		p.mu.Lock()
		p.done.Broadcast()
		p.mu.Unlock()
	}
}

// claim is called by the writer before message i: it returns once no
// helper is working on it.
func (p *prefetcher) claim(i int) {
	if p == nil || p.state[i].CompareAndSwap(pfFree, pfWriter) {
		return
	}
	p.mu.Lock()
	for p.state[i].Load() == pfParsing {
		p.done.Wait()
	}
	p.mu.Unlock()
}

// close stops the helpers and waits for them: nothing touches the folder
// after the FETCH returns.
func (p *prefetcher) close() {
	if p == nil {
		return
	}
	p.stop.Store(true)
	p.wg.Wait()
}
