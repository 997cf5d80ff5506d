package imap

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"

	"courriel/imap/mailstore"
	"courriel/imap/uidlist"
)

// What a client reads back for each storage error: a response code it
// can act on, never the error's own text.
func TestMapError(t *testing.T) {
	t.Parallel()
	write := func(errno syscall.Errno) error {
		return fmt.Errorf("mailstore: write tmp/1.M2P3.host: %w", &os.PathError{Op: "write", Path: "/srv/mail/u/tmp/1.M2P3.host", Err: errno})
	}
	tests := []struct {
		name, missing string
		err           error
		code, text    string
	}{
		{"no folder", "", mailstore.ErrNoFolder, "NONEXISTENT", "Mailbox does not exist"},
		{"no folder to APPEND to", "TRYCREATE", mailstore.ErrNoFolder, "TRYCREATE", "Mailbox does not exist"},
		{"exists", "", mailstore.ErrFolderExists, "ALREADYEXISTS", "Mailbox already exists"},
		{"bad name", "", fmt.Errorf("%w: reserved", mailstore.ErrBadName), "CANNOT", "Invalid mailbox name"},
		{"keywords", "", mailstore.ErrTooManyKeywords, "LIMIT", "Too many keywords in this mailbox"},
		{"locked", "", fmt.Errorf("%w: dovecot-uidlist.lock", uidlist.ErrLocked), "INUSE", "Mailbox is locked, try again"},
		{"disk full", "", write(syscall.ENOSPC), "OVERQUOTA", "Not enough disk space"},
		{"disk full making a folder", "", fmt.Errorf("mailstore: mkdir .New/cur: %w", &os.PathError{Op: "mkdirat", Path: ".New/cur", Err: syscall.ENOSPC}), "OVERQUOTA", "Not enough disk space"},
		{"over the file system quota", "", write(syscall.EDQUOT), "OVERQUOTA", "Not enough disk quota"},
		{"I/O error", "", write(syscall.EIO), "UNAVAILABLE", "Internal error, try again later (id c1)"},
		{"read-only", "", write(syscall.EROFS), "UNAVAILABLE", "Internal error, try again later (id c1)"},
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range tests {
		got := mapError(tc.err, tc.missing, log, "append", "c1")
		if got.kind != "NO" || got.code != tc.code || got.text != tc.text {
			t.Errorf("%s: %s [%s] %s, want NO [%s] %s", tc.name, got.kind, got.code, got.text, tc.code, tc.text)
		}
		if strings.Contains(got.text, "tmp/") || strings.Contains(got.text, "/srv") {
			t.Errorf("%s: the reply shows the error: %q", tc.name, got.text)
		}
	}
}
