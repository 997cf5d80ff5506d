package queue

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"courriel/internal/sevenbit"
)

type outcome int

const (
	outInterrupted outcome = iota // shutdown cut it short: nothing is recorded
	outSent
	outDeferred
	outBounced
	// outPostponed: not tried, its destination could take no session
	// now and enough jobs wait for it; nothing is recorded and the
	// message is taken again after postponeDelay.
	outPostponed
	// outUnsent: its RCPT was accepted, but the transaction, one for
	// all its recipients or none (group.whole), stopped before DATA
	// because another was refused: nothing was sent, nothing is
	// recorded (no attempt, so no XRETRY), the copy is due as it was.
	outUnsent
)

// result is the outcome of one attempt for one recipient.
type result struct {
	out       outcome
	code      int
	reply     string // printable reply or error
	status    string // RFC 3463
	relay     string // "host[ip]:port" or ""
	remoteMTA string
	tls       string // the TLS policy of the session, for the log
	soon      bool   // deferred: retry at NodeRetry, not the usual backoff
	// dsnPassed: sent to a next hop that offers DSN, with the recipient's
	// NOTIFY and ORCPT; a success to report is then its job.
	dsnPassed bool
	// rcptLimit: a 452 to this recipient's RCPT, the server's limit of
	// recipients per transaction: it goes in the next one at once.
	rcptLimit bool
	// unknown: the final dot was sent and no reply came (the connection
	// lost, or cut by the shutdown's deadline): the server may have the
	// message. It is an attempt even in a shutdown (interrupted), so a
	// node copy's retry says XRETRY.
	unknown bool
}

func failResult(f *failure) result {
	out := outDeferred
	switch {
	case f.postpone:
		out = outPostponed
	case f.perm:
		out = outBounced
	}
	return result{out: out, code: f.code, reply: f.text, status: f.status, relay: f.relay, remoteMTA: f.remoteMTA}
}

// group is the due recipients of a message that share a route, delivered
// over one connection.
type group struct {
	rt    route
	rcpts []int // indices into Message.Recipients
	// whole: the message goes to every recipient or to none, in one
	// transaction of at most rcptsPerTransaction RCPTs: DATA is sent
	// only once each RCPT got 2xx (HandOver's, which must not leave a
	// copy over there when it then queues the rest here).
	whole bool
}

// groups collects the pending recipients due at now by route, in the order
// they first appear in the envelope.
func (q *Queue) groups(m *Message, now time.Time) []group {
	var out []group
	pos := map[string]int{}
	for i, r := range m.Recipients {
		if r.State != StatePending || r.NextAttempt.After(now) {
			continue
		}
		rt := localRoute
		switch {
		case r.Local == nil:
			rt = q.routeFor(domainOf(r.Addr))
		case r.Node != "":
			rt = q.nodeRoute(r.Node)
		}
		j, ok := pos[rt.key]
		if !ok {
			j = len(out)
			pos[rt.key] = j
			out = append(out, group{rt: rt})
		}
		out[j].rcpts = append(out[j].rcpts, i)
	}
	return out
}

// deliverGroup delivers a group on a session to its route: an idle one
// from the connection cache, or a new one. A cached session that the server
// closed while it was idle is replaced by a new one, once, without the
// failure counting as an attempt: nothing was sent on it.
func (q *Queue) deliverGroup(ctx context.Context, m *Message, g group, data *os.File) []result {
	res, _ := q.sendGroup(ctx, m, g, data, nil)
	return interrupted(ctx, res)
}

// sendGroup is deliverGroup without the shutdown rule. reached says a
// session was had, so that something may have been delivered. With hook,
// it is called around each transaction with the session (before: true;
// after: false), to bind the session to the caller's own deadline.
func (q *Queue) sendGroup(ctx context.Context, m *Message, g group, data io.ReadSeeker, hook func(s *session, before bool)) (res []result, reached bool) {
	res = make([]result, len(g.rcpts))
	fresh := false
	for {
		s, f := q.session(ctx, m.ID, g.rt, fresh)
		if f != nil {
			for i := range res {
				res[i] = failResult(f)
			}
			return res, reached
		}
		if hook != nil {
			hook(s, true)
		}
		s.cutBy = cutContext(ctx)
		broken := q.transact(s, m, g, data, res)
		if hook != nil {
			hook(s, false)
		}
		// A stale session had nothing sent on it: res is untouched.
		reached = reached || broken == nil || !broken.stale
		if broken != nil && broken.stale && !fresh && ctx.Err() == nil {
			q.logFor(m).Debug("cached connection lost, opening a new one", "relay", s.relay, "reason", broken.text)
			q.conns.put(g.rt.key, s, false)
			fresh = true
			continue
		}
		after := s.after // read before put: another job may take s then
		q.conns.put(g.rt.key, s, broken == nil && ctx.Err() == nil)
		if !g.whole && g.rt.node == "" && ctx.Err() == nil {
			q.nextHost(ctx, m, g, data, res, after)
		}
		return res, reached
	}
}

// nextHost gives the recipients a route's host deferred with a 4xx reply
// (greylisting, an overloaded or full primary MX) a second chance at
// once on the hosts after it (after, its session's), as Postfix's smtp(8)
// leaves a recipient that a server other than the last one deferred for
// the next MX host, within one delivery (smtp_mx_session_limit: two
// sessions). Without it such a host kept the message from a backup MX
// that takes it until the message expired. Only what the server
// answered: a copy whose data went without its reply (unknown) may have
// been delivered, and is never sent elsewhere. The second session is not
// cached, so that later messages go to the preferred host again; when
// there is no other host, or it cannot be reached, the first host's
// answers stand, and the destination, which answered, is not dead.
func (q *Queue) nextHost(ctx context.Context, m *Message, g group, data io.ReadSeeker, res []result, after *hopsAfter) {
	var soft []int // positions in g.rcpts
	for i, r := range res {
		if r.out == outDeferred && r.code/100 == 4 && !r.unknown {
			soft = append(soft, i)
		}
	}
	if len(soft) == 0 || after == nil || len(after.hops) == 0 || g.rt.nexthop.Host != "" && !g.rt.nexthop.MX {
		// Nothing after the host (the last MX host, an address
		// literal), or "[host]" (a relayhost, as a rule): one host,
		// whose other addresses, if any, are not worth a wait for a
		// session slot.
		return
	}
	// Not parked when the destination is busy: this job is not
	// postponed, it ends with the first host's answers.
	_, probe, f := q.conns.get(ctx, m.ID, g.rt.key, true, false)
	if f != nil {
		return // dead, busy or shutting down: the answers stand
	}
	s, f, _ := q.tryHops(ctx, m.ID, g.rt, after.hops, q.domainTLS(ctx, g.rt), after.best)
	if f != nil {
		f.dead = false
	}
	q.conns.dialed(g.rt.key, probe, s, f)
	if s == nil {
		q.logFor(m).Debug("no other host to try for the recipients deferred", "reason", f.text)
		return
	}
	sub := group{rt: g.rt}
	for _, i := range soft {
		sub.rcpts = append(sub.rcpts, g.rcpts[i])
	}
	subRes := make([]result, len(soft))
	s.cutBy = cutContext(ctx)
	q.transact(s, m, sub, data, subRes)
	q.conns.release(g.rt.key, s)
	for k, i := range soft {
		if subRes[k] != (result{}) {
			res[i] = subRes[k]
		}
	}
}

// session returns a session to a route: a cached one (unless fresh), or a
// new one when the destination's connection limit allows, or the failure
// to record (the destination is dead, or no host would talk).
func (q *Queue) session(ctx context.Context, id string, rt route, fresh bool) (*session, *failure) {
	s, probe, f := q.conns.get(ctx, id, rt.key, fresh, true)
	if s != nil || f != nil {
		return s, f
	}
	s, f = q.open(ctx, id, rt)
	f = q.relayhostProblem(id, rt, f)
	q.conns.dialed(rt.key, probe, s, f)
	return s, f
}

// open tries the route's hosts in turn until one accepts a session. The
// failure returned is the last host's, marked dead when no host could be
// reached at all (as opposed to a DNS, TLS or AUTH problem).
func (q *Queue) open(ctx context.Context, id string, rt route) (*session, *failure) {
	hops, f := q.resolve(ctx, rt)
	if f != nil {
		return nil, f
	}
	dp := q.domainTLS(ctx, rt)
	s, f, refused := q.tryHops(ctx, id, rt, hops, dp, bestHost{})
	if s != nil || !refused || dp.sts == nil || ctx.Err() != nil {
		return s, f
	}
	// RFC 8461 §5.1: an enforced policy refused every host; the domain
	// may have changed its MX hosts and its policy before our cache
	// noticed, so the policy host is asked again (rate-limited by the
	// cache) and a different policy gets one more pass over the hosts.
	res := q.o.MTASTS.Refetch(ctx, rt.domain)
	if res.Cached || res.Policy == nil && res.Err != nil {
		return nil, f
	}
	np := q.stsPlan(rt, res)
	if slices.Equal(np.strings, dp.strings) && np.level == dp.level {
		return nil, f
	}
	q.log.Info("MTA-STS policy updated after it refused every MX host, trying again", "queue_id", id, "domain", rt.domain, "tls", np.why)
	s, f, _ = q.tryHops(ctx, id, rt, hops, np, bestHost{})
	return s, f
}

// bestHost is the preference of the first host with addresses of a pass
// over a route's hosts (found: there was one), which the loop checks
// compare the others against.
type bestHost struct {
	pref  uint16
	found bool
}

// hopsAfter is what is left of the pass over a route's hosts (tryHops)
// that found a session: the hosts and addresses after the session's, in
// that pass's order, for nextHost; and the pass's best host. A new
// lookup would not do: the MX hosts of one preference are shuffled at
// each (resolveMX), and the DNS may rotate a host's addresses, so the
// host used could come last in the new order, leaving nothing after it
// (the recipients it deferred then waited for the retry, half the time
// with two MX hosts of one preference). The addresses of a host the pass
// looked up are kept (hop.known), with their DNSSEC state for DANE.
type hopsAfter struct {
	hops []hop
	best bestHost
}

// tryHops tries the hosts in turn under the domain's TLS plan. best is
// the best host of an earlier pass when hops is what it left
// (hopsAfter), zero for a first pass. refused says that every host
// failed because of the plan's MTA-STS policy (not listed, or its TLS
// requirements not met), none because it was down. A session it returns
// has the hosts after its own (session.after).
func (q *Queue) tryHops(ctx context.Context, id string, rt route, hops []hop, dp tlsPlan, best bestHost) (*session, *failure, bool) {
	last := tempFailure("4.4.1", "no host to try")
	tried, dead := 0, true
	sawTemp := false // a host failed for now: no failure of another bounces
	refused := dp.sts != nil && !dp.testing
	// Looking for this host among the MX hosts (loop.go), the addresses
	// of all the hosts of one preference are looked up before any is
	// tried: when one is ours, none of them is.
	var look []looked
	if len(q.o.self) > 0 && len(hops) > 0 && hops[0].loopDetect() {
		look = make([]looked, len(hops))
	}
	bestFound, found := best.pref, best.found // the preference of the first host with addresses
	for i, h := range hops {
		h.dest = loopDest(rt)
		var ips []netip.Addr
		var ad addrDNS
		var f *failure
		if look != nil {
			if (i == 0 || hops[i-1].pref != h.pref) && q.lookLevel(ctx, hops, i, look) {
				if !found {
					// No host preferred to us has an address.
					return nil, selfFailure(h, hops[0].pref), false
				}
				q.log.Debug("this host is an MX host: it and those not preferred to it are not tried", "queue_id", id, "mx", h.name, "pref", h.pref)
				break
			}
			ips, ad, f = look[i].ips, look[i].ad, look[i].f
		} else {
			ips, ad, f = q.addrs(ctx, h)
		}
		if f != nil {
			last, dead, refused = f, false, false
			sawTemp = sawTemp || !f.perm
			continue
		}
		if !found {
			bestFound, found = h.pref, true
		}
		h.bestMX = h.pref == bestFound
		plan, f := q.hopTLS(ctx, rt, dp, h, ad)
		if f != nil {
			q.log.Info("host not used under the receiver's TLS policy", "queue_id", id, "mx", h.name, "reason", f.text)
			last, dead = f, false
			sawTemp = sawTemp || !f.perm
			refused = refused && plan.sts != nil && strings.HasPrefix(f.text, "MX host ") // not a DANE lookup failure
			continue
		}
		for k, ip := range ips {
			if tried == maxAddressesTried || ctx.Err() != nil {
				break
			}
			tried++
			s, f := q.connect(ctx, h, ip, plan)
			if f == nil {
				s.after = remainingHops(hops, i, ips[k+1:], ad, look, bestHost{bestFound, true})
				return s, nil, false
			}
			if f.loop {
				return nil, f, false // the best MX host is us: no other is tried
			}
			q.log.Debug("host failed, trying the next", "queue_id", id, "relay", f.relay, "reason", f.text)
			last, dead = f, dead && f.dead
			sawTemp = sawTemp || !f.perm
			refused = refused && plan.sts != nil && strings.HasPrefix(f.status, "4.7.")
		}
	}
	if last.perm && sawTemp {
		last = last.asTemporary()
	}
	// A deadline that ran out while no host answered (a hand-over to a
	// node that hangs) finds the destination dead too; a cancellation
	// (shutdown, the client gone) says nothing of it.
	last.dead = dead && tried > 0 && (ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded))
	return nil, last, refused
}

// remainingHops is what a pass over hops leaves when it found a session
// at hops[i], at the address before rest (hopsAfter): the rest of that
// host's addresses, then the hosts after it, as Postfix's smtp(8) goes
// down its list; those before it failed already, or were not needed.
// The addresses the pass looked up (look: those of a preference level,
// for the loop check) are kept, so that the loop check finds what it
// found.
func remainingHops(hops []hop, i int, rest []netip.Addr, ad addrDNS, look []looked, best bestHost) *hopsAfter {
	after := &hopsAfter{best: best}
	if len(rest) > 0 {
		h := hops[i]
		h.known = &looked{ips: rest, ad: ad}
		after.hops = append(after.hops, h)
	}
	for j := i + 1; j < len(hops); j++ {
		h := hops[j]
		if look != nil && (look[j].ips != nil || look[j].f != nil) {
			h.known = &look[j]
		}
		after.hops = append(after.hops, h)
	}
	return after
}

// interrupted turns the failures that are not a server's answer into
// "interrupted" when the queue is shutting down, so they are neither counted
// as an attempt nor bounced: they are simply retried after the restart.
func interrupted(ctx context.Context, res []result) []result {
	if ctx.Err() == nil {
		return res
	}
	for i := range res {
		if res[i].out != outSent && res[i].code == 0 && !res[i].unknown {
			res[i].out = outInterrupted
		}
	}
	return res
}

// transact sends the message to the group's recipients on one session, at
// most rcptsPerTransaction RCPTs per transaction. It returns a failure when
// the connection is no longer usable; a stale one (a cached session found
// dead before anything was sent on it) leaves res untouched. A whole group
// (group.whole) has one transaction, and no second for the RCPTs a
// recipient limit deferred: nothing was sent to the others.
func (q *Queue) transact(s *session, m *Message, g group, data io.ReadSeeker, res []result) *failure {
	utf8 := m.SMTPUTF8 || !isASCII(m.From)
	for _, idx := range g.rcpts {
		utf8 = utf8 || !isASCII(m.Recipients[idx].Addr)
	}
	if utf8 && !s.smtputf8 {
		f := permFailure("5.6.7", "SMTPUTF8 is required, but was not offered by host "+s.relay)
		for i := range res {
			res[i] = s.failed(f)
		}
		return nil
	}
	// The size sent: the message, and on top of it the forwards' trace
	// for a copy that leaves (sendData).
	size := m.Size + int64(len(remoteHeader(m, g)))
	if s.sizeLimit > 0 && size > s.sizeLimit {
		// RFC 1870 §6.1: the server said it takes nothing this large;
		// sending it anyway would only have the data refused at the
		// final dot, after the whole transfer. Postfix's smtp(8)
		// bounces such a message before MAIL (smtp_xfer), a failure of
		// this host's own (no reply code). Checked per message, since a
		// cached session carries the next one.
		f := permFailure("5.3.4", fmt.Sprintf("message size %d exceeds size limit %d of server %s", size, s.sizeLimit, s.relay))
		for i := range res {
			res[i] = s.failed(f)
		}
		return nil
	}
	declared := int64(0) // SIZE= in MAIL; 0: none
	if s.size {
		declared = size
	}
	if !s.eightBit {
		// RFC 6152 §3: 8-bit content goes to a server without 8BITMIME
		// converted to quoted-printable, as Postfix converts it.
		if _, err := data.Seek(0, io.SeekStart); err == nil {
			if raw, err := io.ReadAll(io.LimitReader(data, m.Size+traceAllowance)); err == nil {
				if conv, changed := sevenbit.Downgrade(raw); changed {
					data = bytes.NewReader(conv)
					// The converted body is larger than the
					// message's size, so it is not declared, as
					// Postfix declares none when it downgrades
					// (smtp_proto.c smtp_loop, SMTP_STATE_MAIL:
					// SIZE only if !SMTP_MIME_DOWNGRADE): a server
					// near its limit took the MAIL, then refused
					// the data or cut it short as larger than said.
					declared = 0
				}
			}
		}
	}
	var broken *failure
	for lo := 0; lo < len(g.rcpts); lo += rcptsPerTransaction {
		hi := min(lo+rcptsPerTransaction, len(g.rcpts))
		if broken != nil {
			for i := lo; i < hi; i++ {
				res[i] = s.failed(broken)
			}
			continue
		}
		broken = q.transaction(s, m, g, lo, hi, data, res, utf8, declared)
		if broken != nil && broken.stale {
			return broken
		}
	}
	// RFC 5321 §4.5.3.1.10: a server past its RCPT limit answers 452 to
	// the rest; they go in the next transaction now, not at the next retry
	// minutes later, for as long as each transaction takes some.
	for prev := len(g.rcpts) + 1; broken == nil && !g.whole; {
		var again []int // positions in g.rcpts
		for i := range res {
			if res[i].rcptLimit && res[i].out != outSent {
				again = append(again, i)
			}
		}
		if len(again) == 0 || len(again) >= prev {
			break
		}
		prev = len(again)
		sub := group{rt: g.rt}
		for _, i := range again {
			sub.rcpts = append(sub.rcpts, g.rcpts[i])
		}
		subRes := make([]result, len(again))
		for lo := 0; lo < len(sub.rcpts) && broken == nil; lo += rcptsPerTransaction {
			broken = q.transaction(s, m, sub, lo, min(lo+rcptsPerTransaction, len(sub.rcpts)), data, subRes, utf8, declared)
		}
		for k, i := range again {
			if subRes[k] != (result{}) {
				res[i] = subRes[k]
			}
		}
	}
	return broken
}

// transaction is one MAIL, its RCPTs and DATA for res[lo:hi], preceded by
// RSET when the session was idle in the cache or the last transaction
// stopped early. With PIPELINING (RFC 2920) every command up to DATA goes
// in one write and the replies are read in order, each RCPT's for its
// recipient; without, each command waits for the reply to the previous.
// For a whole group (group.whole) DATA waits for the RCPTs' replies, even
// pipelined (RFC 2920 §3.1 lets it come alone), and is not sent unless
// every one is 2xx: then the accepted ones are outUnsent, and the session,
// its transaction ended by the RSET that precedes the next, stays usable.
// declared is the size MAIL declares (SIZE=, RFC 1870), 0 for none.
func (q *Queue) transaction(s *session, m *Message, g group, lo, hi int, data io.ReadSeeker, res []result, utf8 bool, declared int64) *failure {
	n := hi - lo
	decided := make([]bool, n)
	set := func(k int, f *failure) {
		res[lo+k], decided[k] = s.failed(f), true
	}
	// breakAll ends a transaction on a connection that is lost or closing:
	// every recipient without an outcome yet gets f.
	breakAll := func(f *failure) *failure {
		s.closing = true
		for k := range n {
			if !decided[k] {
				set(k, f)
			}
		}
		return f
	}
	lost := func(what string, err error) *failure {
		return breakAll(tempFailure("4.4.2", what+" "+s.relay+": "+err.Error()))
	}
	refused := func(what string, code int, text string) *failure {
		return replyFailure(replyError(code, text), what+" "+s.relay, "4.4.2")
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		f := tempFailure("4.3.0", "reading the queue file: "+err.Error())
		for k := range n {
			set(k, f)
		}
		return nil
	}

	mail := "MAIL FROM:<" + m.From + ">"
	if s.eightBit {
		mail += " BODY=8BITMIME"
	}
	if declared > 0 {
		mail += " SIZE=" + strconv.FormatInt(declared, 10)
	}
	if utf8 {
		mail += " SMTPUTF8"
	}
	rcpt := func(k int) string { return "RCPT TO:<" + m.Recipients[g.rcpts[lo+k]].Addr + ">" }
	// RFC 3461: the DSN parameters go on to a next hop that offers DSN;
	// to a node of ours only when its cluster listener offers XDSN, in
	// its own form (the success of a node copy is reported from here).
	dsn := s.dsn && g.rt.node == ""
	if dsn {
		mail += dsnMailParams(m)
		rcpt = func(k int) string {
			r := &m.Recipients[g.rcpts[lo+k]]
			return "RCPT TO:<" + r.Addr + ">" + dsnRcptParams(r)
		}
	}
	if g.rt.node != "" {
		idx := g.rcpts[lo:hi]
		mail += nodeMailParams(m, idx)
		rcpt = func(k int) string { return nodeRcpt(&m.Recipients[idx[k]], copyKey(m.ID, idx[k])) }
		if s.xdsn {
			// The home node queues a copy it cannot store at once and
			// reports its failure itself: it gets the parameters that
			// decide that report (nodeDSNRcptParams).
			mail += dsnMailParams(m)
			rcpt = func(k int) string {
				r := &m.Recipients[idx[k]]
				return nodeRcpt(r, copyKey(m.ID, idx[k])) + nodeDSNRcptParams(r)
			}
		}
	}
	reset := s.reused || s.dirty
	pipeData := s.pipelining && !g.whole // DATA goes with the group
	if s.pipelining {
		if reset {
			s.send("RSET")
		}
		s.send(mail)
		for k := range n {
			s.send(rcpt(k))
		}
		if pipeData {
			s.send("DATA")
		}
	}
	// step reads the reply to the next command, sending it first unless
	// it went with the pipelined group.
	step := func(line string) (int, string, error) {
		if !s.pipelining || line == "DATA" && !pipeData {
			s.send(line)
		}
		return s.reply()
	}
	// owed is how many replies of the pipelined group are still unread
	// when the transaction stops before its data: left counts DATA's.
	owed := func(left int) int {
		switch {
		case !s.pipelining:
			return 0
		case !pipeData:
			return left - 1
		}
		return left
	}

	if reset {
		// Bounded as Postfix's RSET probe (smtp_reuse.c
		// smtp_reuse_common, smtp_rset_timeout): a cached session
		// whose server went silent is given up after seconds, not
		// the command timeout, and the message takes a new one.
		if !s.pipelining {
			s.send("RSET")
		}
		code, text, err := s.replyWithin(s.rsetTimeout)
		if err != nil || code/100 != 2 {
			why := "RSET to " + s.relay + ": "
			if err != nil {
				why += err.Error()
			} else {
				why += strconv.Itoa(code) + " " + text
			}
			f := tempFailure("4.4.2", why)
			if s.reused {
				// Idle in the cache, it was closed by the server
				// (timeout, restart): nothing of this message was
				// delivered, so a new connection may try at once.
				s.closing, f.stale = true, true
				return f
			}
			return breakAll(f)
		}
		s.reused, s.dirty = false, false
	}
	// Until the final reply, a transaction that stops needs RSET.
	s.dirty = true

	code, text, err := step(mail)
	if err != nil {
		return lost("MAIL FROM to", err)
	}
	if code/100 != 2 {
		f := refused("MAIL FROM to", code, text)
		if code == 421 {
			return breakAll(f)
		}
		for k := range n {
			set(k, f)
		}
		return s.drain(owed(n+1), breakAll)
	}
	var accepted []int
	for k := range n {
		code, text, err := step(rcpt(k))
		if err != nil {
			return lost("RCPT TO to", err)
		}
		if code/100 == 2 {
			accepted = append(accepted, k)
			continue
		}
		f := refused("RCPT TO to", code, text)
		set(k, f)
		// Only a RCPT's 452 is a recipient limit (RFC 5321
		// §4.5.3.1.10); to MAIL or the final dot it is the server's
		// storage, and waits for the retry as any 4xx.
		res[lo+k].rcptLimit = code == 452
		if code == 421 {
			return breakAll(f)
		}
	}
	if len(accepted) == 0 {
		return s.drain(owed(1), breakAll)
	}
	if g.whole && len(accepted) < n {
		for _, k := range accepted {
			res[lo+k] = result{out: outUnsent, reply: "not sent: another recipient was refused", relay: s.relay, remoteMTA: s.remoteMTA}
		}
		return s.drain(owed(1), breakAll) // nothing owed: DATA was not sent
	}
	code, text, err = step("DATA")
	if err != nil {
		return lost("DATA to", err)
	}
	if code != 354 {
		f := refused("DATA to", code, text)
		if code == 421 || code/100 == 2 {
			// 2xx to DATA is not SMTP; the state is unknown.
			return breakAll(f)
		}
		for _, k := range accepted {
			set(k, f)
		}
		return nil
	}
	// From here a shutdown lets the transaction finish, within its
	// deadline (session.interrupt): cut after the final dot, the server
	// may keep the message and the retry would send it again.
	if !s.beginData() {
		return lost("DATA to", errShutdown)
	}
	code, text, dotSent, err := q.sendData(s, m, g, data)
	if cut := s.endData(); cut && err != nil && dotSent {
		err = errCutAfterDot
	}
	if err != nil && !dotSent {
		// No final dot may follow a partial copy: the caller drops the
		// connection, which makes the server discard the transaction.
		return lost("sending the message to", err)
	}
	if err != nil {
		f := lost("end of DATA to", err)
		for _, k := range accepted {
			res[lo+k].unknown = true
		}
		return f
	}
	s.dirty = false
	if code/100 != 2 {
		f := refused("end of DATA to", code, text)
		for _, k := range accepted {
			set(k, f)
		}
		switch {
		case code == 421:
			return breakAll(f)
		case s.closing:
			// The refusal came before the end of the data, and the
			// server hung up (premature): the next transactions'
			// recipients were not refused, only not sent.
			return breakAll(tempFailure("4.4.2", "connection closed by "+s.relay+" during the data"))
		}
		return nil
	}
	reply := printable(strconv.Itoa(code)+" "+text, maxReplyText)
	status := "2.0.0"
	if first, _, _ := strings.Cut(text, " "); strings.HasPrefix(first, "2.") && len(first) <= 9 {
		status = first
	}
	for _, k := range accepted {
		res[lo+k] = result{out: outSent, code: code, reply: reply, status: status, relay: s.relay, remoteMTA: s.remoteMTA, tls: s.tlsSummary(), dsnPassed: dsn}
	}
	return nil
}

// errShutdown is why a transaction stopped before its data in a
// shutdown; errCutAfterDot why one stopped after its final dot without
// the reply: the shutdown's deadline (or a hand-over's time) came first.
var (
	errShutdown    = errors.New("delivery interrupted by shutdown")
	errCutAfterDot = errors.New("cut short before the reply to the end of the data (shutdown deadline or time limit): the message may have been delivered")
)

// sendData sends a transaction's data after the 354 and reads the reply
// to its final dot; dotSent says the final dot went.
func (q *Queue) sendData(s *session, m *Message, g group, data io.Reader) (code int, text string, dotSent bool, err error) {
	// The data may take long on a slow link: bound it by its size, so a
	// server that reads slowly cannot hold the slot forever; and each
	// write by DataTimeout, so that one that stops reading (a tarpit, a
	// hung filter) is given up after minutes, as Postfix's
	// smtp_data_xfer_timeout, not after the hours the bound gives a
	// large message. The buffer is empty: DATA went with its reply.
	end := time.Now().Add(s.cmdTimeout + time.Duration(m.Size/1024)*time.Second)
	s.conn.SetDeadline(end)
	sw := &stallWriter{conn: s.conn, stall: s.dataTimeout, end: end}
	s.w.Reset(sw)
	defer s.w.Reset(s.conn) // empty once the dot went; else the session is lost
	dw := textproto.NewWriter(s.w).DotWriter()
	src := io.MultiReader(strings.NewReader(remoteHeader(m, g)), data)
	_, err = io.Copy(dw, src)
	if err == nil {
		err = dw.Close()
	}
	if err != nil {
		if sw.err != nil && !isTimeout(sw.err) {
			return s.premature(err)
		}
		return 0, "", false, err
	}
	// RFC 5321 §4.5.3.2.6: 10 minutes for the reply to the final dot.
	code, text, err = s.replyWithin(max(s.cmdTimeout, 10*time.Minute))
	return code, text, true, err
}

// prematureWait bounds the wait for a reply the server sent before the
// end of the data, once a write failed (premature).
const prematureWait = 10 * time.Second

// premature reads, after a write of the data failed (the server closed
// the connection), the reply the server may have sent before it closed:
// a server that refuses a message while it comes in (too large, a virus)
// may say so at once and hang up, instead of reading to the final dot.
// Postfix's smtp(8) looks for such a reply too, and reports it as the
// reply to the data: a refusal, 552 for a message too large, bounces
// then, where the write error alone deferred the message, to be sent
// whole again at every retry until it expired. The final dot was not
// sent, so nothing was delivered. Without a refusal, werr stands.
func (s *session) premature(werr error) (code int, text string, dotSent bool, err error) {
	s.closing = true
	s.conn.SetReadDeadline(time.Now().Add(min(s.cmdTimeout, prematureWait)))
	code, text, err = s.readReply()
	if err != nil || code/100 != 4 && code/100 != 5 {
		return 0, "", false, werr
	}
	return code, text, false, nil
}

// stallWriter writes to a connection, each write within stall (and
// before end): the data of a transaction (sendData). err is the first
// write error.
type stallWriter struct {
	conn  net.Conn
	stall time.Duration
	end   time.Time
	err   error
}

func (w *stallWriter) Write(p []byte) (int, error) {
	d := w.end
	if t := time.Now().Add(w.stall); w.stall > 0 && t.Before(d) {
		d = t
	}
	w.conn.SetWriteDeadline(d)
	n, err := w.conn.Write(p)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// drain reads the replies still owed by a pipelined transaction that stops
// before its data, the reply to DATA last. A server that says 354 anyway
// is hung up on: even an empty message must not be sent where no recipient
// was accepted, and without the final dot the server discards it. A lost
// connection is passed to breakAll.
func (s *session) drain(owed int, breakAll func(*failure) *failure) *failure {
	for ; owed > 0; owed-- {
		code, _, err := s.reply()
		switch {
		case err != nil:
			return breakAll(tempFailure("4.4.2", "reading the replies of "+s.relay+": "+err.Error()))
		case code == 421:
			return breakAll(tempFailure("4.4.2", "connection closed by "+s.relay))
		case owed == 1 && code == 354:
			return breakAll(tempFailure("4.4.2", s.relay+" accepted DATA without a recipient"))
		}
	}
	return nil
}

// failed stamps a failure with the session's host.
func (s *session) failed(f *failure) result {
	r := failResult(f)
	r.relay, r.remoteMTA = s.relay, s.remoteMTA
	return r
}

// tlsSummary is what the delivery log line says of the session's TLS.
func (s *session) tlsSummary() string {
	if !s.tls {
		return "none (" + s.tlsWhy + ")"
	}
	st := s.conn.(interface{ ConnectionState() tls.ConnectionState }).ConnectionState()
	return tls.VersionName(st.Version) + " (" + s.tlsWhy + ")"
}

// remoteHeader is what goes on top of m's copies for g: the forwards'
// trace (Message.RemoteHeader), for the copies that leave only, not those
// handed to a cluster node, which stores them here.
func remoteHeader(m *Message, g group) string {
	if g.rt.node != "" {
		return ""
	}
	return m.RemoteHeader
}
