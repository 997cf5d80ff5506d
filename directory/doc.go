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
// In a cluster, each node reads its local OpenLDAP replica: a Watcher keeps
// a persistent sync search (RFC 4533) on it and flushes the cache on every
// change, so changes take effect at replication speed. Writes (SetPassword,
// SetHomeNode) go to the provider: Options.WriteURLs, or the replica's
// referral. ClusterSchemaLDIF prints the cn=config of a provider or replica.
//
// The package knows nothing of SMTP or IMAP.
package directory
