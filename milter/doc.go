// Package milter is courriel's milter client: it hands each SMTP
// transaction to external filters (rspamd, ClamAV, OpenDKIM, …) over the
// Sendmail milter protocol, version 6, as Postfix's smtpd_milters does, and
// turns their answers into a verdict the SMTP server applies.
//
// In the flow of a message (docs/flow.md) it sits between RCPT/DATA and the
// local copies: smtp asks a Session at MAIL, at each RCPT and once the whole
// message is read, and stores only what the milters let through, as they
// changed it. The package knows nothing of SMTP servers, the directory or
// maildirs: a Result says what to do, the caller does it.
//
// Library: github.com/d--j/go-milter (client side; its server side is what
// the tests' own milter is written with). Chosen over emersion/go-milter
// v0.5.0 because it speaks the whole of version 6 as Postfix does: the DATA
// event, the macro lists a milter asks for at negotiation, SMFIP_SKIP and the
// no-reply flags, change-from and add-recipient with ESMTP arguments, and
// packets of up to 1 MiB; emersion's client knows none of DATA, per-stage
// macros or negotiated macro lists. Its timeouts are per-client and fixed,
// so this package sets them to zero and puts its own deadlines on the
// connection (connect, command, end of message: as Postfix's
// milter_connect_timeout, milter_command_timeout, milter_content_timeout).
//
// Decisions worth knowing:
//   - A milter connection is opened at the first MAIL of an SMTP session
//     (not at TCP connect), and the connect and HELO events are sent then,
//     with the real client address: clients that never send MAIL cost the
//     milters nothing. A refusal at connect or HELO is the reply to MAIL.
//   - Each milter is asked in turn, in configuration order; the message they
//     see is the one the previous milter changed (as Postfix does).
//   - A milter that fails (refused connection, timeout, protocol error)
//     gets its default action for the transaction: tempfail (451 4.7.1),
//     accept (skipped) or reject (550 5.7.1). The next MAIL dials again, so
//     a dead milter costs at most its connect timeout per message; its
//     up/down state is logged once per change, not per message.
//   - Quarantine, and a header X-Spam: Yes or X-Spam-Flag: YES added or
//     changed by a milter (rspamd's "add header" action, spamass-milter),
//     make Result.Junk: the caller files the copies in the Junk folder.
//   - What milters send is hostile: header names and values are checked
//     and bounded, values are re-folded with CRLF, replies are reduced to
//     printable ASCII, a replaced body gets CRLF line ends and is bounded
//     (Spool.Limit), and no packet over 1 MiB is read (packetConn).
//   - Memory per message is bounded, not the message's size: the header
//     (at most 256 KiB) is held in memory, the body is read where it lies
//     (the caller's spool file for a large message) and sent in chunks of
//     64 KiB, as Postfix does; a body a milter replaces is written to the
//     caller's Spool as it arrives (an unnamed file past 128 KiB), not
//     collected by the library, and the next milter and the caller read
//     it there. The caller closes the Result to free it.
package milter
