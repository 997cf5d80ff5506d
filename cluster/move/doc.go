// Package move moves a user's home from one cluster node to another
// (`courriel move-user UID NODE`), without losing or duplicating a message.
//
// The old home node runs the Mover inside `courriel serve` (the control
// socket, internal/control, hands it the request): it holds the user
// (cluster.Holds: logins NO [UNAVAILABLE], copies queued), closes the
// user's home at the Gate in front of local delivery, ends the user's IMAP
// and ManageSieve sessions (refusing new ones), waits for copies already
// being written, then sends the home as an Archive to the new node's
// internal SMTP hop (SendImport: AUTH as cluster.ClusterLogin, then
// XIMPORT <login> <octets>). The new node's Importer writes it into a
// staging directory beside the home and renames it into place. Then the
// Mover writes the home attribute on the directory provider, waits until
// this node's replica shows it, sets the old home aside as
// <home>.moved-<time> (kept) and releases the user.
//
// Why no message is lost or duplicated: a copy is either admitted by the
// Gate before it closed (Drain waits for it, so it is in the archive) or
// refused after (temporary: the sender or the queue retries, and finds the
// new home); the archive is taken once nothing can write into the home;
// the attribute changes only after the new node has the home durably; the
// home stays closed at the old path afterwards, so a copy routed with a
// stale lookup is retried instead of recreating an empty maildir there.
// The import refuses a home that already holds mail: never a merge.
//
// What is copied: every directory and regular file of the home — the
// maildir and its Maildir++ folders with their file names (flags),
// dovecot-uidlist (UIDs, UIDVALIDITY), dovecot-keywords, subscriptions,
// maildirsize, courriel-index and courriel-modseq (a cache and the
// CONDSTORE record, both consistent with the copied uidlist, so clients
// keep their caches: modseqs never go backwards) — and the ~/sieve/
// scripts with the ~/.dovecot.sieve link, mtimes kept (IMAP's internal
// dates). Not copied: files in tmp/ directories (unfinished writes) and
// dotlocks (*.lock). Owners and modes are the receiving node's: the
// user's uid/gid, 0600 files, 0700 directories, as delivery makes them.
package move
