package smtp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/internal/sevenbit"
)

// Signer DKIM-signs what authenticated clients send, on every listener
// (*mailauth.Signer).
type Signer interface {
	// Sign returns the DKIM-Signature fields to put on top of msg (the
	// message as it will be stored and relayed), nil when the author's
	// domain has no key.
	Sign(msg io.ReaderAt, size int64) ([]byte, error)
}

// AuthChecker runs the sender checks of port 25 (SPF, DKIM, DMARC;
// courriel/mailauth, adapted in cmd/courriel).
type AuthChecker interface {
	Check(ctx context.Context, in AuthInput, msg io.ReaderAt, size int64) (AuthVerdict, error)
}

// AuthInput is what the checks know of the session.
type AuthInput struct {
	IP       netip.Addr
	Helo     string // as sent, hostile
	MailFrom string // "" for <>
}

// AuthAction is what the checks decide for the message.
type AuthAction int

const (
	AuthAccept     AuthAction = iota
	AuthQuarantine            // local copies go to the Junk folder
	AuthReject                // 550 5.7.1, nothing stored
	AuthDefer                 // 451 4.7.x: a decision was due and DNS failed
)

// AuthVerdict is the outcome of AuthChecker.Check.
type AuthVerdict struct {
	// Fields go on top of the message (Authentication-Results:), CRLF
	// terminated.
	Fields []byte
	// Header, when not nil, replaces the message's first HeaderEnd octets
	// (its header block): the same fields without those claiming our
	// authserv-id, which only we may write.
	Header    []byte
	HeaderEnd int64
	Action    AuthAction
	Reason    string // printable ASCII, for the reply and the log
	// SPFFailed: the sender's domain does not authorise the client (SPF
	// fail or softfail): a forward must not bounce to it (srsSender).
	SPFFailed bool
	// Seal, when set, returns the ARC set (RFC 8617) to put on top of a
	// message port 25 forwards outside: msg is the message as it will be
	// queued, Fields included. Nil: no sealing.
	Seal func(msg io.ReaderAt, size int64) ([]byte, error)
}

// SRS rewrites the envelope sender of forwards (*mailauth.SRS).
type SRS interface {
	Forward(sender string) (string, error)
	IsSRS(addr string) bool
	Reverse(addr string) (string, error)
}

// forwardQueue is a Queue that sends the remote copies with another
// envelope sender than the local ones show (*queue.Queue).
type forwardQueue interface {
	AcceptForward(ctx context.Context, msgID, from, remoteFrom string, remote []string, local []delivery.Recipient, data delivery.Content, opts ...queue.Option) (id string, localErrs []error, err error)
}

// mailAuth is the mail authentication step of data: what an authenticated
// client sends, on submission or on port 25 after AUTH (the seed offers
// AUTH on both), is signed as it will leave, as opendkim in front of every
// smtpd signs Postfix's SASL clients; on port 25, for clients neither
// authenticated nor in MyNetworks, the checks decide and add their
// Authentication-Results, and forwards get their SRS sender. It returns
// the trace header and message to store, or the refusal.
func (s *session) mailAuth(ctx context.Context, log *slog.Logger, header []byte, body delivery.Content) ([]byte, delivery.Content, error) {
	o := s.srv.o
	if o.Kind != Inbound || s.user != nil {
		if o.Signer == nil {
			return header, body, nil
		}
		body, err := sevenBit(body)
		if err != nil {
			log.Error("reading the message to sign", "err", err)
			return nil, nil, fmt.Errorf("dkim signing: %w", err)
		}
		sig, err := o.Signer.Sign(joined{header, body}, int64(len(header))+body.Size())
		if err != nil {
			log.Error("dkim signing", "err", err)
			return nil, nil, fmt.Errorf("dkim signing: %w", err)
		}
		return append(sig, header...), body, nil
	}
	if s.mayRelay() {
		return header, body, nil
	}
	spfFailed := false
	if o.AuthChecker != nil {
		v, err := o.AuthChecker.Check(ctx, AuthInput{IP: s.c.ip, Helo: s.helo, MailFrom: s.tx.from}, body, body.Size())
		if err != nil {
			// Not a DNS answer (those are results): a bug or an unreadable
			// spool file. Temporary, like every failure of ours.
			log.Error("mail authentication", "err", err)
			return nil, nil, fmt.Errorf("mail authentication: %w", err)
		}
		reason := sanitize(v.Reason, 200)
		switch v.Action {
		case AuthReject:
			log.Warn("message refused: mail authentication", "reason", reason)
			return nil, nil, rep(550, gosmtp.EnhancedCode{5, 7, 1}, "Message rejected: "+reason)
		case AuthDefer:
			log.Warn("message deferred: mail authentication", "reason", reason)
			return nil, nil, rep(451, gosmtp.EnhancedCode{4, 7, 5}, "Cannot check the sender now, try again later: "+reason)
		case AuthQuarantine:
			log.Info("message quarantined: mail authentication", "reason", reason)
			for i := range s.tx.local {
				s.tx.local[i].Folder = junkFolder
			}
		}
		if v.Header != nil && v.HeaderEnd >= 0 && v.HeaderEnd <= body.Size() {
			body = joined{v.Header, io.NewSectionReader(body, v.HeaderEnd, body.Size()-v.HeaderEnd)}
		}
		header = append(header, v.Fields...)
		spfFailed = v.SPFFailed
		if v.Seal != nil && len(s.tx.remote) > 0 {
			// A forward: the next hop sees, through the ARC set, what our
			// checks saw before SRS and our trace changed the message. One
			// copy is stored, so local copies carry the set too. A message
			// that cannot be sealed goes out unsealed.
			set, err := v.Seal(joined{header, body}, int64(len(header))+body.Size())
			if err != nil {
				log.Info("forward not ARC-sealed", "reason", err)
			} else {
				header = append(set, header...)
			}
		}
	}
	s.srsSender(log, spfFailed)
	return header, body, nil
}

// srsSender chooses the envelope sender of what port 25 forwards outside
// (every remote copy of an untrusted client is a forward): an SRS address
// of ours, so that the forward passes SPF at the next hop and its bounce
// comes back through us, or the null sender when the original sender
// failed SPF here, so that a refusal of the forward bounces to nobody
// (backscatter). The null sender's own mail needs nothing.
func (s *session) srsSender(log *slog.Logger, spfFailed bool) {
	o := s.srv.o
	if o.SRS == nil || len(s.tx.remote) == 0 || s.tx.from == "" {
		return
	}
	rf := ""
	if !spfFailed {
		var err error
		if rf, err = o.SRS.Forward(s.tx.from); err != nil {
			// Too long for an address, or quoted: the forward keeps its
			// sender and may fail SPF at the next hop, as without SRS.
			log.Warn("srs: sender not rewritten", "err", err)
			return
		}
	}
	s.tx.remoteFrom = &rf
	log.Debug("forward sender", "remote_from", logValue(rf, 300), "spf_failed", spfFailed)
}

// accept queues the message (store), with the forwards' own sender when
// srsSender chose one.
func (s *session) accept(ctx context.Context, q Queue, data delivery.Content) (string, []error, error) {
	var opts []queue.Option
	if len(s.tx.origTo) > 0 {
		opts = append(opts, queue.WithOrigTo(s.tx.origTo))
	}
	if s.tx.needUTF8 {
		opts = append(opts, queue.WithSMTPUTF8())
	}
	if h := s.forwardTrace(); len(h) > 0 {
		opts = append(opts, queue.WithRemoteHeader(h))
	}
	if len(s.tx.loops) > 0 {
		opts = append(opts, queue.WithFailed(s.tx.loops, "5.4.6", "mail forwarding loop: the message already reached this recipient here"))
	}
	opts = append(opts, s.tx.failedOptions()...)
	if o := s.tx.dsnOption(); o != nil {
		opts = append(opts, o) // after WithFailed: it reaches the loops and the refused
	}
	if s.tx.remoteFrom != nil {
		if fq, ok := q.(forwardQueue); ok {
			return fq.AcceptForward(ctx, s.tx.id, s.tx.from, *s.tx.remoteFrom, s.tx.remote, s.tx.local, data, opts...)
		}
	}
	return q.Accept(ctx, s.tx.id, s.tx.from, s.tx.remote, s.tx.local, data, opts...)
}

// rcptSRS takes a recipient that is one of our SRS addresses (a bounce of
// a forward, or a reply to its envelope sender) and relays it to the
// original sender, whoever the client is: the hash says we wrote it. A
// forged or expired one gets 550 5.1.1. handled is false for other
// addresses.
//
// The RCPT's DSN parameters go with the original sender's copy as they
// are: the address is rewritten, not expanded (Postfix's SRS is a
// canonical map, not an alias).
func (s *session) rcptSRS(log func() *slog.Logger, addr string, dsn queue.RcptDSN) (handled bool, err error) {
	o := s.srv.o
	if o.SRS == nil || !o.SRS.IsSRS(addr) {
		return false, nil
	}
	orig, rerr := o.SRS.Reverse(addr)
	if rerr != nil {
		log().Info("rcpt refused: srs", "err", rerr)
		return true, s.fail(stageRcpt, rep(550, gosmtp.EnhancedCode{5, 1, 1}, "Invalid or expired SRS address"))
	}
	a, perr := parseAddress(orig, s.tx.utf8)
	if perr != nil {
		log().Info("rcpt refused: srs original sender", "err", perr)
		return true, s.fail(stageRcpt, rep(550, gosmtp.EnhancedCode{5, 1, 1}, "Invalid SRS address"))
	}
	if o.Queue == nil {
		return true, s.fail(stageRcpt, replyNoQueue)
	}
	if !s.tx.seen[dedupeKey(a.String())] && s.tx.copies() >= o.MaxRecipients {
		return true, s.fail(stageRcpt, replyTooManyRcpts)
	}
	s.addRemote(a.String())
	cd := s.tx.rcptDSN(a.String(), dsn, []string{a.String()})
	s.noteOrigin(addr, "", dsn != (queue.RcptDSN{}), cd, []string{a.String()})
	s.tx.rcpts = append(s.tx.rcpts, addr)
	log().Debug("rcpt ok", "srs_to", logValue(a.String(), 300))
	return true, nil
}

// sevenBit returns a message whose body parts hold 8-bit octets converted to
// quoted-printable, for a DKIM signature (RFC 6376 §5.3): otherwise the
// queue converts it for a next hop without 8BITMIME, after the signature,
// whose body hash then fails. The header stays as it is (8-bit there needs
// SMTPUTF8 whatever is done). A 7-bit message is returned unread past the
// scan.
func sevenBit(body delivery.Content) (delivery.Content, error) {
	buf := make([]byte, 64<<10)
	for off := int64(0); ; {
		n, err := body.ReadAt(buf, off)
		if sevenbit.Has8bit(buf[:n]) {
			break
		}
		off += int64(n)
		if err == io.EOF || off >= body.Size() {
			return body, nil
		}
		if err != nil {
			return nil, err
		}
	}
	raw := make([]byte, body.Size())
	if _, err := body.ReadAt(raw, 0); err != nil && err != io.EOF {
		return nil, err
	}
	if out, changed := sevenbit.Downgrade(raw); changed {
		return delivery.MemContent(out), nil
	}
	return body, nil
}
