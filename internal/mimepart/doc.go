// Package mimepart cuts a multipart body at its boundary delimiter lines
// (RFC 2046 §5.1.1): the one rule for IMAP (BODYSTRUCTURE, BODY[n],
// SEARCH, and the streaming scanner of large messages), Sieve (body,
// foreverypart, extracttext) and the 8BITMIME downgrade of outbound mail,
// so that the three cannot disagree on where a part ends.
//
// The rule is Dovecot 2.3's (lib-mail/message-parser.c), which Pigeonhole
// shares, because IMAP answers must be byte-identical to Dovecot's and
// Sieve's to Pigeonhole's. Where RFC 2046 leaves room, that means:
//
//   - A delimiter line is a line that starts with "--" and the boundary;
//     whatever follows on the line is not looked at (RFC 2046 §5.1.1: "an
//     exact match of the entire candidate line is not required"), so
//     transport padding, and junk, are allowed. The close delimiter has
//     "--" right after the boundary.
//   - The line break before a delimiter line, CRLF or a bare LF, belongs
//     to the delimiter, not to the part it ends; the first delimiter line
//     may start the body, with no line break before it.
//   - A delimiter line that ends the body without a line break starts no
//     part; a missing close delimiter leaves the last part running to the
//     end of the body, with no epilogue.
//   - Only the first MaxBoundary octets of a longer boundary are compared
//     (RFC 2046 allows 70), and an empty boundary makes every line starting
//     with "--" a delimiter line.
//
// One difference with Dovecot remains, outside this package: Dovecot
// matches a line against the boundaries of all the multiparts open around
// it and takes the longest, where the callers here cut a multipart's body
// before they look into its parts. So where an outer boundary is a prefix
// of an inner one ("l1" around "l10"), the outer delimiter takes the
// inner one's lines too. RFC 2046 §5.1.1 forbids such boundaries (a
// delimiter must not appear inside the parts), and the leaves are found
// all the same; doing as Dovecot does takes a parser that walks the whole
// message with the stack of open multiparts.
//
// Callers bound the parts of one multipart (Split's maxParts) and the
// nesting, each as its protocol's reference does; this package knows
// nothing of headers, types or nesting.
package mimepart
