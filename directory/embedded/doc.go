// Package embedded is the in-process, read-only LDAPv3 directory of
// `courriel demo`: it serves the entries of a content LDIF file (DemoLDIF by
// default) so that the demo runs the very same go-ldap client code as a
// production setup against OpenLDAP.
//
// It answers simple binds (checked against userPassword with
// courriel/directory/password: {SSHA}, the SHA-2 schemes and plain text),
// anonymous binds, and searches with base, one-level and subtree scope and
// full RFC 4515 filters matched case-insensitively (caseIgnoreMatch, as the
// seed's schema declares for every attribute we use). userPassword is never
// returned to anyone. Add, modify, delete, modifyDN and compare get
// unwillingToPerform; StartTLS is refused with unavailable (the demo listens
// on loopback); WhoAmI (RFC 4532) is answered.
//
// The protocol layer is written on go-asn1-ber, as go-ldap is, rather than
// on gldap: gldap's Server cannot listen on a kernel-chosen port and tell
// which, cannot close idle connections on Stop, cannot bound connections
// and runs every request of a connection in its own goroutine.
//
// Entries are immutable once the server is started; every connection reads
// them without locks. Connections, message size, filter size and the
// number of entries per search are bounded (see Options and filter.go).
package embedded
