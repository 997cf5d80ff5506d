// Package filter runs each local recipient's Sieve script at delivery
// (docs/flow.md step 5½) and carries out what it decides: copies into
// folders with IMAP flags, redirects, vacation replies and enotify's
// notifications (notify.go) through the outbound queue, rejections.
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
// Order and durability. The copies are stored first, then redirects and
// the vacation reply are queued (durably, queue.Accept); Deliver returns
// nil for a recipient only once both are done, so SMTP's 250 or the
// queue's record follows them. A copy that cannot be stored (over quota,
// for days) queues nothing, however often it is tried. A redirect that
// cannot be queued fails the recipient temporarily; a queued (keyed) copy
// is then found on the retry (delivery.Recipient.CopyKey, one key per
// folder), never stored twice. For keyed copies the home's memory
// (~/.courriel.vacation, the vacation memory) records that an attempt
// queued its redirects and reply, and each redirect address once its
// Accept returns (redirects carrying different editheader headers are
// separate messages, each its own Accept: when a later one fails, the
// retry queues only those not recorded), so that a retry does not queue
// them again. A crash between an Accept and its record is the queue's to
// catch: each redirect, reply and notification of a keyed copy is queued
// under a key of its own (the copy's key and what it is, queueKey;
// queue.WithOnceKey), and an Accept under a key the queue had, whether
// still queued or already delivered, stores nothing (a vacation reply,
// recorded before its Accept in Pigeonhole's database, ~/.dovecot.lda-dupes
// (dupes.go), which dovecot-lda reads and writes too, is recorded there
// with the copy that claimed it, in the same write, for the reply's
// period, whose retry queues it again under its key: a crash between the
// two loses it no more). The memory stays as the fast path
// (a retry reads one file instead of trying each Accept), and for what
// the queue's key cannot see: a retry whose script, changed meanwhile,
// groups the redirects otherwise. A redirected copy is read in
// place (the message's file, the edited header's pieces), as a stored
// one, never copied whole.
//
// Edits. The scripts of a sequence (before, the user's, after) edit the
// header in turn (editheader, sieve.RunOptions.Edit), and each copy and
// redirect carries the header of its time: the message's own fields, but
// those the scripts deleted, kept as they are. A script sees the first
// 5,000 fields or 1 MiB of the header, but deleteheader reaches the whole
// of it, as Pigeonhole's (an administrator's before script stripping a
// field strips it however far down a sender put it): the fields past
// that are read again from the message, one at a time, and left out of
// each copy as it is written (sieve.Piece.Section), never held. A single
// copy at DATA (delivery.Message.Single) whose script asks for more than
// its one file (a redirect, a vacation reply, a notification, a second
// folder) stores nothing and goes through the queue instead
// (delivery.ErrNeedsQueue): no 4xx ever follows a stored copy.
//
// Errors never lose mail: a script that does not compile or fails at run
// time gives a keep into the INBOX, logged with the user and the line
// (each error of a compile, up to dovecot-lda's 30 for a user's script),
// and appended to ~/.dovecot.sieve.log as Pigeonhole does; a fileinto to a
// folder that cannot be used (bad name, missing without :create) keeps to
// the INBOX, into its one copy: its flags joined to those of a keep (the
// copies into folders that may be missing are stored first, so the
// INBOX's is known before it is written). A run past its limits
// (Options.Limits: MaxRunWork, MaxRunTime, as Pigeonhole's
// sieve_max_cpu_time) is such a failure, and
// so is a script still running when three quarters of the delivery's time
// are spent (scriptContext): the copy is delivered, never deferred, for
// the sender's retry would spend the same again. Only a delivery
// cancelled (its context done) fails the recipient, temporarily. A
// user's script whose long runs keep adding up past MaxRunTime within
// Options.ResourceUsageTimeout (an hour) is disabled, as Pigeonhole's
// cumulative limit disables its binary (a run charged its work, not the
// wall time of a stall, and never more than the limit: one run alone
// never disables it; usage.go: the records in
// ~/.courriel.sieve-usage): it is not run, the copy kept in INBOX and
// the user told, until a new version is stored after the timeout.
//
// The milter's junk verdict (Recipient.Folder "Junk") meets the script as
// in a Pigeonhole + rspamd setup where the LDA is told to deliver spam to
// Junk: the implicit keep and an explicit keep (or fileinto "INBOX") go to
// Junk (and so does a fileinto kept for its missing folder, as
// Pigeonhole's failure keep goes to the LDA's default mailbox), an
// explicit fileinto to any other folder wins, and discard,
// redirect and reject apply as written.
package filter
