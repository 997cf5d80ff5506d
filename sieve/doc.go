// Package sieve parses, checks and runs Sieve scripts (RFC 5228) at local
// delivery, one run per recipient, after the milters.
//
// Compiling and running are separate so that ManageSieve can show a
// script's errors without running it, and delivery can compile a script once
// and run it for every message (a *Script is immutable: concurrent Runs are
// safe):
//
//	script, err := sieve.Compile(src, sieve.Limits{}) // err is a *sieve.Error: Line, Column, Reason
//	msg, err := sieve.ReadMessage(r)                   // or &sieve.Message{Header: h, Size: n}
//	res := script.Run(msg, sieve.Envelope{From: mailFrom, To: rcpt})
//	// res.Actions: Store (Folder, Flags, Create; Inbox() for the INBOX),
//	// Redirect (Address), Discard, Reject (Reason, Extended for ereject).
//	// No Store and no Redirect: nothing is delivered. res.Err != nil: the script failed at runtime, and
//	// res.Actions is a keep into INBOX (RFC 5228 §2.10.6): mail is never lost.
//
// Parse (parse.go) builds the syntax tree within Limits (script size,
// nesting of blocks and of tests, string length, identifier length);
// Compile (check.go) adds the checks Pigeonhole's compile step makes: every
// extension named by require is known, every command and test has the
// arguments its RFC gives it and uses no extension the script did not
// require. Run (run.go, match.go, variables.go) follows RFC 5228 and the
// extensions, and where they leave room, Pigeonhole: repeated stores and
// redirects merge, invalid IMAP flags are dropped, the address test reads
// only address headers, :is of an empty value matches only an empty key.
//
// Extensions: fileinto, reject and ereject (RFC 5429), envelope,
// encoded-character, mailbox (fileinto :create), imap4flags, copy,
// variables, relational, subaddress, comparator-i;ascii-numeric (Extensions
// lists them for ManageSieve's SIEVE capability); i;octet and
// i;ascii-casemap are always there. Issue 17 asks for more (vacation, body,
// date, index, regex, include, spamtest, editheader, duplicate): until they
// exist a script requiring one does not compile, and delivery keeps to
// INBOX.
//
// The package neither writes maildirs nor sends mail: delivery carries out
// the actions. Folder names are given as the script wrote them ("A.B" or
// "A/B"); mapping them to Maildir++ folders, safely, is delivery's job.
//
// Correctness is measured against Dovecot Pigeonhole 2.3's sieve-test
// (oracle_test.go, snippets_test.go, random_test.go): the corpus in
// testdata/ on every message there, boundary snippets, and random scripts
// must give the same actions, and a script sieve-test refuses must be
// refused here.
package sieve
