package imap

import (
	"sync"
	"sync/atomic"

	"courriel/imap/mailstore"
)

// A cold FETCH of ENVELOPE or BODYSTRUCTURE reads and parses each message
// file before it writes the response. Helper goroutines read and parse
// part of the messages ahead of the writing loop, into the folder's cache,
// so that file reads and parsing run on another core while the session
// formats, encrypts and sends.
//
// The messages are cut into chunks of prefetchChunk. With h helpers, one
// chunk in h+1 is the writer's own (it parses those as it goes, through
// the cache, as without helpers); the helpers take the others in order.
// Reaching a helper's chunk, the writer waits only if a helper is still
// on it, and takes it over if none started it: at most one wait per
// chunk, where a wait per message cost a thread wake-up each and more CPU
// than the parsing saved. Helpers are bounded by the server's
// prefetchSlots (Options.ParseHelpers for all sessions together; by
// default none on two cores): without slots nothing changes.

// minPrefetch is the fewest messages worth a helper.
const minPrefetch = 64

// prefetchChunk is the number of messages a helper or the writer takes at
// a time.
const prefetchChunk = 32

// Chunk states.
const (
	pfFree    uint32 = iota // nobody took it yet
	pfParsing               // a helper is parsing it
	pfDone                  // a helper is done (cached, or failed: the writer parses again and reports)
	pfWriter                // the writer's
)

type prefetcher struct {
	mb                *mailstore.Mailbox
	mem               *memBudget
	uids              []uint32
	wantEnv, wantBody bool
	stride            int          // helpers + 1: chunk k is the writer's when k%stride == 0
	next              atomic.Int64 // helpers' next claim, counted over helper chunks
	state             []atomic.Uint32
	stop              atomic.Bool
	mu                sync.Mutex
	done              sync.Cond // signalled under mu when a helper finishes a chunk
	wg                sync.WaitGroup
}

// startPrefetch starts helpers for a FETCH of uids when it is worth it and
// slots are free; nil means none (claim and close accept nil).
func (s *session) startPrefetch(uids []uint32, items []fetchItem) *prefetcher {
	if len(uids) < minPrefetch || cap(s.srv.prefetchSlots) == 0 {
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
	helpers := 0
	for helpers < cap(s.srv.prefetchSlots) {
		select {
		case s.srv.prefetchSlots <- struct{}{}:
			helpers++
			continue
		default:
		}
		break
	}
	if helpers == 0 {
		return nil
	}
	p := &prefetcher{mb: mb, mem: s.srv.mem, uids: uids, wantEnv: wantEnv, wantBody: wantBody, stride: helpers + 1,
		state: make([]atomic.Uint32, (len(uids)+prefetchChunk-1)/prefetchChunk)}
	p.done.L = &p.mu
	p.wg.Add(helpers)
	for range helpers {
		go p.run(s.srv.prefetchSlots)
	}
	return p
}

func (p *prefetcher) run(slots chan struct{}) {
	defer func() {
		<-slots
		p.wg.Done()
	}()
	// A message beyond the scanner's bounds is parsed ahead only when
	// the memory budget has room at once; else the writer parses it, and
	// waits for room as its session does.
	var held int64
	sc := parseScratch{hold: func(n int64) error {
		if got := p.mem.acquire(n, 0, nil); got > 0 {
			held += got
			return nil
		}
		return errBusy
	}}
	for !p.stop.Load() {
		// The n-th helper chunk is chunk n + n/(stride-1) + 1: every
		// stride-th chunk is skipped, being the writer's.
		n := int(p.next.Add(1) - 1)
		k := n + n/(p.stride-1) + 1
		if k >= len(p.state) {
			return
		}
		if !p.state[k].CompareAndSwap(pfFree, pfParsing) {
			continue // the writer took it over
		}
		end := min((k+1)*prefetchChunk, len(p.uids))
		for _, uid := range p.uids[k*prefetchChunk : end] {
			if p.stop.Load() {
				break
			}
			// Errors are the writer's to report: it parses again when it
			// finds nothing cached.
			parseCached(p.mb, uid, nil, p.wantEnv, p.wantBody, &sc)
			if cap(sc.read) > maxKeptBuf {
				sc.read = nil
			}
			if cap(sc.crlf) > maxKeptBuf {
				sc.crlf = nil
			}
			p.mem.release(held)
			held = 0
		}
		p.state[k].Store(pfDone)
		p.mu.Lock()
		p.done.Broadcast()
		p.mu.Unlock()
	}
}

// claim is called by the writer before message i: it returns once no
// helper is working on it.
func (p *prefetcher) claim(i int) {
	if p == nil || i%prefetchChunk != 0 {
		return // a chunk is claimed at its first message
	}
	k := i / prefetchChunk
	if k%p.stride == 0 || p.state[k].CompareAndSwap(pfFree, pfWriter) {
		return
	}
	if p.state[k].Load() == pfDone {
		return
	}
	p.mu.Lock()
	for p.state[k].Load() == pfParsing {
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
