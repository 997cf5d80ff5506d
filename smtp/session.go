package smtp

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/internal/envaddr"
	"courriel/milter"
)

// session is what one client does from HELO/EHLO to QUIT, or to STARTTLS,
// after which the next EHLO starts a new one on the same conn. Its methods
// run on the connection's goroutine (conn.go), one command at a time.
type session struct {
	srv   *Server
	c     *conn
	tls   *tls.ConnectionState // nil before TLS; immutable
	helo  string               // as sent, hostile; set by HELO/EHLO
	esmtp bool                 // EHLO, not HELO
	log   *slog.Logger         // with the helo

	ctx    context.Context // ends at Logout
	cancel context.CancelFunc

	// mu guards the transaction and the login. Every method runs on the
	// connection's goroutine now (BDAT too: no goroutine of its own), so
	// it is never contended; the helpers of milter.go and mailauth.go
	// document that they run with it held, and so they still do.
	mu   sync.Mutex
	user *directory.User // set by a successful AUTH
	// authMech is the SASL mechanism of the AUTH in progress or done (the
	// milters' {auth_type}); guarded by mu.
	authMech string
	tx       txn // the current transaction, zeroed by Reset
	// milter is the milters' session (milter.go), opened at the first
	// MAIL when Options.Milters has any; guarded by mu.
	milter *milter.Session
	// clusterPeer: the Cluster listener's client logged in as
	// cluster.ClusterLogin with the shared secret; guarded by mu.
	clusterPeer bool
	// afterReply, when set by Data, logs the message's acceptance and
	// the lines held back with it once its reply is sent (conn.replied).
	// Owned by the conn's goroutine.
	afterReply func()
}

// txn is one mail transaction, MAIL to the end of the message.
type txn struct {
	id     string // msg_id; "" when no transaction
	from   string // reverse-path, "" for <>
	utf8   bool
	rcpts  []string             // accepted RCPT addresses, normalized
	local  []delivery.Recipient // local maildrops, one per Destination.Address
	homes  map[string]string    // dedupeKey of a local copy → its home directory (cluster.Holds' key)
	remote []string             // addresses for the outbound queue, one each
	seen   map[string]bool      // dedupeKey of every local and remote target
	// ours are the RCPT addresses the directory resolved (not those
	// relayed to other domains): a message that already reached one of
	// them is a loop.
	ours []string
	// forwarded are those of ours whose copies leave (an alias with
	// outside members): each gets a Delivered-To: line, which finds the
	// copy if it comes back.
	forwarded []string
	// arrived and retry come from the front node on the Cluster listener
	// (XARRIVED, XRETRY): the keyed copies' names, and whether an earlier
	// attempt may have stored them.
	arrived time.Time
	retry   bool
	// remoteFrom, when set, is the envelope sender of the remote copies
	// (SRS, or <> after an SPF failure; see mailAuth).
	remoteFrom *string
	// origTo maps a remote copy an alias expanded to, to the RCPT that
	// named the alias (the queue's orig_to=); nil when there is none.
	origTo map[string]string
	// origins: every RCPT's copies, for a milter's DELRCPT (milter.go);
	// nil without milters.
	origins *rcptOrigins
	// needUTF8: the client asked for SMTPUTF8 and the header holds UTF-8,
	// so the remote copies need SMTPUTF8 at the next hop (set at DATA).
	needUTF8 bool
	// loops are the RCPTs the message already reached here (set at DATA):
	// their copies are gone from local and remote, and they bounce.
	loops []string
	// refused are the Local socket's recipients refused for good, which
	// the message is accepted for and bounces (localrcpt.go).
	refused []refusedRcpt
	// dsn: RFC 3461's parameters (dsn.go); nil when none was given.
	dsn *txnDSN
	// senderOK: the sender passed the seed's reject_sender_login_mismatch
	// (checkSenderLogin, asked at RCPT until then): the login owns it, or,
	// for a client not logged in, nobody does or it need not be asked.
	senderOK bool
}

// newSession starts the session of a HELO or EHLO: the first on the
// connection, or the first after STARTTLS.
func (s *Server) newSession(c *conn, helo string, esmtp bool) (*session, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ss := &session{srv: s, c: c, tls: c.tlsState, ctx: ctx, cancel: cancel}
	ss.setHelo(helo, esmtp)
	if c.countCommand() {
		return nil, ss.dropWith(replyTooManyCmds)
	}
	return ss, nil
}

// setHelo records the client's HELO/EHLO name (a later one replaces it)
// and whether it was EHLO.
func (s *session) setHelo(helo string, esmtp bool) {
	s.helo, s.esmtp = helo, esmtp
	s.log = s.c.log.With("helo", logValue(helo, 64), "tls", s.tls != nil)
}

// fail turns err into the reply (replyFor), adds the transaction's id (the
// connection's outside a transaction) and counts the error (MaxErrors,
// conn.tooManyErrors).
func (s *session) fail(st stage, err error) error {
	r := replyFor(st, err)
	if r == nil { // a caller bug; never turn it into a success
		r = replyTempFailure
	}
	s.c.countError()
	if r.Code == 421 {
		s.c.dropAfterWrite.Store(true)
	}
	return withID(r, s.replyID())
}

// dropWith answers r (a 421) and closes the connection right after.
func (s *session) dropWith(r *gosmtp.SMTPError) error {
	s.c.dropAfterWrite.Store(true)
	return withID(r, s.replyID())
}

func (s *session) replyID() string {
	if s.tx.id != "" {
		return s.tx.id
	}
	return s.c.id
}

// Reset ends the transaction: RSET, a new EHLO, or the end of a message.
func (s *session) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tx.id != "" {
		s.c.setTx(false)
		s.milterAbort()
	}
	s.tx = txn{}
}

// Logout ends the session: QUIT, STARTTLS or a closed connection.
func (s *session) Logout() error {
	s.Reset()
	s.mu.Lock()
	s.milterClose()
	s.mu.Unlock()
	s.cancel()
	return nil
}

// Mail starts a transaction (MAIL FROM); from is "" for <>.
func (s *session) Mail(from string, opts *mailOptions) error {
	if s.c.countCommand() {
		return s.dropWith(replyTooManyCmds)
	}
	if s.srv.isClosing() {
		return s.dropWith(replyShuttingDown)
	}
	k := s.srv.o.Kind
	if k == Submission && s.tls == nil {
		return s.fail(stageMail, replyStartTLSFirst)
	}
	switch {
	case k == Cluster && !s.isClusterPeer():
		return s.fail(stageMail, replyAuthRequired)
	case k != Inbound && k != Cluster && k != Local && s.user == nil:
		return s.fail(stageMail, replyAuthRequired)
	}
	if s.tx.id != "" {
		return s.fail(stageMail, replyNestedMail)
	}
	if opts != nil && opts.Size > s.srv.o.MaxMessageBytes {
		return s.fail(stageMail, replyTooLarge)
	}
	utf8 := opts != nil && opts.UTF8
	if from != "" {
		a, err := parseSender(from, utf8)
		switch {
		case errors.Is(err, errNeedUTF8):
			return s.fail(stageMail, replyNeedUTF8)
		case err != nil:
			return s.fail(stageMail, replyBadSender)
		}
		from = a.String()
	}
	// Whether the client may use the sender is asked at RCPT
	// (checkSenderLogin), as Postfix with smtpd_delay_reject = yes.
	s.mu.Lock()
	s.tx = txn{id: s.srv.ids.next(), from: from, utf8: utf8, seen: map[string]bool{}}
	if opts != nil {
		s.tx.arrived, s.tx.retry = opts.Arrived, opts.Retry
		if opts.Ret != "" || opts.EnvID != "" {
			s.tx.dsn = &txnDSN{ret: opts.Ret, envid: opts.EnvID}
		}
	}
	s.mu.Unlock()
	s.c.setTx(true)
	s.mu.Lock()
	if r := s.milterMail(); r != nil {
		err := s.fail(stageMail, r)
		s.tx = txn{}
		s.mu.Unlock()
		s.c.setTx(false)
		return err
	}
	s.mu.Unlock()
	// Debug: the accepted message's line repeats from= (as Postfix's qmgr
	// does), refusals are logged where they happen. Its attributes are
	// made only when it is logged.
	if !s.log.Enabled(s.ctx, slog.LevelDebug) {
		return nil
	}
	attrs := []any{"msg_id", s.tx.id, "from", logValue(from, 300)}
	if s.user != nil {
		attrs = append(attrs, "sasl_username", s.user.Login)
	}
	if opts != nil && opts.Size > 0 {
		attrs = append(attrs, "size", opts.Size)
	}
	s.log.Debug("mail", attrs...)
	return nil
}

// checkSenderLogin is the seed's reject_sender_login_mismatch, in its
// smtpd_recipient_restrictions: asked at each RCPT, after the relay check
// and before the recipient's lookup, until the sender passes it once in
// the transaction (senderOK). A client that logged in must own its sender
// (checkSenderOwner), one that did not may not use a sender that has an
// owner (checkUnauthSender). Never for the null sender <>, as Postfix's
// restriction does not apply to it (bounces, and the MDNs and vacation
// notices of logged-in users, RFC 8098 §2.1; the login is in the log).
// s.mu held.
func (s *session) checkSenderLogin(log func() *slog.Logger) error {
	if s.tx.from == "" || s.tx.senderOK {
		return nil
	}
	if s.user != nil {
		return s.checkSenderOwner(log)
	}
	return s.checkUnauthSender(log)
}

// checkSenderOwner applies SPEC §3 (Postfix's
// reject_auth_sender_login_mismatch): the login must be among the
// sender's owners (SenderLogins), on every port; a sender nobody owns is
// refused too. As Postfix answers it with smtpd_delay_reject = yes: at
// each RCPT, "553 5.7.1 <sender>: Sender address rejected: not owned by
// user <login>". A directory failure is 451 4.3.0, asked again at the next
// RCPT. s.mu held.
func (s *session) checkSenderOwner(log func() *slog.Logger) error {
	logins, err := s.srv.o.Directory.SenderLogins(s.ctx, s.tx.from)
	if err != nil && !errors.Is(err, directory.ErrNotFound) {
		log().Error("sender logins: directory", "from", logValue(s.tx.from, 300), "err", err)
		return s.fail(stageRcpt, err)
	}
	if slices.ContainsFunc(logins, func(l string) bool { return strings.EqualFold(l, s.user.Login) }) {
		s.tx.senderOK = true
		return nil
	}
	log().Warn("rcpt refused: sender not owned by the login", "from", logValue(s.tx.from, 300),
		"sasl_username", logValue(s.user.Login, 64))
	return s.fail(stageRcpt, replyNotOwned(s.tx.from, s.user.Login))
}

// replyNotOwned is Postfix's reject_auth_sender_login_mismatch.
func replyNotOwned(from, login string) *gosmtp.SMTPError {
	return rep(553, gosmtp.EnhancedCode{5, 7, 1}, "<"+sanitize(from, 300)+">: Sender address rejected: not owned by user "+sanitize(login, 64))
}

// replyNotLoggedIn is Postfix's reject_unauth_sender_login_mismatch.
func replyNotLoggedIn(from string) *gosmtp.SMTPError {
	return rep(553, gosmtp.EnhancedCode{5, 7, 1}, "<"+sanitize(from, 300)+">: Sender address rejected: not logged in")
}

// checkUnauthSender is the other half of the seed's
// reject_sender_login_mismatch (Postfix's
// reject_unauth_sender_login_mismatch): a client that did not log in may
// not use a sender address the directory gives an owner (SenderLogins),
// else anyone could mail our users as one of them. As Postfix does with
// smtpd_delay_reject = yes (the restriction is in the seed's
// smtpd_recipient_restrictions), it is answered at RCPT, after the relay
// check, before the recipient's lookup: 553 5.7.1, once per RCPT.
//
// Who is checked: every client of port 25 that did not log in, MyNetworks
// included (the seed lists nothing that permits before it in
// smtpd_recipient_restrictions: a host of mynetworks sending as one of our
// users must log in, or the check is turned off). Only senders in our
// domains (mailbox or hosted): the seed's sender query,
// (|(mailacceptinggeneralid=%s)(maildrop=%s)), also gives an owner to the
// outside address an alias forwards to (maildrop: someone@gmail.example),
// and Postfix, asking it for every sender, then refuses that person's own
// mail to us from their provider; the check is there against forged
// senders of ours, and a foreign domain's are DMARC's business. It also
// spares a directory search per foreign sender (the domain's class is
// cached). Never: the null sender
// (bounces, MDNs, vacation notices), milters' added recipients, the
// submission listeners (the client logged in: checkSenderOwner),
// and the Cluster listener, where another node hands over what its own
// client sent, after the cluster login (clusterRcpt, not here).
// Options.AllowUnauthOwnedSender turns it off. A directory failure is
// 451 4.3.0, and the sender is asked again at the next RCPT. s.mu held.
func (s *session) checkUnauthSender(log func() *slog.Logger) error {
	o := s.srv.o
	if s.user != nil || s.tx.from == "" || s.tx.senderOK || o.Kind != Inbound || o.AllowUnauthOwnedSender {
		return nil
	}
	_, domain, _ := envaddr.Split(s.tx.from)
	if strings.HasPrefix(domain, "[") { // an address literal: no domain of ours
		s.tx.senderOK = true
		return nil
	}
	class, err := o.Directory.ClassifyDomain(s.ctx, domain)
	if err != nil {
		log().Error("sender domain: directory", "from", logValue(s.tx.from, 300), "err", err)
		return s.fail(stageRcpt, err)
	}
	if class == directory.DomainForeign {
		s.tx.senderOK = true
		return nil
	}
	logins, err := o.Directory.SenderLogins(s.ctx, s.tx.from)
	switch {
	case errors.Is(err, directory.ErrNotFound), err == nil && len(logins) == 0:
		s.tx.senderOK = true
		return nil
	case err != nil:
		log().Error("sender logins: directory", "from", logValue(s.tx.from, 300), "err", err)
		return s.fail(stageRcpt, err)
	}
	log().Warn("rcpt refused: sender has an owner and the client is not logged in", "from", logValue(s.tx.from, 300))
	return s.fail(stageRcpt, replyNotLoggedIn(s.tx.from))
}

// Rcpt adds a recipient (RCPT TO) with its DSN parameters (zero: none):
// every recipient is decided here, from the directory, so nothing accepted
// can bounce later for being unknown.
func (s *session) Rcpt(to string, dsn queue.RcptDSN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.countCommand() {
		return s.dropWith(replyTooManyCmds)
	}
	if s.srv.isClosing() {
		return s.dropWith(replyShuttingDown)
	}
	if s.srv.o.Kind == Local {
		return s.rcptLocal(to, dsn)
	}
	return s.rcpt(to, false, dsn)
}

// RcptCluster is RCPT TO on the Cluster listener: a maildrop, the original
// recipient from ORCPT ("" none), the copy's key from XKEY ("" none),
// XJUNK, and the copy's DSN parameters (NOTIFY, XORCPT; see cluster.go).
func (s *session) RcptCluster(to, orig, key string, junk bool, dsn queue.RcptDSN) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c.countCommand() {
		return s.dropWith(replyTooManyCmds)
	}
	if s.srv.isClosing() {
		return s.dropWith(replyShuttingDown)
	}
	return s.clusterRcpt(to, orig, key, junk, dsn)
}

// rcpt decides one recipient, for RCPT TO with its DSN parameters or,
// byMilter, for a milter's added recipient (no relay check, the milters
// are not asked). s.mu held.
func (s *session) rcpt(to string, byMilter bool, dsn queue.RcptDSN) error {
	// Most RCPTs log nothing (Postfix's smtpd logs only refusals): the
	// logger with their attributes is made only for a line.
	rawTo := to
	log := func() *slog.Logger { return s.log.With("msg_id", s.tx.id, "to", logValue(rawTo, 300)) }
	if !strings.Contains(to, "@") {
		// RFC 5321 §4.5.1: <Postmaster> without a domain must be accepted;
		// it is the postmaster of our host name's domain, as Postfix
		// appends $myorigin, and so is any other bare local part Postfix
		// takes ("<xomail>" reached xomail@$myorigin).
		if strings.EqualFold(to, "postmaster") {
			to = "postmaster"
		}
		to += "@" + s.srv.o.Hostname
	}
	a, err := parseAddress(to, s.tx.utf8)
	switch {
	case errors.Is(err, errRelayTrick):
		log().Warn("rcpt refused: relay trick")
		return s.fail(stageRcpt, replyRelayDenied)
	case errors.Is(err, errNeedUTF8):
		return s.fail(stageRcpt, replyNeedUTF8)
	case err != nil:
		log().Info("rcpt refused: syntax", "err", err)
		return s.fail(stageRcpt, replyBadRcpt)
	}
	if a.routed() && !s.mayRelay() {
		// Postfix refuses a routed recipient (address.routed) with
		// reject_unauth_destination, as relaying, whatever its domain,
		// ours included ("Relay access denied", allow_untrusted_routing =
		// no; 554 5.7.1 for "x@y"@ourdomain from an unauthenticated
		// client, checked against Postfix 3.7). permit_mynetworks and
		// permit_sasl_authenticated come first (the seed's
		// smtpd_relay_restrictions): for a client that may relay, "x@y"@remote
		// is relayed as given, its local part the remote host's
		// business, and one to our domains is looked up as any other
		// (x@y@domain in Postfix's internal form; unknown: 550).
		log().Warn("rcpt refused: relay trick")
		return s.fail(stageRcpt, replyRelayDenied)
	}
	addr := a.String()
	// Postfix's order: the relay restrictions (permit_mynetworks,
	// permit_sasl_authenticated, defer_unauth_destination), then the
	// recipient restrictions (reject_sender_login_mismatch), then the
	// recipient's lookup (unknown: 550). One of our SRS addresses is in
	// our domain: no relay.
	srs := s.srv.o.SRS != nil && s.srv.o.SRS.IsSRS(addr)
	var class directory.DomainClass
	if !srs {
		if class, err = s.srv.o.Directory.ClassifyDomain(s.ctx, a.Domain); err != nil {
			log().Error("rcpt: classify domain", "err", err)
			return s.fail(stageRcpt, err)
		}
		if class == directory.DomainForeign && !byMilter && !s.mayRelay() {
			log().Warn("rcpt refused: relay access denied")
			return s.fail(stageRcpt, replyRelayDenied)
		}
	}
	if !byMilter {
		if err := s.checkSenderLogin(log); err != nil {
			return err
		}
	}
	if srs {
		_, err := s.rcptSRS(log, addr, dsn)
		return err
	}
	if class == directory.DomainForeign {
		if s.srv.o.Queue == nil {
			log().Error("rcpt: relay allowed but no outbound queue")
			return s.fail(stageRcpt, replyNoQueue)
		}
		if !s.tx.seen[dedupeKey(addr)] && s.tx.copies() >= s.srv.o.MaxRecipients {
			return s.fail(stageRcpt, replyTooManyRcpts)
		}
		if !byMilter {
			if r := s.milterRcpt(addr); r != nil {
				return s.fail(stageRcpt, r)
			}
		}
		s.addRemote(addr)
		cd := s.tx.rcptDSN(addr, dsn, []string{addr})
		s.noteOrigin(addr, "", dsn != (queue.RcptDSN{}), cd, []string{addr})
		s.tx.rcpts = append(s.tx.rcpts, addr)
		if s.log.Enabled(s.ctx, slog.LevelDebug) {
			log().Debug("rcpt ok", "relay", true)
		}
		return nil
	}
	res, err := s.srv.o.Directory.ResolveClassified(s.ctx, addr, class)
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			log().Info("rcpt refused: unknown user")
		} else {
			log().Error("rcpt: resolve", "err", err)
		}
		return s.fail(stageRcpt, err)
	}
	if len(res.Destinations) == 0 {
		log().Error("rcpt: directory gave no destination")
		return s.fail(stageRcpt, replyTempFailure)
	}
	// Every copy must fit in one queue entry (the queue's recipient limit
	// is the same MaxRecipients): counted before anything is added, so
	// that DATA can never find a transaction the queue refuses.
	if fresh := s.newCopies(res.Destinations); s.tx.copies()+fresh > s.srv.o.MaxRecipients {
		if s.tx.copies() == 0 {
			log().Warn("rcpt refused: expands to too many recipients", "copies", fresh)
			return s.fail(stageRcpt, replyAliasTooLarge)
		}
		log().Info("rcpt deferred: too many copies in this transaction", "copies", fresh)
		return s.fail(stageRcpt, replyTooManyRcpts)
	}
	nodes := make([]string, len(res.Destinations)) // the home node of each mailbox homed elsewhere
	for i, d := range res.Destinations {           // check all before adding any
		switch {
		case d.Remote && s.srv.o.Queue == nil:
			log().Error("rcpt: forward needs the outbound queue, which is off")
			return s.fail(stageRcpt, replyNoQueue)
		case !d.Remote && d.Mailbox == nil:
			log().Error("rcpt: local destination without a mailbox", "dest", logValue(d.Address, 300))
			return s.fail(stageRcpt, replyTempFailure)
		case d.Remote:
			continue
		}
		node, err := s.homeOf(d.Mailbox)
		switch {
		case err != nil:
			log().Error("rcpt: home node", "dest", logValue(d.Address, 300), "err", err)
			return s.fail(stageRcpt, replyUnknownNode)
		case node != "" && s.srv.o.Queue == nil:
			log().Error("rcpt: a copy for another node needs the queue, which is off")
			return s.fail(stageRcpt, replyNoQueue)
		}
		nodes[i] = node
	}
	if !byMilter {
		if r := s.milterRcpt(addr); r != nil {
			return s.fail(stageRcpt, r)
		}
	}
	forwards := false
	for i, d := range res.Destinations {
		if d.Remote {
			if dedupeKey(d.Address) != dedupeKey(addr) {
				forwards = true
				if _, ok := s.tx.origTo[d.Address]; !ok && len(s.tx.origTo) < s.srv.o.MaxRecipients {
					if s.tx.origTo == nil {
						s.tx.origTo = map[string]string{}
					}
					s.tx.origTo[d.Address] = addr // the first alias that reached it
				}
			}
			s.addRemote(d.Address)
			continue
		}
		k := dedupeKey(d.Address)
		if s.tx.seen[k] {
			continue
		}
		s.tx.seen[k] = true
		r := localRecipient(d.Mailbox, addr)
		r.Address = d.Address
		// A node copy: queued here, handed to its home node by the queue.
		r.Node = nodes[i]
		s.tx.local = append(s.tx.local, r)
		s.tx.setHome(k, d.Mailbox.Home)
	}
	dests := make([]string, len(res.Destinations))
	for i, d := range res.Destinations {
		dests[i] = d.Address
	}
	var cd queue.RcptDSN
	if dsn != (queue.RcptDSN{}) || s.milter != nil {
		cd = s.tx.rcptDSN(addr, dsn, dests)
	}
	// Always: a loop (dropLoops) as well as a milter's DELRCPT takes an
	// RCPT out and must leave its copies to the others that reach them.
	s.noteOrigin(addr, addr, dsn != (queue.RcptDSN{}), cd, dests)
	s.tx.rcpts = append(s.tx.rcpts, addr)
	if !slices.ContainsFunc(s.tx.ours, func(o string) bool { return dedupeKey(o) == dedupeKey(addr) }) {
		s.tx.ours = append(s.tx.ours, addr)
		if forwards {
			s.tx.forwarded = append(s.tx.forwarded, addr)
		}
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		log().Debug("rcpt ok", "destinations", len(res.Destinations))
	}
	return nil
}

// setHome remembers the home directory of the local copy for key, for the
// holds checked again at DATA.
func (t *txn) setHome(key, home string) {
	if home == "" {
		return
	}
	if t.homes == nil {
		t.homes = map[string]string{}
	}
	t.homes[key] = home
}

// newCopies counts the destinations not yet in the transaction.
func (s *session) newCopies(dests []directory.Destination) int {
	n := 0
	seen := make(map[string]bool, len(dests))
	for _, d := range dests {
		k := dedupeKey(d.Address)
		if !s.tx.seen[k] && !seen[k] {
			seen[k] = true
			n++
		}
	}
	return n
}

func (s *session) addRemote(addr string) {
	k := dedupeKey(addr)
	if s.tx.seen[k] {
		return
	}
	s.tx.seen[k] = true
	s.tx.remote = append(s.tx.remote, addr)
}

// dedupeKey: one copy per final maildrop. The directory matches addresses
// without regard to case, so two spellings are one maildrop.
func dedupeKey(addr string) string { return strings.ToLower(addr) }

// mayRelay: authenticated clients on any port; MyNetworks only on port 25;
// every client of the Local socket (a local process, as Postfix's pickup).
func (s *session) mayRelay() bool {
	if s.user != nil || s.srv.o.Kind == Local {
		return true
	}
	if s.srv.o.Kind != Inbound {
		return false
	}
	for _, p := range s.srv.o.MyNetworks {
		if p.Contains(s.c.ip) {
			return true
		}
	}
	return false
}

// sanitize makes a hostile string safe for a log value or a reply: printable
// ASCII only, bounded.
func sanitize(v string, n int) string {
	if len(v) <= n && printableASCII(v) {
		return v // the common case, without a copy
	}
	var b strings.Builder
	for i, r := range v {
		if i >= n {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r >= 0x80 {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// logValue is sanitize for a log line, which may hold UTF-8: an SMTPUTF8
// address stays readable (and found by grep) instead of becoming "?"s;
// controls, invalid bytes and line separators still become '?'.
func logValue(v string, n int) string {
	if len(v) <= n && printableASCII(v) {
		return v
	}
	var b strings.Builder
	for i, r := range v {
		if i >= n {
			b.WriteString("...")
			break
		}
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 || r == utf8.RuneError || r == 0x2028 || r == 0x2029 || r == 0xfeff {
			b.WriteByte('?')
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// printableASCII says whether v has only octets 0x20 to 0x7e.
func printableASCII(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] >= 0x7f {
			return false
		}
	}
	return true
}
