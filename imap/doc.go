// Package imap serves IMAP (RFC 9051 and RFC 3501) over the users' Maildir++
// folders with courriel's own protocol engine: the command reader and
// response writer of imap/wire, a session state machine on one goroutine
// per connection (IDLE included: the socket's read deadline wakes it for
// changes), and one file per command or small group of commands, each
// parsing its arguments into typed values before it acts. Storage is
// imap/mailstore's, which knows nothing of the protocol; login throttling
// is loginguard's, shared with SMTP AUTH.
//
// Extensions live in files of their own: condstore.go (CONDSTORE and
// QRESYNC: modseqs from mailstore, VANISHED), cmd_sort.go and
// cmd_thread.go/thread_refs.go (SORT, ESORT, THREAD, answered from the
// index), context.go (CONTEXT=SEARCH/SORT updates and PARTIAL),
// cmd_catenate.go, notify.go (NOTIFY), quota.go and compress.go
// (COMPRESS=DEFLATE: the input through imap/wire/inflate, which gives out
// what a client flushed with Z_PARTIAL_FLUSH at once; the compressor is
// dropped while a session waits).
//
// A large message is never read whole for one command: mimescan.go finds
// its MIME structure in one pass over the file (what mime.go's parseEntity
// finds in memory, with offsets), and fetchstream.go serves its sections,
// BINARY decoded on the way, from the file; BODYSTRUCTURE comes from the
// same scan, and SEARCH BODY and TEXT (searchtext.go) stream its parts
// from the file, decoded on the way. What is still read whole (a
// structure beyond the scanner's bounds) takes its bytes from one budget
// for the server (membudget.go). proxy.go is IMAP on any node of a
// cluster: a user homed on another node logs in here, then the session is
// passed through to the home node (ID with the client's address, the
// cluster login, then bytes both ways); a front node's cluster login is
// trusted here with its ID values.
package imap
