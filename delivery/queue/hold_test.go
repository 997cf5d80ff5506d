package queue

import (
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// waitIndexed polls, bounded, until the runner indexes id (or not).
func waitIndexed(t *testing.T, q *Queue, id string, want bool) {
	t.Helper()
	for range 1000 {
		q.mu.Lock()
		_, ok := q.entries[id]
		q.mu.Unlock()
		if ok == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("runner indexes %s: want %v", id, want)
}

func heldIDs(t *testing.T, q *Queue) []string {
	t.Helper()
	l, err := q.ListHeld()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range l {
		if !s.Held {
			t.Errorf("%s listed by ListHeld without Held", s.ID)
		}
		ids = append(ids, s.ID)
	}
	return ids
}

// A held message is not delivered, even by a flush, while another is; it
// is listed as held, delivered once released, and delete reaches it in
// hold. From the owner, and from another process as `courriel queue hold`
// works.
func TestHoldAndRelease(t *testing.T) {
	t.Parallel()
	for _, fromClient := range []bool{false, true} {
		var accept atomic.Bool
		s := newSink(t, sinkOptions{rcpt: func(int, string) error {
			if !accept.Load() {
				return smtpErr(421, gosmtp.EnhancedCode{4, 4, 2}, "busy")
			}
			return nil
		}})
		dir := t.TempDir()
		o := baseOptions(t, dir, newClock())
		o.Routes = map[string]string{"*": s.addr}
		o.Dialer = nil
		h := start(t, o)
		admin := h.q
		if fromClient {
			admin = openClient(t, baseOptions(t, dir, newClock()))
		}
		held := h.enqueue("alice@local.test", "held@remote.test")
		h.waitJob() // deferred: the sink is busy
		if err := admin.Hold(held); err != nil {
			t.Fatal(err)
		}
		waitIndexed(t, h.q, held, false)
		if got := heldIDs(t, admin); !slices.Equal(got, []string{held}) {
			t.Errorf("held: %v, want [%s]", got, held)
		}
		if l, _ := admin.List(); len(l) != 0 {
			t.Errorf("List shows %d messages besides the held one", len(l))
		}
		if _, data, err := admin.Show(held); err != nil || len(data) == 0 {
			t.Errorf("Show of a held message: %v", err)
		}

		accept.Store(true)
		other := h.enqueue("alice@local.test", "other@remote.test")
		if err := admin.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, s.delivs, "the message not held"); !slices.Equal(got.rcpts, []string{"other@remote.test"}) {
			t.Fatalf("delivered %v first, want other@ (%s)", got.rcpts, other)
		}
		waitIndexed(t, h.q, other, false)
		select {
		case got := <-s.delivs:
			t.Fatalf("a held message was delivered: %v", got.rcpts)
		default:
		}

		if err := admin.Release(held); err != nil {
			t.Fatal(err)
		}
		if err := admin.Release(held); err != ErrNotHeld {
			t.Errorf("second Release: %v, want ErrNotHeld", err)
		}
		waitIndexed(t, h.q, held, true)
		if err := admin.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, s.delivs, "the released message"); !slices.Equal(got.rcpts, []string{"held@remote.test"}) {
			t.Errorf("delivered %v, want held@", got.rcpts)
		}

		// postsuper -d reaches the hold queue.
		accept.Store(false)
		gone := h.enqueue("alice@local.test", "gone@remote.test")
		if err := admin.Hold(gone); err != nil {
			t.Fatal(err)
		}
		if err := admin.Delete(gone); err != nil {
			t.Fatal(err)
		}
		if got := heldIDs(t, admin); len(got) != 0 {
			t.Errorf("held after delete: %v", got)
		}
		if ents, _ := os.ReadDir(filepath.Join(dir, holdDir)); len(ents) != 0 {
			t.Errorf("hold/ keeps %d files after delete", len(ents))
		}
	}
}

// A crash between a hold's two renames (envelope in hold/, data still in
// the spool) is finished at the next Open: the message is held, not
// removed as data without an envelope, and released whole.
func TestHoldCutShortIsFinished(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := os.Rename(filepath.Join(dir, id+extEnvelope), filepath.Join(dir, holdDir, id+extEnvelope)); err != nil {
		t.Fatal(err)
	}
	q, err = Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if got := heldIDs(t, q); !slices.Equal(got, []string{id}) {
		t.Fatalf("held after recovery: %v, want [%s]", got, id)
	}
	if err := q.Release(id); err != nil {
		t.Fatal(err)
	}
	if _, data, err := q.Show(id); err != nil || string(data) != testMessage {
		t.Errorf("released message: %v, %q", err, data)
	}
}

// A hold that comes while the message is being delivered keeps what that
// attempt did: the recipient it reached is recorded in the held envelope
// and never sent again after the release; one it could not reach is. A
// message the attempt finished leaves the hold queue.
func TestHoldDuringDelivery(t *testing.T) {
	t.Parallel()
	for _, partial := range []bool{true, false} {
		entered, release := make(chan struct{}, 1), make(chan struct{})
		var refuse atomic.Bool
		refuse.Store(partial)
		s := newSink(t, sinkOptions{
			rcpt: func(_ int, to string) error {
				if to == "later@remote.test" && refuse.Load() {
					return smtpErr(450, gosmtp.EnhancedCode{4, 2, 0}, "not now")
				}
				return nil
			},
			data: func(n int) error {
				if n == 0 {
					entered <- struct{}{}
					<-release
				}
				return nil
			},
		})
		dir := t.TempDir()
		o := baseOptions(t, dir, newClock())
		o.Routes = map[string]string{"*": s.addr}
		o.Dialer = nil
		h := start(t, o)
		admin := openClient(t, baseOptions(t, dir, newClock()))
		id := h.enqueue("alice@local.test", "now@remote.test", "later@remote.test")
		<-entered // the data is on its way
		if err := admin.Hold(id); err != nil {
			t.Fatal(err)
		}
		close(release)
		recv(t, s.delivs, "the first delivery")
		waitIndexed(t, h.q, id, false)
		held, err := admin.ListHeld()
		if err != nil {
			t.Fatal(err)
		}
		if !partial {
			if len(held) != 0 {
				t.Errorf("a message delivered whole stays held: %+v", held)
			}
			if err := admin.Release(id); err != ErrNotHeld {
				t.Errorf("Release of a finished message: %v, want ErrNotHeld", err)
			}
			continue
		}
		if len(held) != 1 || len(held[0].Recipients) != 1 || held[0].Recipients[0].Addr != "later@remote.test" {
			t.Fatalf("held: %+v, want the message with later@ alone pending", held)
		}
		refuse.Store(false)
		if err := admin.Release(id); err != nil {
			t.Fatal(err)
		}
		waitIndexed(t, h.q, id, true)
		if err := h.q.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, s.delivs, "the released delivery"); !slices.Equal(got.rcpts, []string{"later@remote.test"}) {
			t.Errorf("after release, sent to %v; want later@ only", got.rcpts)
		}
	}
}
