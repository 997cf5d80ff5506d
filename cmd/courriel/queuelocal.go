package main

import (
	"context"
	"errors"

	"courriel/cluster"
	"courriel/delivery/queue"

	"courriel/delivery"
	"courriel/delivery/maildirsize"
	"courriel/directory"
)

// queueLocal is the queue's local delivery: the delivery store, with each
// recipient's quota read again from the directory before every attempt, so
// that a copy waiting for room (452 4.2.2) goes in once the admin raises the
// limit, not only once the user deletes mail. When the directory cannot
// answer, the quota recorded at acceptance applies.
type queueLocal struct {
	store localDeliverer
	dir   interface {
		Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error)
	}
}

func (l queueLocal) Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error {
	for i := range rcpts {
		if mb, err := l.dir.Mailbox(ctx, rcpts[i].Address); err == nil {
			rcpts[i].Quota = maildirsize.Limits{Bytes: mb.QuotaBytes, Messages: mb.QuotaMessages}
		}
	}
	return l.store.Deliver(ctx, m, rcpts)
}

// queueHomes tells the queue where a local copy's user lives now (the
// directory's home node) and whether the user is held here (being moved
// away), before every attempt: a queued copy follows its user.
type queueHomes struct {
	dir interface {
		Mailbox(ctx context.Context, addr string) (*directory.Mailbox, error)
	}
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
