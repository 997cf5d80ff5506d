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

// queueDirectory is the directory as the queue asks it about local
// copies, through its cache: both of its answers come from the entry
// directory.Mailbox gives, so that a retry, which needs both, costs one
// lookup (queue.Mailbox carries the home too).
type queueDirectory struct {
	dir   mailboxLookup
	holds *cluster.Holds // nil on a single node: never held
}

// Mailbox resolves a queued local copy's maildrop again before every
// retry (queue.Options.Mailboxes), as Postfix's virtual(8) reads its maps
// at every delivery: the copy goes to the maildir, owner and quota the
// directory gives now (so a copy waiting for room goes in once the admin
// raises the limit, and one waiting for a fixed homeDirectory once it is
// fixed), and to the home node it gives now. A maildrop the directory no
// longer knows is queue.ErrNoMailbox (the copy bounces 5.1.1); anything
// else is temporary.
func (q queueDirectory) Mailbox(ctx context.Context, maildrop string) (queue.Mailbox, error) {
	mb, err := q.dir.Mailbox(ctx, maildrop)
	if errors.Is(err, directory.ErrNotFound) {
		return queue.Mailbox{}, fmt.Errorf("%w: %s", queue.ErrNoMailbox, maildrop)
	}
	if err != nil {
		return queue.Mailbox{}, fmt.Errorf("directory: %w", err)
	}
	return queue.Mailbox{Maildir: mb.Maildir, UID: mb.UID, GID: mb.GID,
		QuotaBytes: mb.QuotaBytes, QuotaMessages: mb.QuotaMessages,
		Node: mb.Node, Held: q.holds.Held(mb.Home)}, nil
}

// Home tells the queue where a local copy's user lives now (the
// directory's home node) and whether the user is held here (being moved
// away), before an attempt that has not resolved the maildrop again
// (queue.Options.Homes: Accept's first, HandOver; a retry has Mailbox's
// answer): a queued copy follows its user.
func (q queueDirectory) Home(ctx context.Context, maildrop string) (string, bool, error) {
	mb, err := q.dir.Mailbox(ctx, maildrop)
	if errors.Is(err, directory.ErrNotFound) {
		return "", false, queue.ErrNoHome
	}
	if err != nil {
		return "", false, err
	}
	return mb.Node, q.holds.Held(mb.Home), nil
}

// localDeliverer stores local copies: *delivery.Store, or *filter.Filter
// running the recipients' Sieve scripts around it.
type localDeliverer interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}
