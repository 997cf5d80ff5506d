package queue

import (
	"context"
	"io"
	"os"
	"strings"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

type outcome int

const (
	outInterrupted outcome = iota // shutdown cut it short: nothing is recorded
	outSent
	outDeferred
	outBounced
)

// result is the outcome of one attempt for one recipient.
type result struct {
	out       outcome
	code      int
	reply     string // printable reply or error
	status    string // RFC 3463
	relay     string // "host[ip]:port" or ""
	remoteMTA string
}

func failResult(f *failure) result {
	out := outDeferred
	if f.perm {
		out = outBounced
	}
	return result{out: out, code: f.code, reply: f.text, status: f.status, relay: f.relay, remoteMTA: f.remoteMTA}
}

// group is the due recipients of a message that share a route, delivered
// over one connection.
type group struct {
	rt    route
	rcpts []int // indices into Message.Recipients
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
		if r.Local == nil {
			rt = q.routeFor(domainOf(r.Addr))
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

// deliverGroup tries the route's hosts in turn until one accepts a session,
// then runs the transactions for the whole group on it.
func (q *Queue) deliverGroup(ctx context.Context, m *Message, g group, data *os.File) []result {
	res := make([]result, len(g.rcpts))
	setAll := func(f *failure) {
		for i := range res {
			res[i] = failResult(f)
		}
	}
	hops, f := q.resolve(ctx, g.rt)
	if f != nil {
		setAll(f)
		return interrupted(ctx, res)
	}
	last := tempFailure("4.4.1", "no host to try")
	tried := 0
	for _, h := range hops {
		ips, f := q.addrs(ctx, h)
		if f != nil {
			last = f
			continue
		}
		for _, ip := range ips {
			if tried == maxAddressesTried || ctx.Err() != nil {
				break
			}
			tried++
			s, f := q.connect(ctx, h, ip)
			if f != nil {
				q.log.Debug("host failed, trying the next", "id", m.ID, "relay", f.relay, "reason", f.text)
				last = f
				continue
			}
			if broken := q.transact(s, m, g, data, res); broken != nil {
				s.abort()
			} else {
				s.close()
			}
			return interrupted(ctx, res)
		}
	}
	setAll(last)
	return interrupted(ctx, res)
}

// interrupted turns the failures that are not a server's answer into
// "interrupted" when the queue is shutting down, so they are neither counted
// as an attempt nor bounced: they are simply retried after the restart.
func interrupted(ctx context.Context, res []result) []result {
	if ctx.Err() == nil {
		return res
	}
	for i := range res {
		if res[i].out != outSent && res[i].code == 0 {
			res[i].out = outInterrupted
		}
	}
	return res
}

// transact sends the message to the group's recipients on one session, at
// most rcptsPerTransaction RCPTs per transaction. It returns a failure when
// the connection is no longer usable.
func (q *Queue) transact(s *session, m *Message, g group, data *os.File, res []result) *failure {
	utf8 := !isASCII(m.From)
	for _, idx := range g.rcpts {
		utf8 = utf8 || !isASCII(m.Recipients[idx].Addr)
	}
	if ok, _ := s.c.Extension("SMTPUTF8"); utf8 && !ok {
		f := permFailure("5.6.7", "SMTPUTF8 is required, but was not offered by host "+s.relay)
		for i := range res {
			res[i] = s.failed(f)
		}
		return nil
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
		broken = q.transaction(s, m, g, lo, hi, data, res, utf8)
	}
	return broken
}

// transaction is one MAIL, its RCPTs and DATA for res[lo:hi].
func (q *Queue) transaction(s *session, m *Message, g group, lo, hi int, data *os.File, res []result, utf8 bool) *failure {
	setAll := func(idx []int, f *failure) {
		for _, i := range idx {
			res[i] = s.failed(f)
		}
	}
	all := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		all = append(all, i)
	}
	if err := s.c.Mail(m.From, &gosmtp.MailOptions{Size: m.Size, UTF8: utf8}); err != nil {
		f := replyFailure(err, "MAIL FROM to "+s.relay, "4.4.2")
		setAll(all, f)
		return s.reset(err, f)
	}
	var accepted []int
	for n, i := range all {
		err := s.c.Rcpt(m.Recipients[g.rcpts[i]].Addr, nil)
		if err == nil {
			accepted = append(accepted, i)
			continue
		}
		f := replyFailure(err, "RCPT TO to "+s.relay, "4.4.2")
		res[i] = s.failed(f)
		if !isReply(err) {
			setAll(accepted, f)
			setAll(all[n+1:], f)
			return f
		}
	}
	if len(accepted) == 0 {
		return s.reset(nil, nil)
	}
	if _, err := data.Seek(0, io.SeekStart); err != nil {
		f := tempFailure("4.3.0", "reading the queue file: "+err.Error())
		setAll(accepted, f)
		return s.reset(nil, f)
	}
	w, err := s.c.Data()
	if err != nil {
		f := replyFailure(err, "DATA to "+s.relay, "4.4.2")
		setAll(accepted, f)
		return s.reset(err, f)
	}
	// go-smtp sets no deadline while the data is written: bound it, so a
	// server that stops reading cannot hold the slot forever.
	s.conn.SetWriteDeadline(time.Now().Add(q.o.CommandTimeout + time.Duration(m.Size/1024)*time.Second))
	_, err = io.Copy(w, data)
	s.conn.SetWriteDeadline(time.Time{})
	if err != nil {
		// No final dot may follow a partial copy: the caller drops the
		// connection, which makes the server discard the transaction.
		f := tempFailure("4.4.2", "sending the message to "+s.relay+": "+err.Error())
		setAll(accepted, f)
		return f
	}
	resp, err := w.CloseWithResponse()
	if err != nil {
		f := replyFailure(err, "end of DATA to "+s.relay, "4.4.2")
		setAll(accepted, f)
		if !isReply(err) {
			return f
		}
		return nil
	}
	text := printable("250 "+resp.StatusText, maxReplyText)
	status := "2.0.0"
	if first, _, _ := strings.Cut(resp.StatusText, " "); strings.HasPrefix(first, "2.") && len(first) <= 9 {
		status = first
	}
	for _, i := range accepted {
		res[i] = result{out: outSent, code: 250, reply: text, status: status, relay: s.relay, remoteMTA: s.remoteMTA}
	}
	return nil
}

// failed stamps a failure with the session's host.
func (s *session) failed(f *failure) result {
	r := failResult(f)
	r.relay, r.remoteMTA = s.relay, s.remoteMTA
	return r
}

// reset ends a transaction that will not reach DATA. It returns the failure
// that broke the connection, if any: cause when err is not a reply, or the
// RSET's own error.
func (s *session) reset(err error, cause *failure) *failure {
	if err != nil && !isReply(err) {
		return cause
	}
	if rerr := s.c.Reset(); rerr != nil && !isReply(rerr) {
		return tempFailure("4.4.2", "RSET to "+s.relay+": "+rerr.Error())
	}
	return nil
}

// abort drops a connection whose state is unknown, without QUIT.
func (s *session) abort() {
	s.stop()
	s.conn.Close()
}
