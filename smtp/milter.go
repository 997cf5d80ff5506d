package smtp

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/milter"
	"courriel/smtp/wire"
)

// The milter hook (courriel/milter, Options.Milters): the session asks the
// milters at MAIL, at each accepted RCPT and once the message is read, and
// answers only after they have. Every call here runs with s.mu held.

// junkFolder is where a message a milter flagged as spam, or one that
// DMARC quarantines, is filed (Maildir++ .Junk, IMAP's \Junk).
const junkFolder = "Junk"

// milterGrowth is how much the milters' changes may make a message larger
// than MaxMessageBytes (our trace fields, given to them, included): half
// of what the queue accepts past its own MaxMessageBytes, the same limit
// (queue's traceAllowance, 64 KiB), the rest being for the fields
// mailAuth adds after them. A milter that would grow it more has failed,
// so that no grown message is refused by the queue (552 5.3.4 for a
// message the client sent within the limit).
const milterGrowth = 32 << 10

// milterMail starts the milters' transaction; nil lets MAIL through. The
// milters' session is opened at the first MAIL of a session (they
// then hear connect and HELO, with the TLS of this session).
func (s *session) milterMail() *gosmtp.SMTPError {
	if s.srv.o.Milters.Len() == 0 {
		return nil
	}
	if s.milter == nil {
		s.milter = s.srv.o.Milters.NewSession(s.milterInfo(), s.log)
	}
	if s.user != nil {
		s.milter.SetAuth(s.user.Login, s.authMech)
	}
	v := s.milter.Mail(s.tx.from, s.tx.id)
	if v.Reply != nil {
		s.log.Info("mail refused by milter", "msg_id", s.tx.id, "milter", v.Milter, "reply", logValue(v.Reply.String(), 300))
		return milterReply(v.Reply)
	}
	return nil
}

// milterInfo is what milters are told of this session.
func (s *session) milterInfo() milter.ConnInfo {
	ci := milter.ConnInfo{
		Client:   addrPort(s.c.Conn.RemoteAddr()),
		Local:    addrPort(s.c.Conn.LocalAddr()),
		Hostname: s.srv.o.Hostname,
		Listener: s.srv.o.Listener,
		Helo:     sanitize(s.helo, maxDomain),
	}
	if n := s.reverseName(); n != "unknown" {
		ci.ClientName = n
	}
	if s.tls != nil {
		ci.TLSVersion = tlsVersion(s.tls.Version)
		ci.Cipher = tls.CipherSuiteName(s.tls.CipherSuite)
		ci.CipherBits = cipherBits(ci.Cipher)
	}
	return ci
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// cipherBits is the symmetric key size Postfix reports as {cipher_bits}.
func cipherBits(name string) int {
	switch {
	case strings.Contains(name, "AES_128"):
		return 128
	case strings.Contains(name, "AES_256"), strings.Contains(name, "CHACHA20"):
		return 256
	}
	return 0
}

// milterRcpt tells the milters of an accepted recipient; nil accepts it.
func (s *session) milterRcpt(addr string) *gosmtp.SMTPError {
	if s.milter == nil {
		return nil
	}
	v := s.milter.Rcpt(addr)
	if v.Reply != nil {
		s.log.Info("rcpt refused by milter", "msg_id", s.tx.id, "to", logValue(addr, 300), "milter", v.Milter, "reply", logValue(v.Reply.String(), 300))
		return milterReply(v.Reply)
	}
	return nil
}

// milterAbort ends the milters' transaction (RSET, a refused message).
func (s *session) milterAbort() {
	if s.milter != nil {
		s.milter.Abort()
	}
}

// milterClose ends the milters' session.
func (s *session) milterClose() {
	if s.milter != nil {
		s.milter.Close()
	}
}

// filterMessage hands the message (header: our Received) to the milters
// and applies their answer to the transaction. It returns the message to
// store (all of it in body, header nil); done says the message is accepted without being
// stored (discarded, or every recipient removed); err is the reply when a
// milter refused it. The milters read the body in place (the spool file of
// a large message) and a body one of them replaces goes to the spool too,
// when large: release frees it, once the message is stored.
func (s *session) filterMessage(log *slog.Logger, header []byte, body delivery.Content) (newHeader []byte, newBody delivery.Content, release func(), done bool, err error) {
	release = func() {}
	if s.milter == nil {
		return header, body, release, false, nil
	}
	res := s.milter.Message(joined{header, body}, milter.Spool{
		Create:    func() (*os.File, error) { return createUnnamed(s.srv.o.SpoolDir) },
		Threshold: s.srv.o.SpoolThreshold,
		Limit:     s.srv.o.MaxMessageBytes,
		// What the queue takes, with room left for the fields added
		// after the milters (Authentication-Results:, an ARC set).
		MaxMessage: s.srv.o.MaxMessageBytes + milterGrowth,
	})
	release = res.Close
	size := int64(len(header)) + body.Size()
	switch {
	case res.Reply != nil:
		log.Info("message refused by milter", "milter", res.Milter, "reply", logValue(res.Reply.String(), 300))
		return nil, nil, release, false, milterReply(res.Reply)
	case res.Discard:
		log.Info("message discarded by milter", "milter", res.Milter, "from", logValue(s.tx.from, 300), "nrcpt", len(s.tx.rcpts), "size", size)
		return nil, nil, release, true, nil
	}
	if res.From != nil {
		s.milterChangeFrom(log, *res.From)
	}
	for _, a := range res.DelRcpts {
		s.milterDelRcpt(log, a)
	}
	for i, a := range res.AddRcpts {
		if s.tx.copies() >= s.srv.o.MaxRecipients {
			// Past the limit the rest are logged and ignored, not looked
			// up, as Postfix's cleanup ignores what does not fit: a 4xx
			// would come again at every retry, for the same milter.
			log.Warn("recipients added by milter ignored: recipient limit reached",
				"ignored", len(res.AddRcpts)-i, "limit", s.srv.o.MaxRecipients)
			break
		}
		var args string
		if i < len(res.AddRcptArgs) {
			args = res.AddRcptArgs[i]
		}
		if err := s.milterAddRcpt(log, a, args); err != nil {
			return nil, nil, release, false, err
		}
	}
	if len(s.tx.local)+len(s.tx.remote) == 0 {
		log.Info("message dropped: the milters removed every recipient", "from", logValue(s.tx.from, 300))
		return nil, nil, release, true, nil
	}
	if res.Junk {
		for i := range s.tx.local {
			s.tx.local[i].Folder = junkFolder
		}
		log.Info("message filed as junk by milter", "reason", res.JunkReason, "local", len(s.tx.local))
	}
	if res.BodyReplaced {
		log.Info("body replaced by milter", "size", res.Body.Size(), "spooled", res.BodySpooled)
	}
	// The whole message as the body, our trace fields included, as mail
	// authentication expects after the milters.
	return nil, joined{res.Header, res.Body}, release, false, nil
}

func (s *session) milterChangeFrom(log *slog.Logger, from string) {
	if from != "" {
		a, err := parseSender(from, s.tx.utf8)
		if err != nil {
			log.Warn("milter sender change ignored: bad address", "from", logValue(from, 300), "err", err)
			return
		}
		from = a.String()
	}
	log.Info("sender changed by milter", "old_from", logValue(s.tx.from, 300), "from", logValue(from, 300))
	s.tx.from = from
}

// milterDelRcpt removes a RCPT address and the copies no other RCPT
// reaches, as Postfix, whose milters see the envelope before cleanup
// expands the virtual aliases: the copy of two aliases forwarding to one
// address, or of an alias and the maildrop's own address, stays for the
// one left, and an address that was no RCPT (a maildrop an alias reached
// among them) changes nothing. A copy that stays is the first remaining
// RCPT's that reaches it: its OrigTo (Sieve's envelope "to", the log's
// orig_to), the queue's orig_to= and its DSN parameters become what that
// RCPT gave, as if the removed one had never been given.
func (s *session) milterDelRcpt(log *slog.Logger, addr string) {
	k := dedupeKey(addr)
	s.tx.rcpts = slices.DeleteFunc(s.tx.rcpts, func(r string) bool { return dedupeKey(r) == k })
	o := s.tx.origins
	var i int
	found := false
	if o != nil {
		i, found = o.index[k]
	}
	if !found {
		log.Info("recipient removed by milter", "to", logValue(addr, 300), "found", false)
		return
	}
	reached := make(map[string]bool, len(o.list[i].copies))
	for _, c := range o.list[i].copies {
		reached[c] = true
	}
	o.list[i] = rcptOrigin{}
	delete(o.index, k)
	heirs := o.heirs(reached)
	dropped := 0
	// A copy removed is forgotten by the dedupe set too: a milter may add
	// the same maildrop back.
	local := s.tx.local[:0]
	for _, r := range s.tx.local {
		ck := dedupeKey(r.Address)
		if reached[ck] {
			h := heirs[ck]
			if h == nil {
				s.tx.dropCopy(ck)
				dropped++
				continue
			}
			r.OrigTo = h.orig
			s.tx.setCopyDSN(ck, h.hasDSN, h.dsn)
		}
		local = append(local, r)
	}
	clear(s.tx.local[len(local):])
	s.tx.local = local
	// A remote copy goes too when no RCPT left reaches it, as dropLoops
	// takes a looping alias's forwards: else the message would leave for
	// a recipient the milter removed.
	remote := s.tx.remote[:0]
	for _, r := range s.tx.remote {
		ck := dedupeKey(r)
		if reached[ck] {
			h := heirs[ck]
			if h == nil {
				s.tx.dropCopy(ck)
				delete(s.tx.origTo, r)
				dropped++
				continue
			}
			s.setOrigTo(r, h.alias)
			s.tx.setCopyDSN(ck, h.hasDSN, h.dsn)
		}
		remote = append(remote, r)
	}
	clear(s.tx.remote[len(remote):])
	s.tx.remote = remote
	// The alias is no longer forwarded (no Delivered-To: for it), nor
	// reported expanded.
	s.tx.forwarded = slices.DeleteFunc(s.tx.forwarded, func(a string) bool { return dedupeKey(a) == k })
	if s.tx.dsn != nil {
		s.tx.dsn.expanded = slices.DeleteFunc(s.tx.dsn.expanded, func(x queue.Expansion) bool { return dedupeKey(x.Addr) == k })
	}
	log.Info("recipient removed by milter", "to", logValue(addr, 300), "found", true, "copies_removed", dropped)
}

// dropCopy forgets the copy key (dedupeKey) that left the transaction.
func (t *txn) dropCopy(key string) {
	delete(t.seen, key)
	delete(t.homes, key)
	if t.dsn != nil {
		delete(t.dsn.rcpts, key)
	}
}

// setCopyDSN gives the copy key the parameters d, the defaults without
// (!has).
func (t *txn) setCopyDSN(key string, has bool, d queue.RcptDSN) {
	switch {
	case !has:
		if t.dsn != nil {
			delete(t.dsn.rcpts, key)
		}
	default:
		delete(t.dsnFor().rcpts, key)
		t.setDSN(key, d)
	}
}

// setOrigTo makes alias the orig_to of the remote copy addr, none when "",
// within the bound RCPT keeps (MaxRecipients entries).
func (s *session) setOrigTo(addr, alias string) {
	if alias == "" {
		delete(s.tx.origTo, addr)
		return
	}
	if _, ok := s.tx.origTo[addr]; !ok && len(s.tx.origTo) >= s.srv.o.MaxRecipients {
		return
	}
	if s.tx.origTo == nil {
		s.tx.origTo = map[string]string{}
	}
	s.tx.origTo[addr] = alias
}

// milterAddRcpt adds a recipient as RCPT TO would, without the relay check
// (the milter is the administrator's) and without telling the milters. An
// address the directory does not know is dropped with a log line, and so
// is one past MaxRecipients; a directory failure makes the whole message
// 4xx (nothing is stored yet).
//
// Its DSN parameters: without any (SMFIR_ADDRCPT), RFC 3461's defaults (no
// NOTIFY: failures and delays are reported, no ORCPT); with
// SMFIR_ADDRCPT_PAR, its NOTIFY and ORCPT taken as RCPT takes them. Any
// other argument, or a malformed one, is logged and ignored, the recipient
// added all the same, as Postfix's cleanup logs "ignoring ESMTP arguments"
// (it ignores them all) rather than refuse what the milter asked.
func (s *session) milterAddRcpt(log *slog.Logger, addr, args string) error {
	dsn := s.milterRcptDSN(log, addr, args)
	err := s.rcpt(addr, true, dsn)
	var se *gosmtp.SMTPError
	switch {
	case err == nil:
		log.Info("recipient added by milter", "to", logValue(addr, 300))
		return nil
	case errors.As(err, &se) && se.Code >= 500:
		log.Warn("recipient added by milter refused", "to", logValue(addr, 300), "reply", se.Message)
		return nil
	case errors.As(err, &se) && se.Code == replyTooManyRcpts.Code && se.EnhancedCode == replyTooManyRcpts.EnhancedCode:
		// An alias whose copies do not all fit: ignored, as past the limit.
		log.Warn("recipient added by milter ignored: recipient limit reached", "to", logValue(addr, 300))
		return nil
	}
	log.Warn("recipient added by milter: temporary failure", "to", logValue(addr, 300), "err", err)
	return err
}

// milterRcptDSN reads the NOTIFY and ORCPT of SMFIR_ADDRCPT_PAR's
// arguments; the rest is logged and ignored.
func (s *session) milterRcptDSN(log *slog.Logger, addr, args string) queue.RcptDSN {
	var dsn queue.RcptDSN
	if strings.TrimSpace(args) == "" {
		return dsn
	}
	ignore := func(what string) {
		log.Warn("recipient added by milter: ignoring ESMTP argument", "to", logValue(addr, 300), "arg", logValue(what, 100))
	}
	params, err := wire.ParseParams(" " + strings.TrimSpace(args))
	if err != nil {
		ignore(args)
		return dsn
	}
	for _, p := range params {
		switch {
		case p.Key == "NOTIFY" && dsn.Notify == "":
			if n, why := parseNotify(p.Value); why == "" {
				dsn.Notify = n
				continue
			}
		case p.Key == "ORCPT" && dsn.ORcpt == "":
			if o, ok := parseORcpt(p.Value, s.tx.utf8); ok {
				dsn.ORcpt = o
				continue
			}
		}
		ignore(p.Key + "=" + p.Value)
	}
	return dsn
}

// milterReply turns a milter's reply into ours.
func milterReply(r *milter.Reply) *gosmtp.SMTPError {
	var ec gosmtp.EnhancedCode
	parts := strings.Split(r.Status, ".")
	for i := 0; i < 3 && len(parts) == 3; i++ {
		n, _ := strconv.Atoi(parts[i])
		ec[i] = n
	}
	if ec[0] == 0 {
		ec = gosmtp.EnhancedCode{r.Code / 100, 7, 1}
	}
	return rep(r.Code, ec, r.Text)
}
