// Package wire is the byte level of courriel's SMTP server: a Reader for
// what a client sends — command lines with a length limit, DATA text
// dot-unstuffed up to <CRLF>.<CRLF> with no line limit, BDAT chunks by
// count — and a Writer that formats replies and holds them while the
// client pipelines (RFC 2920), plus the parsers of command lines, paths
// and ESMTP parameters (RFC 5321 §4.1). It knows nothing of sessions,
// policy or mail storage: courriel/smtp runs the state machine on it.
//
// Memory is bounded by the line limit for commands; DATA and BDAT are
// streamed to the caller, who bounds the message. Nothing here allocates
// per octet of a message.
package wire
