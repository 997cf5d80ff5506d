// Package sieve parses, checks and runs Sieve scripts (RFC 5228) at local
// delivery, one run per recipient, after the milters.
//
// The three steps are separate so that ManageSieve can show a script's
// errors without running it, and delivery can compile a script once and run
// it per message:
//
//	script, err := sieve.Compile(src, sieve.Limits{}) // *sieve.Error: line, column, reason
//	result := script.Run(msg, sieve.Envelope{From: from, To: rcpt})
//
// Parse builds the syntax tree (lex.go, parse.go) within Limits (script size,
// nesting depth, string length); Compile adds the checks Pigeonhole's
// compile step makes (check.go): every extension named by require is known,
// every command and test has the arguments its RFC gives it, and uses no
// extension the script did not require.
//
// Run (run.go) never fails: a runtime error gives Result.Err and the actions
// of RFC 5228 §2.10.6, a keep into INBOX, so mail is never lost. A Result is
// a list of actions for delivery to carry out: store in a folder (INBOX for
// keep) with IMAP flags, redirect to an address; discard is the absence of
// any store. The package neither writes maildirs nor sends mail.
//
// Supported: require, if/elsif/else, stop, keep, discard, redirect,
// fileinto (with :create of RFC 5490 "mailbox"), the tests address, header,
// envelope, exists, size, allof, anyof, not, true, false; the comparators
// i;octet, i;ascii-casemap and i;ascii-numeric; :is, :contains, :matches;
// and the extensions listed in Extensions.
//
// Correctness is measured against Dovecot Pigeonhole's sieve-test
// (oracle_test.go), which runs the corpus in testdata/ beside this package.
package sieve
