// Package wire reads IMAP commands and writes IMAP responses (RFC 9051 §4,
// RFC 7888 literals, RFC 3516 literal8) on one connection. The Reader is a
// streaming tokenizer with hard limits on line length, literal size,
// nesting depth and set size, so a hostile client costs bounded memory, and
// a synchronising literal over a limit is refused before its bytes are
// asked for. Both sides hold their buffers only while bytes are pending, so
// an idle connection keeps none.
package wire
