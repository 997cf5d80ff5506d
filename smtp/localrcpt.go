package smtp

import (
	"errors"
	"fmt"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery/queue"
	"courriel/internal/envaddr"
)

// refusedRcpt is a recipient of the Local socket that the other listeners
// would have refused for good: the message is accepted all the same and
// the queue bounces it to the sender (queue.WithFailed).
type refusedRcpt struct {
	addr   string
	status string // RFC 3463, class 5
	reason string // the refusal's text, for the DSN
}

// rcptLocal is RCPT TO on the Local socket. Postfix's sendmail never hears
// of a recipient's fate: postdrop takes everything, and cleanup bounces an
// unknown recipient to the sender while the others get the message. So a
// permanent refusal (5xx: unknown user, an alias past its limits, a bad
// address) is answered 250 here and remembered in tx.refused, for a DSN
// made when the message is queued; the caller (cron, a script) is told by
// that bounce, as with Postfix, rather than by an exit status that made
// every other recipient lose the message. A temporary refusal (4xx: the
// directory unreachable) stays a refusal: sendmail then leaves the whole
// message in the maildrop, and the server's pickup tries it again later,
// as cleanup's deferral leaves it there under Postfix, and bounces it
// once queue.max_lifetime has passed. A refused recipient counts toward
// MaxRecipients as a copy does (tx.copies): past it 452 4.5.3, and the
// client sends the rest in another transaction.
//
// Kept as refusals: an address the queue could not put in a DSN
// (envaddr.Valid; the client is told rather than the recipient silently
// dropped), a server without a queue (no bounce can be sent), and the
// 421s that end the session. s.mu held.
func (s *session) rcptLocal(to string, dsn queue.RcptDSN) error {
	err := s.rcpt(to, false, dsn)
	var se *gosmtp.SMTPError
	if err == nil || !errors.As(err, &se) || se.Code < 500 || se.Code > 599 || s.srv.o.Queue == nil || s.tx.id == "" {
		return err
	}
	addr := to
	if !strings.Contains(addr, "@") {
		if strings.EqualFold(addr, "postmaster") {
			addr = "postmaster"
		}
		addr += "@" + s.srv.o.Hostname
	}
	if !envaddr.Valid(addr) {
		return err
	}
	// What the refusal counted against MaxErrors: the recipient is
	// accepted, and one script's list of stale addresses must not cut
	// the session off before its message.
	s.c.recentErrors.Add(-1)
	status := "5.0.0"
	if c := se.EnhancedCode; c[0] == 5 && c[1] >= 0 && c[2] >= 0 {
		status = fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
	}
	reason := strings.TrimSuffix(se.Message, " (id "+s.tx.id+")")
	for _, r := range s.tx.refused {
		if dedupeKey(r.addr) == dedupeKey(addr) {
			return nil
		}
	}
	// A failed recipient is one more in the queue's entry, whose limit
	// is MaxRecipients (a longer one would not load again after a
	// restart): past it, 452 as for a copy, and the client sends the
	// rest in another transaction (sendmail and the pickup do).
	if s.tx.copies() >= s.srv.o.MaxRecipients {
		s.log.Info("rcpt deferred: too many recipients in this transaction", "msg_id", s.tx.id, "to", logValue(addr, 300))
		return withID(replyTooManyRcpts, s.replyID())
	}
	s.tx.refused = append(s.tx.refused, refusedRcpt{addr: addr, status: status, reason: fmt.Sprintf("%d %s %s", se.Code, status, reason)})
	// Its own DSN parameters (NOTIFY=NEVER: no bounce), as a loop's.
	s.tx.rcptDSN(addr, dsn, nil)
	s.log.Info("rcpt refused: accepted from the local socket, to bounce to the sender",
		"msg_id", s.tx.id, "to", logValue(addr, 300), "status", status)
	return nil
}

// copies is the number of recipients the queue's entry would hold: the
// copies and the refused recipients to bounce (WithFailed).
func (t *txn) copies() int { return len(t.local) + len(t.remote) + len(t.refused) }

// failedOptions are the queue options of the refused recipients, one
// WithFailed each (their statuses differ).
func (t *txn) failedOptions() []queue.Option {
	opts := make([]queue.Option, 0, len(t.refused))
	for _, r := range t.refused {
		opts = append(opts, queue.WithFailed([]string{r.addr}, r.status, r.reason))
	}
	return opts
}
