package directory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// A search in flight when the cache is flushed (a change was reported)
// may have read the directory before the change: its answer goes to its
// callers but is not stored, and a caller after the flush searches again.
func TestCacheFlushDuringSearch(t *testing.T) {
	c := newSearchCache(time.Hour, time.Hour, time.Now)
	old := []*ldap.Entry{{DN: "uid=old"}}
	fresh := []*ldap.Entry{{DN: "uid=fresh"}}
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan []*ldap.Entry)
	go func() {
		e, _, _ := c.do(context.Background(), "k", func() ([]*ldap.Entry, error) {
			close(started)
			<-release
			return old, nil
		})
		done <- e
	}()
	<-started
	c.flush()
	// After the flush, the same key does not wait for the old search.
	e, hit, err := c.do(context.Background(), "k", func() ([]*ldap.Entry, error) { return fresh, nil })
	if err != nil || hit || e[0].DN != "uid=fresh" {
		t.Fatalf("after flush: %v hit=%v %v", e, hit, err)
	}
	close(release)
	if e := <-done; e[0].DN != "uid=old" {
		t.Errorf("the first caller got %v", e)
	}
	// The old answer did not overwrite the fresh one.
	e, hit, _ = c.do(context.Background(), "k", func() ([]*ldap.Entry, error) { t.Error("searched again"); return nil, nil })
	if !hit || e[0].DN != "uid=fresh" {
		t.Errorf("cached: %v hit=%v", e, hit)
	}

	// Without a flush, the answer is stored as before.
	c.do(context.Background(), "k2", func() ([]*ldap.Entry, error) { return old, nil })
	if _, hit, _ := c.do(context.Background(), "k2", nil); !hit {
		t.Error("answer not cached")
	}
}

// A caller waiting for a search another caller started for the same key
// gives up when its own ctx ends (ErrUnavailable): a search that hangs
// does not take every later lookup of its key with it.
func TestCacheWaiterEndsWithItsContext(t *testing.T) {
	c := newSearchCache(time.Hour, time.Hour, time.Now)
	started, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go c.do(context.Background(), "k", func() ([]*ldap.Entry, error) {
		close(started)
		<-release
		return nil, nil
	})
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := c.do(ctx, "k", func() ([]*ldap.Entry, error) { t.Error("searched while a search was in flight"); return nil, nil })
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("waiter: %v, want ErrUnavailable", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter is still blocked after its ctx ended")
	}
}
