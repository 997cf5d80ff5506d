package smtp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// Signer DKIM-signs what the submission listeners accept
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
}

// junkFolder is the Maildir++ folder of quarantined mail (IMAP's \Junk,
// see imap).
const junkFolder = ".Junk"

// mailAuth is the mail authentication step of data: on port 25, the
// checks (for clients neither authenticated nor in MyNetworks) decide and
// add their Authentication-Results; on submission, the message as it will
// leave is signed. It returns the trace header and message to store, or the
// refusal.
func (s *session) mailAuth(ctx context.Context, log *slog.Logger, header []byte, body delivery.Content) ([]byte, delivery.Content, error) {
	o := s.srv.o
	switch {
	case o.Kind == Inbound && o.AuthChecker != nil && !s.mayRelay():
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
		return append(header, v.Fields...), body, nil
	case o.Kind != Inbound && o.Signer != nil:
		sig, err := o.Signer.Sign(joined{header, body}, int64(len(header))+body.Size())
		if err != nil {
			log.Error("dkim signing", "err", err)
			return nil, nil, fmt.Errorf("dkim signing: %w", err)
		}
		return append(sig, header...), body, nil
	}
	return header, body, nil
}
