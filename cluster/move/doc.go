// Package move moves a user's home from one cluster node to another
// (`courriel move-user UID NODE`), without losing or duplicating a message.
//
// The old home node runs the Mover inside `courriel serve` (the control
// socket, internal/control, hands it the request). First, while the user
// keeps working, it pre-copies the home: a live scan (a file expunged or
// renamed for its flags meanwhile is skipped, or sent as zeros and marked
// stale) sent as an Archive to the new node's internal SMTP hop
// (SendImport: AUTH as cluster.ClusterLogin, then XIMPORT <login>
// <octets>), which the new node's Importer writes into a staging
// directory beside the home, kept for the move id; when much changed
// meanwhile, the changes are sent once more the same way. Then it holds
// the user (cluster.Holds: logins NO [UNAVAILABLE], copies queued),
// closes the user's home at the Gate in front of local delivery, ends the
// user's IMAP and ManageSieve sessions (refusing new ones), waits for
// copies already being written, and sends only what changed since the
// pre-copy (Archive.Changes): new files, messages renamed for their
// flags as renames, removals, and every file that is not a message
// (dovecot-uidlist, courriel-index, …, ~/sieve/) again whole. The
// Importer applies it to the staging directory, syncs it and renames it
// into place. Then the Mover writes the home attribute on the directory
// provider, waits until this node's replica shows it, sets the old home
// aside as <home>.moved-<time> (kept) and releases the user.
// (Options.NoPreCopy: the whole home is sent held, in one stream.)
//
// Why no message is lost or duplicated: a copy is either admitted by the
// Gate before it closed (Drain waits for it, so it is in the archive) or
// refused after (temporary: the sender or the queue retries, and finds the
// new home); the archive (or the last changes after a pre-copy) is taken
// once nothing can write into the home, and with a pre-copy
// the staging directory they are applied to holds exactly what the
// earlier streams of the same move id described (the Importer refuses a
// delta for any other, or one naming a file the staging directory does
// not hold, and removes the staging directory when a delta fails);
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
