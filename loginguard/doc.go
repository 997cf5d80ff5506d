// Package loginguard slows down password guessing for every protocol that
// takes a password (IMAP LOGIN/AUTHENTICATE, SMTP AUTH): failures are
// counted per login name and per client network (an IPv4 address, an IPv6
// /64), each count decays over a window, and the delay before answering
// the next attempt grows with the larger of the two. A success clears the
// login's own count only, so logging into one's own account does not wash
// away failures against others.
package loginguard
