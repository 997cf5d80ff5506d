// Package proxyproto reads the PROXY protocol header (HAProxy's
// proxy-protocol.txt, versions 1 and 2) that a load balancer sends before
// the client's bytes, so the servers behind it see the client's address
// instead of the balancer's.
//
// NewListener wraps a client listener: a connection from a trusted
// network must start with a header, read on a goroutine of its own under
// a deadline (a slow peer never stalls the accept loop) before the server
// sees the connection, whose RemoteAddr is then the client's. A
// connection from anywhere else must not send one: SMTP, IMAP and
// ManageSieve servers speak first, so a client whose first bytes are a
// PROXY line or the version 2 signature is cut off, never believed.
//
// Only TCP over IPv4 and IPv6 is accepted; version 2's LOCAL command (and
// version 1's UNKNOWN) is the balancer's own connection, a health check,
// and keeps the balancer's address. TLVs are skipped.
package proxyproto
