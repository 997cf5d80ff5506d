package queue

import (
	"bytes"
	"context"
	"errors"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// A spool holding more messages than MaxQueueFiles at the start loads the
// first MaxQueueFiles; the rest are loaded once room comes back, without
// any other process asking for a rescan, and everything is delivered.
func TestMessagesBeyondMaxQueueFilesLoadedAsRoomComesBack(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if _, err := q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(testMessage)); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	o.MaxQueueFiles = 3
	h := start(t, o)
	if n := h.q.count(); n != 3 {
		t.Fatalf("%d messages loaded at the start, want MaxQueueFiles (3)", n)
	}
	h.waitUntil("7 messages delivered", func() bool { _, txs := s.counts(); return txs == 7 })
	h.waitUntil("the spool is empty", h.empty)
}

// While the queue holds MaxQueueFiles messages, new mail is refused for
// now, before anything is stored (no local copy either), with an error
// that is temporary and a full spool's (SMTP answers 452 4.3.1, as for a
// full disk); a DSN, which comes of a message queued already, is not.
func TestNewMailRefusedWhenQueueFull(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "try later")
	}})
	o := baseOptions(t, t.TempDir(), newClock()) // the clock stands still: deferred messages stay
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.MaxQueueFiles = 2
	o.Local = ls
	h := start(t, o)
	h.enqueue("alice@local.test", "bob@remote.test")
	h.enqueue("alice@local.test", "carol@remote.test")
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrQueueFull) || !errors.Is(err, delivery.ErrDiskFull) || IsPermanent(err) {
			t.Errorf("%s: %v, want a temporary ErrQueueFull (delivery.ErrDiskFull)", what, err)
		}
	}
	_, err := h.q.Enqueue(t.Context(), "alice@local.test", []string{"dave@remote.test"}, []byte(testMessage))
	check("Enqueue", err)
	_, _, err = h.q.Accept(t.Context(), "", "sender@local.test", []string{"erin@remote.test"},
		[]delivery.Recipient{ls.rcpt("frank")}, bytes.NewReader([]byte(testMessage)))
	check("Accept", err)
	ls.mu.Lock()
	calls := ls.calls
	ls.mu.Unlock()
	if calls != 0 || len(ls.copies(t, "frank")) != 0 {
		t.Errorf("a refused Accept stored local copies (%d calls)", calls)
	}
	if n := len(mustList(t, h)); n != 2 {
		t.Errorf("%d messages in the spool, want 2", n)
	}
	// A DSN under the id its original recorded is let in.
	if _, _, err := h.q.Accept(context.Background(), "", "", []string{"alice@remote.test"}, nil,
		bytes.NewReader([]byte(testMessage)), withQueueID(newID(o.Now()))); err != nil {
		t.Errorf("DSN refused: %v", err)
	}
}

func mustList(t *testing.T, h *harness) []Summary {
	t.Helper()
	l, err := h.q.List()
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// New mail written by another process (a client of the spool, which has
// no index) is refused as the owner's own is while the spool holds
// MaxQueueFiles messages, and taken once there is room.
func TestNewMailFromClientRefusedWhenQueueFull(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "try later")
	}})
	o := baseOptions(t, t.TempDir(), newClock()) // the clock stands still: deferred messages stay
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.MaxQueueFiles = 2
	h := start(t, o)
	first := h.enqueue("alice@local.test", "bob@remote.test")
	h.enqueue("alice@local.test", "carol@remote.test")
	cli := openClient(t, o)
	_, err := cli.Enqueue(t.Context(), "alice@local.test", []string{"dave@remote.test"}, []byte(testMessage))
	if !errors.Is(err, ErrQueueFull) || IsPermanent(err) {
		t.Errorf("client Enqueue: %v, want a temporary ErrQueueFull", err)
	}
	_, _, err = cli.Accept(t.Context(), "", "sender@local.test", []string{"erin@remote.test"}, nil, bytes.NewReader([]byte(testMessage)))
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("client Accept: %v, want ErrQueueFull", err)
	}
	if n := len(mustList(t, h)); n != 2 {
		t.Errorf("%d messages in the spool, want 2", n)
	}
	if err := cli.Delete(first); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Enqueue(t.Context(), "alice@local.test", []string{"dave@remote.test"}, []byte(testMessage)); err != nil {
		t.Errorf("client Enqueue once there is room: %v", err)
	}
}
