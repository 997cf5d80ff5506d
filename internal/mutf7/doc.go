// Package mutf7 is IMAP's modified UTF-7 (RFC 3501 §5.1.3), how Dovecot
// names maildir folder directories by default: imap/mailstore names folders
// with it, and Sieve delivery maps fileinto names to the same directories.
package mutf7
