// Package queue is courriel's durable outbound mail queue (SPEC §5): it stores
// messages for foreign domains on disk before they are acknowledged, delivers
// them over SMTP (MX lookup with A/AAAA fallback, static routes, an optional
// relayhost, STARTTLS per policy), retries temporary failures with exponential
// backoff up to a maximum lifetime, and reports permanent failures and expiry to
// the sender with an RFC 3464 delivery status notification.
//
// # Spool layout
//
// Everything lives flat in Options.Dir:
//
//	ID.eml        the message as received (written once)
//	ID.env        the envelope as JSON: sender, recipients and their state
//	.tmp-*        files being written; never read, removed at Open
//	.owner        flock held by the one process that runs deliveries; its pid
//	.lock         flock held while an envelope is rewritten or removed
//	.flush        request from another process: retry everything now
//	.rescan       request from another process: the set of messages changed
//	corrupt/      envelopes that could not be read, kept for the admin
//
// Every file is written to a .tmp- name, fsynced, renamed and the directory
// fsynced before the operation that wrote it returns (Enqueue, or the record of
// a delivery attempt). The .env rename is the commit point: an .eml without an
// .env was never acknowledged and is removed at Open; an .env is removed before
// its .eml when a message leaves the queue.
//
// Recipient state is rewritten after every attempt, so a restart never sends
// again to a recipient whose 250 was recorded. Delivery is at least once: a
// crash between the remote 250 and the envelope rewrite sends that copy again.
//
// # Processes
//
// One process owns a spool (the .owner lock, holding its pid) and may Run it;
// a second owner fails to Open with ErrNotOwner. Other processes (`courriel
// queue list|show|delete|flush`) open it with Options.Client: they never touch
// the owner lock, read the files directly and leave request files the owner's
// runner polls for every Options.PollInterval. OwnerPID names the owner.
package queue
