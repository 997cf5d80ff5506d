// Package managesieve is the ManageSieve server (RFC 5804, port 4190):
// users' mail clients (Thunderbird's sieve add-on, Roundcube, K-9,
// sieve-connect) store, check, activate and fetch their Sieve scripts,
// which are kept in Pigeonhole's layout by package sieve/scripts, so
// that delivery finds them as Dovecot's LDA did.
//
// The dialogue follows Dovecot Pigeonhole's managesieve, replies and
// messages included, where the RFC leaves a choice: errors are NO with
// "Error in MANAGESIEVE command X: ..." (the protocol has no BAD), a
// script's errors come back as a literal, one "line N: error: ..." per
// line, its warnings as OK (WARNINGS) and a literal of "line N: warning:
// ..." lines (an upload may include a script not there yet, a warning;
// SETACTIVE refuses it), and the quota codes are QUOTA/MAXSCRIPTS, QUOTA/MAXSTORAGE and
// QUOTA/MAXSIZE, plain QUOTA when the disk (or the file system's quota)
// is full.
//
// Logging in needs TLS: on a plain connection the SASL capability is
// empty until STARTTLS, and AUTHENTICATE is refused with ENCRYPT-NEEDED.
// PLAIN is the only mechanism; the password is checked by binding to the
// directory, failures are throttled by the loginguard shared with IMAP
// and SMTP AUTH, and an unreachable directory answers TRYLATER.
//
// Everything read from the network is bounded: a command line (outside
// literals), a literal (a script literal by the script size limit,
// checked against the user's quota before a byte of it is read; any other
// by a few KiB), the commands of a connection, its errors, its idle time,
// and connections per address and in total.
//
// In a cluster (Options.Cluster) a user homed on another node logs in
// here and the session is passed through to the home node (proxy.go:
// XCLIENT with the client's address, then the cluster login); a front
// node's cluster login here is trusted with its XCLIENT values.
package managesieve
