// Package queue is courriel's durable outbound mail queue (SPEC §5): it stores
// messages for foreign domains on disk before they are acknowledged, delivers
// them over SMTP (MX lookup with A/AAAA fallback, static routes, an optional
// relayhost, STARTTLS per policy), retries temporary failures with exponential
// backoff up to a maximum lifetime, and reports permanent failures and expiry to
// the sender with an RFC 3464 delivery status notification.
//
// # Local recipients
//
// Accept takes a message for remote and local recipients at once: it is
// queued for all of them (the commit point: on an error nothing was stored),
// then the local copies are stored straight away through Options.Local (the
// delivery store). A local copy that fails stays queued like a remote one
// (retried with backoff, bounced when permanent or expired), so an SMTP
// client never has to send a message again because one of several copies
// failed. Local copies are keyed (delivery.Recipient.CopyKey: queue id and
// recipient index): every attempt at a copy writes the same file name, and
// a retry (delivery.Message.Retry) looks for the copy in new/ and cur/
// first, so a crash between the copies and the record of their outcome
// never stores one twice.
//
// The queue holds a local copy's maildrop, as Postfix's holds only
// addresses: before every retry (not Accept's first attempt, which the
// RCPT just resolved) the maildrop is looked up again (Options.Mailboxes,
// the directory through its cache) and the copy goes to the maildir,
// owner and quota the directory gives now, with every check of a delivery
// (maildir_base, symlinks); a changed maildir or owner is logged once
// (old → new) and recorded in the envelope. A maildrop the directory no
// longer knows bounces 5.1.1 ("unknown user", as virtual(8)); a directory
// that cannot answer makes the copy wait (4.4.3), never bounce. The
// original recipient and the folder (a milter's junk verdict) are the
// message's and stay; Sieve runs at every attempt on the current entry.
//
// # DSN (RFC 3461, 3464)
//
// A message keeps its client's DSN parameters (WithDSN, dsnparams.go): RET
// and ENVID in the envelope, NOTIFY and ORCPT per recipient, and the
// aliases expanded with NOTIFY=SUCCESS (Message.Expanded, reported, never
// delivered); envelopes written before DSN have none and behave as
// before. They decide the DSNs, each sent from the null sender to the
// envelope sender and never for a null-sender message:
//   - a failure DSN for the recipients whose NOTIFY is absent or has
//     FAILURE (NEVER, or a list without FAILURE: the failure is recorded
//     and nobody is told), returning the header with RET=HDRS or without
//     RET, and with RET=FULL the whole message (message/rfc822) when it is
//     within 64 KiB, its header otherwise;
//   - a delay warning, once DelayWarning has passed, for the pending
//     recipients whose NOTIFY is absent or has DELAY;
//   - a success DSN for NOTIFY=SUCCESS: Action delivered for a copy stored
//     in a maildir here or by its home node, relayed for a copy taken by a
//     next hop that does not offer DSN, expanded for an alias. A next hop
//     that offers DSN gets MAIL RET= ENVID= and RCPT NOTIFY= ORCPT= (absent
//     ORCPT: rfc822;<the address the client named>, as Postfix sends) and
//     reports the success itself. The successes recorded in one pass over
//     the message go in one DSN, as Postfix's trace service sends one per
//     queue run. A delivered recipient owing one (Recipient.Action, not
//     Notified) keeps the message in the queue until it is out.
//
// Every DSN has Original-Envelope-Id (ENVID) among its per-message fields
// and Original-Recipient (the ORCPT, or the alias the client named) per
// recipient.
//
// A DSN is sent once, whenever a crash comes (dsnonce.go). Its queue id is
// derived from the message's id, its kind and the recipients it reports,
// and the message's envelope records it (Message.DSNs, fsynced) before it
// is handed over: queued here, or given to Options.Bounce, which passes
// the id on to Accept (a local sender's copy is stored at once, under
// keys made of that id). The record that the sender was told takes it
// out. A hand-over under an id that is in the spool, held, or the mark
// of a DSN gone (dsn/ID, written before a DSN still named by its
// original's envelope leaves the spool) stores nothing, and the try after
// a crash between the hand-over and the record finds the DSN so and only
// writes the record; a DSN not found never went, and the DSNs owed are
// worked out afresh.
//
// A message made by the delivery of another (filter's Sieve redirects,
// vacation replies and notifications, made while a local copy is stored)
// is queued once the same way (once.go): its maker names it with a key,
// the same at every try of that delivery (WithOnceKey: the copy's key and
// what was made of it), Accept stores it under a queue id derived from
// the key, or nothing when that id is in the spool, held, or the mark of
// one that left (once/ID, written before it leaves, delivered or
// deleted), so that the retry after a crash between the Accept and the
// maker's record of it queues nothing.
//
// A DSN about mail that needs UTF-8 (a message marked WithSMTPUTF8, or one
// of whose addresses the DSN names is not ASCII) is RFC 6533's, as
// Postfix's bounce of an SMTPUTF8 message: message/global-delivery-status,
// the original returned as message/global-headers or message/global, a
// UTF-8 text part, and UTF-8 addresses as they are, of the utf-8 type
// ("Final-Recipient: utf-8; ünï@example"), never masked; it is queued
// WithSMTPUTF8, so it leaves only with SMTPUTF8 and is stored here as it
// is. Any other DSN is RFC 3464's, ASCII.
//
// # Node copies (clusters)
//
// On a cluster node (Options.Cluster), a local copy whose user is at home
// on another node is a node copy (Recipient.Node, kept in the envelope;
// envelopes without it are local copies as before): it is never stored
// here, but handed to the home node's cluster listener (cluster.Node.SMTP)
// over SMTP, STARTTLS when the cluster's hops use TLS (verified, never
// retried in clear), AUTH PLAIN as cluster.ClusterLogin with the shared
// secret, then per transaction MAIL FROM:<sender> XARRIVED=<unix seconds>
// [XRETRY] and per copy RCPT TO:<maildrop> XKEY=<queue id-index>
// [ORCPT=rfc822;<original>] [XJUNK], and, when the home node's EHLO says
// XDSN, the message's RET and ENVID on MAIL and each copy's NOTIFY (SUCCESS
// left out: a success is reported from here on the home node's 250) and
// the client's ORCPT as XORCPT, so that a copy the home node queues and
// fails is reported (or not) as the client asked. The key names the copy on the home
// node as a local copy's is named here, so a 250 lost on its way back
// makes no duplicate. The node is a destination of its own ("node:NAME"):
// its sessions are cached, pipelined and run in parallel like an MX's.
//
// Before every attempt (Accept's first one included) each local copy is
// placed again from the directory (Options.Homes; on a retry, from the
// answer that resolved its maildrop: one lookup for both; on the first,
// from the caller's answer when it carries one, delivery.Recipient.Entry
// with Node and Held, as smtp's RCPT does): a copy follows
// its user (a node copy of a user now homed here is stored here, a local
// copy of a user now homed elsewhere becomes a node copy), and a copy of
// a user held here (cluster.Holds: being moved away) waits, never stored.
// A failed node copy, or a copy waiting for a held user, is retried after
// NodeRetry (45 s), not the usual backoff; a node that could not be
// reached is left alone for half of that, so copies arriving meanwhile
// wait without a dial each. A 4xx from the home node is a retry, a 5xx a
// bounce, expiry and delay warnings as for any copy. Flush also ends every dead period.
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
//	hold/         held messages (Hold, postsuper -h): their .eml and .env,
//	              never delivered until Release moves them back
//	dsn/          marks of DSNs gone from the spool while their message's
//	              envelope still named them (the message's id in each);
//	              removed with that name, and by Open when none names them
//	once/         marks of messages queued under their maker's key that
//	              left the spool (the maker's queue id in each, when the
//	              key names one); kept MaxLifetime, and while that
//	              message is queued or held, then removed by the runner
//
// Every file is written to a .tmp- name, fsynced, renamed and the directory
// fsynced before the operation that wrote it returns (Enqueue, or the record of
// a delivery attempt); operations running at once share directory fsyncs,
// and a message whose last recipient was just delivered is recorded by its
// removal alone. The .env rename is the commit point: an .eml without an
// .env was never acknowledged and is removed at Open; an .env is removed before
// its .eml when a message leaves the queue.
//
// Recipient state is rewritten after every attempt, so a restart never sends
// again to a recipient whose 250 was recorded. Delivery is at least once: a
// crash between the remote 250 and the envelope rewrite sends that copy again.
// DSNs are handed over exactly once (above).
//
// A graceful stop (Shutdown, the server's SIGTERM) starts nothing more and
// cuts what has not sent its data (retried, no attempt counted), but lets a
// transaction whose data is being sent or whose final dot awaits its reply
// finish within the grace period (RFC 1047), so that its 250 is recorded;
// cut there by the grace's end, its copies are deferred with the attempt
// counted (a node copy's retry then says XRETRY), and a remote server that
// kept the message gets it twice.
//
// # Connections
//
// Up to Options.Concurrency messages are delivered at once, each to its
// destinations (a domain's MX hosts, a static route, or the relayhost) in
// turn. Sessions are kept per destination, as Postfix's connection cache
// does: a session idle for ConnectionCacheTime (2 s), older than 300 s, or
// that carried ConnectionReuseLimit messages is closed; the next message
// to the destination takes the most recently used idle one, which keeps
// the TLS state, certificate check and AUTH it was set up with, and starts
// with RSET, so a session the server closed while idle is found out before
// anything is sent, and replaced by a new one without the failure counting
// as an attempt. A session that failed, timed out or was told 421 is never
// reused, nor one with bytes the server sent unasked (a second reply to
// the final dot: every later reply would be read one command late), found
// buffered or, without waiting, in the socket when it is put back or
// taken. What a server sends until the session is ready (greeting, EHLO
// and AUTH replies) is bounded to 64 KiB: past it the attempt fails for
// now, as when no greeting comes. When the server offers PIPELINING (RFC
// 2920) MAIL, the RCPTs and DATA go in one write, and each RCPT reply is
// matched to its recipient in order. A message larger than the limit of
// the server's EHLO SIZE is not sent: it bounces 5.3.4 before MAIL, as
// Postfix's smtp(8) bounces it. The recipients a host defers with a 4xx
// reply are tried at once on the hosts after it in the route's list (the
// next MX host, the next address), over a session not cached, as Postfix
// goes down the MX list within a delivery (two sessions at most).
//
// Mail is never sent to this host itself (loop.go, as Postfix's
// smtp(8)): an MX host at one of Options.LocalAddrs is dropped with the
// hosts not preferred to it, and mail whose best MX host it is bounces
// 5.4.6 "mail for DOMAIN loops back to myself" (4.4.4 while better MX
// hosts have no address); a server whose reply to EHLO names it
// Options.Hostname is this host too (5.4.6 as the best MX host, else
// 4.4.6). Both only for SMTP to port 25.
//
// At most DestinationConcurrency sessions (a fifth of Concurrency, 4 by
// default, as Postfix's 20 of 100) are open to one destination; the first
// to a destination not known to work is a probe the others wait for. A job
// that waits for its destination (a probe under way, or its sessions all
// busy) gives its Concurrency slot back meanwhile, so that a slow or
// tarpitting destination holds only the slots of the sessions open to it;
// past DestinationConcurrency such waiting jobs, the next message for it
// is postponed without an attempt recorded, until one of them stops
// waiting (or a few seconds at most); messages postponed for a destination
// found dead share its failure at once.
//
// A destination that no host of which could be connected to, or whose
// greeting was 421, or that stopped answering during the setup (a timeout
// waiting for the greeting, in the TLS handshake, the EHLO after it, or
// AUTH), is dead for MinBackoff (Postfix suspends it for
// minimal_backoff_time): its messages are deferred without a dial ("delivery
// temporarily suspended"), and the change is logged once, not per message.
// The first message after that period probes it again.
//
// # Limits
//
// The runner holds every queued message in memory, at most MaxQueueFiles:
// while it holds that many, Enqueue, Accept and HandOver refuse new mail
// before storing anything (ErrQueueFull, temporary: a full disk's 452
// 4.3.1 in SMTP); a DSN, or a message made by the delivery of a queued
// one, is let in. A spool found holding more at the start (or at a
// rescan) is loaded up to the limit, and the rest as room comes back:
// once a tenth of the limit is free, at most every PollInterval. Another
// process (Options.Client) has no index: it counts the spool's envelopes
// for the same refusal, and, as the owner does not take new mail before
// its spent reserve is made again, it refuses new mail (ENOSPC) while the
// reserve is not whole and the file system could not keep room for it.
//
// # Processes
//
// One process owns a spool (the .owner lock, holding its pid) and may Run it;
// a second owner fails to Open with ErrNotOwner. Other processes (`courriel
// queue list|show|delete|flush`) open it with Options.Client: they never touch
// the owner lock, read the files directly and leave request files the owner's
// runner polls for every Options.PollInterval. OwnerPID names the owner.
package queue
