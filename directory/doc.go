// Package directory resolves every name courriel needs through the LDAP
// directory: hosted domains, aliases (recursively) to maildrops, maildrops to
// maildirs with their owner, the logins allowed to send as an address, login
// users and password checks by bind.
//
// Every call has three outcomes, tested with errors.Is: an answer,
// ErrNotFound (permanent: the key is unknown), or ErrUnavailable (temporary:
// the directory could not answer; never turn it into a bounce). Binds add
// ErrInvalidCredentials. Answers, positive and negative, are cached for a
// short TTL in one cache shared by all lookups.
//
// The package knows nothing of SMTP or IMAP.
package directory
