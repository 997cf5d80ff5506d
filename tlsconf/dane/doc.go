// Package dane is DANE for SMTP (RFC 7672, with RFC 7671's updates): a
// small DNS client that asks one configured DNSSEC-validating resolver and
// trusts its AD bit (as Postfix's smtp_dns_support_level = dnssec does: the
// resolver should be on loopback, or the path to it is as open to forgery as
// DNS itself), the TLSA records of `_25._tcp.HOST`, and the check of a
// server's certificate chain against them.
//
// Only DANE-EE(3) and DANE-TA(2) are usable for SMTP (RFC 7672 §3.1.3:
// PKIX-TA(0) and PKIX-EE(1) are treated as unusable), with selectors
// Cert(0) and SPKI(1) and matching types Full(0), SHA2-256(1) and
// SHA2-512(2). DANE-EE binds the key: no name, expiry or chain checks
// (RFC 7672 §3.1.1). DANE-TA needs the trust anchor (sent by the server in
// its chain, or published whole as "2 0 0"), a chain that verifies to it,
// and a name in the leaf matching the TLSA base domain, the MX name or the
// next-hop domain (RFC 7672 §3.2.2).
//
// Bounds: answers are read through miekg/dns (64 KiB at most over TCP), at
// most MaxRecords TLSA records are considered and at most maxChain
// certificates of a chain, so a hostile zone or server costs a bounded number
// of hashes.
package dane
