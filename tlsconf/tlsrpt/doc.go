// Package tlsrpt is SMTP TLS Reporting (RFC 8460), the sending side: the
// queue records the outcome of each outbound session per policy domain
// (successes, and failures with the RFC's result types), the counts are kept
// per UTC day on disk, and once a day the previous day's aggregate is sent as
// a gzipped JSON report (application/tlsrpt+gzip inside multipart/report) to
// the mailto: addresses of the domain's `_smtp._tls` TXT record, through
// courriel's own queue. https:// report URIs are not used (noted in the log).
package tlsrpt
