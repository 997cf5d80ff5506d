package filter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"courriel/delivery"
	"courriel/delivery/maildirsize"
	"courriel/directory"
	"courriel/sieve"
)

// RedirectedHeader marks a message a Sieve script redirected, with the
// user's address, as Pigeonhole does: a redirect of a message that already
// carries the user's mark is a loop, and is not made.
const RedirectedHeader = "X-Sieve-Redirected-From"

// hopLimit is the Received: count past which a message is not redirected
// any further (smtp refuses it at the next hop anyway).
const hopLimit = 50

// sideEffects queues the plan's redirects, vacation reply and
// notifications, once its
// copies are stored (see doc.go). A redirect that cannot be queued fails
// the recipient's delivery, temporarily: the sender (or the queue) tries
// again, and keyed copies are not stored twice. For a keyed copy the home
// remembers that its redirects and reply were queued (sideEffectsKey in
// the vacation memory), so that a retry after a later failure or a crash
// does not queue them again; a crash before that record is caught by the
// queue, which takes each of them once under its key (queueKey).
func (f *Filter) sideEffects(ctx context.Context, m *delivery.Message, mr *messageReader, r *delivery.Recipient, p *plan) error {
	if len(p.redirects) == 0 && p.vacation == nil && len(p.notifies) == 0 {
		return nil
	}
	remembered := r.CopyKey != "" && p.mb.Home != ""
	if remembered {
		done, err := f.recalled(p.mb.Home, sideEffectsKey(r.CopyKey))
		if err != nil {
			f.log.Warn("sieve: cannot read the memory of earlier attempts", "msg_id", m.ID, "to", r.Address, "err", err)
		}
		if done {
			f.log.Info("sieve: redirects and replies were queued by an earlier attempt", "msg_id", m.ID, "to", r.Address)
			return nil
		}
	}
	if len(p.redirects) > 0 {
		if err := f.redirects(ctx, m, mr, r, p, remembered); err != nil {
			return err
		}
	}
	if p.vacation != nil {
		f.vacation(ctx, m, r, p)
	}
	for i, n := range p.notifies {
		f.notify(ctx, m, r, p, i, n)
	}
	if remembered {
		uid, gid := -1, -1
		if f.o.Chown {
			uid, gid = r.UID, r.GID
		}
		if _, err := f.remember(p.mb.Home, sideEffectsKey(r.CopyKey), "", sideEffectsMemory, uid, gid); err != nil {
			f.log.Warn("sieve: cannot remember the queued redirects", "msg_id", m.ID, "to", r.Address, "err", err)
		}
	}
	return nil
}

// sideEffectsKey names a keyed copy's queued redirects and reply in the
// memory; sideEffectsMemory outlasts the queue's lifetime (5 days).
func sideEffectsKey(copyKey string) string { return "queued\x00" + copyKey }

// queueKey is the queue's key (Outgoing.Key) of what a keyed
// copy's scripts made: what ("redirect", "vacation", "notify 2") and the
// addresses it goes to, in any order; "" for a copy without a key. The
// copy's key comes first: the queue gives the message an id of that
// copy's time (queue.WithOnceKey).
func queueKey(copyKey, what string, addrs []string) string {
	if copyKey == "" {
		return ""
	}
	addrs = slices.Clone(addrs)
	slices.Sort(addrs)
	return copyKey + "\x00" + what + "\x00" + strings.Join(addrs, ",")
}

const sideEffectsMemory = 7 * 24 * time.Hour

// redirectRefused says why the message must not be redirected for r: a
// loop (already redirected by this user), too many hops, no queue; "" when
// it may.
func (f *Filter) redirectRefused(msg *sieve.Message, r *delivery.Recipient) string {
	for _, v := range msg.Header.Values(RedirectedHeader) {
		if strings.Contains(strings.ToLower(v), strings.ToLower(r.Address)) {
			return "loop: the message was already redirected by this user"
		}
	}
	if n := len(msg.Header.Values("Received")); n >= hopLimit {
		return fmt.Sprintf("too many hops (%d Received fields)", n)
	}
	if f.o.Outbound == nil {
		return "no outbound queue"
	}
	return ""
}

// redirects queues the plan's redirects (mr: the message, read once for
// the scripts): one message per header the
// script gave them (editheader's, each as it was when the script
// redirected), each queued by one Accept. A later one may fail after an
// earlier one is queued, and the delivery is then tried again (its
// copies found stored): for a keyed copy (remembered) the home's memory
// records each address once its redirect is queued, and a retry queues
// only those not recorded, so that none is queued twice, whatever the
// grouping on the retry (a script changed meanwhile). A crash between an
// Accept and its record leaves the redirect unrecorded here, but the
// queue has it under its key (queueKey: the copy's key and the
// addresses), and the retry's Accept of the same addresses stores
// nothing, whether the first is still queued or already delivered.
func (f *Filter) redirects(ctx context.Context, m *delivery.Message, mr *messageReader, r *delivery.Recipient, p *plan, remembered bool) error {
	queued := map[string]bool{}
	if remembered {
		keys := make([]string, len(p.redirects))
		for i, a := range p.redirects {
			keys[i] = redirectKey(r.CopyKey, a)
		}
		found, err := f.recalledKeys(p.mb.Home, keys)
		if err != nil {
			f.log.Warn("sieve: cannot read the memory of earlier attempts", "msg_id", m.ID, "to", r.Address, "err", err)
		}
		for i, a := range p.redirects {
			if found[keys[i]] {
				queued[a] = true
				f.log.Info("sieve: redirect queued by an earlier attempt", "msg_id", m.ID, "to", r.Address, "redirect_to", a)
			}
		}
	}
	for i, e := range p.redirectEdits {
		var to []string
		for j := i; j < len(p.redirects); j++ {
			if !queued[p.redirects[j]] && p.redirectEdits[j] == e {
				to = append(to, p.redirects[j])
				queued[p.redirects[j]] = true
			}
		}
		if len(to) == 0 {
			continue
		}
		rm := m
		if e != nil {
			em, err := mr.edited(e)
			if err != nil {
				f.log.Warn("sieve: editheader not applied to the redirect", "msg_id", m.ID, "to", r.Address, "err", err)
			} else {
				rm = em
			}
		}
		if err := f.redirect(ctx, rm, r, to); err != nil {
			return err
		}
		if remembered {
			keys := make([]string, len(to))
			for k, a := range to {
				keys[k] = redirectKey(r.CopyKey, a)
			}
			uid, gid := f.owner(r)
			if err := f.rememberKeys(p.mb.Home, keys, sideEffectsMemory, uid, gid); err != nil {
				f.log.Warn("sieve: cannot remember the queued redirect", "msg_id", m.ID, "to", r.Address, "err", err)
			}
		}
	}
	return nil
}

// redirectKey names in the memory a keyed copy's redirect to addr,
// once queued.
func redirectKey(copyKey, addr string) string {
	return sideEffectsKey(copyKey) + "\x00redirect\x00" + addr
}

// redirect queues the message for redirect addresses, marked with
// RedirectedHeader and Delivered-To (which courriel's and Postfix's loop
// checks read), from the original sender (SRS-rewritten when configured,
// as alias forwards). The message is read in place (its file, or the
// pieces of its edited header and the rest of it), never copied whole.
func (f *Filter) redirect(ctx context.Context, m *delivery.Message, r *delivery.Recipient, to []string) error {
	remoteFrom := m.From
	if f.o.SRS != nil && m.From != "" {
		if rf, err := f.o.SRS.Forward(m.From); err == nil {
			remoteFrom = rf
		}
	}
	mark := delivery.MemContent(RedirectedHeader + ": " + r.Address + "\r\n" + "Delivered-To: " + r.Address + "\r\n")
	data := newSplice(mark, (&messageReader{m: m}).content())
	remote, local, err := f.route(ctx, to)
	if err != nil {
		return &delivery.Error{Temporary: true, Reason: "cannot route the redirect", Err: err}
	}
	key := queueKey(r.CopyKey, "redirect", to)
	out := Outgoing{Key: key, MsgID: m.ID, From: remoteFrom, Remote: remote, Local: local, Data: data}
	if remoteFrom != m.From && len(local) > 0 {
		// Local copies show the original sender, as for alias forwards.
		out.From, out.RemoteFrom = m.From, remoteFrom
	}
	qid, _, err := f.o.Outbound.Accept(ctx, out)
	if err != nil {
		return &delivery.Error{Temporary: true, Reason: "cannot queue the redirect", Err: err}
	}
	f.log.Info("sieve: redirected", "msg_id", m.ID, "to", r.Address, "redirect_to", strings.Join(to, ","), "queue_id", qid)
	return nil
}

// route splits redirect addresses into the queue's remote recipients and
// local copies, as smtp does for a RCPT: a foreign domain, or an unknown
// address of ours (the queue's attempt then bounces it to the sender), is
// remote; an address of ours is resolved through the aliases to its
// maildrops. An unavailable directory is an error: the copy waits.
func (f *Filter) route(ctx context.Context, addrs []string) ([]string, []delivery.Recipient, error) {
	if f.o.Resolver == nil {
		return addrs, nil, nil
	}
	var remote []string
	var local []delivery.Recipient
	for _, a := range addrs {
		at := strings.LastIndexByte(a, '@')
		if at < 0 {
			remote = append(remote, a)
			continue
		}
		class, err := f.o.Resolver.ClassifyDomain(ctx, strings.ToLower(a[at+1:]))
		if err != nil {
			return nil, nil, err
		}
		if class == directory.DomainForeign {
			remote = append(remote, a)
			continue
		}
		res, err := f.o.Resolver.ResolveClassified(ctx, a, class)
		if errors.Is(err, directory.ErrNotFound) {
			remote = append(remote, a)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		for _, d := range res.Destinations {
			if d.Remote || d.Mailbox == nil {
				remote = append(remote, d.Address)
				continue
			}
			local = append(local, delivery.Recipient{Address: d.Address, OrigTo: a, Maildir: d.Mailbox.Maildir,
				UID: d.Mailbox.UID, GID: d.Mailbox.GID,
				Quota: maildirsize.Limits{Bytes: d.Mailbox.QuotaBytes, Messages: d.Mailbox.QuotaMessages}})
		}
	}
	return remote, local, nil
}
