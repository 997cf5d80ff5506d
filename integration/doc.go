// Package integration holds the end-to-end tests: the built courriel binary
// against a real OpenLDAP slapd (internal/testenv), driven by real clients —
// swaks, curl, openssl s_client, Python's imaplib and smtplib, mbsync — each
// test with its own temp dir, ports and server.
package integration
