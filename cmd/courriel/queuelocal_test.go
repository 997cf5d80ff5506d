package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"courriel/cluster"
	"courriel/delivery/queue"
	"courriel/directory"
)

type mailboxFunc func(ctx context.Context, addr string) (*directory.Mailbox, error)

func (f mailboxFunc) Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error) {
	return f(ctx, addr)
}

// TestQueueMailboxes: the directory's three outcomes as the queue's
// re-resolution hears them: found (maildir, owner, quota, and the home
// node and hold the retry is placed by), not found (queue.ErrNoMailbox:
// the copy bounces), anything else temporary (never ErrNoMailbox: the
// copy waits).
func TestQueueMailboxes(t *testing.T) {
	t.Parallel()
	holds := cluster.NewHolds()
	holds.Hold("/var/vmail/u")
	found := &directory.Mailbox{Address: "u@x.test", Maildir: "/var/vmail/u/mailbox/", UID: 2001, GID: 2002,
		QuotaBytes: 1 << 20, QuotaMessages: 7, Home: "/var/vmail/u", Node: "b"}
	for _, tc := range []struct {
		name   string
		mb     *directory.Mailbox
		err    error
		want   queue.Mailbox
		noMbox bool
		fail   bool
	}{
		{name: "found", mb: found, want: queue.Mailbox{Maildir: "/var/vmail/u/mailbox/", UID: 2001, GID: 2002, QuotaBytes: 1 << 20, QuotaMessages: 7,
			Node: "b", Held: true}},
		{name: "not found", err: fmt.Errorf("lookup: %w", directory.ErrNotFound), noMbox: true, fail: true},
		{name: "unavailable", err: fmt.Errorf("%w: timeout", directory.ErrUnavailable), fail: true},
		{name: "bad entry", err: fmt.Errorf("%w: entry uid=u: no single homeDirectory", directory.ErrUnavailable), fail: true},
	} {
		q := queueDirectory{dir: mailboxFunc(func(context.Context, string) (*directory.Mailbox, error) { return tc.mb, tc.err }), holds: holds}
		got, err := q.Mailbox(context.Background(), "u@x.test")
		if (err != nil) != tc.fail || errors.Is(err, queue.ErrNoMailbox) != tc.noMbox || got != tc.want {
			t.Errorf("%s: %+v, %v", tc.name, got, err)
		}
		if tc.fail && !tc.noMbox && !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("%s: %v lost the directory's error", tc.name, err)
		}
	}
}
