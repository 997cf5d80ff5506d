package queue

import (
	"context"
	"errors"
	"path/filepath"
	"strconv"
)

// MailboxFinder resolves the maildrop of a queued local copy through the
// directory again (through its cache, as any lookup), before every retry:
// cmd builds it from the directory's Mailbox. ErrNoMailbox when the
// directory no longer knows the maildrop (the user was removed); any other
// error is temporary (the directory is down, or its entry is unusable
// until the admin fixes it). Its answer also says where the user lives
// (Mailbox.Node, Held), so that a retry costs one lookup, not one here and
// another for Options.Homes.
type MailboxFinder interface {
	Mailbox(ctx context.Context, maildrop string) (Mailbox, error)
}

// Mailbox is where the directory says a maildrop's copies go now.
type Mailbox struct {
	Maildir  string // absolute and clean, as delivery.Recipient.Maildir
	UID, GID int
	// The quota; 0 is no limit.
	QuotaBytes    int64
	QuotaMessages int64
	// Node and Held are the user's home node and hold, as HomeFinder.Home
	// answers them from the same entry. A retry places its copy from them
	// (place) instead of asking Options.Homes again; they are read only
	// when Options.Homes is set, so that a single node keeps the routes
	// recorded at acceptance.
	Node string
	Held bool
}

// ErrNoMailbox is MailboxFinder's answer for a maildrop the directory no
// longer knows.
var ErrNoMailbox = errors.New("queue: maildrop has no mailbox in the directory")

// reresolve looks a due local copy's maildrop up again before a retry, as
// Postfix's virtual(8) reads virtual_mailbox_maps and its uid and gid maps
// at every delivery (its queue holds only addresses): the copy goes where
// the directory says now, so that an admin who fixes an entry (a home
// outside maildir_base, a wrong uid) or moves a user's home reaches the
// copies that waited for it. Found: r.Local takes the current maildir,
// owner and quota (the original recipient and the folder stay: they are
// the message's, not the entry's), and a change is logged once, since the
// envelope records it with the attempt. Not found: the copy bounces 5.1.1,
// as virtual(8)'s "unknown user". Any other answer: it waits (4.4.3), never
// bounces. ok says the copy may be tried; otherwise x is its result.
// When Options.Homes is set, home is the user's home from the same answer,
// for place: one directory lookup per retry; nil otherwise.
//
// Accept's first attempt does not come here: the RCPT that took the copy
// just resolved it.
func (q *Queue) reresolve(ctx context.Context, m *Message, r *Recipient) (x result, home *userHome, ok bool) {
	if q.o.Mailboxes == nil {
		return result{}, nil, true
	}
	mb, err := q.o.Mailboxes.Mailbox(ctx, r.Addr)
	switch {
	case errors.Is(err, ErrNoMailbox):
		return result{out: outBounced, reply: `unknown user: "` + printable(r.Addr, 300) + `"`, status: "5.1.1", relay: "maildir"}, nil, false
	case err != nil:
		return result{out: outDeferred, reply: "looking up the mailbox of " + printable(r.Addr, 300) + ": " + printable(err.Error(), 200),
			status: "4.4.3", relay: "maildir"}, nil, false
	}
	t := *r.Local
	t.Maildir, t.UID, t.GID = mb.Maildir, mb.UID, mb.GID
	t.QuotaBytes, t.QuotaMessages = mb.QuotaBytes, mb.QuotaMessages
	if !validLocal(&t) {
		return result{out: outDeferred, reply: "the directory's mailbox of " + printable(r.Addr, 300) + " is unusable",
			status: "4.3.5", relay: "maildir"}, nil, false
	}
	old := r.Local
	if filepath.Clean(old.Maildir) != filepath.Clean(t.Maildir) || old.UID != t.UID || old.GID != t.GID {
		q.logFor(m).Info("local copy follows its mailbox: the directory changed it", "to", "<"+r.Addr+">",
			"maildir", old.Maildir+" → "+t.Maildir, "owner", old.ids()+" → "+t.ids())
	}
	// A new target, not a change in place: the message this job works on
	// shares its targets with the runner's index until it is recorded.
	r.Local = &t
	if q.o.Homes != nil {
		home = &userHome{node: mb.Node, held: mb.Held}
	}
	return result{}, home, true
}

// ids is the target's owner as the log shows it, "uid:gid".
func (t *LocalTarget) ids() string { return strconv.Itoa(t.UID) + ":" + strconv.Itoa(t.GID) }
