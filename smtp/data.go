package smtp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/internal/logwriter"
)

// dataProgress: during DATA the read deadline moves by ReadTimeout each
// time this much more of the message has arrived, so a slow but honest
// client gets through and one trickling a byte a second does not.
const dataProgress = 64 << 10

// Data reads one message, for DATA and BDAT alike (see data), and counts
// the outcome: what it returns is the reply conn sends.
func (s *session) Data(r io.Reader) error {
	err := s.data(r)
	if result, ok := transactionResult(err); ok {
		s.srv.o.Metrics.Transaction(s.srv.o.Listener, result)
	}
	return err
}

// data reads, checks and stores one message.
//
// DATA ends only at <CRLF>.<CRLF> (wire.DataReader): never at <LF>.<LF>,
// <LF>.<CRLF> or <CR>.<CR> (checked in tests), so nothing after them can
// become a command. What is stored and relayed has only CRLF line
// endings, so no next hop that is lax about them can find an end of data
// inside it (SMTP smuggling): a bare LF is stored as CRLF (Postfix 3.9's
// smtpd_forbid_bare_newline = normalize) or, with BareNewlineReject,
// refused (554 5.6.0); a bare CR is refused, and so is NUL (textFilter).
//
// A message larger than SpoolThreshold is read into an unnamed file of
// SpoolDir (spoolBuf), not memory: a session in DATA costs at most
// SpoolThreshold however large its message.
//
// Loops (RFC 5321 §6.3): a message with more than hopLimit Received: fields,
// or that already reached one of its recipients here (a Delivered-To: of
// that address, or a Received: of this host for it), is refused with
// 554 5.4.6 before anything is stored.
//
// One reply covers all recipients, and the message is accepted once or
// refused whole (see store): 250 when every copy is stored or durably
// queued, 4xx or 5xx only when nothing was stored for anyone, so a client's
// retry never makes duplicates.
func (s *session) data(r io.Reader) error {
	msg, bareLF, err := s.readMessage(r)
	defer msg.close()
	if errors.Is(err, errDataReset) {
		return err // BDAT ended by another command: nobody reads this result
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.countCommand() {
		return s.dropWith(replyTooManyCmds)
	}
	defer s.c.setTx(false)
	log := s.log.With("msg_id", s.tx.id)
	if len(s.tx.local)+len(s.tx.remote)+len(s.tx.refused) == 0 {
		return s.fail(stageData, rep(554, gosmtp.EnhancedCode{5, 5, 1}, "No valid recipients"))
	}
	if err != nil {
		log.Warn("message refused", "err", err, "size", msg.size)
		return s.fail(stageData, err)
	}
	body := msg.content()
	br, _ := s.srv.headerReaders.Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nil, headerBuffer)
	}
	hi := scanHeaderWith(body, s.srv.o.Hostname, br)
	br.Reset(nil)
	s.srv.headerReaders.Put(br)
	body = edit(body, hi.drops, hi.bodyAt, crlf)
	// RFC 6531 §3.4: a message sent with SMTPUTF8 whose header needs it
	// keeps it at the next hop (or bounces there if none offers it).
	s.tx.needUTF8 = s.tx.utf8 && hi.utf8
	if hi.received > hopLimit {
		log.Warn("message refused: too many hops", "received", hi.received, "limit", hopLimit)
		return s.fail(stageData, replyTooManyHops)
	}
	if err := s.dropLoops(log, hi); err != nil {
		return s.fail(stageData, err)
	}
	now := s.srv.o.Now()
	header := s.received(now)
	header = s.addedFields(header, hi, now)
	header, body, release, discarded, err := s.filterMessage(log, header, body)
	defer release()
	if err != nil {
		return s.fail(stageData, err)
	}
	if discarded { // accepted, and dropped on a milter's word (logged)
		s.c.messageAccepted()
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.srv.o.DeliveryTimeout)
	defer cancel()
	header, body, err = s.mailAuth(ctx, log, header, body)
	if err != nil {
		return s.fail(stageData, err)
	}
	// The copies' delivery lines wait for the reply (conn.replied), and
	// go in one write with the accepted line.
	hctx, release := logwriter.Hold(ctx)
	s.afterReply = release
	if err := s.store(hctx, log, header, body, now); err != nil {
		return s.fail(stageData, err)
	}
	attrs := []slog.Attr{slog.String("from", logValue(s.tx.from, 300)), slog.Int64("size", msg.size), slog.Int("nrcpt", len(s.tx.rcpts)),
		slog.Int("local", len(s.tx.local)), slog.Int("remote", len(s.tx.remote))}
	if s.user != nil {
		attrs = append(attrs, slog.String("sasl_username", s.user.Login))
	}
	if bareLF > 0 {
		attrs = append(attrs, slog.Int("bare_lf_normalized", bareLF))
	}
	if msg.spooled() {
		attrs = append(attrs, slog.Bool("spooled", true))
	}
	// Logged once the 250 is on its way (conn.replied): the client reads
	// it meanwhile, instead of waiting for the log's write(2).
	s.afterReply = func() {
		logwriter.LogAttrs(context.Background(), log, slog.LevelInfo, "message accepted", attrs...)
		release()
	}
	s.c.messageAccepted()
	return nil
}

// forwardTrace is the Delivered-To: <alias> of each recipient that
// forwards outside, on every listener, so that the copy coming back is
// found (see data). Only the copies that leave carry it
// (queue.WithRemoteHeader): the alias's recipients here, or the others of
// the message, must not learn of a forward they were not told of, a Bcc
// among them, as Postfix adds it to the forwarded copy alone.
func (s *session) forwardTrace() []byte {
	var h []byte
	room := maxForwardTrace
	for _, a := range s.tx.forwarded {
		if room -= len(a) + len("Delivered-To: \r\n"); room < 0 {
			break // the Received: count still ends a loop
		}
		h = append(append(append(h, "Delivered-To: "...), a...), "\r\n"...)
	}
	return h
}

// addedFields appends to the trace header what the message lacks, for an
// authenticated client on any listener (submission, or port 25 after
// AUTH), as Postfix's cleanup does for SASL clients: a Message-ID, a Date
// and, from the envelope sender the login owns, a From. The Local socket's
// messages get them too, as cleanup adds them to what pickup hands it
// (sendmail writes a From of its own only for a full name, -F, which the
// envelope cannot carry). A client that did not log in (port 25, the
// Cluster listener's hops) gets its message unchanged.
func (s *session) addedFields(h []byte, hi headerInfo, now time.Time) []byte {
	if s.user == nil && s.srv.o.Kind != Local {
		return h
	}
	if !hi.messageID {
		h = append(h, "Message-ID: <"...)
		h = now.UTC().AppendFormat(h, "20060102150405")
		h = append(append(append(append(h, '.'), s.tx.id...), '@'), s.srv.o.Hostname...)
		h = append(h, ">\r\n"...)
	}
	if !hi.date {
		h = append(h, "Date: "...)
		h = now.AppendFormat(h, "Mon, 02 Jan 2006 15:04:05 -0700 (MST)")
		h = append(h, "\r\n"...)
	}
	if !hi.from && s.tx.from != "" {
		h = append(append(append(h, "From: <"...), s.tx.from...), ">\r\n"...)
	}
	return h
}

// maxForwardTrace bounds the Delivered-To: lines of one message, well
// inside what the queue allows above MaxMessageBytes for trace fields.
const maxForwardTrace = 16 << 10

// store hands the message over. It returns nil once every recipient's copy
// is stored or durably queued, and an error only when nothing was stored
// for anyone:
//   - a single local copy is stored directly: it is stored or not, and the
//     reply says which (the common case, at the cost of one fsync);
//   - anything else goes through the queue's Accept, which queues the message
//     for every recipient first and then stores the local copies at once; a
//     local copy that fails then is retried or bounced by the queue, as
//     Postfix's local delivery does, and never makes the sender retry the
//     copies already stored.
//
// Without a queue (tests, and a server built without one) local copies are
// stored directly and a partial failure gets the reply of the worst one.
func (s *session) store(ctx context.Context, log *slog.Logger, header []byte, body delivery.Content, now time.Time) error {
	local, remote := s.tx.local, s.tx.remote
	q := s.srv.o.Queue
	elsewhere := s.notHere()
	switch {
	case elsewhere && q == nil:
		// RCPT refuses node copies without a queue: a hold came since.
		log.Info("message deferred: a mailbox is being moved")
		return replyNotHomedHere
	case len(remote) == 0 && q == nil:
		return s.deliverLocal(ctx, header, body, now, false)
	case len(remote) == 0 && len(local) == 1 && !elsewhere && len(s.tx.loops)+len(s.tx.refused) == 0 && !s.tx.wantsSuccess():
		// (A success DSN to send goes through the queue: its entry,
		// written before the 250, owes it.)
		err := s.deliverLocal(ctx, header, body, now, true)
		if !errors.Is(err, delivery.ErrNeedsQueue) && !errors.Is(err, delivery.ErrHeld) {
			return err
		}
		// The recipient's Sieve script wants several files (folders, a
		// redirect, a reply), or the user is being moved to another
		// node (a move began, or ended, since RCPT): nothing was
		// stored, and the queue's commit point comes first, as for
		// several recipients; it keeps a held copy until the move is
		// over and then delivers it where the user is.
	}
	// The hold as it is now (it may have begun since RCPT), beside the
	// home RCPT resolved (Node, Entry): the queue places the copies by
	// them without asking the directory again.
	for i := range s.tx.local {
		r := &s.tx.local[i]
		r.Held = r.Node == "" && s.srv.o.Holds.Held(s.tx.homes[dedupeKey(r.Address)])
	}
	var qid string
	var localErrs []error
	var err error
	if hq, ok := q.(handOverQueue); ok && s.oneHome() && len(s.tx.loops)+len(s.tx.refused) == 0 {
		var handed bool
		var opts []queue.Option
		if o := s.tx.dsnOption(); o != nil {
			opts = append(opts, o)
		}
		qid, handed, localErrs, err = hq.HandOver(ctx, s.tx.id, s.tx.from, local, joined{header, body}, opts...)
		if err == nil && handed {
			log.Info("handed over", "queue_id", logValue(qid, 64), "node", local[0].Node, "local", len(local))
			return nil
		}
	} else {
		qid, localErrs, err = s.accept(ctx, q, joined{header, body})
	}
	if err != nil {
		log.Error("queue failed", "err", err, "remote", len(remote), "local", len(local))
		return fmt.Errorf("queue: %w", err)
	}
	// The queue counts its attempts at these copies itself
	// (queue.Options.Attempted), as it counts its later ones.
	for i, err := range localErrs {
		// A node copy (or a held user's): the queue hands it over.
		if err != nil && !errors.Is(err, queue.ErrNotHere) {
			log.Warn("local copy queued for retry or bounce", "queue_id", logValue(qid, 64),
				"to", logValue(local[i].Address, 300), "err", err)
		}
	}
	log.Info("queued", "queue_id", logValue(qid, 64), "remote", len(remote), "local", len(local))
	return nil
}

// dropLoops takes out of the transaction the copies of every recipient the
// message already reached here (hi.seen), to bounce them (tx.loops) while
// the others get theirs, as Postfix bounces only the looping recipient. A
// copy another RCPT that does not loop reaches stays, as that RCPT's (its
// orig_to and DSN parameters, as milterDelRcpt leaves it): bob named
// beside a looping alias that reaches him too still gets the message. It
// returns replyLoop, and changes nothing, when no copy would be left, or
// when there is no queue to send the bounce.
func (s *session) dropLoops(log *slog.Logger, hi headerInfo) error {
	var loops []string
	for _, a := range s.tx.ours {
		if hi.seen[dedupeKey(a)] {
			loops = append(loops, a)
		}
	}
	if len(loops) == 0 {
		return nil
	}
	looping := func(rcpt string) bool {
		return slices.ContainsFunc(loops, func(l string) bool { return dedupeKey(l) == dedupeKey(rcpt) })
	}
	// What the RCPTs that do not loop give each copy they reach.
	var heirs map[string]*copyHeir
	if o := s.tx.origins; o != nil {
		others := &rcptOrigins{list: slices.Clone(o.list)}
		for i := range others.list {
			if looping(others.list[i].key) {
				others.list[i].key = ""
			}
		}
		copies := make(map[string]bool, len(s.tx.local)+len(s.tx.remote))
		for _, r := range s.tx.local {
			copies[dedupeKey(r.Address)] = true
		}
		for _, a := range s.tx.remote {
			copies[dedupeKey(a)] = true
		}
		heirs = others.heirs(copies)
	}
	taken := map[string]*copyHeir{} // copies kept for an RCPT that does not loop
	var local []delivery.Recipient
	for _, r := range s.tx.local {
		if looping(r.OrigTo) {
			h := heirs[dedupeKey(r.Address)]
			if h == nil {
				continue
			}
			taken[dedupeKey(r.Address)] = h
			r.OrigTo = h.orig
			if r.OrigTo == "" {
				r.OrigTo = r.Address
			}
		}
		local = append(local, r)
	}
	var remote []string
	for _, a := range s.tx.remote {
		if looping(a) || looping(s.tx.origTo[a]) {
			h := heirs[dedupeKey(a)]
			if h == nil {
				continue
			}
			taken[dedupeKey(a)] = h
		}
		remote = append(remote, a)
	}
	if len(local)+len(remote) == 0 || s.srv.o.Queue == nil {
		log.Warn("message refused: mail loop", "to", logValue(strings.Join(loops, ","), 300))
		return replyLoop
	}
	log.Warn("mail loop: these recipients bounce, the others get the message", "to", logValue(strings.Join(loops, ","), 300))
	for _, a := range remote {
		if h := taken[dedupeKey(a)]; h != nil {
			s.setOrigTo(a, h.alias)
		}
	}
	for k, h := range taken {
		s.tx.setCopyDSN(k, h.hasDSN, h.dsn)
	}
	s.tx.local, s.tx.remote, s.tx.loops = local, remote, loops
	return nil
}

// handOverQueue is a Queue that can hand a message for users homed on
// one other node to that node before the reply (*queue.Queue).
type handOverQueue interface {
	HandOver(ctx context.Context, msgID, from string, local []delivery.Recipient, data delivery.Content, opts ...queue.Option) (id string, handed bool, localErrs []error, err error)
}

// oneHome says whether every copy of the transaction is a node copy for
// one and the same node (no remote copy, no local one, nobody held here):
// the queue may then hand the message over at once instead of queueing
// it (issue 18: a front node's throughput). The queue places the copies
// again and queues whatever does not fit.
func (s *session) oneHome() bool {
	if len(s.tx.remote) > 0 || s.tx.remoteFrom != nil || len(s.tx.local) == 0 {
		return false
	}
	node := s.tx.local[0].Node
	for _, r := range s.tx.local {
		if r.Node == "" || r.Node != node || s.srv.o.Holds.Held(s.tx.homes[dedupeKey(r.Address)]) {
			return false
		}
	}
	return true
}

// notHere says whether a local copy must not be stored here now: a node
// copy, or a copy for a user held while being moved (checked again here:
// a hold may have started since RCPT). Those go through the queue.
func (s *session) notHere() bool {
	for _, r := range s.tx.local {
		if r.Node != "" || s.srv.o.Holds.Held(s.tx.homes[dedupeKey(r.Address)]) {
			return true
		}
	}
	return false
}

// deliverLocal stores every local copy, and returns nil only if all are
// durable; otherwise the error that decides the reply (temporary first).
//
// single: the only copy, which must be one file or nothing
// (delivery.Message.Single); ErrNeedsQueue says the caller must queue it.
func (s *session) deliverLocal(ctx context.Context, header []byte, body delivery.Content, now time.Time, single bool) error {
	if len(s.tx.local) == 0 {
		return nil
	}
	m := &delivery.Message{ID: s.tx.id, From: s.tx.from, Header: header, Body: body, Arrived: now, Single: single}
	if !s.tx.arrived.IsZero() { // keyed copies from another node (cluster.go)
		m.Arrived, m.Retry = s.tx.arrived, s.tx.retry
	}
	errs := s.srv.o.Deliverer.Deliver(ctx, m, s.tx.local)
	if len(errs) != len(s.tx.local) {
		s.log.Error("deliverer returned a wrong number of results", "msg_id", s.tx.id, "want", len(s.tx.local), "got", len(errs))
		for range s.tx.local { // the whole message gets 451 and comes again
			s.srv.o.Metrics.Delivery(statusDeferred)
		}
		return errors.New("deliverer: wrong number of results")
	}
	if single && (errors.Is(errs[0], delivery.ErrNeedsQueue) || errors.Is(errs[0], delivery.ErrHeld)) {
		return errs[0] // not an outcome: the queue delivers it
	}
	var temp, perm error
	for i, err := range errs {
		status, metric := "sent", statusSent
		if err != nil {
			status = "failed"
			if isPermanent(err) {
				perm = cmp(perm, err)
				metric = statusBounced
			} else {
				temp = cmpTemp(temp, err)
				metric = statusDeferred
			}
		}
		s.srv.o.Metrics.Delivery(metric)
		// Debug: the Deliverer writes the Postfix-style line for each copy
		// (SPEC §3), this one only ties it to the session.
		if !s.log.Enabled(ctx, slog.LevelDebug) {
			continue
		}
		s.log.Debug("local copy", "msg_id", s.tx.id, "to", logValue(s.tx.local[i].Address, 300),
			"orig_to", logValue(s.tx.local[i].OrigTo, 300), "status", status, "err", err)
	}
	if temp != nil {
		return temp
	}
	return perm
}

func cmp(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// cmpTemp keeps a storage error (disk full, not writable) if there is one:
// it has its own reply, 452 4.3.1.
func cmpTemp(a, b error) error {
	if a == nil || replyFor(stageData, b).Code == 452 {
		return b
	}
	return a
}

// isPermanent: only a *delivery.Error that says so is permanent; anything
// else is treated as temporary.
func isPermanent(err error) bool {
	r := replyFor(stageData, err)
	return r.Code >= 500
}

// readMessage reads the whole message into a spoolBuf, checked and
// normalised by a textFilter, at most MaxMessageBytes as stored, moving the
// read deadline as data arrives (see dataProgress). A message found bad
// (bare CR, NUL, a spool write error) is still read to its end, so that the
// size limit and its bounded skipping apply alike; the error is returned
// then. It also returns the bare LFs normalised. The caller closes the
// spoolBuf.
func (s *session) readMessage(r io.Reader) (*spoolBuf, int, error) {
	o := s.srv.o
	msg := newSpoolBuf(o.SpoolDir, o.SpoolThreshold, o.MaxMessageBytes)
	tf := textFilter{reject: o.BareNewline == BareNewlineReject}
	chunk, _ := s.srv.readChunks.Get().(*[readChunk]byte)
	if chunk == nil {
		chunk = new([readChunk]byte)
	}
	defer s.srv.readChunks.Put(chunk) // msg and tf keep nothing of it
	buf := chunk[:]
	var read int64
	next := int64(dataProgress)
	var bad error // the first problem found; reading goes on
	for {
		n, err := r.Read(buf)
		read += int64(n)
		if bad == nil && n > 0 {
			bad = tf.write(buf[:n], msg.write)
		}
		if errors.Is(bad, errTooLarge) || read > o.MaxMessageBytes {
			return msg, tf.bareLF, errTooLarge
		}
		if read >= next {
			next += dataProgress
			s.c.extendRead()
		}
		switch {
		case err == io.EOF:
			if bad == nil {
				bad = tf.end()
			}
			return msg, tf.bareLF, bad
		case err != nil:
			return msg, tf.bareLF, fmt.Errorf("reading message: %w", err)
		}
	}
}

// readChunk is what one Read of the message asks for.
const readChunk = 32 << 10
