package smtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
)

// dataProgress: during DATA the read deadline moves by ReadTimeout each
// time this much more of the message has arrived, so a slow but honest
// client gets through and one trickling a byte a second does not.
const dataProgress = 64 << 10

// Data implements gosmtp.Session for DATA and BDAT alike (see data) and
// counts the outcome: what it returns is the reply go-smtp sends.
func (s *session) Data(r io.Reader) error {
	err := s.data(r)
	if result, ok := transactionResult(err); ok {
		s.srv.o.Metrics.Transaction(s.srv.o.Listener, result)
	}
	return err
}

// data reads, checks and stores one message.
//
// go-smtp ends DATA only at <CRLF>.<CRLF>: its reader never treats <LF>.<LF>,
// <LF>.<CRLF> or <CR>.<CR> as the end (checked in tests), so nothing after
// them can become a command. Such a bare CR or LF would still let a next
// hop that is lax about line ends see an end of data inside the message
// (SMTP smuggling), so messages with a bare CR or LF are refused
// (554 5.6.0, RFC 5321 §2.3.8), like Postfix's smtpd_forbid_bare_newline =
// reject. NUL is refused too (RFC 6152 §3: no NUL in 8-bit text).
//
// One reply covers all recipients, and the message is accepted once or
// refused whole (see store): 250 when every copy is stored or durably
// queued, 4xx or 5xx only when nothing was stored for anyone, so a client's
// retry never makes duplicates.
func (s *session) data(r io.Reader) error {
	// readMessage touches no session state: for BDAT, Reset may run on the
	// connection's goroutine meanwhile (RSET, a refused chunk), closing r.
	pr, isBDAT := r.(*io.PipeReader)
	if isBDAT {
		s.c.setBDAT(pr)
	} else {
		// DATA runs on the goroutine that reads the connection.
		s.c.data.start()
	}
	body, err := s.readMessage(r)
	if !isBDAT {
		tooLarge := errors.Is(err, errTooLarge)
		if tooLarge {
			// go-smtp skips the rest of the message. As much again as the
			// limit gets there for an honest client that ignored SIZE, and
			// no more for one that never stops.
			s.c.discardLeft.Store(s.srv.o.MaxMessageBytes)
		}
		// In clear, the skipping goes on in bulk up to the end of data;
		// under TLS the conn sees ciphertext, where no end can be found.
		s.c.data.on = s.c.data.on && tooLarge && s.tls == nil
	}
	if errors.Is(err, gosmtp.ErrDataReset) {
		return err // the transaction is gone and nobody reads this result; see waitBDAT
	}
	if isBDAT {
		s.c.setBDAT(nil) // go-smtp waits for this result: no race
	}
	// From here on go-smtp's connection goroutine waits for our result.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.countCommand() {
		return s.dropWith(replyTooManyCmds)
	}
	defer s.c.setTx(false)
	log := s.log.With("msg_id", s.tx.id)
	if len(s.tx.local)+len(s.tx.remote) == 0 {
		return s.fail(stageData, rep(554, gosmtp.EnhancedCode{5, 5, 1}, "No valid recipients"))
	}
	if err != nil {
		log.Warn("message refused", "err", err, "size", len(body))
		return s.fail(stageData, err)
	}
	if err := checkText(body, s.srv.o.MaxLineLength); err != nil {
		log.Warn("message refused", "err", err, "size", len(body))
		return s.fail(stageData, err)
	}
	now := s.srv.o.Now()
	header := s.received(now)

	ctx, cancel := context.WithTimeout(context.Background(), s.srv.o.DeliveryTimeout)
	defer cancel()
	if err := s.store(ctx, log, header, body, now); err != nil {
		return s.fail(stageData, err)
	}
	attrs := []any{"from", sanitize(s.tx.from, 300), "size", len(body), "nrcpt", len(s.tx.rcpts), "local", len(s.tx.local), "remote", len(s.tx.remote)}
	if s.user != nil {
		attrs = append(attrs, "sasl_username", s.user.Login)
	}
	log.Info("message accepted", attrs...)
	s.c.messageAccepted()
	return nil
}

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
func (s *session) store(ctx context.Context, log *slog.Logger, header, body []byte, now time.Time) error {
	local, remote := s.tx.local, s.tx.remote
	q := s.srv.o.Queue
	if len(remote) == 0 && (len(local) == 1 || q == nil) {
		return s.deliverLocal(ctx, header, body, now)
	}
	data := make([]byte, 0, len(header)+len(body))
	data = append(append(data, header...), body...)
	qid, localErrs, err := q.Accept(ctx, s.tx.from, remote, local, data)
	if err != nil {
		log.Error("queue failed", "err", err, "remote", len(remote), "local", len(local))
		return fmt.Errorf("queue: %w", err)
	}
	for i, err := range localErrs {
		metric := statusSent
		var le *queue.LocalError
		switch {
		case errors.As(err, &le) && le.Permanent:
			metric = statusBounced
		case err != nil:
			metric = statusDeferred
		}
		s.srv.o.Metrics.Delivery(metric)
		if err != nil {
			log.Warn("local copy queued for retry or bounce", "queue_id", sanitize(qid, 64),
				"to", sanitize(local[i].Address, 300), "err", err)
		}
	}
	log.Info("queued", "queue_id", sanitize(qid, 64), "remote", len(remote), "local", len(local))
	return nil
}

// deliverLocal stores every local copy, and returns nil only if all are
// durable; otherwise the error that decides the reply (temporary first).
func (s *session) deliverLocal(ctx context.Context, header, body []byte, now time.Time) error {
	if len(s.tx.local) == 0 {
		return nil
	}
	m := &delivery.Message{ID: s.tx.id, From: s.tx.from, Header: header, Body: body, Arrived: now}
	errs := s.srv.o.Deliverer.Deliver(ctx, m, s.tx.local)
	if len(errs) != len(s.tx.local) {
		s.log.Error("deliverer returned a wrong number of results", "msg_id", s.tx.id, "want", len(s.tx.local), "got", len(errs))
		for range s.tx.local { // the whole message gets 451 and comes again
			s.srv.o.Metrics.Delivery(statusDeferred)
		}
		return errors.New("deliverer: wrong number of results")
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
		s.log.Debug("local copy", "msg_id", s.tx.id, "to", sanitize(s.tx.local[i].Address, 300),
			"orig_to", sanitize(s.tx.local[i].OrigTo, 300), "status", status, "err", err)
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

// readMessage reads the whole message, at most MaxMessageBytes, moving the
// read deadline as data arrives (see dataProgress). It reads straight into
// the slice it returns, grown by doubling from readStart: no intermediate
// chunk, and one copy of the message in memory.
func (s *session) readMessage(r io.Reader) ([]byte, error) {
	limit := s.srv.o.MaxMessageBytes
	buf := make([]byte, 0, min(int64(readStart), limit+1))
	next := int64(dataProgress)
	for {
		if len(buf) == cap(buf) {
			// Never more than limit+1 bytes: one past the limit is enough
			// to know the message is too large.
			buf = slices.Grow(buf, int(min(int64(cap(buf)), limit+1-int64(len(buf)))))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, errTooLarge
		}
		if int64(len(buf)) >= next {
			next += dataProgress
			s.c.SetReadDeadline(time.Now().Add(s.srv.o.ReadTimeout))
		}
		switch {
		case err == io.EOF:
			return buf, nil
		case errors.Is(err, gosmtp.ErrDataTooLarge):
			return buf, errTooLarge
		case err != nil:
			return buf, fmt.Errorf("reading message: %w", err)
		}
	}
}

// readStart is the first buffer for a message: most mail is a few KiB.
const readStart = 16 << 10

// checkText refuses bare CR, bare LF, NUL and lines longer than maxLine
// octets with their CRLF (RFC 5321 §4.5.3.1.6; go-smtp does not check
// line length inside BDAT chunks).
func checkText(b []byte, maxLine int) error {
	lineStart := 0
	for i, c := range b {
		switch c {
		case 0:
			return errNUL
		case '\r':
			if i+1 >= len(b) || b[i+1] != '\n' {
				return errBareNewline
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return errBareNewline
			}
			if i+1-lineStart > maxLine {
				return errLongLine
			}
			lineStart = i + 1
		}
	}
	if len(b)-lineStart > maxLine {
		return errLongLine
	}
	return nil
}
