// Package delivery stores messages durably in local maildirs.
//
// Its one job: given a received message and its local recipients (each a
// maildir with an owner), write one copy per recipient so that it survives a
// crash the moment Deliver returns nil for it, and leave nothing half-written
// where a reader could see it.
//
// The durable path for one copy, in order (each step is a crash point; the
// invariant after each is in brackets):
//
//  1. create tmp/<name> exclusively, mode 0600, fchown to the owner: an
//     O_TMPFILE inode linked as tmp/<name>, or O_CREAT|O_EXCL where that is
//     unavailable (create.go says why) [only tmp/ holds anything; readers
//     ignore tmp/]
//  2. write Return-Path, Delivered-To, trace headers, body, CRLF→LF
//  3. fsync the file                 [the bytes are on disk, still only in tmp/]
//  4. rename tmp/<name> → new/<name> [atomic: new/ has the whole file or none]
//  5. fsync new/ (shared: group commit, see syncer.go)
//     [the rename is on disk: only now is the copy acknowledged]
//
// A crash before 5 may leave a stray file in tmp/ (maildir readers and
// cleaners ignore and expire those) and, between 4 and 5, a complete file
// in new/ for a copy that was never acknowledged: the client retries and the
// user may see a duplicate, never a loss and never a truncated message.
//
// Maildir paths come from the directory and are hostile: they must be
// absolute and clean, optionally under Options.AllowedBase, and every
// operation inside a maildir goes through an os.Root, or through tmp/ and
// new/ descriptors opened by it with one-component names, so that no
// symlink can lead a write out of it. A bad path is a temporary error wrapping
// ErrBadMaildir: an administrator must fix the directory, the message must
// not bounce.
//
// The package imports no other courriel package; the IMAP server learns about
// new mail through Options.OnDelivered, wired by cmd.
package delivery
