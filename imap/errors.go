package imap

import (
	"errors"
	"log/slog"

	goimap "github.com/emersion/go-imap/v2"

	"courriel/imap/mailstore"
	"courriel/imap/uidlist"
)

// imapError turns an internal error into the tagged reply: known conditions
// get their RFC 5530 response code, anything else a generic temporary NO
// carrying the connection id (the log line has the details), never the
// error text itself.
func (s *session) imapError(op string, err error, missing goimap.ResponseCode) error {
	if err == nil {
		return nil
	}
	var ie *goimap.Error
	if errors.As(err, &ie) {
		return ie
	}
	return mapError(err, missing, s.logger, op, s.id)
}

func mapError(err error, missing goimap.ResponseCode, log *slog.Logger, op, id string) *goimap.Error {
	no := func(code goimap.ResponseCode, text string) *goimap.Error {
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: code, Text: text}
	}
	switch {
	case errors.Is(err, mailstore.ErrNoFolder):
		if missing == "" {
			missing = goimap.ResponseCodeNonExistent
		}
		return no(missing, "No such mailbox")
	case errors.Is(err, mailstore.ErrFolderExists):
		return no(goimap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, mailstore.ErrBadName):
		return no(goimap.ResponseCodeCannot, "Invalid mailbox name")
	case errors.Is(err, mailstore.ErrTooManyKeywords):
		return no(goimap.ResponseCodeLimit, "Too many keywords in this mailbox")
	case errors.Is(err, uidlist.ErrLocked):
		return no(goimap.ResponseCodeInUse, "Mailbox is locked, try again")
	}
	log.Error("imap command failed", "conn_id", id, "op", op, "err", err)
	return no(goimap.ResponseCodeUnavailable, "Internal error, try again later (id "+id+")")
}
