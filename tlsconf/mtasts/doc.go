// Package mtasts is the sending side of SMTP MTA Strict Transport Security
// (RFC 8461): the `_mta-sts` TXT record, the policy fetched over HTTPS from
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (certificate verified, no
// redirects, size and time bounded, text/plain only), parsed strictly, and
// kept in a cache on disk so that a policy outlives restarts and outages of
// the policy host: a fetch that fails keeps the cached policy until its
// max_age runs out.
//
// The queue asks Cache.Get for a recipient domain and applies the answer:
// enforce means every MX host must match a pattern of the policy and present
// a certificate valid for its name, or the delivery is deferred; testing
// means the same checks are reported (TLSRPT) but never block delivery.
// When an enforced policy refused every MX host, the queue calls
// Cache.Refetch before deferring: the policy host is asked again even under
// the same TXT id (the domain may have moved its MX hosts and a resolver's
// cache may still hide the new id), at most once per policy id every ten
// minutes, a fetch by Get included.
//
// Every byte from DNS and HTTP is hostile: the body is read to 64 KiB, lines
// and mx patterns are counted, max_age is bounded by RFC 8461's one year.
package mtasts
