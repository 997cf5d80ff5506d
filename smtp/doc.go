// Package smtp is courriel's SMTP server: one goroutine per connection runs
// the protocol (conn.go, on the byte level of courriel/smtp/wire) and a
// session (session.go) applies the policy of one listener — inbound mail on
// port 25, submission on 587 (STARTTLS) and 465 (implicit TLS), local
// mail from `courriel sendmail` on a Unix socket (Kind Local) — decides
// every recipient at RCPT time from the directory, and answers 250 at the end
// of DATA only after every local copy is durable and every remote copy is
// queued.
//
// It declares what it needs (Directory, Deliverer, Queue) and knows nothing
// of LDAP, maildirs or the spool. One Server serves one Kind of listener.
// Serve takes a plain TCP listener for every Kind but Local (a Unix
// socket: its client is named by its peer credentials, local.go); for
// Submissions it does the TLS itself.
//
// Decisions worth knowing (details beside the code):
//   - AUTH (PLAIN, LOGIN) only after TLS on every port; before it AUTH gets
//     Postfix's answer for the seed's listeners (530 5.7.0 Must issue a
//     STARTTLS command first on 587, 503 5.5.1 Error: authentication not
//     enabled on 25) and the credentials are never looked at. EHLO says
//     "AUTH=PLAIN LOGIN" too, as Postfix with the seed's
//     broken_sasl_auth_clients = yes (not on the cluster listener).
//   - An authenticated client may use the null sender <>, as with Postfix's
//     reject_sender_login_mismatch; any other MAIL FROM must belong to the
//     login (SenderLogins), or "553 5.7.1 <addr>: Sender address rejected:
//     not owned by user <login>" at each RCPT, after the relay check and
//     before the lookup, as Postfix answers the seed's restriction (in
//     smtpd_recipient_restrictions, smtpd_delay_reject = yes); a
//     directory failure is 451 4.3.0 there too. The seed's restriction
//     has a second half (reject_unauth_sender_login_mismatch): on port 25
//     a client that did not log in, MyNetworks included, may not use a
//     MAIL FROM of our domains that SenderLogins gives an owner (not a
//     foreign address an alias forwards to, which the seed's query also
//     finds, unlike Postfix, which refuses it too): "553 5.7.1 <addr>: Sender
//     address rejected: not logged in" at each RCPT, after the relay check
//     and before the lookup, as Postfix answers it (smtpd_delay_reject);
//     <> never, nor the Cluster listener (a node handing over what its
//     client sent); a directory failure is 451 4.3.0.
//     Options.AllowUnauthOwnedSender turns it off (checkUnauthSender).
//   - Relay tricks (%-hack, bang paths, a quoted '@') in a recipient are
//     refused with 554 5.7.1 whatever its domain, as Postfix's
//     reject_unauth_destination does, except for an authenticated client,
//     whose "x@y"@remote is relayed quoted as given (Postfix's
//     permit_sasl_authenticated); address literals and a bare second '@'
//     are refused for every client. A sender's local part routes nothing
//     here: '%', '!' and a quoted '@' are plain characters in MAIL FROM,
//     and its domain may hold an underscore (a host's own name), as
//     Postfix takes it; a recipient's may not.
//     Source routes are dropped (wire.ParseForwardPath) as RFC 5321
//     §4.1.1.3 says, so routing uses the real mailbox.
//   - A path wrapped as broken clients wrap it, "< a@b >", "<<a@b>>" or
//     "<Name <a@b>>", is the innermost address, read as strictly as any
//     (Postfix's strict_rfc821_envelopes = no takes them); "Name <a@b>"
//     without the outer brackets is 501, as in Postfix.
//   - A quoted local part (RFC 5321 Quoted-string) is taken in MAIL and
//     RCPT, as by Postfix: "john.doe"@x is john.doe@x; "john doe"@x is kept
//     quoted (external form, printable only: no NUL, CR, LF or other
//     control), the directory looks it up in Postfix's
//     internal form (john doe@x, its LDAP filter escaped as any key), and
//     the queue relays it quoted. Unknown: 550 5.1.1 as any address.
//   - No local-part limit (RFC 5321's 64 octets), as Postfix has none: the
//     SRS0 senders of forwarders and VERP bounce addresses are longer; an
//     unknown one of ours is 550 5.1.1. The whole path is bounded by RFC
//     5321's 256 octets, what every next hop must take and the queue
//     stores (envaddr.MaxAddrLen): 501 beyond (address.go).
//   - Only <CRLF>.<CRLF> ends DATA. A bare LF in a message is stored as
//     CRLF (BareNewlineNormalize, Postfix 3.9's smtpd_forbid_bare_newline
//     = normalize) or refused with 554 5.6.0 (BareNewlineReject); a bare CR
//     or a NUL is always refused. What is stored and relayed has CRLF line
//     endings only, so nothing inside it can look like an end of data to a
//     lax next hop (SMTP smuggling).
//   - Lines longer than RFC 5321's 1000 octets are accepted and stored
//     intact, as by Postfix, whatever their length, by DATA and BDAT: the
//     message text is streamed (wire.DataReader, wire.ChunkReader) and
//     bounded by the size limit only; the queue relays them whole too
//     (see the README: Postfix's smtp(8) breaks them at 998 octets).
//     Command lines are bounded by
//     MaxLineLength (4096 octets, Postfix's line_length_limit is 2048);
//     a longer one gets 500 5.5.2 and the connection closes, the line
//     never held whole.
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
//   - Clusters (Options.ClusterNodes): a recipient whose mailbox is at
//     home on another node (directory.Mailbox.Node) is a node copy: the
//     transaction goes through the queue (durably queued before 250, as
//     a forward), never stored here; the queue hands it to the home
//     node. An unknown home node is 451 4.3.0. Aliases are expanded here
//     (the directory is replicated). A copy for a user held while being
//     moved (Options.Holds) goes through the queue too, checked again at
//     DATA. Kind Cluster is the home node's side of that hop, cluster.go.
//   - The Local socket trusts its client as Postfix's pickup: any sender,
//     relay anywhere, no AUTH, no milters, no mail authentication, no DKIM
//     signature; Received: "from local (uid N, user NAME)", and the uid,
//     user and pid on every log line of the connection.
//   - An authenticated client's message (587, 465, or port 25 after AUTH,
//     and what the Local socket takes) gets Message-ID, Date and, from the envelope sender the login owns,
//     From when it has none, as Postfix's cleanup does for SASL clients;
//     port 25 never changes the message of a client that did not log in.
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
//     authenticated clients send (587, 465, and port 25 after AUTH, as
//     opendkim as every smtpd's milter signs SASL clients), as it will be
//     stored and relayed; on port 25,
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
//     they mark as spam goes to the recipients' Junk folder. They read the
//     body where it lies (the spool file of a large message), in 64 KiB
//     chunks, and a body one replaces goes to SpoolDir as it arrives, so
//     the bound above holds with milters too (500 sessions of 10 MB through
//     a milter: 127 MiB peak RSS, BenchmarkDataRSSMilter; 3.9 GiB when
//     the message was read into memory for them).
//
// The protocol (conn.go) — decisions that are ours now that the layer is:
//   - Replies to pipelined commands are held and leave in one write when
//     the server is about to wait for the client (RFC 2920 §3.2, as
//     Postfix's smtpd), in clear and inside TLS alike.
//   - Pipelining is checked as by Postfix 3.9 (smtpd_forbid_unauth_pipelining
//     = yes, Options.AllowUnauthPipelining turns it off): input before the
//     greeting (not on 465), input already sent after EHLO, HELO, DATA,
//     NOOP or VRFY (RFC 2920 §3.1: the last command of a group), or after
//     any command once HELO (not EHLO) was said or before either, gets
//     554 5.5.0 and the connection closes, the command not run. Message
//     text sent with its DATA is refused so, and cannot run as commands
//     when the DATA is refused (smuggling). BDAT and its chunk, MAIL, RCPT,
//     RSET may be pipelined after EHLO.
//   - An unknown command that is no SMTP (its first word a header field
//     name and colon, CONNECT, GET, POST, or not starting with a letter)
//     gets 221 2.7.0 and the connection closes, as Postfix 3.9's defaults
//     (is_header, smtpd_forbidden_commands): the text of a refused DATA
//     stops at its first line.
//   - STARTTLS drops whatever the client pipelined in clear after it
//     (CVE-2011-0411) and logs it; a failed handshake closes the
//     connection.
//   - EHLO says SIZE with exactly MaxMessageBytes, in clear and inside
//     TLS; MAIL SIZE= over it gets 552 5.3.4, and a message of exactly the
//     limit is accepted by DATA and BDAT, as by Postfix. BINARYMIME and
//     REQUIRETLS are not offered (555); an unknown parameter gets 555
//     5.5.4 (RFC 5321 §4.1.1.11). AUTH= is ignored whatever its value
//     (curl sends one that is no xtext), as by Postfix; a second one
//     gets 503 5.5.4.
//   - DSN (RFC 3461, dsn.go) is offered on every listener with a queue
//     (not on Cluster: a front node reports its node copies itself).
//     RET=FULL|HDRS, ENVID=<xtext> (at most 100 octets decoded),
//     NOTIFY=NEVER or any of SUCCESS, FAILURE, DELAY, and
//     ORCPT=<addr-type>;<xtext> (at most 500 octets) are checked strictly,
//     xtext included (upper-case hex; decoded, printable US-ASCII only, so
//     no value can add a line to a DSN or a log; an ORCPT of RFC 6533's
//     utf-8 type is its utf-8-addr-xtext, \x{HEX} escapes, or with
//     SMTPUTF8 on MAIL its utf-8-addr-unitext, raw UTF-8 too, kept in the
//     canonical 7-bit form whichever was sent): a bad value, a
//     parameter given twice or NEVER with another gets 501 5.5.4, as by
//     Postfix's smtpd. They travel in the transaction (txnDSN, nil when
//     none was given) to the queue's entry (queue.WithDSN), through alias
//     expansion: a recipient an alias of ours expanded with NOTIFY=SUCCESS
//     is reported "expanded" and its copies ask no more for success
//     (Postfix's cleanup). A message with a copy asking for a success DSN
//     is not stored directly but through the queue: its entry, fsynced
//     before the 250, owes the DSN, so a copy is never stored with a
//     notification that a crash could lose; other messages take the same
//     path as before, at no cost.
//   - CHUNKING: BDAT goes through the same checks as DATA. When a chunk
//     that is not the LAST ends, the reader of the message answers it and
//     reads the next command itself (bdatReader): BDAT goes on, NOOP is
//     answered, DATA, MAIL and RCPT get Postfix's 503 5.5.1 (DATA after
//     BDAT, nested MAIL command, RCPT after BDAT; the transfer goes on),
//     anything else ends the transfer (the message is dropped, the
//     command runs). As Postfix's bdat_cmd, a null chunk that is not the
//     LAST gets 551 5.7.1 and one that would pass the size limit 552
//     5.3.4 at its BDAT; after a refused BDAT that is not the LAST (these,
//     or a first chunk without recipients) every chunk is skipped with
//     551 5.0.0 Discarded N bytes after earlier error until BDAT LAST
//     or RSET, and MAIL, RCPT and DATA are refused meanwhile (bdatRefused).
//     A chunk after a refused command is skipped whole;
//     the skipping of a refused chunk is bounded by twice the size limit
//     and by ReadTimeout from its BDAT line, after which the connection
//     closes rather than read the rest of the chunk as commands.
//   - A command line over MaxLineLength: 500 5.5.2 and close. A read
//     timeout: 421 4.4.2 and close. Every refused command (unknown,
//     out of sequence, bad syntax or parameters, or refused by policy)
//     counts towards MaxErrors, as in Postfix; NOOP, VRFY, HELP and
//     unknown commands count towards MaxCommands as well. As Postfix's
//     smtpd_hard_error_limit, the refusal that reaches MaxErrors is
//     answered, then "421 4.7.0 <host> Error: too many errors" before the
//     next command is read; an accepted message resets both counts.
//   - A panic in a session answers that client 421 4.3.0 and closes its
//     connection only. Received says "with SMTP" after HELO, ESMTP (and
//     its S, A variants, RFC 3848) after EHLO. MAIL and AUTH before HELO/EHLO
//     are taken (Postfix's smtpd_helo_required = no; AUTH with its usual
//     rules: TLS first, not twice, not within a transaction): Received
//     then names the client by its reverse DNS, "with SMTP" (ESMTP… after
//     an EHLO that came before STARTTLS, as Postfix keeps it).
//   - DATA, or a first BDAT, without a recipient gets Postfix's reply
//     (data_cmd, bdat_cmd): outside a transaction "503 5.5.1 Error: need
//     RCPT command"; in a transaction whose every RCPT was refused (a
//     pipelining client sends DATA before it sees the refusals) "554
//     5.5.1 Error: no valid recipients". Both count as errors; DATA
//     leaves the transaction open, a refused BDAT's chunk is skipped and
//     a refused BDAT LAST ends the transaction (Postfix's skip_bdat).
//     DATA's recipients are checked before its syntax (501 5.5.4 Syntax:
//     DATA), as Postfix does.
//   - Successful MAIL and RCPT get 250 2.1.0 and 250 2.1.5 Ok (Postfix's
//     words, without echoing the address); the other sequence errors and
//     the texts of the replies the tests know keep go-smtp's wording, so
//     clients and scripts written against courriel before see no change.
package smtp
