// Package filter runs each local recipient's Sieve script at delivery
// (docs/flow.md step 5½) and carries out what it decides: copies into
// folders with IMAP flags, redirects and vacation replies through the
// outbound queue, rejections.
//
// A Filter wraps the delivery store: it has the store's Deliver signature,
// so cmd hands it to smtp (a single local copy at DATA) and to the queue
// (local copies, keyed) in place of the store. For each recipient it reads
// the directory's entry (cached) for the home directory, finds the active
// script the way Dovecot Pigeonhole does (~/.dovecot.sieve, a symlink into
// ~/sieve/ or a regular file; scripts.go, read defensively: the home is the
// user's), runs the admin's before scripts, the user's and the admin's
// after scripts, and turns the actions into delivery.Recipients, one per
// folder (folder.go: fileinto names to Maildir++ directories, as Dovecot).
// A recipient without a script costs one cached directory lookup and one
// lstat.
//
// Order and durability. Side effects (redirects, vacation replies) are
// queued first, durably, then the copies are stored; Deliver returns nil
// for a recipient only once both are done, so SMTP's 250 or the queue's
// record follows them. Queued copies are keyed (delivery.Recipient.CopyKey,
// one key per folder): on a retry after a crash the copies already stored
// are found, and when the first one is, the side effects of that attempt
// are known to be queued and are not queued again. A crash between
// queueing a redirect and storing the first copy, or a store failing after
// it, repeats the redirect on the next attempt: never a lost copy, at worst
// a duplicate forward (a vacation reply is never repeated: its memory is
// written before it is queued).
//
// Errors never lose mail: a script that does not compile or fails at run
// time gives a keep into the INBOX, logged with the user and the line, and
// appended to ~/.dovecot.sieve.log as Pigeonhole does; a fileinto to a
// folder that cannot be used (bad name, missing without :create) keeps to
// the INBOX.
//
// The milter's junk verdict (Recipient.Folder "Junk") meets the script as
// in a Pigeonhole + rspamd setup where the LDA is told to deliver spam to
// Junk: the implicit keep and an explicit keep (or fileinto "INBOX") go to
// Junk, an explicit fileinto to any other folder wins, and discard,
// redirect and reject apply as written.
package filter
