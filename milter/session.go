package milter

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	gomilter "github.com/d--j/go-milter"

	"courriel/internal/envaddr"
)

// Reply is an SMTP reply a milter asked for (or its default action gives).
type Reply struct {
	Code   int    // 4xx or 5xx
	Status string // RFC 3463 enhanced status, e.g. "5.7.1"
	Text   string // printable ASCII, one line
}

// Verdict is the milters' answer to MAIL or RCPT.
type Verdict struct {
	// Reply, when set, refuses the command with it.
	Reply *Reply
	// Discard: the message is to be accepted and dropped (a milter said so
	// at MAIL or at a RCPT, which means the whole message).
	Discard bool
	// Milter is the address of the milter that decided, for the log.
	Milter string
}

// Result is the milters' answer to a whole message.
type Result struct {
	Verdict
	// Header and Body are the message to store, Header first: when a
	// milter changed it, the new header section in memory and the body
	// (the one given, in place, or one a milter replaced); else Header is
	// nil and Body the message given. Body is valid until Close.
	Header []byte
	Body   Content
	// Junk: quarantined, or flagged as spam (X-Spam: Yes): the local copies
	// go to the Junk folder. JunkReason says why, for the log.
	Junk       bool
	JunkReason string
	// From, when set, is the new envelope sender ("" for <>): hostile,
	// to be checked by the caller.
	From *string
	// AddRcpts and DelRcpts are envelope recipients to add and remove,
	// without angle brackets: hostile, to be checked by the caller (an
	// added recipient is resolved as RCPT TO would).
	AddRcpts []string
	// AddRcptArgs are the ESMTP arguments of each added recipient (by
	// index in AddRcpts; "" for SMFIR_ADDRCPT or none): hostile too.
	AddRcptArgs []string
	DelRcpts    []string
	// Modified says whether any milter changed anything.
	Modified bool
	// BodyReplaced says a milter replaced the body; BodySpooled that the
	// new body is in a file of the Spool, not in memory.
	BodyReplaced bool
	BodySpooled  bool

	replaced *bodyBuffer
}

// Close frees a body a milter replaced (its spool file). It may be called
// more than once.
func (r *Result) Close() {
	if r != nil && r.replaced != nil {
		r.replaced.close()
		r.replaced = nil
	}
}

// Session is the milters' view of one SMTP session (EHLO to QUIT or
// STARTTLS). Its methods are safe for concurrent use; they run one at a
// time.
type Session struct {
	chain *Chain
	log   *slog.Logger

	mu      sync.Mutex
	info    ConnInfo
	macros  *gomilter.MacroBag
	conns   []*mconn
	discard bool // this transaction is to be discarded
}

// mconn is one milter's connection within a Session.
type mconn struct {
	f  *filter
	cs *gomilter.ClientSession // nil when not connected
	nc net.Conn
	pc *packetConn // nc as the library reads it
	// connReply is a refusal at connect or HELO: every MAIL gets it.
	connReply *Reply
	// connDone: the milter accepted the connection, no more events.
	connDone bool
	inTx     bool // MAIL sent, transaction not ended (End or Abort)
	// txDone: no more events for this transaction (accepted, or failed
	// with the accept policy). txFailed: failed; its policy answers the
	// rest of the transaction.
	txDone   bool
	txFailed bool
}

// NewSession starts the milters' view of an SMTP session. Nothing is
// dialled before the first Mail. A nil or empty Chain gives a Session that
// lets everything through.
func (c *Chain) NewSession(info ConnInfo, log *slog.Logger) *Session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Session{chain: c, log: log, info: info}
	if c != nil {
		for _, f := range c.filters {
			s.conns = append(s.conns, &mconn{f: f})
		}
	}
	s.macros = s.info.macroBag()
	return s
}

// Active says whether any milter is configured.
func (s *Session) Active() bool { return s != nil && len(s.conns) > 0 }

// SetAuth records a successful AUTH for {auth_authen} and {auth_type}.
func (s *Session) SetAuth(login, mech string) {
	if !s.Active() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.info.AuthLogin, s.info.AuthMech = login, mech
	s.macros.Set(gomilter.MacroAuthAuthen, login)
	if mech != "" {
		s.macros.Set(gomilter.MacroAuthType, mech)
	}
}

// Mail starts a transaction: from is the reverse-path ("" for <>), queueID
// the transaction's id (macro i). Milters not yet connected are dialled
// now (each at most once per transaction).
func (s *Session) Mail(from, queueID string) Verdict {
	if !s.Active() {
		return Verdict{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.discard = false
	s.macros.Set(gomilter.MacroQueueId, queueID)
	s.macros.Set(gomilter.MacroMailAddr, from)
	_, host, _ := envaddr.Split(from) // "x@y"@host: the last '@'
	s.macros.Set(gomilter.MacroMailHost, host)
	for _, mc := range s.conns {
		mc.txDone, mc.txFailed = false, false
		if mc.inTx {
			s.abort(mc)
		}
		if mc.connReply != nil {
			return Verdict{Reply: mc.connReply, Milter: mc.f.cfg.Address}
		}
		if mc.connDone {
			continue
		}
		if mc.cs == nil {
			if v, stop := s.connect(mc); stop {
				return v
			}
			if mc.connReply != nil {
				return Verdict{Reply: mc.connReply, Milter: mc.f.cfg.Address}
			}
			if mc.connDone || mc.txDone {
				continue
			}
		}
		s.deadline(mc, mc.f.cfg.CommandTimeout)
		act, err := mc.cs.Mail(from, "")
		if err != nil {
			if v, stop := s.failed(mc, "mail", err); stop {
				return v
			}
			continue
		}
		mc.inTx = true
		if v, stop := s.action(mc, "mail", act); stop {
			return v
		}
	}
	return Verdict{}
}

// connect dials mc and sends connect and HELO. stop says the caller
// must answer v now (the milter failed and its policy refuses).
func (s *Session) connect(mc *mconn) (Verdict, bool) {
	cs, pc, err := mc.f.open(s.macros)
	if err != nil {
		return s.failed(mc, "connect", err)
	}
	mc.cs, mc.nc, mc.pc = cs, pc, pc
	mc.f.answered()
	family, port, addr := s.info.connFamily()
	name := s.info.ClientName
	if name == "" {
		name = "unknown"
	}
	s.deadline(mc, mc.f.cfg.CommandTimeout)
	act, err := cs.Conn(name, family, port, addr)
	if err != nil {
		return s.failed(mc, "connect", err)
	}
	if s.connAction(mc, "connect", act) {
		return Verdict{}, false
	}
	helo := s.info.Helo
	if helo == "" {
		helo = "unknown"
	}
	s.deadline(mc, mc.f.cfg.CommandTimeout)
	act, err = cs.Helo(helo)
	if err != nil {
		return s.failed(mc, "helo", err)
	}
	s.connAction(mc, "helo", act)
	return Verdict{}, false
}

// connAction handles the answer to connect or HELO; it reports whether
// the milter is done with this connection.
func (s *Session) connAction(mc *mconn, stage string, act *gomilter.Action) bool {
	switch act.Type {
	case gomilter.ActionAccept:
		mc.connDone = true
		s.close(mc)
		return true
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		mc.connReply = parseReply(act)
		s.log.Info("milter refused the connection", "milter", mc.f.cfg.Address, "stage", stage, "reply", mc.connReply.String())
		s.close(mc)
		return true
	}
	return false
}

// Rcpt tells the milters about one accepted recipient.
func (s *Session) Rcpt(to string) Verdict {
	if !s.Active() {
		return Verdict{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.macros.Set(gomilter.MacroRcptAddr, to)
	_, host, _ := envaddr.Split(to)
	s.macros.Set(gomilter.MacroRcptHost, host)
	for _, mc := range s.conns {
		if v, skip := s.skipTx(mc); skip {
			if v.Reply != nil {
				return v
			}
			continue
		}
		s.deadline(mc, mc.f.cfg.CommandTimeout)
		act, err := mc.cs.Rcpt(to, "")
		if err != nil {
			if v, stop := s.failed(mc, "rcpt", err); stop {
				return v
			}
			continue
		}
		if v, stop := s.action(mc, "rcpt", act); stop {
			return v
		}
	}
	return Verdict{}
}

// skipTx says whether mc takes no part in the rest of the transaction;
// v.Reply is set when its failure policy refuses.
func (s *Session) skipTx(mc *mconn) (Verdict, bool) {
	if mc.txFailed {
		return Verdict{Reply: mc.f.cfg.DefaultAction.reply(), Milter: mc.f.cfg.Address}, true
	}
	return Verdict{}, mc.connDone || mc.txDone || mc.cs == nil || !mc.inTx || mc.connReply != nil
}

// Message hands the message (trace header first, CRLF line ends) to the
// milters, each seeing what the previous one changed, and returns what to
// do with it. The header is read into memory (at most maxHeaderBytes);
// the body is read in place and sent in chunks, and a body a milter
// replaces goes to sp. The transaction ends here whatever the outcome. The
// caller closes the Result once it has stored (or dropped) the message.
func (s *Session) Message(msg Content, sp Spool) *Result {
	res := &Result{Body: msg}
	if !s.Active() {
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.endTx()
	if s.discard {
		res.Discard = true
		return res
	}
	m, err := parseMessage(msg)
	if err != nil {
		s.localFailure(nil, res, err)
		return res
	}
	// The replaced body, if any, is the caller's to close from here on;
	// a refusal needs it no more.
	defer func() {
		if res.Reply != nil || res.Discard {
			m.replaced.close()
			return
		}
		res.replaced = m.replaced
	}()
	var buf []byte // for the body's chunks, sized for the largest body
	end := s.chain.now().Add(s.chain.budget)
	maxSize := int64(0)
	if sp.MaxMessage > 0 {
		maxSize = max(sp.MaxMessage, m.headerSize()+m.body.Size())
	}
	for _, mc := range s.conns {
		if v, skip := s.skipTx(mc); skip {
			if v.Reply != nil {
				res.Verdict = v
				return res
			}
			continue
		}
		left := end.Sub(s.chain.now())
		if left <= 0 {
			s.outOfTime(nil, res)
			return res
		}
		stop, err := s.message(mc, m, res, sp, maxSize, min(left, mc.f.cfg.ContentTimeout), &buf)
		var le *localError
		if errors.As(err, &le) {
			s.localFailure(mc, res, err)
			return res
		}
		if err != nil && !s.chain.now().Before(end) {
			mc.f.failed("end-of-message", err)
			s.outOfTime(mc, res)
			return res
		}
		if err != nil {
			if v, stop := s.failed(mc, "end-of-message", err); stop {
				res.Verdict = v
				return res
			}
			continue
		}
		if stop {
			return res
		}
	}
	if res.Modified {
		res.Header, res.Body = m.header(), m.body
		res.BodyReplaced, res.BodySpooled = m.replaced != nil, m.replaced.spooled()
	}
	return res
}

// localFailure: reading the message or spooling a replaced body failed
// here; mc (when set) is left mid-message and is hung up. The message is
// refused for now, whatever the milters' policies.
func (s *Session) localFailure(mc *mconn, res *Result, err error) {
	s.log.Error("milter: local failure", "err", err)
	if mc != nil {
		s.close(mc)
	}
	res.Verdict = Verdict{Reply: &Reply{Code: 451, Status: "4.3.0", Text: "Local error in processing"}}
}

// outOfTime: the chain's MessageBudget ran out (mc, when set, is the
// milter that was asked then, and is hung up). The message is refused for
// now whatever the milters' policies: a later reply would reach the client
// after it gave up.
func (s *Session) outOfTime(mc *mconn, res *Result) {
	s.log.Warn("milters out of time", "budget", s.chain.budget)
	if mc != nil {
		s.close(mc)
	}
	res.Verdict = Verdict{Reply: &Reply{Code: 451, Status: "4.3.0", Text: "Timeout in message processing"}}
}

// message runs DATA, the header, the body and end of message with one
// milter and applies its changes to m and res. stop says res.Verdict is
// final (a refusal or a discard). *buf is for the body's chunks, grown
// as needed up to a chunk's size. Changes past the bounds of packetConn,
// or that would make the message larger than maxSize (when set), are
// the milter's failure (capped). timeout bounds the whole exchange.
func (s *Session) message(mc *mconn, m *message, res *Result, sp Spool, maxSize int64, timeout time.Duration, buf *[]byte) (stop bool, err error) {
	s.deadline(mc, timeout)
	cs := mc.cs
	act, err := cs.DataStart()
	if err != nil {
		return false, err
	}
	if v, stop := s.action(mc, "data", act); stop || mc.txDone {
		res.Verdict = v
		return stop, nil
	}
	leading := cs.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for i := range m.fields {
		f := &m.fields[i]
		act, err := cs.HeaderField(f.name, f.value(leading), nil)
		if err != nil {
			return false, err
		}
		if v, stop := s.action(mc, "header", act); stop || mc.txDone {
			res.Verdict = v
			return stop, nil
		}
		if cs.Skip() {
			break
		}
	}
	act, err = cs.HeaderEnd()
	if err != nil {
		return false, err
	}
	if v, stop := s.action(mc, "end-of-header", act); stop || mc.txDone {
		res.Verdict = v
		return stop, nil
	}
	size := m.body.Size()
	if cs.ProtocolOption(gomilter.OptNoBody) {
		size = 0 // not read for a milter that wants no body
	}
	if size == 0 {
		// The library wants a body event before the end of the message
		// (else End fails, and an empty body got the default action):
		// one empty chunk, sent only to a milter that wants the body.
		act, err := cs.BodyChunk(nil)
		if err != nil {
			return false, err
		}
		if v, stop := s.action(mc, "body", act); stop || mc.txDone {
			res.Verdict = v
			return stop, nil
		}
	}
	if want := int(min(size, int64(gomilter.DataSize64K))); len(*buf) < want {
		*buf = make([]byte, want)
	}
	chunk := *buf
	for off := int64(0); off < size && !cs.Skip(); {
		n, err := m.body.ReadAt(chunk[:min(int64(len(chunk)), size-off)], off)
		if n == 0 || (err != nil && !errors.Is(err, io.EOF)) {
			return false, &localError{fmt.Errorf("reading the message body: %w", cmp.Or(err, io.ErrUnexpectedEOF))}
		}
		act, err := cs.BodyChunk(chunk[:n])
		if err != nil {
			return false, err
		}
		if v, stop := s.action(mc, "body", act); stop || mc.txDone {
			res.Verdict = v
			return stop, nil
		}
		off += int64(n)
	}
	mc.pc.startReplacing(sp)
	mods, act, err := cs.End()
	replaced, over, rerr := mc.pc.stopReplacing()
	if rerr != nil {
		replaced.close()
		return false, rerr
	}
	if err != nil {
		replaced.close()
		return false, err
	}
	mc.inTx = false
	if over.why != "" {
		replaced.close() // one sent before a bound on the other changes
		junk, reason := verdictOf(mods)
		if !junk && over.junk != "" {
			junk, reason = true, over.junk
		}
		return s.capped(mc, res, act, over.why, junk, reason), nil
	}
	fields, sep, before := slices.Clone(m.fields), m.sep, *res
	s.apply(mc, m, res, mods, leading)
	if maxSize > 0 {
		size := m.headerSize() + m.body.Size()
		if replaced != nil {
			size += replaced.size - m.body.Size()
			if !m.sep && replaced.size > 0 {
				size += 2 // the blank line replaceBody adds
			}
		}
		if size > maxSize {
			junk, reason := res.Junk && !before.Junk, res.JunkReason
			m.fields, m.sep, *res = fields, sep, before
			replaced.close()
			why := fmt.Sprintf("the message would grow to %d bytes, more than %d", size, maxSize)
			return s.capped(mc, res, act, why, junk, reason), nil
		}
	}
	if replaced != nil {
		res.Modified = true
		m.replaceBody(replaced)
		s.log.Debug("milter change", "milter", mc.f.cfg.Address, "change", "replace body", "size", replaced.size)
	}
	switch act.Type {
	case gomilter.ActionAccept, gomilter.ActionContinue:
		return false, nil
	}
	v, stop := s.action(mc, "end-of-message", act)
	res.Verdict = v
	return stop, nil
}

// apply makes one milter's end-of-message changes to the header and the
// envelope (a replaced body came on the side: packetConn).
func (s *Session) apply(mc *mconn, m *message, res *Result, mods []gomilter.ModifyAction, leading bool) {
	log := s.log.With("milter", mc.f.cfg.Address)
	for _, ma := range mods {
		res.Modified = true
		switch ma.Type {
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader, gomilter.ActionChangeHeader:
			var f *field
			if ma.Type != gomilter.ActionChangeHeader || ma.HeaderValue != "" {
				nf, ok := newField(ma.HeaderName, ma.HeaderValue, leading)
				if !ok {
					log.Warn("milter header change refused: not a valid header field", "name", sanitize(ma.HeaderName, 64))
					continue
				}
				f = &nf
			}
			switch ma.Type {
			case gomilter.ActionAddHeader:
				m.add(*f)
			case gomilter.ActionInsertHeader:
				m.insert(int(min(ma.HeaderIndex, 1<<20)), *f)
			default:
				m.change(ma.HeaderName, int(min(ma.HeaderIndex, 1<<20)), f)
			}
			if f != nil && isSpamFlag(ma.HeaderName, ma.HeaderValue) {
				res.Junk = true
				res.JunkReason = sanitize(ma.HeaderName+": "+strings.TrimSpace(ma.HeaderValue), 64)
			}
		case gomilter.ActionQuarantine:
			res.Junk = true
			res.JunkReason = "quarantine: " + sanitize(ma.Reason, 200)
		case gomilter.ActionChangeFrom:
			from := unbracket(ma.From)
			res.From = &from
		case gomilter.ActionAddRcpt:
			res.AddRcpts = append(res.AddRcpts, unbracket(ma.Rcpt))
			res.AddRcptArgs = append(res.AddRcptArgs, ma.RcptArgs)
		case gomilter.ActionDelRcpt:
			res.DelRcpts = append(res.DelRcpts, unbracket(ma.Rcpt))
		}
		log.Debug("milter change", "change", sanitize(ma.String(), 200))
	}
}

// capped: a milter's changes passed a bound (why) and none is made. Its
// own refusal or discard stands (it needs none of its changes); else the
// milter has failed and its default action answers, with the accept
// policy the message going on as it was, but filed as junk when the
// milter said so (junk, reason: a quarantine or a spam flag among its
// changes), since that verdict only makes the delivery safer. It returns
// whether res.Verdict is final.
func (s *Session) capped(mc *mconn, res *Result, act *gomilter.Action, why string, junk bool, reason string) bool {
	s.log.Warn("milter changes refused: past a bound", "milter", mc.f.cfg.Address, "why", why, "junk", junk)
	switch act.Type {
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode, gomilter.ActionDiscard:
		v, stop := s.action(mc, "end-of-message", act)
		res.Verdict = v
		return stop
	}
	if junk && !res.Junk {
		res.Junk, res.JunkReason = true, reason
	}
	v, stop := s.failed(mc, "end-of-message", errors.New("milter changes past a bound: "+why))
	if stop {
		res.Verdict = v
	}
	return stop
}

// verdictOf finds a spam verdict among a milter's changes, as apply would.
func verdictOf(mods []gomilter.ModifyAction) (junk bool, reason string) {
	for _, ma := range mods {
		switch ma.Type {
		case gomilter.ActionQuarantine:
			return true, "quarantine: " + sanitize(ma.Reason, 200)
		case gomilter.ActionAddHeader, gomilter.ActionInsertHeader, gomilter.ActionChangeHeader:
			if ma.HeaderValue != "" && isSpamFlag(ma.HeaderName, ma.HeaderValue) {
				return true, sanitize(ma.HeaderName+": "+strings.TrimSpace(ma.HeaderValue), 64)
			}
		}
	}
	return false, ""
}

// isSpamFlag: the spam verdict headers of rspamd (X-Spam: Yes) and
// SpamAssassin's milters (X-Spam-Flag: YES).
func isSpamFlag(name, value string) bool {
	if !strings.EqualFold(name, "X-Spam") && !strings.EqualFold(name, "X-Spam-Flag") {
		return false
	}
	v := strings.ToLower(strings.TrimSpace(value))
	return v == "yes" || strings.HasPrefix(v, "yes ") || strings.HasPrefix(v, "yes,")
}

// unbracket removes the angle brackets of a milter's address.
func unbracket(a string) string {
	a = strings.TrimSpace(a)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		return a[1 : len(a)-1]
	}
	return a
}

// action handles a milter's answer before the end of the message. stop
// says the caller must answer v now.
func (s *Session) action(mc *mconn, stage string, act *gomilter.Action) (Verdict, bool) {
	switch act.Type {
	case gomilter.ActionAccept:
		mc.txDone = true
	case gomilter.ActionDiscard:
		// At MAIL or RCPT too it means the whole message (libmilter's
		// SMFIS_DISCARD); the milter hears no more of it.
		s.discard = true
		mc.txDone = true
		s.log.Info("milter discards the message", "milter", mc.f.cfg.Address, "stage", stage)
		if stage != "mail" && stage != "rcpt" {
			return Verdict{Discard: true, Milter: mc.f.cfg.Address}, true
		}
	case gomilter.ActionReject, gomilter.ActionTempFail, gomilter.ActionRejectWithCode:
		r := parseReply(act)
		s.log.Info("milter refused", "milter", mc.f.cfg.Address, "stage", stage, "reply", r.String())
		return Verdict{Reply: r, Milter: mc.f.cfg.Address}, true
	}
	return Verdict{}, false
}

// failed applies mc's failure policy: the connection is closed (the next
// transaction dials again) and the policy answers for this transaction.
func (s *Session) failed(mc *mconn, stage string, err error) (Verdict, bool) {
	mc.f.failed(stage, err)
	s.close(mc)
	if mc.f.cfg.DefaultAction == Accept {
		mc.txDone = true
		return Verdict{}, false
	}
	mc.txFailed = true
	r := mc.f.cfg.DefaultAction.reply()
	// Debug: the state change is logged once by filter.failed, and the
	// caller logs the reply of each transaction.
	s.log.Debug("milter failed: default action", "milter", mc.f.cfg.Address, "stage", stage,
		"default_action", mc.f.cfg.DefaultAction.String(), "err", err)
	return Verdict{Reply: r, Milter: mc.f.cfg.Address}, true
}

// Abort ends the transaction (RSET, a refused DATA, a new MAIL).
func (s *Session) Abort() {
	if !s.Active() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endTx()
}

func (s *Session) endTx() {
	s.discard = false
	for _, mc := range s.conns {
		if mc.inTx {
			s.abort(mc)
		}
		mc.txDone, mc.txFailed = false, false
	}
}

func (s *Session) abort(mc *mconn) {
	mc.inTx = false
	if mc.cs == nil {
		return
	}
	s.deadline(mc, mc.f.cfg.CommandTimeout)
	if err := mc.cs.Abort(nil); err != nil {
		mc.f.failed("abort", err)
		s.close(mc)
	}
}

// Close ends the milters' sessions (QUIT, STARTTLS, a lost connection).
func (s *Session) Close() {
	if !s.Active() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, mc := range s.conns {
		s.close(mc)
	}
}

func (s *Session) close(mc *mconn) {
	if mc.cs == nil {
		return
	}
	s.deadline(mc, time.Second)
	_ = mc.cs.Close()
	mc.cs, mc.nc, mc.pc, mc.inTx = nil, nil, nil, false
}

func (s *Session) deadline(mc *mconn, d time.Duration) {
	if mc.nc != nil {
		_ = mc.nc.SetDeadline(time.Now().Add(d))
	}
}

// parseReply turns a milter's action into a reply: its own
// (SMFIR_REPLYCODE, maybe several lines) or the protocol's default.
func parseReply(act *gomilter.Action) *Reply {
	switch act.Type {
	case gomilter.ActionReject:
		return &Reply{Code: 550, Status: "5.7.1", Text: "Command rejected"}
	case gomilter.ActionTempFail:
		return &Reply{Code: 451, Status: "4.7.1", Text: "Service unavailable - try again later"}
	}
	code := int(act.SMTPCode)
	r := &Reply{Code: code}
	var texts []string
	for _, line := range strings.Split(strings.ReplaceAll(act.SMTPReply, "\r\n", "\n"), "\n") {
		if len(line) >= 4 && (line[3] == ' ' || line[3] == '-') {
			line = line[4:]
		} else if len(line) == 3 {
			line = ""
		}
		if st, rest, ok := strings.Cut(line, " "); ok && isStatus(st, code) {
			if r.Status == "" {
				r.Status = st
			}
			line = rest
		} else if isStatus(line, code) {
			if r.Status == "" {
				r.Status = line
			}
			line = ""
		}
		if line = strings.TrimSpace(line); line != "" {
			texts = append(texts, line)
		}
	}
	if r.Status == "" {
		r.Status = string(rune('0'+code/100)) + ".7.1"
	}
	r.Text = sanitize(strings.Join(texts, " "), 400)
	if r.Text == "" {
		r.Text = "Command rejected"
		if code < 500 {
			r.Text = "Service unavailable - try again later"
		}
	}
	return r
}

// isStatus: an RFC 3463 code whose class matches the reply code.
func isStatus(s string, code int) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || parts[0][0] != byte('0'+code/100) {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// sanitize keeps printable ASCII, bounded.
func sanitize(v string, n int) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if b.Len() >= n {
			b.WriteString("...")
			break
		}
		c := v[i]
		if c < 0x20 || c >= 0x7f {
			c = '?'
		}
		b.WriteByte(c)
	}
	return b.String()
}
