package queue

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// TestOnceKey: a second Accept under the key of a message queued before
// stores nothing, wherever the first one is (queued, held, delivered and
// gone, deleted by the admin), also after a restart; another key stores
// its own.
func TestOnceKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		local   bool // the first one's copy is local: stored, and gone, during Accept
		then    func(t *testing.T, q *Queue, id string)
		restart bool
	}{
		{name: "queued", then: func(*testing.T, *Queue, string) {}},
		{name: "queued, after a restart", then: func(*testing.T, *Queue, string) {}, restart: true},
		{name: "held", then: func(t *testing.T, q *Queue, id string) {
			if err := q.Hold(id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "deleted", then: func(t *testing.T, q *Queue, id string) {
			if err := q.Delete(id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "deleted while held", then: func(t *testing.T, q *Queue, id string) {
			if err := q.Hold(id); err != nil {
				t.Fatal(err)
			}
			if err := q.Delete(id); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "delivered", local: true, then: func(*testing.T, *Queue, string) {}},
		{name: "delivered, after a restart", local: true, then: func(*testing.T, *Queue, string) {}, restart: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ls := newLocalStore(t)
			clock := newClock()
			o := baseOptions(t, t.TempDir(), clock)
			o.Local = ls
			q, err := Open(o)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { q.Close() }()
			key := newID(time.Now()) + "-0\x00redirect\x00v@local.test"
			accept := func(key string) (string, []error) {
				t.Helper()
				var remote []string
				var local []delivery.Recipient
				if tc.local {
					local = []delivery.Recipient{ls.rcpt("v")}
				} else {
					remote = []string{"v@remote.test"}
				}
				id, errs, err := q.Accept(context.Background(), "", "s@remote.test", remote, local, bytes.NewReader([]byte(testMessage)), WithOnceKey(key))
				if err != nil {
					t.Fatal(err)
				}
				for _, err := range errs {
					if err != nil {
						t.Fatalf("local copy: %v", err)
					}
				}
				return id, errs
			}
			id, _ := accept(key)
			tc.then(t, q, id)
			if tc.restart {
				q.Close()
				if q, err = Open(o); err != nil {
					t.Fatal(err)
				}
			}
			// Later, as a retry: a copy stored again would have
			// another name.
			clock.Advance(time.Minute)
			before := spoolState(t, q)
			if again, _ := accept(key); again != id {
				t.Errorf("the second Accept names %s, the first %s", again, id)
			}
			if after := spoolState(t, q); after != before {
				t.Errorf("the second Accept changed the spool: %q, then %q", before, after)
			}
			if n := len(ls.copies(t, "v")); tc.local && n != 1 {
				t.Errorf("%d copies stored, want 1", n)
			}
			if other, _ := accept(key + ",w@remote.test"); other == id {
				t.Errorf("another key gave the same id %s", id)
			}
		})
	}
}

// spoolState lists what is queued and held, by id.
func spoolState(t *testing.T, q *Queue) string {
	t.Helper()
	l, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	h, err := q.ListHeld()
	if err != nil {
		t.Fatal(err)
	}
	s := "queued:"
	for _, m := range l {
		s += " " + m.ID
	}
	s += " held:"
	for _, m := range h {
		s += " " + m.ID
	}
	return s
}

// TestOnceKeyConcurrent: Accepts under one key at the same time store one
// message, and try its local copy once.
func TestOnceKeyConcurrent(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, _, err := q.Accept(context.Background(), "", "s@remote.test", []string{"w@remote.test"}, []delivery.Recipient{ls.rcpt("v")},
				bytes.NewReader([]byte(testMessage)), WithOnceKey("k")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if l, err := q.List(); err != nil || len(l) != 1 {
		t.Errorf("%d messages queued (%v), want 1", len(l), err)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.calls != 1 {
		t.Errorf("the local copy was tried %d times, want once", ls.calls)
	}
}

// TestOnceMarksKept: the mark of a message made under a key stays for
// MaxLifetime after it left, and beyond while the message named at the
// head of its key (its origin) is queued or held; Open, and the runner
// every onceSweepEvery, remove the others.
func TestOnceMarksKept(t *testing.T) {
	t.Parallel()
	clock := newClock()
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, clock)
	o.Local = ls
	o.MaxLifetime = 24 * time.Hour
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	queued, err := q.Enqueue(context.Background(), "s@remote.test", []string{"x@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	held, err := q.Enqueue(context.Background(), "s@remote.test", []string{"x@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Hold(held); err != nil {
		t.Fatal(err)
	}
	// Each made by a copy of: a message queued here, one held here, one
	// gone (or on another node), a key of no message at all.
	keys := map[string]bool{ // the key: its mark stays past MaxLifetime
		queued + "-0\x00redirect":             true,
		held + "-0\x00redirect":               true,
		newID(clock.Now()) + "-0\x00redirect": false,
		"no origin":                           false,
	}
	ids := map[string]string{}
	made := func() {
		for k := range keys {
			id, _, err := q.Accept(context.Background(), "", "s@remote.test", nil, []delivery.Recipient{ls.rcpt("v")},
				bytes.NewReader([]byte(testMessage)), WithOnceKey(k))
			if err != nil {
				t.Fatal(err)
			}
			ids[k] = id
		}
	}
	made()
	reopen := func() {
		q.Close()
		if q, err = Open(o); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(23 * time.Hour)
	reopen()
	for k, id := range ids {
		if known, err := q.sp.known(id); err != nil || !known {
			t.Errorf("%q: the mark is gone within MaxLifetime (%v)", k, err)
		}
	}
	clock.Advance(2 * time.Hour)
	reopen()
	for k, id := range ids {
		if known, err := q.sp.known(id); err != nil || known != keys[k] {
			t.Errorf("%q: known %v after MaxLifetime (%v), want %v", k, known, err, keys[k])
		}
	}

	// The runner sweeps too, and a mark's origin gone lets it go.
	if err := q.Delete(queued); err != nil {
		t.Fatal(err)
	}
	clock.Advance(onceSweepEvery)
	q.Close()
	h := start(t, o) // Open sweeps: the held one's mark alone stays
	q = h.q
	if n := onceMarks(t, dir); n != 1 {
		t.Errorf("%d marks after Open, want the held origin's", n)
	}
	if err := q.Release(held); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(held); err != nil {
		t.Fatal(err)
	}
	clock.Advance(onceSweepEvery)
	deadline := time.Now().Add(20 * time.Second)
	for onceMarks(t, dir) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the runner's next turn, within PollInterval
	}
	if n := onceMarks(t, dir); n != 0 {
		t.Errorf("%d marks left by the runner's sweep, want 0", n)
	}
}

// onceMarks counts the marks of messages made under a key.
func onceMarks(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, onceDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
