// Package sieve parses, checks and runs Sieve scripts (RFC 5228) at local
// delivery, one run per recipient, after the milters.
//
// Compiling and running are separate so that ManageSieve can show a
// script's errors without running it, and delivery can compile a script once
// and run it for every message (a *Script is immutable: concurrent Runs are
// safe):
//
//	script, err := sieve.CompileWith(src, sieve.CompileOptions{
//		Include: sieve.DirLoader{Personal: home + "/sieve", Global: globalDir},
//	}) // err is a *sieve.Error: Line, Column, Reason; Compile(src, limits) without includes
//	msg, err := sieve.ReadMessageAt(src, size) // header, size, body up to DefaultMaxBody (ReadMessageLimit)
//	// (ReadMessage(r): deleteheader then reaches only the fields a script sees)
//	dups := &sieve.DuplicateFile{Path: home + "/.duplicates"}
//	res := script.RunContext(ctx, msg, sieve.Envelope{From: mailFrom, To: rcpt},
//		sieve.RunOptions{Now: now, Duplicates: dups,
//			Environment: sieve.Environment{Host: host, RemoteIP: ip}}) // Run(msg, env): now, no store
//	// res.Actions: Store (Folder, Flags, Create; Inbox() for the INBOX),
//	// Redirect (Address), Discard, Reject (Reason, Extended for ereject),
//	// Vacation (Vacation: the reply asked for; sending it is delivery's),
//	// Notify (Notify: the enotify notification asked for; delivery's too).
//	// res.Edit: editheader's header (each Store and Redirect has its own, Action.Edit;
//	// HeaderEdit.Pieces places it in the message); RunOptions.Edit carries it to the next script.
//	// res.DuplicateMarks: commit them (dups.Commit(res.DuplicateMarks, now))
//	// once the message is stored, never before.
//	// No Store and no Redirect: nothing is delivered. res.Err != nil: the script failed at runtime, and
//	// res.Actions is a keep into INBOX (RFC 5228 §2.10.6): mail is never lost.
//
// A run is bounded (budget.go): past Limits.MaxRunWork units of work
// (about a nanosecond each: octets matched, decoded, parsed; commands and
// tests run), past Limits.MaxRunTime (30 s, Pigeonhole's
// sieve_max_cpu_time, here wall-clock time), or once RunContext's context
// is done, it fails as any runtime error does, res.Err wrapping
// ErrWorkLimit, ErrTimeLimit or the context's error. What a run derives
// from the message (MIME parts, decoded and folded bodies, extracttext's
// texts, the body tests' answers) is made once per run, so that a loop
// over the parts does not read the whole message again for each.
//
// Parse (parse.go) builds the syntax tree within Limits (script size,
// nesting of blocks and of tests, string length, identifier length);
// CompileWith (check.go) adds the checks Pigeonhole's compile step makes:
// every extension named by require is known, every command and test has the
// arguments its RFC gives it and uses no extension the script did not
// require, constant :regex keys compile (once), included scripts are
// loaded, compiled and checked (at most 10 levels deep and 255 scripts, as
// Pigeonhole; recursion refused). Run (run.go, match.go, variables.go and
// a file per extension) follows RFC 5228 and the extensions, and where
// they leave room, Pigeonhole: repeated stores and redirects merge, invalid
// IMAP flags are dropped, the address test reads only address headers, :is
// of an empty value matches only an empty key, and a quoted local part
// (Envelope's addresses are in SMTP's form, "\"john doe\"@example.org")
// is seen unquoted by :localpart, :user and :detail, and by :all quoted
// only where it must be (Dovecot's smtp_address_encode), in the envelope
// and in header fields alike.
//
// Extensions, those a compile lets scripts require being a set
// (extensions.go: CompileOptions.Extensions, ParseExtensions reads
// Pigeonhole's sieve_extensions setting, Capability lists the SIEVE
// capability), by default Pigeonhole 0.5.19's: all below but spamtest,
// spamtestplus, virustest, editheader, vacation-seconds and ereject.
// Those of CompileOptions.GlobalExtensions (Pigeonhole's
// sieve_global_extensions, ParseGlobalExtensions) only a global script
// may require (CompileOptions.Global, and any script included :global).
// fileinto, reject and ereject (RFC 5429), envelope, encoded-character,
// mailbox (fileinto :create), imap4flags, copy, variables, relational,
// subaddress, comparator-i;ascii-numeric; i;octet and i;ascii-casemap are
// there unless disabled, never listed. And, each in its file:
//   - body (body.go, RFC 5173): :raw, :content with MIME parts walked
//     (transfer encodings and charsets decoded; a multipart's preamble and
//     epilogue, a message/rfc822's header are parts, as in Pigeonhole),
//     :text (text parts, HTML reduced to text). The body seen is at most
//     Message.Body: DefaultMaxBody (4 MiB) from ReadMessage.
//   - date and index (date.go, RFC 5260): date, currentdate (at
//     RunOptions.Now, in RunOptions.Location without :zone), :zone,
//     :originalzone, every date-part; :index/:last for header, address and
//     date. As Pigeonhole: date reads the first field only without :index,
//     an unknown date-part is false, an invalid :zone is ignored.
//   - regex (regex.go): Go's RE2 in POSIX mode, leftmost-longest; where it
//     differs from Pigeonhole's POSIX regcomp is listed there. Patterns are
//     at most 1024 bytes, compiled at compile time when constant.
//   - include (include.go, RFC 6609): :personal/:global, :once, :optional,
//     return, global and the "global." namespace, through an IncludeLoader
//     (DirLoader reads Pigeonhole's "<name>.sieve" layout).
//   - spamtest, spamtestplus, virustest (spamtest.go, RFC 5235):
//     RunOptions.SpamTest is Pigeonhole's sieve_spamtest_* and
//     sieve_virustest_* settings; the default (DefaultSpamTest) reads
//     rspamd's X-Spamd-Result as the milter leaves it.
//   - editheader (editheader.go, RFC 5293): addheader (:last), deleteheader
//     (:index, :last, match types, value patterns); Received,
//     Auto-Submitted and X-Sieve-Redirected-From are protected as in
//     Pigeonhole; values are at most 2048 bytes (Pigeonhole's
//     sieve_editheader_max_header_size: a compile error for a constant,
//     a runtime error for a value made at run time, with Pigeonhole's
//     messages), written as Pigeonhole writes them (headerencode.go:
//     the name's case, Dovecot's RFC 2047 encoding of the words that
//     need it, folds at 80 columns and at the value's line breaks). What the edits add stays within
//     what ReadMessage shows a script (5,000 fields, 1 MiB) more than
//     the message's own fields: an addheader past it fails the run
//     (Pigeonhole has no such bound), so that a loop cannot grow it to
//     hundreds of megabytes. Later tests see the edited header (size
//     included, as Pigeonhole), and so do the scripts after it in a
//     sequence (Result.Edit given as RunOptions.Edit). Each Store and
//     Redirect carries the header as it was when the action was taken
//     (Action.Edit; a repeated one, the first time; the implicit keep,
//     the run's end), as Pigeonhole
//     stores the message as it was then; HeaderEdit.Pieces applies the
//     edits to the message itself (fields added at the top and bottom,
//     those deleted cut out by their place), so that the fields past
//     what a script sees are kept, and the deliverer streams the rest.
//     deleteheader reaches the whole header, as Pigeonhole's: the fields
//     past what a script sees too (unseen.go; the message read with
//     ReadMessageAt), every one of the name and value patterns deleted,
//     :index counted over all the fields, from the real end with :last,
//     the protected fields kept. Those fields are never held: a pass over
//     them, one field at a time and charged to the run's budget, finds
//     what a deleteheader deletes there (its count for :index, the match
//     variables, the size), and the edit keeps the rule, not the fields;
//     the copies (Piece.Section) apply the rules as they are read. Header
//     tests still see only the first 5,000 fields or 1 MiB (the fields
//     added with :last come after those). A field past them longer
//     than 1 MiB is not held: every deleteheader of its name deletes it,
//     value patterns or not, unmatched (Result.Notes says so; Pigeonhole
//     matches the whole value), so that no forgery padded past what a
//     pass holds survives a stripping script. A header line no script can name (no
//     colon, a name with a space, a folded line first of all: namedField)
//     is kept where it is, with its folded lines, by every edit. As in
//     Pigeonhole, once a deleteheader has reached the header (its parse)
//     and an edit has changed it, the message's Content-Length fields
//     are gone: from later tests, the size, the copies (denyContentLength).
//   - duplicate (duplicate.go, RFC 7352): :handle, :header, :uniqueid,
//     :seconds (12 hours by default, at most 2 days, as Pigeonhole), :last;
//     RunOptions.Duplicates is only read, Result.DuplicateMarks are the
//     marks to commit after a successful delivery. Each id is a
//     DuplicateID: Pigeonhole's (the MD5 ext_duplicate_hash makes, the
//     key of Dovecot's ~/.dovecot.lda-dupes, which the filter package
//     keeps them in) and courriel's own (DuplicateFile's, in
//     duplicatefile.go: the file-backed store earlier versions used).
//   - vacation and vacation-seconds (vacation.go, RFC 5230, RFC 6131): the
//     Vacation action with Pigeonhole's handle recipe and period limits
//     (RunOptions.Vacation: min 1 day, default 7 days, no maximum as in
//     Pigeonhole 2.3); it does not cancel the implicit keep, and conflicts
//     with reject.
//   - ihave (ihave.go, RFC 5463): ihave of extensions all known requires
//     them for the rest of the script; of one unknown it is false at
//     compile time, and, as in Pigeonhole, a block that can never run
//     (under if false, if ihave "unknown", or after an if that is always
//     true) is not checked: a script written for a richer server
//     compiles. error fails the run.
//   - environment (environment.go, RFC 5183): RunOptions.Environment
//     (domain, host, remote-host, remote-ip; location "MDA" and phase
//     "during" by default); name is "courriel", version ours. An item
//     unknown or empty makes the test false, as in Pigeonhole.
//   - mime, foreverypart, extracttext (mime.go, RFC 5703) on body.go's
//     MIME splitting: foreverypart visits the message then every part
//     depth first (a message/rfc822's message is its child), a nested
//     loop the descendants of the enclosing loop's part; break and break
//     :name; :mime with :type, :subtype, :contenttype, :param (RFC 2231
//     values decoded) and :anychild on header, address and exists;
//     extracttext :first N (octets, as Pigeonhole) of the part decoded,
//     HTML reduced as Dovecot's html2text. Bounded: the parts body.go's
//     walk allows (100 levels, 10,000 parts, as Dovecot's parser), loops
//     nested 4 deep (Pigeonhole's limit), 100,000 iterations a run, a
//     variable's 4096 octets, and the run's budget.
//   - enotify (enotify.go, RFC 5435) with mailto (RFC 5436): notify
//     (:from, :importance, :options, :message), valid_notify_method,
//     notify_method_capability ("online" is "maybe"), set :encodeurl. The
//     URI is read as Pigeonhole reads it (one address before "?", at most 8
//     recipients and 16 header fields, its reserved fields dropped); a
//     later notify's recipients already notified are dropped (RFC 5435
//     §3.10); past Limits.MaxNotifications (4) the run fails (Pigeonhole
//     has only sieve_max_actions). Notify does not cancel the implicit
//     keep.
//
// The package neither writes maildirs nor sends mail: delivery carries out
// the actions. Folder names are given as the script wrote them ("A.B" or
// "A/B"); mapping them to Maildir++ folders, safely, is delivery's job.
//
// Correctness is measured against Dovecot Pigeonhole 2.3's sieve-test
// (oracle_test.go, snippets_test.go, random_test.go): the corpus in
// testdata/ on every message there, boundary snippets, and random scripts
// must give the same actions (vacation replies and duplicate tracking
// included), and a script sieve-test refuses must be refused here. Where
// Pigeonhole 2.3.19 is wrong (it crashes on two missing :optional includes,
// aborts on deleteheader :regex, fails on a duplicate test run twice,
// ignores date's :last before :originalzone, counts 0 for header :index
// :count; a nested foreverypart over a part without children fails the
// run; a leaf ending a multipart, or a multipart inside an enclosed
// message, has the parts after it as descendants for a nested loop and
// :anychild; set in a loop around a nested loop
// fails as a "corrupt binary"), the oracle tests avoid the case and
// TestPigeonholeBugs and TestMIMEPigeonholeBugs hold our answer.
package sieve
