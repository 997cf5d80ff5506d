package filter

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"courriel/delivery"
	"courriel/sieve"
)

// RedirectedHeader marks a message a Sieve script redirected, with the
// user's address, as Pigeonhole does: a redirect of a message that already
// carries the user's mark is a loop, and is not made.
const RedirectedHeader = "X-Sieve-Redirected-From"

// hopLimit is the Received: count past which a message is not redirected
// any further (smtp refuses it at the next hop anyway).
const hopLimit = 50

// sideEffects queues the plan's redirects and vacation reply before its
// copies are stored (see doc.go). On a retry whose first copy an earlier
// attempt stored, they were queued then and are not queued again. A
// redirect that cannot be queued fails the recipient's delivery
// (temporarily: nothing was stored); a loop keeps to the INBOX instead.
func (f *Filter) sideEffects(ctx context.Context, m *delivery.Message, r *delivery.Recipient, p *plan) error {
	if len(p.redirects) == 0 && p.vacation == nil {
		return nil
	}
	if m.Retry && r.CopyKey != "" && len(p.stores) > 0 {
		if done, err := f.o.Store.Stored(m, p.stores[0]); err == nil && done {
			f.log.Info("sieve: redirects and replies were queued by an earlier attempt", "msg_id", m.ID, "to", r.Address)
			return nil
		}
	}
	if len(p.redirects) > 0 {
		if err := f.redirect(ctx, m, r, p); err != nil {
			return err
		}
	}
	if p.vacation != nil {
		f.vacation(ctx, m, r, p)
	}
	return nil
}

// redirect queues the message for the plan's redirect addresses, marked
// with RedirectedHeader and Delivered-To (which courriel's and Postfix's
// loop checks read), from the original sender (SRS-rewritten when
// configured, as alias forwards). A loop, too many hops or no queue keeps
// the copy in the INBOX instead.
func (f *Filter) redirect(ctx context.Context, m *delivery.Message, r *delivery.Recipient, p *plan) error {
	keep := func(why string) {
		f.log.Warn("sieve: redirect not made, message kept", "msg_id", m.ID, "to", r.Address, "reason", why)
		p.redirects = nil
		if len(p.stores) == 0 {
			c := *r
			c.NoCreate, c.Flags = false, nil
			p.stores = append(p.stores, c)
		}
	}
	msg, err := (&messageReader{m: m}).sieveMessage()
	if err != nil {
		return &delivery.Error{Temporary: true, Reason: "cannot read the message to redirect", Err: err}
	}
	for _, v := range msg.Header.Values(RedirectedHeader) {
		if strings.Contains(strings.ToLower(v), strings.ToLower(r.Address)) {
			keep("loop: the message was already redirected by this user")
			return nil
		}
	}
	if n := len(msg.Header.Values("Received")); n >= hopLimit {
		keep(fmt.Sprintf("too many hops (%d Received fields)", n))
		return nil
	}
	if f.o.Outbound == nil {
		keep("no outbound queue")
		return nil
	}
	from := m.From
	if f.o.SRS != nil && from != "" {
		if rf, err := f.o.SRS.Forward(from); err == nil {
			from = rf
		}
	}
	var data bytes.Buffer
	data.WriteString(RedirectedHeader + ": " + r.Address + "\r\n")
	data.WriteString("Delivered-To: " + r.Address + "\r\n")
	if _, err := data.ReadFrom((&messageReader{m: m}).full()); err != nil {
		return &delivery.Error{Temporary: true, Reason: "cannot read the message to redirect", Err: err}
	}
	qid, _, err := f.o.Outbound.Accept(ctx, m.ID, from, p.redirects, nil, bytes.NewReader(data.Bytes()))
	if err != nil {
		return &delivery.Error{Temporary: true, Reason: "cannot queue the redirect", Err: err}
	}
	f.log.Info("sieve: redirected", "msg_id", m.ID, "to", r.Address, "redirect_to", strings.Join(p.redirects, ","), "queue_id", qid)
	return nil
}

// headerValue is the first value of a header field, "" when absent.
func headerValue(msg *sieve.Message, name string) string { return msg.Header.Get(name) }
