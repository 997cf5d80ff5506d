package main

import (
	"testing"

	"courriel/delivery/queue"
)

// TestRecipientLineDSN: `queue show` says what a recipient asked with
// NOTIFY and ORCPT.
func TestRecipientLineDSN(t *testing.T) {
	t.Parallel()
	got := recipientLine(queue.Recipient{Addr: "a@b.test", State: queue.StatePending, Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;x@y.test"})
	if want := "<a@b.test> pending attempts=0 notify=SUCCESS,FAILURE orcpt=rfc822;x@y.test"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
