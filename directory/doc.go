// Package directory resolves every name courriel needs through the LDAP
// directory: hosted domains, aliases (recursively) to maildrops, maildrops to
// maildirs with their owner, the logins allowed to send as an address, login
// users and password checks by bind.
//
// Every call has three outcomes, tested with errors.Is: an answer,
// ErrNotFound (permanent: the key is unknown), or ErrUnavailable (temporary:
// the directory could not answer; never turn it into a bounce). Binds add
// ErrInvalidCredentials. Answers, positive and negative, are cached for a
// short TTL in one cache shared by all lookups. Stats counts the work done
// and, by kind, what could not be answered (courriel_ldap_errors_total).
//
// ResolveRecipient follows Postfix's virtual_alias_maps: an address is
// looked up as user@domain, then, only when that has no entry, as the
// catch-all @domain, at every level of the recursive expansion (so a
// catch-all of a mailbox domain also takes the mail of users who are not
// aliases of themselves, as in Postfix). Each maildrop value is split as
// Postfix's mail_addr_crunch splits a table result (commas outside quotes,
// one pair of <> stripped); a part in Postfix's internal form, its local
// part unquoted (john doe@example.org), is quoted as Postfix quotes it
// ("john doe"@example.org), and each part is checked with the queue's
// envelope address check (internal/envaddr): a part that is no address is
// dropped and logged, at RCPT time, never refused after DATA. An expansion
// whose list grows past AliasExpansionLimit addresses (counted as
// Postfix's cleanup counts its working list: each alias replaced by its
// targets, so a list of exactly the limit passes) or nests past
// AliasRecursionLimit levels is ErrExpansionLimit, temporary as Postfix's cleanup defers it (4.6.0):
// never a partial list, never a bounce.
//
// A login is a uid (looked up whole, '@' and all, as Dovecot's %u) or an
// address listed on the user's entry (the senders query, exact key; when
// lists deliver to the address too, the one entry among those found that
// has a home): a catch-all "@domain" lets its owner send as any
// address of the domain (SenderLogins, as Postfix's
// smtpd_sender_login_maps), never log in as one.
//
// The hosted-domain check only asks whether an entry exists: one entry, no
// attribute, so that a domain with more entries than the size limit is
// found. A lookup that reads one attribute asks only for the entries that
// have it, so that the mailbox of a maildrop shared by many alias entries
// is one entry whatever the server's size limit. Every other search is
// paged (RFC 2696), so that many entries sharing a maildrop are read in
// full where the server allows paged searches more than plain ones, up to
// Options.SizeLimit in all (plain, as Postfix's, to a server that refuses
// paging to the reader, for a few minutes after its refusal); past a limit, the lookup is ErrUnavailable,
// never a partial answer. Path values (homeDirectory) are cleaned before they are formatted
// when absolute and free of "..", then checked: relative paths and ".."
// are refused, and the mail waits (ErrUnavailable) for an admin.
//
// In a cluster, each node reads its local OpenLDAP replica: a Watcher keeps
// a persistent sync search (RFC 4533) on it and flushes the cache on every
// change that may change an answer (not a password or an operational
// timestamp), so changes take effect at replication speed. Writes (SetPassword,
// SetHomeNode) go to the provider: Options.WriteURLs, or the replica's
// referral. ClusterSchemaLDIF prints the cn=config of a provider or replica.
//
// The package knows nothing of SMTP or IMAP.
package directory
