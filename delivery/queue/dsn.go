package queue

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"courriel/internal/sevenbit"
)

type dsnKind int

const (
	dsnFailed  dsnKind = iota // Action: failed
	dsnDelayed                // Action: delayed (a warning)
	dsnSuccess                // Action: delivered, relayed or expanded (NOTIFY=SUCCESS)
)

func (k dsnKind) String() string {
	switch k {
	case dsnDelayed:
		return "delayed"
	case dsnSuccess:
		return "success"
	}
	return "failed"
}

// parseDSNKind is the kind named by String.
func parseDSNKind(s string) (dsnKind, bool) {
	for _, k := range []dsnKind{dsnFailed, dsnDelayed, dsnSuccess} {
		if k.String() == s {
			return k, true
		}
	}
	return 0, false
}

// returned is what a DSN carries of the original message: its header
// section, or, for a failure with RET=FULL, the whole message when it is
// within maxDSNHeaders (RFC 3461 §4.3; a larger one comes back as its
// header, as Postfix returns what fits its bounce_size_limit).
type returned struct {
	data []byte
	full bool // the whole message (message/rfc822), not its header
}

// returnedContent reads what a DSN of kind about m returns of data.
func returnedContent(data *os.File, m *Message, kind dsnKind) (returned, error) {
	if kind == dsnFailed && m.Ret == RetFull && m.Size <= maxDSNHeaders {
		if _, err := data.Seek(0, io.SeekStart); err != nil {
			return returned{}, fmt.Errorf("queue: read message: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(data, maxDSNHeaders+1))
		if err != nil {
			return returned{}, fmt.Errorf("queue: read message: %w", err)
		}
		if len(b) <= maxDSNHeaders {
			return returned{data: normalizeLines(b), full: true}, nil
		}
	}
	h, err := readHeaders(data)
	return returned{data: h}, err
}

// maxDSNHeaders bounds the original header section returned in the DSN.
const maxDSNHeaders = 64 << 10

// lineMax keeps every line of a DSN under RFC 5322 §2.1.1's 998 octets.
const lineMax = 76

// readHeaders returns the original message's header section (RFC 3462's
// text/rfc822-headers part), bounded, with CRLF line ends.
func readHeaders(f *os.File) ([]byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("queue: read headers: %w", err)
	}
	buf := make([]byte, maxDSNHeaders)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("queue: read headers: %w", err)
	}
	buf = buf[:n]
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		buf = buf[:i+2]
	} else if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		buf = buf[:i+1]
	} else if i := bytes.LastIndexByte(buf, '\n'); i >= 0 && n == maxDSNHeaders {
		buf = buf[:i+1] // no end of header within the bound: whole lines only
	}
	return normalizeLines(buf), nil
}

// normalizeLines gives b CRLF line ends, a final one included, and drops
// NULs, which no mail may carry.
func normalizeLines(buf []byte) []byte {
	buf = bytes.ReplaceAll(buf, []byte("\r\n"), []byte("\n"))
	buf = bytes.ReplaceAll(buf, []byte("\x00"), nil)
	buf = bytes.ReplaceAll(buf, []byte("\n"), []byte("\r\n"))
	if len(buf) > 0 && !bytes.HasSuffix(buf, []byte("\r\n")) {
		buf = append(buf, "\r\n"...)
	}
	return buf
}

// buildDSN writes an RFC 3464 delivery status notification about rcpts, of
// message m: multipart/report with a human-readable part, a
// message/delivery-status part and what it returns of the original (its
// header, or the whole message: returnedContent). About mail that needs
// UTF-8 (dsnUTF8) it writes RFC 6533's instead (dsnutf8.go).
func (q *Queue) buildDSN(m *Message, kind dsnKind, rcpts []Recipient, ret returned, now time.Time) []byte {
	host := q.o.Hostname
	utf := dsnUTF8(m, rcpts)
	boundary := newBoundary(ret.data)
	var b bytes.Buffer
	subject := "Undelivered Mail Returned to Sender"
	switch kind {
	case dsnDelayed:
		subject = "Delayed Mail (still being retried)"
	case dsnSuccess:
		subject = "Successful Mail Delivery Report"
	}
	fmt.Fprintf(&b, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", host)
	fmt.Fprintf(&b, "To: <%s>\r\n", m.From)
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s.%s@%s>\r\n", m.ID, newID(now), host)
	b.WriteString("Auto-Submitted: auto-replied\r\n") // RFC 3834 §5
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n", boundary)

	// The parts go after the header, which says, in an RFC 6533 DSN,
	// whether they hold 8-bit text (RFC 2045 §6.4: a multipart is 7bit
	// unless it says otherwise).
	var body bytes.Buffer
	body.WriteString("\r\nThis is a MIME-encapsulated message.\r\n\r\n")

	// 1. For people.
	var human bytes.Buffer
	q.writeHuman(&human, m, kind, rcpts, ret.full, now, utf)
	charset := "us-ascii"
	if sevenbit.Has8bit(human.Bytes()) {
		charset = "utf-8"
	}
	fmt.Fprintf(&body, "--%s\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=%s\r\n", boundary, charset)
	writePart(&body, human.Bytes())

	// 2. For programs (RFC 3464 §2): the per-message fields, the
	// envelope id first (§2.2), then a group per recipient.
	var status bytes.Buffer
	if m.EnvID != "" {
		writeField(&status, "Original-Envelope-Id", m.EnvID, utf)
	}
	writeField(&status, "Reporting-MTA", "dns; "+host, utf)
	writeField(&status, "X-Courriel-Queue-ID", m.ID, utf)
	writeField(&status, "Arrival-Date", m.Created.Format(time.RFC1123Z), utf)
	for _, r := range rcpts {
		status.WriteString("\r\n")
		// RFC 3464 §2.3.1: the client's ORCPT as it gave it; without
		// one, the address it named (an alias of ours), as Postfix.
		switch orig := originalRecipient(&r); {
		case r.ORcpt != "":
			writeField(&status, "Original-Recipient", dsnORcpt(r.ORcpt, utf), utf)
		case orig != r.Addr:
			writeField(&status, "Original-Recipient", dsnAddress(orig, utf), utf)
		}
		writeField(&status, "Final-Recipient", dsnAddress(r.Addr, utf), utf)
		action, fallback := kind.String(), map[dsnKind]string{dsnFailed: "5.0.0", dsnDelayed: "4.0.0", dsnSuccess: "2.0.0"}[kind]
		if kind == dsnSuccess {
			action = r.Action
		}
		writeField(&status, "Action", action, utf)
		st := r.Status
		if !validStatus(st) || kind == dsnSuccess && st[0] != '2' {
			st = fallback
		}
		writeField(&status, "Status", st, utf)
		if r.RemoteMTA != "" {
			writeField(&status, "Remote-MTA", "dns; "+r.RemoteMTA, utf)
		}
		if r.Reply != "" {
			writeField(&status, "Diagnostic-Code", diagnostic(r), utf)
		}
		if !r.LastAttempt.IsZero() {
			writeField(&status, "Last-Attempt-Date", r.LastAttempt.Format(time.RFC1123Z), utf)
		}
		if kind == dsnDelayed {
			writeField(&status, "Will-Retry-Until", m.Created.Add(q.o.MaxLifetime).Format(time.RFC1123Z), utf)
		}
	}
	ctype := "message/delivery-status"
	if utf {
		ctype = "message/global-delivery-status"
	}
	fmt.Fprintf(&body, "\r\n--%s\r\nContent-Description: Delivery report\r\nContent-Type: %s\r\n", boundary, ctype)
	writePart(&body, status.Bytes())

	// 3. The original: the whole message (RFC 3464 §2, message/rfc822)
	// or its header (RFC 6522 §3, text/rfc822-headers); in an RFC 6533
	// DSN, message/global (RFC 6532 §3.7) or message/global-headers.
	desc, ctype := "Undelivered Message Headers", "text/rfc822-headers"
	switch {
	case ret.full:
		desc, ctype = "Undelivered Message", "message/rfc822"
	case kind == dsnSuccess:
		desc = "Message Headers"
	}
	if utf {
		ctype = "message/global-headers"
		if ret.full {
			ctype = "message/global"
		}
	}
	data := ret.data
	if ret.full && !utf {
		// The message returned in 7 bits (its 8-bit parts as
		// quoted-printable or base64, RFC 6152's downgrade): the DSN is
		// DKIM-signed once made, and a next hop without 8BITMIME would
		// otherwise have it converted after the signature, which then
		// fails. An RFC 6533 DSN leaves only with SMTPUTF8, to hosts that
		// take 8 bits, and stays as it is.
		if d, changed := sevenbit.Downgrade(data); changed {
			data = d
		}
	}
	fmt.Fprintf(&body, "\r\n--%s\r\nContent-Description: %s\r\nContent-Type: %s\r\n", boundary, desc, ctype)
	writePart(&body, data)
	fmt.Fprintf(&body, "\r\n--%s--\r\n", boundary)

	if utf && sevenbit.Has8bit(body.Bytes()) {
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	}
	b.Write(body.Bytes())
	return b.Bytes()
}

// writePart ends a part's header, saying when its content holds 8-bit
// text, and writes the content.
func writePart(b *bytes.Buffer, content []byte) {
	if sevenbit.Has8bit(content) {
		b.WriteString("Content-Transfer-Encoding: 8bit\r\n")
	}
	b.WriteString("\r\n")
	b.Write(content)
}

// writeHuman writes the human-readable part: UTF-8 in an RFC 6533 DSN
// (utf), where an address is shown as it is.
func (q *Queue) writeHuman(b *bytes.Buffer, m *Message, kind dsnKind, rcpts []Recipient, full bool, now time.Time, utf bool) {
	fmt.Fprintf(b, "This is the mail system at host %s.\r\n\r\n", q.o.Hostname)
	switch kind {
	case dsnDelayed:
		b.WriteString("####################################################################\r\n")
		b.WriteString("# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n")
		b.WriteString("####################################################################\r\n\r\n")
		writeWrapped(b, fmt.Sprintf("Your message could not be delivered for %s. It will be retried until it is %s old.",
			humanDuration(now.Sub(m.Created)), humanDuration(q.o.MaxLifetime)), utf)
	case dsnSuccess:
		// Postfix's words.
		writeWrapped(b, "Your message was successfully delivered to the destination(s) listed below. If the message was delivered to mailbox you will receive no further notifications. Otherwise you may still receive notifications of mail delivery errors from other systems.", utf)
	default:
		attached := "Its headers are attached below."
		if full {
			attached = "It is attached below."
		}
		writeWrapped(b, "I'm sorry to have to inform you that your message could not be delivered to one or more recipients. "+attached, utf)
		b.WriteString("\r\n")
		writeWrapped(b, "For further assistance, please send mail to postmaster. If you do so, please include this problem report.", utf)
	}
	b.WriteString("\r\n                   The mail system\r\n\r\n")
	for _, r := range rcpts {
		line := "<" + dsnPrintable(r.Addr, maxAddrLen, utf) + ">: "
		switch {
		case kind == dsnSuccess && r.Action == ActionRelayed && r.RemoteMTA != "":
			line += "relayed to host " + dsnPrintable(r.RemoteMTA, maxDomainLen, utf) + ", which does not report delivery status: "
		case kind == dsnSuccess:
		case r.Status == "4.4.7":
			line += "delivery time expired; last error: "
		case r.RemoteMTA != "" && r.Code != 0:
			line += "host " + dsnPrintable(r.RemoteMTA, maxDomainLen, utf) + " said: "
		}
		writeWrapped(b, line+r.Reply, utf)
		b.WriteString("\r\n")
	}
}

// writeField writes one DSN field, folded at spaces (RFC 5322 §2.2.3) and,
// for a space-less run, cut hard (between characters) so no line exceeds
// the limit. Its value is made printable first: UTF-8 stays in an RFC 6533
// DSN (utf).
func writeField(b *bytes.Buffer, name, value string, utf bool) {
	line := name + ": "
	first := true
	for _, word := range strings.Fields(dsnPrintable(value, maxReplyText, utf)) {
		for len(word) > 0 {
			chunk := word[:cutAt(word, 900)]
			word = word[len(chunk):]
			switch {
			case first:
				line += chunk
				first = false
			case len(line)+1+len(chunk) > lineMax:
				b.WriteString(line + "\r\n")
				line = " " + chunk
			default:
				line += " " + chunk
			}
		}
	}
	b.WriteString(line + "\r\n")
}

// writeWrapped writes text as lines of at most lineMax octets (longer
// words are cut, between characters), made printable first: UTF-8 stays
// in an RFC 6533 DSN (utf).
func writeWrapped(b *bytes.Buffer, text string, utf bool) {
	line := ""
	for _, word := range strings.Fields(dsnPrintable(text, 4*maxReplyText, utf)) {
		for len(word) > lineMax {
			if line != "" {
				b.WriteString(line + "\r\n")
				line = ""
			}
			n := cutAt(word, lineMax)
			b.WriteString(word[:n] + "\r\n")
			word = word[n:]
		}
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) > lineMax:
			b.WriteString(line + "\r\n")
			line = word
		default:
			line += " " + word
		}
	}
	if line != "" {
		b.WriteString(line + "\r\n")
	}
}

func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
}

// validStatus checks an RFC 3463 status: class.subject.detail.
func validStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "2" && parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) == 0 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}

// newBoundary returns a MIME boundary that does not occur in the enclosed
// headers (RFC 2046 §5.1.1).
func newBoundary(headers []byte) string {
	for {
		var r [12]byte
		rand.Read(r[:])
		bd := "=_courriel_" + hex.EncodeToString(r[:])
		if !bytes.Contains(headers, []byte(bd)) {
			return bd
		}
	}
}
