// Package dirwatch tells when directories change, through Linux's inotify
// (one descriptor for every watch, read through the Go runtime's poller):
// an IMAP session idling on a maildir folder hears of another program's
// delivery, flag change or expunge at once instead of at its next poll,
// as Dovecot's IDLE does. Watches are counted per key, so that many
// sessions on one folder share its two watches. On a network file system
// inotify sees only this machine's changes: Local says where it can be
// trusted.
package dirwatch
