package imap

import (
	"errors"
	"log/slog"
	"syscall"

	"courriel/imap/mailstore"
	"courriel/imap/uidlist"
)

// storeErr turns a mailstore error into the tagged NO: known conditions
// get their RFC 5530 response code, anything else a generic temporary NO
// carrying the connection id (the log line has the details), never the
// error text itself.
func (s *session) storeErr(op string, err error, missing string) error {
	if err == nil {
		return nil
	}
	var re *respErr
	if errors.As(err, &re) {
		return re
	}
	return mapError(err, missing, s.logger, op, s.id)
}

func mapError(err error, missing string, log *slog.Logger, op, id string) *respErr {
	switch {
	case errors.Is(err, mailstore.ErrNoFolder):
		if missing == "" {
			missing = "NONEXISTENT"
		}
		return no(missing, "Mailbox does not exist")
	case errors.Is(err, mailstore.ErrFolderExists):
		return no("ALREADYEXISTS", "Mailbox already exists")
	case errors.Is(err, mailstore.ErrBadName):
		return no("CANNOT", "Invalid mailbox name")
	case errors.Is(err, mailstore.ErrTooManyKeywords):
		return no("LIMIT", "Too many keywords in this mailbox")
	case errors.Is(err, uidlist.ErrLocked):
		return no("INUSE", "Mailbox is locked, try again")
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// A write failed for lack of room. RFC 5530's OVERQUOTA tells
		// the client that retrying at once will not help and expunging
		// may. Dovecot 2.3 answers EDQUOT so ("Not enough disk quota";
		// ENOSPC is a SERVERBUG there), older Dovecots both ("Not
		// enough disk space").
		// A folder never numbered is not opened without room to
		// number it (mailstore.ErrNoRoomToOpen): said so, the user
		// knows the folder is not empty.
		log.Warn("imap: disk full", "conn_id", id, "op", op, "err", err)
		what := "space"
		if errors.Is(err, syscall.EDQUOT) {
			what = "quota"
		}
		if errors.Is(err, mailstore.ErrNoRoomToOpen) {
			return no("OVERQUOTA", "Not enough disk "+what+" to open this mailbox")
		}
		return no("OVERQUOTA", "Not enough disk "+what)
	}
	log.Error("imap command failed", "conn_id", id, "op", op, "err", err)
	return no("UNAVAILABLE", "Internal error, try again later (id "+id+")")
}
