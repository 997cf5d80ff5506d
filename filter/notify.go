package filter

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strconv"
	"strings"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// notify sends a notification (RFC 5435, mailto: RFC 5436) the way a
// vacation reply goes: composed here, queued from the null sender, DKIM
// signed when a key fits. RFC 5436 §2.7: never for a message that is
// itself auto-submitted (a notification loop), and the notification says
// Auto-Submitted: auto-notified. Failures are logged: a notification never
// holds up the delivery. It is the plan's i-th: its key in the queue
// (queueKey) is that and its recipients, so that a retry of a keyed
// copy after a crash between the Accept and the record of the copy's side
// effects queues it no second time.
func (f *Filter) notify(ctx context.Context, m *delivery.Message, r *delivery.Recipient, p *plan, i int, n *sieve.Notification) {
	msg, err := (&messageReader{m: m}).sieveMessage()
	if err != nil {
		f.log.Warn("sieve: notification not sent", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	if autoSubmitted(msg) {
		f.log.Info("sieve: notification not sent", "msg_id", m.ID, "to", r.Address, "reason", "auto-submitted message")
		return
	}
	rcpts := n.Recipients()
	if len(rcpts) == 0 {
		f.log.Info("sieve: notification not sent", "msg_id", m.ID, "to", r.Address, "reason", "no recipients")
		return
	}
	if f.o.Outbound == nil {
		f.log.Warn("sieve: notification not sent: no outbound queue", "msg_id", m.ID, "to", r.Address)
		return
	}
	remote, local, err := f.route(ctx, rcpts)
	if err != nil {
		f.log.Warn("sieve: notification not sent: cannot route it", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	data := f.composeNotification(msg, r.Address, f.notifyFrom(r, p, n), n)
	if f.o.Sign != nil {
		if sig, err := f.o.Sign(data); err != nil {
			f.log.Warn("sieve: notification not signed", "msg_id", m.ID, "to", r.Address, "err", err)
		} else {
			data = append(sig, data...)
		}
	}
	key := queueKey(r.CopyKey, "notify "+strconv.Itoa(i), rcpts)
	qid, _, err := f.o.Outbound.Accept(ctx, Outgoing{Key: key, MsgID: m.ID, Remote: remote, Local: local, Data: bytes.NewReader(data)})
	if err != nil {
		f.log.Warn("sieve: notification not queued", "msg_id", m.ID, "to", r.Address, "err", err)
		return
	}
	f.log.Info("sieve: notification queued", "msg_id", m.ID, "to", r.Address, "notify_to", printable(strings.Join(rcpts, ","), 300), "queue_id", qid)
}

// autoSubmitted: an Auto-Submitted field other than "no" (RFC 3834 §5).
func autoSubmitted(msg *sieve.Message) bool {
	for _, v := range msg.Header.Values("Auto-Submitted") {
		kw, _, _ := strings.Cut(v, ";")
		if kw = strings.ToLower(strings.TrimSpace(kw)); kw != "" && kw != "no" {
			return true
		}
	}
	return false
}

// notifyFrom is the notification's From: :from when it is one of the
// user's addresses (as vacation's :from: a script may not write as
// someone else), else the recipient's address.
func (f *Filter) notifyFrom(r *delivery.Recipient, p *plan, n *sieve.Notification) string {
	if n.From == "" {
		return r.Address
	}
	a, err := mail.ParseAddress(n.From)
	if err != nil {
		return r.Address
	}
	own := append([]string{r.Address, r.OrigTo}, p.mb.Addresses...)
	if slices.ContainsFunc(own, func(o string) bool { return o != "" && strings.EqualFold(o, a.Address) }) {
		return n.From
	}
	return r.Address
}

// composeNotification builds the notification as Pigeonhole's mailto
// method does: Subject from :message, else the URI's subject, else
// "Notification: " and the message's subject; the URI's body, else
// "Notification of new message."; the URI's header fields (the reserved
// ones already dropped); Auto-Submitted naming the owner; CRLF line ends.
func (f *Filter) composeNotification(msg *sieve.Message, owner, from string, n *sieve.Notification) []byte {
	var b bytes.Buffer
	hdr := func(name, value string) { writeFolded(&b, name, value) }
	if a, err := mail.ParseAddress(from); err == nil {
		hdr("From", a.String())
	} else {
		hdr("From", "<"+headerSafe(from)+">")
	}
	if len(n.To) > 0 {
		hdr("To", addressList(n.To))
	}
	if len(n.Cc) > 0 {
		hdr("Cc", addressList(n.Cc))
	}
	subject := n.Subject
	switch {
	case n.HasMessage:
		subject = n.Message
	case !n.HasSubject:
		orig := msg.Header.Get("Subject")
		if d, err := new(mime.WordDecoder).DecodeHeader(orig); err == nil {
			orig = d
		}
		subject = "Notification: " + orig
		if strings.TrimSpace(orig) == "" {
			subject = "Notification: (no subject)"
		}
	}
	hdr("Subject", encodeWord(oneLineUTF8(subject, 900)))
	hdr("Date", f.o.Now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+randomID()+"@"+f.o.Hostname+">")
	hdr("Auto-Submitted", `auto-notified; owner-email="`+strings.ReplaceAll(headerSafe(owner), `"`, "")+`"`)
	hdr("Precedence", "bulk")
	switch n.Importance {
	case 1:
		hdr("X-Priority", "1 (Highest)")
		hdr("Importance", "High")
	case 3:
		hdr("X-Priority", "5 (Lowest)")
		hdr("Importance", "Low")
	default:
		hdr("X-Priority", "3 (Normal)")
		hdr("Importance", "Normal")
	}
	for _, h := range n.Headers {
		hdr(h.Name, encodeWord(oneLineUTF8(h.Value, 900)))
	}
	hdr("MIME-Version", "1.0")
	body := "Notification of new message."
	if n.HasBody {
		body = n.Body
	}
	hdr("Content-Type", "text/plain; charset=utf-8")
	// The URI's body may have lines (RFC 6068 §2): CRLF, or a bare CR or
	// LF, all made CRLF below.
	body = strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\r", "\n")
	if encodeWord(body) != body || slices.ContainsFunc(strings.Split(body, "\n"), func(l string) bool { return len(l) > 998 }) {
		// quoted-printable, as the vacation reply: the notification
		// leaves from <> and must pass hops without 8BITMIME
		hdr("Content-Transfer-Encoding", "quoted-printable")
		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		io.WriteString(w, body)
		w.Close()
		body = strings.ReplaceAll(qp.String(), "\r\n", "\n")
	} else {
		hdr("Content-Transfer-Encoding", "7bit")
	}
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(body, "\n", "\r\n"))
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// addressList writes recipients as a header's address list: each parsed
// and written again, so no value from the URI can break the field.
func addressList(list []string) string {
	var out []string
	for _, r := range list {
		if a, err := mail.ParseAddress(r); err == nil {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, ", ")
}

// encodeWord RFC 2047-encodes a value that is not ASCII.
func encodeWord(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return mime.QEncoding.Encode("utf-8", s)
		}
	}
	return s
}
