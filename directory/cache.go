package directory

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// maxCacheEntries bounds memory under a flood of distinct keys.
const maxCacheEntries = 100_000

// searchCache holds raw search results keyed by (filter, attributes), shared
// by every lookup. Answers expire by epoch, not one by one: every positive
// answer cached in one TTL window is dropped at the same instant, and the
// same for negative answers. So after an admin adds an alias, the alias
// lookup and the sender-login lookup see it at the same moment — never one
// accepting mail for it while the other still refuses it as a sender.
type searchCache struct {
	posTTL, negTTL time.Duration
	now            func() time.Time

	mu sync.Mutex
	// gen counts flushes: a search that started before a flush may have
	// read the directory before the change that caused it, so its answer
	// is handed to its callers but never stored.
	gen      uint64                     // guarded by mu
	posEpoch int64                      // guarded by mu
	negEpoch int64                      // guarded by mu
	pos      map[string][]*ldap.Entry   // guarded by mu; entries are immutable
	neg      map[string]struct{}        // guarded by mu
	inflight map[string]*inflightSearch // guarded by mu
}

type inflightSearch struct {
	done    chan struct{}
	entries []*ldap.Entry
	err     error
}

func newSearchCache(posTTL, negTTL time.Duration, now func() time.Time) *searchCache {
	return &searchCache{
		posTTL: posTTL, negTTL: negTTL, now: now,
		pos: map[string][]*ldap.Entry{}, neg: map[string]struct{}{},
		inflight: map[string]*inflightSearch{},
	}
}

func epoch(t time.Time, ttl time.Duration) int64 {
	if ttl <= 0 {
		return t.UnixNano() // caching disabled: a new epoch every call
	}
	return t.UnixNano() / int64(ttl)
}

// rollLocked drops the maps whose window has passed.
func (c *searchCache) rollLocked() {
	t := c.now()
	if e := epoch(t, c.posTTL); e != c.posEpoch || len(c.pos) > maxCacheEntries {
		c.posEpoch, c.pos = e, map[string][]*ldap.Entry{}
	}
	if e := epoch(t, c.negTTL); e != c.negEpoch || len(c.neg) > maxCacheEntries {
		c.negEpoch, c.neg = e, map[string]struct{}{}
	}
}

// do returns the cached answer for key or runs search once for all callers
// waiting on the same key (a burst of mail is one LDAP search, not many).
// hit reports whether no search was needed. Errors are never cached. A
// caller waiting for another's search gives up when its own ctx ends
// (ErrUnavailable): a search that hangs must not take every later lookup
// of its key with it.
func (c *searchCache) do(ctx context.Context, key string, search func() ([]*ldap.Entry, error)) (entries []*ldap.Entry, hit bool, err error) {
	c.mu.Lock()
	c.rollLocked()
	if e, ok := c.pos[key]; ok {
		c.mu.Unlock()
		return e, true, nil
	}
	if _, ok := c.neg[key]; ok {
		c.mu.Unlock()
		return nil, true, nil
	}
	if f, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.entries, true, f.err
		case <-ctx.Done():
			return nil, false, fmt.Errorf("%w: waiting for the same search in flight: %v", ErrUnavailable, ctx.Err())
		}
	}
	f := &inflightSearch{done: make(chan struct{})}
	c.inflight[key] = f
	gen := c.gen
	c.mu.Unlock()

	f.entries, f.err = search()

	c.mu.Lock()
	if c.inflight[key] == f {
		delete(c.inflight, key)
	}
	if f.err == nil && gen == c.gen {
		c.rollLocked()
		if len(f.entries) > 0 {
			if c.posTTL > 0 {
				c.pos[key] = f.entries
			}
		} else if c.negTTL > 0 {
			c.neg[key] = struct{}{}
		}
	}
	c.mu.Unlock()
	close(f.done)
	return f.entries, false, f.err
}

// flush forgets every answer, and makes the searches in flight forget
// theirs: later callers for the same key search again instead of waiting
// for an answer read before the change.
func (c *searchCache) flush() {
	c.mu.Lock()
	c.gen++
	c.pos, c.neg = map[string][]*ldap.Entry{}, map[string]struct{}{}
	c.inflight = map[string]*inflightSearch{}
	c.mu.Unlock()
}
