// Package tlsconf builds every *tls.Config courriel uses: the server side of
// each listener (one certificate and key from files, reloaded without restart
// when the files change or on SIGHUP) and the client side of outbound SMTP
// (Postfix-style security levels none, may, encrypt and verify).
//
// Server policy: TLS 1.2 minimum; for TLS 1.2 only ECDHE key exchange with an
// AEAD cipher (AES-GCM, ChaCha20-Poly1305), so no CBC, RC4, 3DES or static
// RSA (RFC 9325 §4.2); TLS 1.3 suites are Go's (all AEAD). Key exchange
// groups are Go's defaults, which include the post-quantum hybrids
// (X25519MLKEM768, ...) besides X25519, P-256 and P-384.
//
// A certificate renewal (certbot, lego, acme.sh) rewrites the files in place
// or swaps symlinks; the Manager notices a changed size, mtime, ctime or inode
// lazily on handshake and from Watch, and keeps serving the previous pair
// whenever the new one does not load (a key written before its certificate
// is not served half-updated; it is retried once the files change again).
// A key that does not match its certificate is looked at again a second
// later before it is logged as an error: certbot swaps its live/ symlinks
// one at a time, and a check between two swaps is no failure.
// SetFiles moves a Manager to other files (a SIGHUP after the configuration
// named them), under the same rule: the new pair loads, or nothing changes.
// An expired or not yet valid certificate is never taken in place of a
// valid one; at start, with Options.ServeExpired, it is served and logged as
// an error, as Postfix and Dovecot do, rather than leaving the server without
// TLS or without mail.
//
// Instead of files, NewACME gets the certificate from an ACME CA with the
// TLS-ALPN-01 challenge (RFC 8737, golang.org/x/crypto/acme/autocert): only
// for the configured host names, cached on disk, renewed before expiry; the
// CA's connection to port 443 must reach one of the implicit-TLS listeners.
//
// The receiver's outbound policies live in sub-packages the queue calls:
// tlsconf/dane (RFC 7672), tlsconf/mtasts (RFC 8461) and tlsconf/tlsrpt
// (RFC 8460).
//
// The package knows nothing of SMTP or IMAP and imports no project package.
package tlsconf
