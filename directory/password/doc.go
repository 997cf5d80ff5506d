// Package password hashes and verifies userPassword values the way OpenLDAP
// does (RFC 2307 "{SCHEME}base64" values, as written by slappasswd).
//
// Hash writes {SSHA} by default: SHA-1 over password||salt, stored as
// base64(digest||salt). slappasswd uses a 4-byte salt; Hash uses 8, and
// Verify accepts any salt length. {SSHA256} and {SSHA512} are stronger, but
// slapd only understands them with the pw-sha2 module loaded
// ("moduleload pw-sha2" / olcModuleLoad: pw-sha2); without it, binds against
// such hashes fail in OpenLDAP even though courriel's own directory accepts
// them.
//
// Verify understands {SSHA}, {SHA}, {SSHA256}, {SSHA512}, {SHA256}, {SHA512}
// (scheme tags are case-insensitive) and plain text values with no scheme
// tag. {CRYPT} and any other scheme are refused with ErrUnknownScheme rather
// than silently failing as "wrong password", so an operator can tell a
// migration problem from a typo.
package password
