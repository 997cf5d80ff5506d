package queue

import (
	"context"
	"io"
	"slices"
	"time"

	"courriel/delivery"
)

// HandOver is Accept for a message whose every copy is a local copy
// (no remote recipient), meant for one for users homed on one other
// cluster node, the common case on a front node. Where Accept queues node
// copies for the runner (a spool write and fsync here, then the hop),
// HandOver allocates the queue id and hands the message to the home node's
// cluster listener at once, on the runner's sessions to it and with the
// keys its queued copies would have (XKEY, XARRIVED), for every copy or
// none, in one transaction: the data is sent only once the node answered
// 2xx to every RCPT. handed is true when it then answered 250 to the data,
// having stored and fsynced every copy, and nothing was written here.
//
// Anything else ends in Accept's path with the same message, queued under
// the same id and keys for the runner: the placement finds a copy not for
// that one node, or more copies than a transaction takes; the node is
// remembered dead or not reached within the time; a RCPT refused (4xx or
// 5xx) for some copies: no data is sent, so nothing is stored over there
// (which a spool write failing here, answered 4xx to the client, would
// make a duplicate at its retry); the refused copies' answers are
// recorded as the runner records them (a 5xx bounces, a 4xx waits), and
// the accepted ones are queued untried, due at once, without an attempt:
// nothing of them was sent, so their next transaction needs no XRETRY; a
// refusal of MAIL, DATA or the data, one answer for every copy (each
// stored or none), recorded as the attempt; a connection lost after the
// data, recorded as the attempt, so that the copies stored over there
// without their 250 arriving are found by the retry (XRETRY, since the
// attempt counts). The attempt is bounded by HandOverTimeout; without a
// runner in this process (a client of the spool, or one shutting down)
// nothing is tried. localErrs and err are Accept's (localErrs nil when
// handed): on an error nothing was queued, but a copy may have been
// stored over there if the attempt was cut short after the data without
// its answer (only a spool that cannot be written makes that error, and a
// duplicate is then the lesser harm).
// opts are Accept's. A message that owes its sender a success DSN
// (NOTIFY=SUCCESS for a copy, an alias expansion) is never handed at
// once: queued, for the runner, which hands it over and sends the DSN
// (handed over first, it would need a spool write after the node's 250,
// for that DSN, and that write failing would make the caller answer 4xx
// and the client's retry store every copy twice). A message under a key
// (WithOnceKey) is stored once as Accept stores it, and never handed at
// once either.
func (q *Queue) HandOver(ctx context.Context, msgID, from string, local []delivery.Recipient, data delivery.Content, opts ...Option) (id string, handed bool, localErrs []error, err error) {
	m, err := q.newMessage(ctx, from, nil, local, data.Size(), false)
	if err != nil {
		return "", false, nil, err
	}
	for _, o := range opts {
		o(m)
	}
	if validMsgID(msgID) {
		m.MsgID = msgID
	}
	// Under a key (WithOnceKey), once, as Accept. Such a message is not
	// handed over at once: handed whole it would leave nothing here, no
	// envelope for create to find under the spool lock, no mark when it
	// leaves, and a retry of its maker (after a crash before its own
	// record) would hand it over again, its copies stored twice over
	// there (no XRETRY on a first attempt). The runner hands it over.
	if m.queueID == "" {
		// New mail: refused when the queue is full (Accept), before
		// any copy is handed over.
		if err := q.room(); err != nil {
			return "", false, nil, err
		}
	}
	known, err := q.fixID(m)
	if err != nil {
		return "", false, nil, err
	} else if known {
		return m.ID, false, make([]error, len(local)), nil
	}
	// Placed as Accept would: the caller's home and hold, or the
	// directory's.
	var here []int
	node, one := "", !m.fixed
	for i := range m.Recipients {
		r := &m.Recipients[i]
		p, _ := q.place(ctx, r, q.carried(&local[i])) // no remote copy: local[i] is r
		switch {
		case p == placeHere:
			here = append(here, i)
			one = false
		case p != placeNode || node != "" && r.Node != node:
			one = false
		default:
			node = r.Node
		}
	}
	// One transaction, all or nothing: more copies than it takes are
	// queued (a second transaction could fail after the first stored).
	// A success to report is queued first (see above).
	if one && node != "" && len(m.Recipients) <= rcptsPerTransaction && !m.owesSuccess() {
		if g, res, tried := q.handOver(ctx, m, node, data); tried {
			q.record(m, g, res)
			if m.done() {
				q.logFor(m).Info("handed over", "node", node)
				return m.ID, true, nil, nil
			}
			if slices.ContainsFunc(res, func(x result) bool { return x.out == outUnsent }) {
				q.logFor(m).Info("not handed over: the node refused some copies, all queued", "node", node)
			}
		}
	}
	id, localErrs, err = q.commit(ctx, m, here, data, len(local))
	return id, false, localErrs, err
}

// owesSuccess says that m, every copy delivered, would still owe its
// sender a DSN: a success (NOTIFY=SUCCESS, which a node copy never
// passes on) or an alias expansion to report.
func (m *Message) owesSuccess() bool {
	return len(m.DSNs) > 0 || m.owesExpanded() ||
		slices.ContainsFunc(m.Recipients, func(r Recipient) bool { return notifies(r.Notify, NotifySuccess) })
}

// handOver sends every copy of m to node on a session of the runner's
// cache, within HandOverTimeout (and a second per MiB), in one transaction
// for all of them or none (group.whole). tried says a session was had, so
// that res holds the outcomes to record; otherwise nothing was sent.
func (q *Queue) handOver(ctx context.Context, m *Message, node string, data delivery.Content) (g group, res []result, tried bool) {
	q.mu.Lock()
	runCtx, runCut := q.runCtx, q.runCut
	if !q.sp.owner() || !q.running || q.stopping || runCtx == nil || runCtx.Err() != nil {
		q.mu.Unlock()
		return g, nil, false
	}
	q.handing.Add(1) // Run closes the sessions only after Done
	q.mu.Unlock()
	defer q.handing.Done()

	// actx ends the attempt whatever it is doing: its time is up, the
	// caller gave up, or the runner's shutdown deadline came. sctx ends
	// with the runner's shutdown too, when nothing may start (a dial, a
	// transaction before its data); a transaction whose data went is let
	// finish then, within actx (session.interrupt).
	limit := q.o.HandOverTimeout + time.Duration(m.Size>>20)*time.Second
	actx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	defer context.AfterFunc(runCut, cancel)()
	sctx, scancel := context.WithCancel(context.WithValue(actx, cutKey{}, actx))
	defer scancel()
	defer context.AfterFunc(runCtx, scancel)()

	g.rt, g.whole = q.nodeRoute(node), true
	for i := range m.Recipients {
		g.rcpts = append(g.rcpts, i)
	}
	// A session lives beyond this attempt, in the cache: during the
	// transaction it is closed when the attempt's time is up, and
	// afterwards, as the runner's, when Run ends.
	var cut func() bool
	hook := func(s *session, before bool) {
		if before {
			s.stop()
			cut = context.AfterFunc(actx, func() { s.raw.Close() })
			s.stop = context.AfterFunc(runCtx, s.interrupt)
			return
		}
		if !cut() {
			s.closing = true // closed under the transaction: never reused
		}
	}
	res, tried = q.sendGroup(sctx, m, g, io.NewSectionReader(data, 0, data.Size()), hook)
	return g, res, tried
}
