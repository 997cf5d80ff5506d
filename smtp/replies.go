package smtp

import (
	"context"
	"errors"
	"io"
	"syscall"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
)

// stage says which command an error came from: the same directory error
// means 451 at RCPT and 454 at AUTH.
type stage int

const (
	stageMail stage = iota
	stageRcpt
	stageAuth
	stageData
)

// Errors met while reading a message; replyFor maps them.
var (
	errBareNewline = errors.New("smtp: bare CR or LF in message")
	errNUL         = errors.New("smtp: NUL in message")
	errTooLarge    = errors.New("smtp: message too large")
	// errDataReset: a BDAT transfer ended by another command or a lost
	// connection; the message is dropped and nobody reads its reply.
	errDataReset = errors.New("smtp: message transfer aborted")
)

func rep(code int, ec gosmtp.EnhancedCode, msg string) *gosmtp.SMTPError {
	return &gosmtp.SMTPError{Code: code, EnhancedCode: ec, Message: msg}
}

// Replies decided by policy, named so tests and code agree.
var (
	replyStartTLSFirst = rep(530, gosmtp.EnhancedCode{5, 7, 0}, "Must issue a STARTTLS command first")
	replyAuthRequired  = rep(530, gosmtp.EnhancedCode{5, 7, 0}, "Authentication required")
	replyRelayDenied   = rep(554, gosmtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	replyUserUnknown   = rep(550, gosmtp.EnhancedCode{5, 1, 1}, "Recipient address rejected: user unknown")
	replyTempFailure   = rep(451, gosmtp.EnhancedCode{4, 3, 0}, "Temporary local problem, try again later")
	replyNoQueue       = rep(451, gosmtp.EnhancedCode{4, 3, 0}, "Cannot forward or relay now, try again later")
	replyAuthFailed    = rep(535, gosmtp.EnhancedCode{5, 7, 8}, "Authentication failed")
	replyAuthTempFail  = rep(454, gosmtp.EnhancedCode{4, 7, 0}, "Temporary authentication failure, try again later")
	replyAuthThrottled = rep(454, gosmtp.EnhancedCode{4, 7, 0}, "Too many authentication failures, try again later")
	replyTooManyFails  = rep(421, gosmtp.EnhancedCode{4, 7, 0}, "Too many authentication failures, closing connection")
	replyTooManyCmds   = rep(421, gosmtp.EnhancedCode{4, 7, 0}, "Too many commands, closing connection")
	replyShuttingDown  = rep(421, gosmtp.EnhancedCode{4, 3, 2}, "Service shutting down, try again later")
	replyTooLarge      = rep(552, gosmtp.EnhancedCode{5, 3, 4}, "Message size exceeds fixed limit")
	replyDiskFull      = rep(452, gosmtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	replyNotWritable   = rep(452, gosmtp.EnhancedCode{4, 3, 1}, "Mail storage not writable, try again later")
	replyOverQuota     = rep(452, gosmtp.EnhancedCode{4, 2, 2}, "Mailbox full, try again later")
	replyNestedMail    = rep(503, gosmtp.EnhancedCode{5, 5, 1}, "Error: nested MAIL command")
	replyBadSender     = rep(501, gosmtp.EnhancedCode{5, 1, 7}, "Sender address rejected: bad address syntax")
	replyBadRcpt       = rep(501, gosmtp.EnhancedCode{5, 1, 3}, "Recipient address rejected: bad address syntax")
	replyNeedUTF8      = rep(553, gosmtp.EnhancedCode{5, 6, 7}, "Non-ASCII address requires SMTPUTF8")
	replyBareNewline   = rep(554, gosmtp.EnhancedCode{5, 6, 0}, "Message contains bare CR or LF (RFC 5321 §2.3.8)")
	replyTooManyHops   = rep(554, gosmtp.EnhancedCode{5, 4, 6}, "Too many hops (mail loop?)")
	replyLoop          = rep(554, gosmtp.EnhancedCode{5, 4, 6}, "Mail forwarding loop: the message already reached this recipient")
	replyNUL           = rep(554, gosmtp.EnhancedCode{5, 6, 0}, "Message contains NUL characters")
	replyDeliveryFail  = rep(554, gosmtp.EnhancedCode{5, 6, 0}, "Transaction failed: message cannot be stored")
	// RFC 5321 §4.5.3.1.10: 452 makes the client send the rest in another
	// transaction; an alias too large on its own cannot be helped by that.
	replyTooManyRcpts  = rep(452, gosmtp.EnhancedCode{4, 5, 3}, "Too many recipients")
	replyAliasTooLarge = rep(550, gosmtp.EnhancedCode{5, 5, 3}, "Recipient address rejected: expands to too many recipients")
	// An alias past the directory's expansion or nesting limit: deferred
	// whole, as Postfix's cleanup does (4.6.0, "unreasonable
	// virtual_alias_maps map expansion size"), until an admin mends it.
	replyAliasExpansion  = rep(451, gosmtp.EnhancedCode{4, 6, 0}, "Alias expansion error, try again later")
	replyQueueBadAddress = rep(553, gosmtp.EnhancedCode{5, 1, 3}, "Address rejected: bad address syntax")
	replyBadAuthData     = rep(501, gosmtp.EnhancedCode{5, 5, 2}, "Malformed authentication data")
	replyBadAuthzid      = rep(535, gosmtp.EnhancedCode{5, 7, 8}, "Authentication failed")
	replyAuthNotEnabled  = rep(503, gosmtp.EnhancedCode{5, 5, 1}, "Error: authentication not enabled")    // Postfix, SASL not active before TLS
	replyAuthUnknownMech = rep(504, gosmtp.EnhancedCode{5, 5, 4}, "Unsupported authentication mechanism") // RFC 4954 §4
	// Postfix 3.9's smtpd_forbid_unauth_pipelining: a client that sent
	// before our greeting or past the end of a pipelined group.
	replySyncError = rep(554, gosmtp.EnhancedCode{5, 5, 0}, "Error: SMTP protocol synchronization")
)

// replyFor is the one place where an error becomes an SMTP reply. A reply
// already decided by policy passes through; known conditions get their
// code; anything else is a generic temporary failure, never err.Error().
// The caller adds the id.
func replyFor(st stage, err error) *gosmtp.SMTPError {
	var se *gosmtp.SMTPError
	var de *delivery.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		return se
	case errors.Is(err, delivery.ErrDiskFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return replyDiskFull
	case errors.Is(err, delivery.ErrNotWritable):
		return replyNotWritable
	case errors.Is(err, delivery.ErrOverQuota):
		return replyOverQuota
	case errors.Is(err, directory.ErrInvalidCredentials):
		return replyAuthFailed
	case errors.Is(err, directory.ErrExpansionLimit):
		return replyAliasExpansion
	case errors.Is(err, directory.ErrNotFound) && st == stageRcpt:
		return replyUserUnknown
	case errors.Is(err, directory.ErrUnavailable) && st == stageAuth:
		return replyAuthTempFail
	case errors.Is(err, errTooLarge):
		return replyTooLarge
	case errors.Is(err, errBareNewline):
		return replyBareNewline
	case errors.Is(err, errNUL):
		return replyNUL
	case errors.Is(err, delivery.ErrRejected) && errors.As(err, &de):
		// The recipient's Sieve reject/ereject: its text, which the
		// deliverer made one line of printable ASCII.
		return rep(550, gosmtp.EnhancedCode{5, 7, 1}, sanitize(de.Reason, 200))
	case errors.As(err, &de) && !de.Temporary:
		return replyDeliveryFail
	case errors.Is(err, queue.ErrTooLarge):
		return replyTooLarge
	case errors.Is(err, queue.ErrTooManyRecipients):
		return replyTooManyRcpts
	case errors.Is(err, queue.ErrInvalidAddress):
		return replyQueueBadAddress
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.ErrUnexpectedEOF):
		return replyTempFailure
	}
	if st == stageAuth {
		return replyAuthTempFail
	}
	return replyTempFailure
}

// withID returns a copy of r whose text ends with the id, so a 4xx/5xx
// reply leads to the log lines of its transaction (STYLE habit 6).
func withID(r *gosmtp.SMTPError, id string) *gosmtp.SMTPError {
	if r == nil || r.Code < 400 || id == "" {
		return r
	}
	c := *r
	c.Message = r.Message + " (id " + id + ")"
	return &c
}
