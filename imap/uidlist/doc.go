// Package uidlist reads and writes Dovecot's maildir control files:
// dovecot-uidlist (version 3), dovecot-keywords, and the dotlock Dovecot
// takes while it rewrites them, so that a maildir can move between Dovecot
// and courriel in either direction without losing UIDs or keywords.
package uidlist
