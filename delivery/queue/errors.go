package queue

import (
	"errors"
	"fmt"

	"courriel/delivery"
)

// Errors a caller must tell apart. Enqueue's input errors are permanent (the
// SMTP layer answers 5xx or 452 for too many recipients); any other Enqueue
// error (disk full, I/O) is temporary and must become a 4xx, never a bounce.
var (
	ErrInvalidID         = errors.New("queue: invalid message id")
	ErrNotFound          = errors.New("queue: no such message")
	ErrTooLarge          = errors.New("queue: message too large")        // 552 5.3.4
	ErrTooManyRecipients = errors.New("queue: too many recipients")      // 452 4.5.3 (RFC 5321 §4.5.3.1.10)
	ErrNoRecipients      = errors.New("queue: no recipients")            // 554 5.5.1
	ErrInvalidAddress    = errors.New("queue: invalid envelope address") // 553 5.1.3
	ErrNotOwner          = errors.New("queue: spool is run by another process")
	ErrClosed            = errors.New("queue: closed")
	// ErrQueueFull: new mail refused while the queue holds
	// MaxQueueFiles messages. Temporary, a full spool as a full disk is
	// (it wraps delivery.ErrDiskFull: SMTP answers 452 4.3.1).
	ErrQueueFull = fmt.Errorf("queue: full (MaxQueueFiles): %w", delivery.ErrDiskFull)
	errDeleted   = errors.New("queue: message deleted meanwhile")
	errHeld      = errors.New("queue: message held meanwhile") // its state was recorded in hold/
	errCorrupt   = errors.New("queue: corrupt envelope")
)

// IsPermanent reports whether an Enqueue error is about the message itself, so
// that retrying the same message cannot succeed.
func IsPermanent(err error) bool {
	return errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooManyRecipients) ||
		errors.Is(err, ErrNoRecipients) || errors.Is(err, ErrInvalidAddress)
}
