package cluster

import (
	"strings"
	"sync"
)

// Holds are the users whose home is being moved away from this node
// (`courriel move-user`), keyed by home directory: while a user is held,
// logins get NO [UNAVAILABLE] (or the protocol's temporary failure) and
// copies for the user are queued for a later try instead of stored, so
// nothing lands in the old maildir after its last copy to the new node.
// The nil *Holds holds nobody. Safe for concurrent use.
type Holds struct {
	mu    sync.Mutex
	homes map[string]int // home -> number of holders
}

// NewHolds returns an empty set.
func NewHolds() *Holds { return &Holds{homes: map[string]int{}} }

func holdKey(home string) string { return strings.TrimSuffix(home, "/") }

// Hold holds the user whose home directory is home until the returned
// release is called (once; more calls do nothing).
func (h *Holds) Hold(home string) (release func()) {
	k := holdKey(home)
	h.mu.Lock()
	h.homes[k]++
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			if h.homes[k]--; h.homes[k] <= 0 {
				delete(h.homes, k)
			}
			h.mu.Unlock()
		})
	}
}

// Held says whether the user whose home directory is home is held.
func (h *Holds) Held(home string) bool {
	if h == nil || home == "" {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.homes[holdKey(home)] > 0
}
