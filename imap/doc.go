// Package imap serves IMAP (RFC 9051 and RFC 3501) over the users' Maildir++
// folders with courriel's own protocol engine: the command reader and
// response writer of imap/wire, a session state machine on one goroutine
// per connection (IDLE included: the socket's read deadline wakes it for
// changes), and one file per command or small group of commands, each
// parsing its arguments into typed values before it acts. Storage is
// imap/mailstore's, which knows nothing of the protocol; login throttling
// is loginguard's, shared with SMTP AUTH.
//
// The next extensions fit in as additions: ENABLE's per-session set
// (session.enabled) is where CONDSTORE and QRESYNC switch what FETCH and
// EXPUNGE send, the selected view (selected: seq↔UID map, \Recent set,
// pending changes in the watcher's log) is where modseqs and VANISHED
// come from, and wire.Writer's destination can be wrapped in a deflate
// stream for COMPRESS.
package imap
