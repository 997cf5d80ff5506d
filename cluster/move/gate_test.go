package move

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// blockingDeliverer stands for the store: copies to a maildir listed in
// block wait until release is closed.
type blockingDeliverer struct {
	mu      sync.Mutex
	stored  []string
	entered chan string
	block   map[string]bool
	release chan struct{}
}

func (b *blockingDeliverer) Deliver(_ context.Context, _ *delivery.Message, rcpts []delivery.Recipient) []error {
	for _, r := range rcpts {
		if b.block[r.Maildir] {
			b.entered <- r.Maildir
			<-b.release
		}
		b.mu.Lock()
		b.stored = append(b.stored, r.Maildir)
		b.mu.Unlock()
	}
	return make([]error, len(rcpts))
}

func TestGate(t *testing.T) {
	t.Parallel()
	next := &blockingDeliverer{entered: make(chan string, 1), release: make(chan struct{}),
		block: map[string]bool{"/h/x/mailbox/": true}}
	g := NewGate()
	d := g.Wrap(next)
	ctx := context.Background()
	msg := &delivery.Message{ID: "m"}
	rc := func(md string) delivery.Recipient { return delivery.Recipient{Address: "u@d", Maildir: md} }

	done := make(chan []error)
	go func() { done <- d.Deliver(ctx, msg, []delivery.Recipient{rc("/h/x/mailbox/")}) }()
	<-next.entered // admitted, being written

	reopen := g.Close("/h/x")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	err := g.Drain(short, "/h/x")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with a copy in flight = %v", err)
	}
	errs := d.Deliver(ctx, msg, []delivery.Recipient{rc("/h/x/mailbox/"), rc("/h/xy/mailbox/"), rc("/h/y/mailbox/"), rc("/h/x/other/")})
	var de *delivery.Error
	if !errors.As(errs[0], &de) || !de.Temporary || !errors.Is(errs[0], ErrMoving) {
		t.Errorf("copy into the closed home: %v, want a temporary ErrMoving", errs[0])
	}
	if errs[1] != nil || errs[2] != nil {
		t.Errorf("copies into other homes: %v", errs)
	}
	if !errors.Is(errs[3], ErrMoving) {
		t.Errorf("second maildir inside the closed home: %v", errs[3])
	}

	drained := make(chan error)
	go func() { drained <- g.Drain(ctx, "/h/x") }()
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) before the copy in flight finished", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(next.release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if errs := <-done; errs[0] != nil {
		t.Errorf("copy admitted before Close: %v", errs[0])
	}
	next.mu.Lock()
	if len(next.stored) != 3 {
		t.Errorf("stored %q, want the first copy and the two other homes'", next.stored)
	}
	next.mu.Unlock()

	reopen()
	reopen() // once only
	if errs := d.Deliver(ctx, msg, []delivery.Recipient{rc("/h/x/other/")}); errs[0] != nil {
		t.Errorf("after reopen: %v", errs[0])
	}
	g.Close("/h/x")
	g.Close("/h/x")
	g.Open("/h/x")
	if g.IsClosed("/h/x") {
		t.Error("Open left the home closed")
	}
	var none *Gate
	if none.IsClosed("/h/x") {
		t.Error("nil gate closed")
	}
}
