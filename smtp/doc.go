// Package smtp is courriel's SMTP front: a go-smtp backend with one session
// per connection that applies the policy of one listener — inbound mail on
// port 25, submission on 587 (STARTTLS) and 465 (implicit TLS) — decides
// every recipient at RCPT time from the directory, and answers 250 at the end
// of DATA only after every local copy is durable and every remote copy is
// queued.
//
// It declares what it needs (Directory, Deliverer, Queue) and knows nothing
// of LDAP, maildirs or the spool. One Server serves one Kind of listener,
// because go-smtp holds one policy per gosmtp.Server. Serve takes a plain TCP
// listener for every Kind; for Submissions it does the TLS itself.
//
// Decisions worth knowing (details beside the code):
//   - AUTH (PLAIN, LOGIN) only after TLS on every port; before it AUTH gets
//     530 5.7.0 and the credentials are never looked at.
//   - An authenticated client may use the null sender <>, as with Postfix's
//     reject_sender_login_mismatch; any other MAIL FROM must belong to the
//     login (SenderLogins).
//   - Relay tricks (%-hack, bang paths, a quoted '@', address literals) are
//     refused with 554 5.7.1 for every client; source routes are dropped by
//     go-smtp as RFC 5321 §4.1.1.3 says, so routing uses the real mailbox.
//   - Only <CRLF>.<CRLF> ends DATA. A bare LF in a message is stored as
//     CRLF (BareNewlineNormalize, Postfix 3.9's smtpd_forbid_bare_newline
//     = normalize) or refused with 554 5.6.0 (BareNewlineReject); a bare CR
//     or a NUL is always refused. What is stored and relayed has CRLF line
//     endings only, so nothing inside it can look like an end of data to a
//     lax next hop (SMTP smuggling).
//   - Lines longer than RFC 5321's 1000 octets are accepted and stored
//     intact, as by Postfix, up to MaxLineLength (64 KiB) in DATA: go-smtp
//     has one line limit for commands and DATA text, and holds a whole
//     command line in memory. BDAT chunks have no line limit.
//   - A message being received stays in memory up to SpoolThreshold
//     (128 KiB), then goes to a file without a name in SpoolDir (courriel
//     serve: <queue dir>/incoming): a session costs at most that much of
//     the message however large it is (500 sessions each receiving 10 MB
//     at once: 84 MiB of server RSS, BenchmarkDataRSS). The file is a
//     buffer, never a commitment: the reply is sent once the copies are
//     fsynced or queued, and delivery.Content lets both read the file
//     without loading it.
//   - Connections: MaxConnsPerIP (50, Postfix's
//     smtpd_client_connection_count_limit) per address or IPv6 /64, and
//     MaxConns (1000) per listener; past either, 421 4.7.0 at once.
//   - RCPT TO:<postmaster> without a domain (RFC 5321 §4.5.1) is
//     postmaster@Hostname, resolved by the directory like any address.
//   - Submission (587, 465) adds Message-ID, Date and, from the envelope
//     sender the login owns, From when the message has none, as Postfix's
//     cleanup does for SASL clients; port 25 never changes a message.
//   - Loops: more than 50 Received: fields (Postfix's hopcount_limit), or
//     a message that already reached one of its recipients here — a
//     Delivered-To: of that address, or a Received: written by this host
//     "for" it — gets 554 5.4.6 and nothing is stored. A recipient of ours
//     whose copy leaves (an alias with outside members) gets a
//     Delivered-To: line on that message, so the copy that comes back is
//     refused at once instead of after 50 rounds.
//   - A DATA message over the limit gets 552 5.3.4 once the client has
//     finished it, if it does within twice the limit; a client still
//     sending past that gets the 552 and the connection closes (Postfix
//     reads to the end however long it is).
//   - Mail authentication (mailauth.go): Options.Signer DKIM-signs what
//     587 and 465 accept, as it will be stored and relayed; on port 25,
//     Options.AuthChecker (not for authenticated clients or MyNetworks)
//     adds its Authentication-Results, may replace the header without
//     forged results of ours, and decides: 550 5.7.1, 451 4.7.5, or the
//     local copies go to the .Junk folder. It runs before anything is
//     stored, so a refusal stores nothing. With Options.SRS, port 25's
//     remote copies (forwards) leave from an SRS address, or from <> when
//     the sender failed SPF, and an RCPT of one of our SRS addresses is
//     relayed to the original sender. A verdict's Seal adds an ARC set on
//     top of what port 25 forwards outside (the stored copy is one, so
//     local copies of the same message carry it too).
//   - One reply covers all recipients: any temporary failure of any copy
//     gives 4xx for the whole message, so duplicates are possible and loss
//     is not.
//   - Milters (Options.Milters, courriel/milter) are asked at MAIL, at each
//     RCPT the directory accepted, and once the message is read, through a
//     few calls in milter.go; every reply waits for their answer. A message
//     they mark as spam goes to the recipients' Junk folder.
//
// Where go-smtp v0.26.0 decides for us (each point re-checked after the
// upgrade from v0.25.1: v0.26.0 keeps its DATA, BDAT, EHLO and line-limit
// code as it was, and adds the parsing of RCPT TO:<postmaster> and of
// MAIL's BY and MT-PRIORITY, both off here): successful MAIL and RCPT
// replies are its fixed "250 2.0.0" lines (not 250 2.1.5); go-smtp's own
// refusals (bad sequence, unknown command) carry no id; it cannot tell us
// HELO from EHLO, so Received says ESMTP; CHUNKING is always advertised,
// so BDAT is supported and goes through the same checks as DATA (a chunk
// after a refused command is skipped whole; go-smtp skips a refused chunk
// of any declared size, up to 4 GiB, so the skipping is bounded by
// ReadTimeout from the BDAT line, after which every read fails and the
// connection closes with 421 rather than reading the rest of the chunk as
// commands; a data race of go-smtp after an aborted BDAT is worked around
// in conn.waitBDAT); its DATA reader takes a byte at a time from a bufio
// reader, so conn.Read hands a message over in bulk (dataCut) and commands
// a line at a time (reply grouping); its DATA reader refuses a message of
// exactly its own limit, so it is given MaxMessageBytes+1 and the session
// enforces MaxMessageBytes: a message of exactly the limit is accepted by
// DATA and BDAT, as by Postfix. The EHLO SIZE line is rewritten to say
// MaxMessageBytes in clear; inside TLS (STARTTLS, 465) go-smtp writes it
// into the *tls.Conn, out of our reach, and it says MaxMessageBytes+1
// (MAIL SIZE= and the message itself are still held to MaxMessageBytes).
// Its line limit (MaxLineLength) covers DATA text as well as commands,
// which is why it is 64 KiB and not RFC 5321's 512 for commands. NOOP,
// VRFY and HELP never reach the session and are not counted by
// MaxCommands. A BDAT chunk that go-smtp itself refuses for size (552
// before or while Data reads) looks to us like an aborted transaction, so
// Metrics.Transaction does not count it as rejected.
package smtp
