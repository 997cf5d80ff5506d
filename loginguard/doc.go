// Package loginguard throttles password guessing for every protocol that
// takes a password (IMAP LOGIN/AUTHENTICATE, SMTP AUTH), with the rules the
// SMTP side had: a failure counts against the client's network (an IPv4
// address, an IPv6 /64) and against the login name; the first failures
// are answered at once, then the delay before the reply doubles with the
// larger count, up to a cap; a network that failed too often is refused
// without its password being checked. A login name is never refused
// outright (anyone could lock its owner out), and a success clears only
// that login's count, so logging into one's own account does not wash
// away an address's guesses at others. Counts are forgotten after a
// window and the tables are bounded.
package loginguard
