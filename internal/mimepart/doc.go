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
//   - A delimiter line belongs to the multipart, of all those open around
//     it, whose boundary is the longest that matches it, the innermost of
//     equal ones (Dovecot's boundary_find, Owner); it ends whatever is
//     open inside that multipart. So an outer boundary that is a prefix of
//     an inner one ("l1" around "l10", which RFC 2046 §5.1.1 forbids) does
//     not take the inner one's lines, and an outer delimiter line ends an
//     inner multipart's part or epilogue. A delimiter line keeps its own
//     line break when the next line is a delimiter line too (the close
//     delimiter of an inner multipart ends the outer part with its CRLF).
//
// Parser walks a whole message with the multiparts open, reading each
// entity's header through its caller; Split cuts one multipart body whose
// parts it does not look into.
//
// Callers bound the parts of one multipart (MaxParts) and the nesting
// (their Kind), each as its protocol's reference does, and read headers:
// this package knows of them only where a header ends and what it makes
// of its entity (a Kind).
package mimepart
