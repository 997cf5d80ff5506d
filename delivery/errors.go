package delivery

import (
	"errors"
	"syscall"
)

var (
	// ErrDiskFull: the file system or the owner's quota is full (ENOSPC,
	// EDQUOT). Temporary; SMTP answers 452 4.3.1 (RFC 3463 X.3.1 "mail
	// system full").
	ErrDiskFull = errors.New("delivery: disk full")
	// ErrNotWritable: the file system refused to store the copy though the
	// maildir is well formed: mounted read-only (EROFS, also what ext4's
	// errors=remount-ro leaves), permissions (EACCES), an immutable or
	// append-only directory (EPERM). Temporary; SMTP answers 452 4.3.1 as
	// for a full disk: the storage cannot take mail now.
	ErrNotWritable = errors.New("delivery: maildir not writable")
	// ErrBadMaildir: the maildir path or what is on disk there is unusable
	// (relative, unclean, outside the allowed base, a symlink leading out,
	// not a directory, bad owner). Temporary: an administrator must fix the
	// directory entry or the file system; never bounce for it.
	ErrBadMaildir = errors.New("delivery: bad maildir")
	// ErrOverQuota: the copy would take the maildir past its quota
	// (Recipient.Quota, kept in Maildir++'s maildirsize). Temporary, as
	// Dovecot's default (quota_full_tempfail): SMTP answers 452 4.2.2 and the
	// sender (or the queue) retries until the user makes room or the limit
	// is raised.
	ErrOverQuota = errors.New("quota exceeded")
	// ErrNoFolder: Recipient.NoCreate was set and the folder does not
	// exist. Permanent for that folder; Sieve's deliverer keeps the copy
	// in the INBOX instead, as Pigeonhole does.
	ErrNoFolder = errors.New("delivery: folder does not exist")
	// ErrRejected: the recipient's Sieve script refused the message
	// (reject, ereject). Permanent: SMTP answers 550 5.7.1 with
	// RejectedError's text, the queue bounces with it.
	ErrRejected = errors.New("delivery: rejected by the recipient's filter")
	// ErrNeedsQueue: Message.Single was set but the recipient's delivery
	// takes more than one file (its Sieve script files into several
	// folders, redirects or replies); nothing was stored. The caller
	// queues the message first (the queue's keyed copies and remembered
	// side effects make every step idempotent) and delivers from there.
	ErrNeedsQueue = errors.New("delivery: more than one file: through the queue")
	// ErrHomedElsewhere: Recipient.Node names another cluster node; the
	// copy belongs there. Temporary: the queue hands it over.
	ErrHomedElsewhere = errors.New("delivery: mailbox homed on another node")
	// ErrHeld: Recipient.Held says the user is being moved away from this
	// node; a copy written now could be left behind in the maildir being
	// moved. Temporary: the queue keeps it until the move is over.
	ErrHeld = errors.New("delivery: mailbox held while it is being moved")
)

// Error is what Deliver returns for a copy that was not stored. Nothing of
// that copy is left in new/.
type Error struct {
	// Temporary: retry later (SMTP 4xx). False only for problems of the
	// message itself that a retry cannot fix.
	Temporary bool
	// Reason is short, fixed text fit for a log line or an SMTP reply; it
	// never contains a path or a string from the network.
	Reason string
	// Err is the cause (may wrap ErrDiskFull, ErrBadMaildir, a *PathError,
	// or the context's error).
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return "delivery: " + e.Reason
	}
	return "delivery: " + e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Status is the RFC 3463 enhanced status code of the failure (4.3.1 for a
// full disk, 5.6.0 for a permanent failure, ...).
func (e *Error) Status() string { return e.dsn() }

// dsn is the RFC 3463 enhanced status code for the log line.
func (e *Error) dsn() string {
	switch {
	case errors.Is(e, ErrOverQuota):
		return "4.2.2" // mailbox full
	case errors.Is(e, ErrDiskFull), errors.Is(e, ErrNotWritable):
		return "4.3.1" // mail system full
	case errors.Is(e, ErrBadMaildir):
		return "4.3.5" // system incorrectly configured
	case errors.Is(e, ErrHomedElsewhere), errors.Is(e, ErrHeld):
		return "4.2.0" // mailbox status: not here now
	case errors.Is(e, ErrRejected):
		return "5.7.1" // delivery not authorized, message refused
	case !e.Temporary:
		return "5.6.0" // other or undefined media error
	}
	return "4.3.0" // other or undefined mail system status
}

// badMaildir is a temporary error wrapping ErrBadMaildir and the cause.
func badMaildir(reason string, cause error) *Error {
	if cause == nil {
		return &Error{Temporary: true, Reason: reason, Err: ErrBadMaildir}
	}
	return &Error{Temporary: true, Reason: reason, Err: errors.Join(ErrBadMaildir, cause)}
}

// isDiskFull reports an out-of-space or over-quota errno anywhere in err.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// isNotWritable reports a refusal to write anywhere in err.
func isNotWritable(err error) bool {
	return errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM)
}

// ioError classifies a file-system error met while storing a copy.
func ioError(reason string, err error) *Error {
	switch {
	case isDiskFull(err):
		return &Error{Temporary: true, Reason: "disk full", Err: errors.Join(ErrDiskFull, err)}
	case isNotWritable(err):
		return &Error{Temporary: true, Reason: "maildir not writable", Err: errors.Join(ErrNotWritable, err)}
	}
	return &Error{Temporary: true, Reason: reason, Err: err}
}

// openError classifies an error met while opening or creating the maildir
// itself: a full or unwritable file system is said so (ioError), resource
// exhaustion and I/O errors are plain temporary failures, everything else
// (ENOENT after creation, ENOTDIR, ELOOP, "path escapes from parent", ...)
// says the path on disk is not a usable maildir.
func openError(reason string, err error) *Error {
	switch {
	case isDiskFull(err), isNotWritable(err):
		return ioError(reason, err)
	case errors.Is(err, syscall.EIO), errors.Is(err, syscall.EMFILE),
		errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM),
		errors.Is(err, syscall.EINTR), errors.Is(err, syscall.EAGAIN):
		return &Error{Temporary: true, Reason: reason, Err: err}
	}
	return badMaildir(reason, err)
}
