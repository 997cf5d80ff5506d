package queue

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// TestCreateSyncFails: a message whose directory fsync fails is withdrawn,
// not reported stored: Accept fails, nothing of it is left in the spool,
// and its key is not known, so that the caller's retry stores it.
func TestCreateSyncFails(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "k"} {
		t.Run("key "+key, func(t *testing.T) {
			t.Parallel()
			q, err := Open(baseOptions(t, t.TempDir(), newClock()))
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			injected := errors.New("injected fsync failure")
			q.sp.fsyncDir = func() error { return injected }
			accept := func() (string, error) {
				id, _, err := q.Accept(context.Background(), "", "s@remote.test", []string{"w@remote.test"}, nil,
					bytes.NewReader([]byte(testMessage)), WithOnceKey(key))
				return id, err
			}
			if _, err := accept(); !errors.Is(err, injected) {
				t.Fatalf("Accept with a failing fsync: %v, want the fsync's error", err)
			}
			if ents, err := os.ReadDir(q.sp.dir); err != nil {
				t.Fatal(err)
			} else {
				for _, e := range ents {
					if name := e.Name(); name[0] != '.' && !e.IsDir() {
						t.Errorf("%s left in the spool by a withdrawn message", name)
					}
				}
			}
			if key != "" {
				id, _ := onceID(key)
				if known, err := q.sp.known(id); err != nil || known {
					t.Errorf("withdrawn message's id known %v (%v), want false", known, err)
				}
			}
			q.sp.fsyncDir = nil
			id, err := accept()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(q.sp.path(id, extEnvelope)); err != nil {
				t.Errorf("the retry stored nothing: %v", err)
			}
		})
	}
}

// TestOnceKeyWaitsForSync: the fsync of a message under a key is not
// made under the spool lock, which every delivery's record (update)
// takes; a second try of the key while that fsync is under way is not
// told "stored" before it returned;
// when it fails, the first one's message is withdrawn and the second
// one stores its own.
func TestOnceKeyWaitsForSync(t *testing.T) {
	t.Parallel()
	q, err := Open(baseOptions(t, t.TempDir(), newClock()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	injected := errors.New("injected fsync failure")
	entered, fail := make(chan struct{}), make(chan struct{})
	first := true
	q.sp.fsyncDir = func() error { // one fsync at a time (dirSync)
		if !first {
			return nil
		}
		first = false
		close(entered)
		<-fail
		return injected
	}
	type result struct {
		id  string
		err error
	}
	accept := func(out chan<- result) {
		id, _, err := q.Accept(context.Background(), "", "s@remote.test", []string{"w@remote.test"}, nil,
			bytes.NewReader([]byte(testMessage)), WithOnceKey("k"))
		out <- result{id, err}
	}
	r1, r2 := make(chan result, 1), make(chan result, 1)
	go accept(r1)
	<-entered // renamed in, its fsync under way
	unlocked := make(chan error, 1)
	go func() { unlocked <- q.sp.locked(func() error { return nil }) }()
	select {
	case err := <-unlocked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(fail)
		t.Fatal("the spool lock is held during a commit's fsync")
	}
	go accept(r2)
	select {
	case r := <-r2:
		t.Fatalf("second try returned (%q, %v) before the first one's fsync did", r.id, r.err)
	case <-time.After(200 * time.Millisecond):
		// Waiting, as it must: the bound only makes the failure quick.
	}
	close(fail)
	if r := <-r1; !errors.Is(r.err, injected) {
		t.Fatalf("first try: %v, want the fsync's error", r.err)
	}
	r := <-r2
	if r.err != nil {
		t.Fatalf("second try: %v", r.err)
	}
	if _, err := os.Stat(q.sp.path(r.id, extEnvelope)); err != nil {
		t.Errorf("the second try's message is not stored: %v", err)
	}
}
