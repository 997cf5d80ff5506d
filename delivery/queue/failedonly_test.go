package queue

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestAcceptFailedOnly: a message whose every recipient failed before it
// was queued (the local socket's unknown recipients, WithFailed) is
// accepted, bounced to its sender and gone; without any recipient at all
// Accept still refuses it.
func TestAcceptFailedOnly(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	_, _, err := h.q.Accept(context.Background(), "", "root@mta.test", nil, nil, strings.NewReader("Subject: x\r\n\r\nb\r\n"),
		WithFailed([]string{"ghost@mta.test"}, "5.1.1", "550 5.1.1 unknown user"))
	if err != nil {
		t.Fatal(err)
	}
	r := parseDSN(t, recv(t, b.got, "the DSN"))
	if got := r.header.Get("To"); got != "<root@mta.test>" {
		t.Errorf("To = %q", got)
	}
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Final-Recipient") != "rfc822; ghost@mta.test" || r.rcpts[0].Get("Status") != "5.1.1" {
		t.Errorf("per-recipient fields %v", r.rcpts)
	}
	h.waitUntil("the queue is empty", h.empty)

	if _, _, err := h.q.Accept(context.Background(), "", "root@mta.test", nil, nil, strings.NewReader("x\r\n")); !errors.Is(err, ErrNoRecipients) {
		t.Errorf("no recipient: %v, want ErrNoRecipients", err)
	}
	if _, _, err := h.q.Accept(context.Background(), "", "root@mta.test", nil, nil, strings.NewReader("x\r\n"), WithFailed([]string{"bad address"}, "5.1.1", "x")); !errors.Is(err, ErrNoRecipients) {
		t.Errorf("only an invalid failed recipient: %v, want ErrNoRecipients", err)
	}
}

// TestAcceptCountsFailed: the failed recipients of WithFailed count
// toward MaxRecipients: an entry the queue would refuse to load after a
// restart is refused at Accept instead.
func TestAcceptCountsFailed(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	o.MaxRecipients = 2
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	_, _, err := h.q.Accept(context.Background(), "", "root@mta.test", []string{"a@remote.test", "b@remote.test"}, nil, strings.NewReader("Subject: x\r\n\r\nb\r\n"),
		WithFailed([]string{"ghost@mta.test"}, "5.1.1", "550 5.1.1 unknown user"))
	if !errors.Is(err, ErrTooManyRecipients) {
		t.Fatalf("3 recipients with a limit of 2: %v, want ErrTooManyRecipients", err)
	}
}
