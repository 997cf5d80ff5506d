package queue

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// runJob makes one pass over a message: every due recipient is tried once,
// grouped by route, and the envelope rewritten after each group so that a
// crash never forgets a recorded 250. Then the sender is told of failures
// (and delays), and a finished message leaves the spool. It returns the new
// envelope, or gone when the message left the queue.
func (q *Queue) runJob(ctx context.Context, m *Message) (next *Message, gone bool) {
	m.notBefore = time.Time{}
	data, err := q.sp.openData(m.ID)
	if err != nil {
		if q.dataGone(m.ID) {
			return nil, true // deleted by the admin meanwhile
		}
		q.logFor(m).Error("message data unreadable, moved to corrupt/", "err", err)
		q.sp.locked(func() error { q.sp.quarantine(m.ID); return nil })
		return nil, true
	}
	defer data.Close()

	if g, res := q.placeDue(ctx, m, q.o.Now()); len(g.rcpts) > 0 && q.record(m, g, res) {
		if err := q.sp.update(m); errors.Is(err, errDeleted) || errors.Is(err, errHeld) {
			q.logFor(m).Info(gotWhere(err))
			return nil, true
		} else if err != nil {
			q.logFor(m).Error("recording the delivery attempt failed", "err", err)
		}
	}
	for _, g := range q.groups(m, q.o.Now()) {
		if ctx.Err() != nil {
			break
		}
		var res []result
		if g.rt == localRoute {
			res = q.deliverLocalFrom(ctx, m, g.rcpts, data)
		} else {
			res = q.deliverGroup(ctx, m, g, data)
		}
		if slices.ContainsFunc(res, func(r result) bool { return r.out == outPostponed }) {
			m.notBefore = q.o.Now().Add(postponeDelay)
		}
		if !q.record(m, g, res) || m.done() {
			// Done: removing the message below records the outcome,
			// with one directory fsync instead of a rewrite first.
			continue
		}
		if err := q.sp.update(m); errors.Is(err, errDeleted) || errors.Is(err, errHeld) {
			q.logFor(m).Info(gotWhere(err))
			return nil, true
		} else if err != nil {
			// The in-memory state stays right, so this process will not
			// send twice; only a restart before the next rewrite could.
			q.logFor(m).Error("recording the delivery attempt failed", "err", err)
		}
	}
	if ctx.Err() != nil && !m.done() {
		return m, false
	}
	changed, settled, gone := q.notify(ctx, m, data)
	if gone {
		return nil, true
	}
	if changed {
		if err := q.sp.update(m); errors.Is(err, errDeleted) || errors.Is(err, errHeld) {
			q.logFor(m).Info(gotWhere(err))
			q.settleDSNs(m, settled) // held: recorded there; deleted: gone
			return nil, true
		} else if err != nil {
			q.logFor(m).Error("recording the notification failed", "err", err)
		} else {
			q.settleDSNs(m, settled)
		}
	}
	if m.done() {
		q.leaving(m)
		if err := q.sp.remove(m.ID); err != nil && !errors.Is(err, ErrNotFound) {
			q.logFor(m).Error("removing a finished message failed", "err", err)
			// Its outcome was not written either: try to, so that a
			// restart does not send it again.
			q.sp.update(m)
			return m, false
		}
		q.settleDSNs(nil, settled)
		q.logFor(m).Info("removed")
		return nil, true
	}
	return m, false
}

// record applies one group's results to the envelope and logs one line per
// recipient. It reports whether anything changed.
func (q *Queue) record(m *Message, g group, res []result) bool {
	now := q.o.Now()
	expiry := m.Created.Add(q.o.MaxLifetime)
	changed := false
	for i, idx := range g.rcpts {
		r, x := &m.Recipients[idx], res[i]
		if x.out == outPostponed || x.out == outUnsent {
			continue // not tried, or not sent: nothing to record or log
		}
		if x.out == outInterrupted {
			q.logAttempt(m, r, x.relay, r.Status, "deferred", "delivery interrupted by shutdown, will retry", now, "")
			continue
		}
		changed = true
		r.Attempts++
		r.LastAttempt = now
		r.Reply, r.Code, r.Status, r.RemoteMTA = x.reply, x.code, x.status, x.remoteMTA
		word, reason := "", x.reply
		switch x.out {
		case outSent:
			r.State, r.NextAttempt, word = StateDelivered, time.Time{}, "sent"
			// RFC 3461 §5.2.2: NOTIFY=SUCCESS is reported by whoever
			// delivers, or by the last hop that cannot pass it on.
			switch {
			case !notifies(r.Notify, NotifySuccess) || x.dsnPassed:
			case r.Local != nil:
				r.Action = ActionDelivered
			default:
				r.Action = ActionRelayed
			}
		case outBounced:
			r.State, word = StateFailed, "bounced"
		case outDeferred:
			if !now.Before(expiry) {
				// Postfix: a temporary failure once the message is
				// maximal_queue_lifetime old bounces it. RFC 3463 §3.5:
				// 4.4.7 delivery time expired.
				r.State, r.Status, word = StateFailed, "4.4.7", "bounced"
				reason = "message expired after " + now.Sub(m.Created).Round(time.Second).String() + " in queue: " + x.reply
				break
			}
			r.NextAttempt = now.Add(backoff(r.Attempts, q.o.MinBackoff, q.o.MaxBackoff))
			if x.soon || r.Node != "" {
				// A node copy, or a copy waiting for its user's move:
				// the node is back or the move done within minutes.
				r.NextAttempt = now.Add(q.o.NodeRetry)
			}
			if r.NextAttempt.After(expiry) {
				r.NextAttempt = expiry // one last try when the lifetime ends
			}
			word = "deferred"
		}
		q.logAttempt(m, r, x.relay, r.Status, word, reason, now, x.tls)
		if q.o.Attempted != nil {
			q.o.Attempted(word)
		}
	}
	return changed
}

// logAttempt writes the Postfix-style line for one recipient attempt:
// msg_id, queue_id, to=, relay=, delay=, dsn=, status= (reason).
// gotWhere is the log line of a job that finds its message gone from the
// queue during the attempt: deleted, or held (its state recorded there).
func gotWhere(err error) string {
	if errors.Is(err, errHeld) {
		return "message held during delivery: what was delivered is recorded with it"
	}
	return "message deleted during delivery"
}

func (q *Queue) logAttempt(m *Message, r *Recipient, relay, dsn, word, reason string, now time.Time, tlsInfo string) {
	if relay == "" {
		relay = "none"
	}
	attrs := []any{
		"to", "<" + r.Addr + ">",
		"relay", relay,
		"delay", strconv.FormatFloat(now.Sub(m.Created).Seconds(), 'f', 2, 64),
		"dsn", dsn,
		"status", word + " (" + reason + ")",
	}
	if tlsInfo != "" {
		attrs = append(attrs, "tls", tlsInfo)
	}
	// Postfix's orig_to=: which of our addresses the mail came for.
	orig := r.OrigTo
	if r.Local != nil {
		orig = r.Local.OrigTo
	}
	if orig != "" && !strings.EqualFold(orig, r.Addr) {
		attrs = append(attrs, "orig_to", "<"+orig+">")
	}
	q.logFor(m).Info("delivery", attrs...)
}

// notify sends the DSNs a message owes, each as the recipients' NOTIFY
// asks (RFC 3461 §4.1; absent: failures and delays): one for recipients
// that failed and whose sender was not told yet; one for the successes to
// report (delivered here, relayed to a next hop without DSN, expanded),
// all those of the message so far in one DSN, as Postfix's trace service
// sends one per delivery pass; and once, if configured, a delay warning.
// Each DSN is recorded in m's envelope before its hand-over (dsnonce.go),
// so that it is sent once across a crash. It reports whether m changed
// since that record (the caller writes it, then settles the DSNs settled
// names), or that m left the spool (gone).
func (q *Queue) notify(ctx context.Context, m *Message, data *os.File) (changed bool, settled []string, gone bool) {
	now := q.o.Now()
	if len(m.DSNs) > 0 {
		// An earlier try handed these over, or meant to, and did not
		// record the outcome: a crash, or a hand-over that failed.
		changed = true
		var err error
		if settled, err = q.settleLeftovers(m); err != nil {
			q.logFor(m).Error("finding out whether a sender notification went failed, will retry", "err", err)
			m.NotifyAfter = now.Add(q.o.MinBackoff)
			return changed, settled, false
		}
	}
	var failed, pending, success []int
	silenced := 0
	for i := range m.Recipients {
		r := &m.Recipients[i]
		switch {
		case r.State == StateFailed && !r.Notified && !notifies(r.Notify, NotifyFailure):
			r.Notified = true // NOTIFY without FAILURE: nobody to tell
			silenced++
		case r.State == StateFailed && !r.Notified:
			failed = append(failed, i)
		case r.owesDSN():
			success = append(success, i)
		case r.State == StatePending && notifies(r.Notify, NotifyDelay):
			pending = append(pending, i)
		}
	}
	changed = changed || silenced > 0
	if silenced > 0 {
		q.logFor(m).Info("no non-delivery notification: NOTIFY does not ask for it", "failed", silenced)
	}
	if (len(failed) > 0 || len(success) > 0 || m.owesExpanded()) && now.Before(m.NotifyAfter) {
		failed, success = nil, nil // the last try to send a DSN failed; wait
	} else if m.owesExpanded() {
		success = append(success, -1) // the expansions, reported with the others
	}
	type handOver struct {
		kind dsnKind
		idx  []int
		what string
	}
	var plan []handOver
	tell := func(kind dsnKind, idx []int, what string) {
		changed = true
		if m.From == "" {
			// RFC 5321 §4.5.5 and §6.1: never notify the null sender,
			// so bounces cannot loop.
			q.logFor(m).Info("no notification for the null sender", "kind", kind.String(), "recipients", len(idx))
			markNotified(m, idx)
			return
		}
		plan = append(plan, handOver{kind, idx, what})
	}
	if len(failed) > 0 {
		tell(dsnFailed, failed, "non-delivery notification")
	}
	if len(success) > 0 {
		tell(dsnSuccess, success, "success notification")
	}
	warn := q.o.DelayWarning > 0 && !m.DelayWarned && len(pending) > 0 && now.Sub(m.Created) >= q.o.DelayWarning
	if warn && m.From == "" {
		m.DelayWarned, changed = true, true
	} else if warn {
		changed = true
		plan = append(plan, handOver{dsnDelayed, pending, "delay warning"})
	}
	if len(plan) == 0 {
		return changed, settled, false
	}
	// What is about to be handed over is on disk first: from here on, a
	// crash leaves it for the next try to settle.
	for _, p := range plan {
		m.DSNs = append(m.DSNs, PendingDSN{ID: dsnID(m, p.kind, p.idx), Kind: p.kind.String(), Rcpts: p.idx})
	}
	q.openDSNs(m)
	switch err := q.sp.update(m); {
	case errors.Is(err, errDeleted), errors.Is(err, errHeld):
		q.logFor(m).Info(gotWhere(err))
		if errors.Is(err, errDeleted) {
			q.settleDSNs(nil, append(settled, dsnIDs(m)...))
		}
		return changed, settled, true
	case err != nil:
		q.logFor(m).Error("recording the notifications to send failed, will retry", "err", err)
		m.NotifyAfter = now.Add(q.o.MinBackoff)
		return changed, settled, false
	}
	for _, p := range plan {
		id := dsnID(m, p.kind, p.idx)
		if err := q.sendDSN(ctx, m, p.kind, p.idx, id, data, now); err != nil {
			// Its record stays, and the next try, after NotifyAfter,
			// finds out whether it went after all.
			q.logFor(m).Error("sending the "+p.what+" failed, will retry", "err", err)
			continue
		}
		q.handedOver(p.kind)
		applyDSN(m, p.kind, p.idx)
		m.dropDSN(id)
		settled = append(settled, id)
	}
	if len(m.DSNs) > 0 {
		m.NotifyAfter = now.Add(q.o.MinBackoff)
	}
	return changed, settled, false
}

// dsnIDs are the ids of the DSNs m names as being handed over.
func dsnIDs(m *Message) []string {
	ids := make([]string, len(m.DSNs))
	for i, d := range m.DSNs {
		ids[i] = d.ID
	}
	return ids
}

// handedOver calls the test hook onDSN.
func (q *Queue) handedOver(kind dsnKind) {
	if q.onDSN != nil {
		q.onDSN(kind)
	}
}

// markNotified records that the sender was told about the recipients idx;
// -1 stands for every expansion (Message.Expanded).
func markNotified(m *Message, idx []int) {
	for _, i := range idx {
		if i < 0 {
			for j := range m.Expanded {
				m.Expanded[j].Notified = true
			}
			continue
		}
		m.Recipients[i].Notified = true
	}
	m.NotifyAfter = time.Time{}
}

// reported are the recipients a DSN is about: idx into m.Recipients, -1
// for the expansions still to report.
func reported(m *Message, idx []int) []Recipient {
	out := make([]Recipient, 0, len(idx))
	for _, i := range idx {
		if i >= 0 {
			out = append(out, m.Recipients[i])
			continue
		}
		for _, r := range m.Expanded {
			if !r.Notified {
				out = append(out, r)
			}
		}
	}
	return out
}

// sendDSN builds a DSN and hands it to Options.Bounce, or queues it from
// the null sender to the envelope sender, under the queue id id (dsnID)
// unless a DSN of that id was handed over already.
func (q *Queue) sendDSN(ctx context.Context, m *Message, kind dsnKind, idx []int, id string, data *os.File, now time.Time) error {
	returned, err := returnedContent(data, m, kind)
	if err != nil {
		return err
	}
	rcpts := reported(m, idx)
	report := q.buildDSN(m, kind, rcpts, returned, now)
	var opts []Option
	if dsnUTF8(m, rcpts) {
		// An RFC 6533 DSN leaves only with SMTPUTF8, as Postfix's
		// bounce of an SMTPUTF8 message: the next hop must take its
		// UTF-8 addresses and message/global parts as they are.
		opts = append(opts, WithSMTPUTF8())
	}
	if q.o.Bounce != nil {
		// Accept stores it under id, or nothing when id is known.
		return q.o.Bounce(ctx, m.clone(), report, append(opts, withQueueID(id))...)
	}
	queued, err := q.enqueueOnce(ctx, id, []string{m.From}, report, opts...)
	if err != nil {
		return err
	}
	if !queued {
		// A crash came between this DSN's commit and the record of it in
		// m: the one queued then is the one the sender gets.
		q.logFor(m).Info("sender notification already queued", "kind", kind.String(), "dsn_id", id)
		return nil
	}
	q.logFor(m).Info("sender notification", "kind", kind.String(), "dsn_id", id, "to", "<"+m.From+">")
	return nil
}

// dsnID names the DSN of kind about m's recipients idx the same way at
// every try, so that a try after a crash finds the DSN an earlier try
// handed over (queued, or gone and marked) and did not record as sent in
// m, instead of sending a second one (dsnonce.go): m's arrival time (ids
// sort by it), then 8 bytes of a hash of what the DSN is about. A
// recipient is reported once per kind, so no two DSNs of m that went
// share a name.
func dsnID(m *Message, kind dsnKind, idx []int) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %v", m.ID, kind, idx)
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(m.Created.UnixNano()))
	copy(b[8:], h.Sum(nil))
	return strings.ToUpper(hex.EncodeToString(b[:]))
}
