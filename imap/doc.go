// Package imap serves IMAP (RFC 9051 and RFC 3501) over the users' Maildir++
// folders with go-imap/v2's imapserver: login through the directory, folders,
// UIDs kept in Dovecot's own files, and updates pushed to sessions that have
// a folder selected or are idling when mail arrives. Below the library, each
// connection goes through idConn, which answers ID (RFC 2971, missing from
// imapserver) and gathers the library's per-line flushes into few writes.
package imap
