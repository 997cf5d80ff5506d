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
//  1. open an unnamed file in new/'s file system (O_TMPFILE), mode 0600,
//     fchown to the owner [nothing has a name: a crash leaves nothing]
//  2. write Return-Path, Delivered-To, trace headers, body, CRLF→LF
//  3. make it durable: fsync, or with SyncFilesystem one syncfs shared by
//     the copies written meanwhile; with SyncJournal only written to the
//     device, its blocks and size still in the running journal
//     transaction (syncmode.go) [the bytes are on disk, still unnamed]
//  4. linkat it as new/<name>         [atomic: new/ has the whole file or none]
//  5. fsync new/ (shared: group commit, see syncer.go); with SyncJournal
//     this commits the transaction holding the name and every earlier
//     one, so the copy's metadata too
//     [the name is on disk: only now is the copy acknowledged]
//
// Steps 1 and 4 are the maildir spec's "write in tmp/, rename into new/" in
// one step, without the two directory updates of tmp/. Where O_TMPFILE or
// linking it is unavailable, the classic path is used: tmp/<name> created
// exclusively (create.go), written, fsynced, renamed into new/.
//
// A crash before 5 may leave (on the classic path) a stray file in tmp/
// (maildir readers and cleaners ignore and expire those) and, between 4 and
// 5, a complete file in new/ for a copy that was never acknowledged: the
// client retries and the user may see a duplicate, never a loss and never a
// truncated message.
//
// Maildir paths come from the directory and are hostile: they must be
// absolute and clean, optionally under Options.AllowedBase, and every
// operation inside a maildir goes through an os.Root, or through tmp/ and
// new/ descriptors opened by it with one-component names, so that no
// symlink can lead a write out of it. With Chown (courriel is root), a
// directory of another user on the path must be one the recipient's uid
// and gid could use (usableBy), as the kernel decided for Postfix's
// virtual(8) working as the user. Recently used maildirs stay open
// (handles.go), per path and uid, checked before each use. A bad path is a temporary error wrapping
// ErrBadMaildir: an administrator must fix the directory, the message must
// not bounce.
//
// github.com/emersion/go-maildir (v0.6.0) is not used, though it was the
// intended library for names and flags: its name generator and flag
// formatting are unexported, its Delivery neither fsyncs nor chowns, and
// its Dir is a path string, so every call would resolve paths from the
// directory again, following symlinks, outside the os.Root. Names here
// (name.go) follow the same maildir spec and add Dovecot's S= and W=;
// flags live in imap/mailstore, which also needs Dovecot's keyword letters.
//
// A copy may go to a Maildir++ folder instead of the INBOX
// (Recipient.Folder: the Junk folder of a message a milter flagged as
// spam, or where a Sieve script filed it, "Work.2026" for a child); the
// folder is created with its maildirfolder marker when missing, unless
// Recipient.NoCreate. A copy with IMAP flags (Recipient.Flags) is linked
// into cur/ with them in its name (":2," and the letters; keywords through
// Options.KeywordLetters and the folder's dovecot-keywords), as Dovecot's
// LDA stores it; the same durable sequence applies to cur/.
//
// The package imports no other courriel package; the IMAP server learns about
// new mail through Options.OnDelivered, and cmd subscribes users to the
// folders delivery creates through Options.OnFolderCreated.
package delivery
