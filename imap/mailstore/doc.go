// Package mailstore keeps one user's Maildir++ folders: folder names, message
// files and their flags, UIDs (in Dovecot's own dovecot-uidlist), an on-disk
// cache of message metadata, and the change log that IMAP sessions sharing a
// folder read to learn what the others did. Every path is resolved through an
// os.Root opened at the user's maildir, so no name or symlink leads out of it.
package mailstore
