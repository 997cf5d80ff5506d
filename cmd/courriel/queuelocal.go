package main

import (
	"context"
	"errors"
	"fmt"

	"courriel/cluster"
	"courriel/delivery/queue"

	"courriel/delivery"
	"courriel/directory"
)

// mailboxLookup is what the queue's hooks need of the directory: the
// live directory, through its cache.
type mailboxLookup interface {
	Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error)
}

// queueMailboxes resolves a queued local copy's maildrop again before
// every retry (queue.Options.Mailboxes), as Postfix's virtual(8) reads
// its maps at every delivery: the copy goes to the maildir, owner and
// quota the directory gives now (so a copy waiting for room goes in once
// the admin raises the limit, and one waiting for a fixed homeDirectory
// once it is fixed). A maildrop the directory no longer knows is
// queue.ErrNoMailbox (the copy bounces 5.1.1); anything else is temporary.
type queueMailboxes struct {
	dir mailboxLookup
}

func (q queueMailboxes) Mailbox(ctx context.Context, maildrop string) (queue.Mailbox, error) {
	mb, err := q.dir.Mailbox(ctx, maildrop)
	if errors.Is(err, directory.ErrNotFound) {
		return queue.Mailbox{}, fmt.Errorf("%w: %s", queue.ErrNoMailbox, maildrop)
	}
	if err != nil {
		return queue.Mailbox{}, fmt.Errorf("directory: %w", err)
	}
	return queue.Mailbox{Maildir: mb.Maildir, UID: mb.UID, GID: mb.GID,
		QuotaBytes: mb.QuotaBytes, QuotaMessages: mb.QuotaMessages}, nil
}

// queueHomes tells the queue where a local copy's user lives now (the
// directory's home node) and whether the user is held here (being moved
// away), before every attempt: a queued copy follows its user.
type queueHomes struct {
	dir   mailboxLookup
	holds *cluster.Holds
}

func (h queueHomes) Home(ctx context.Context, maildrop string) (string, bool, error) {
	mb, err := h.dir.Mailbox(ctx, maildrop)
	if errors.Is(err, directory.ErrNotFound) {
		return "", false, queue.ErrNoHome
	}
	if err != nil {
		return "", false, err
	}
	return mb.Node, h.holds.Held(mb.Home), nil
}

// localDeliverer stores local copies: *delivery.Store, or *filter.Filter
// running the recipients' Sieve scripts around it.
type localDeliverer interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}
