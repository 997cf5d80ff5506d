// Package tlsrpt is SMTP TLS Reporting (RFC 8460), the sending side: the
// queue records the outcome of each outbound session per policy domain
// (successes, and failures with the RFC's result types), the counts are kept
// per UTC day on disk, and once a day the previous day's aggregate is sent as
// a gzipped JSON report to the URIs of the domain's `_smtp._tls` TXT record:
// mailto: addresses get it inside a multipart/report through courriel's own
// queue, https: URLs as the body of a POST (application/tlsrpt+gzip, the
// certificate verified, public addresses only), a failed POST retried with
// exponential backoff for 24 hours (RFC 8460 §5.4) from files on disk.
package tlsrpt
