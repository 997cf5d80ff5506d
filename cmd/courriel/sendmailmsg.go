package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"courriel/delivery/maildrop"
)

// readSendmailInput reads the message as sendmail does: lines ending in
// LF (or CRLF) become CRLF lines, a last line without one gets it; with
// dots (no -i), a line holding only "." ends the input, as in SMTP; a
// first line "From " (an mbox separator) is dropped, as Postfix drops
// it. Dot-stuffing is the SMTP client's business (stuffDots), not the
// caller's. The checks apply to whole lines, however long.
//
// The server refuses a bare CR or a NUL (554 5.6.0), which Postfix's
// postdrop takes as they come: cron mails the output of curl, wget,
// rsync or apt, whose progress bars redraw with a lone CR. So that such
// a message is delivered rather than refused, a NUL is dropped and a CR
// not before the LF ends the line in the body (the lines the terminal
// drew over each other are all kept), and is a space in the header
// (where a line break would end the field).
func readSendmailInput(r io.Reader, dots bool, max int64) ([]byte, error) {
	return readInput(r, dots, false, max)
}

// readSMTPData reads the text of a DATA command of sendmail -bs as
// readSendmailInput reads a message with dots, but as SMTP has it: a
// leading dot is unstuffed (RFC 5321 §4.5.2), a first "From " line kept,
// and the input ending before the lone dot is an error (the client went
// away: nothing to send). Lines may end in LF alone: the client is a
// local program, as Postfix's smtpd -S takes them.
func readSMTPData(br *bufio.Reader, max int64) ([]byte, error) {
	return readInput(br, true, true, max)
}

// inputBuffer is the buffer readInput reads through: a *bufio.Reader of
// at least this size is used as it is, what follows the message left in
// it (sendmail -bs reads its next command there).
const inputBuffer = 64 << 10

func readInput(r io.Reader, dots, smtp bool, max int64) ([]byte, error) {
	br := bufio.NewReaderSize(r, inputBuffer)
	var out, line bytes.Buffer
	first, inHeader := true, true
	// tooBig: past max in SMTP mode, where the rest of the message is read
	// up to its dot (the session goes on after the refusal) but not kept:
	// of each line only enough to tell the dot.
	tooBig := false
	over := func() bool {
		if int64(out.Len()+line.Len()) <= max+2 {
			return false
		}
		tooBig = true
		out.Reset()
		return true
	}
	for {
		line.Reset()
		var err error
		n := 0 // the line's length, what was kept of it or not
		for {
			var piece []byte
			piece, err = br.ReadSlice('\n')
			n += len(piece)
			line.Write(piece)
			if !tooBig && over() && !smtp {
				return nil, errMessageTooLarge
			}
			if tooBig {
				line.Truncate(min(line.Len(), 3))
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				break
			}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if smtp && err != nil {
			return nil, fmt.Errorf("the input ended before the message's final dot: %w", io.ErrUnexpectedEOF)
		}
		if line.Len() == 0 && err != nil {
			break
		}
		text := bytes.TrimSuffix(bytes.TrimSuffix(line.Bytes(), []byte("\n")), []byte("\r"))
		switch {
		case dots && n <= 3 && string(text) == ".":
			if tooBig {
				return nil, errMessageTooLarge
			}
			return out.Bytes(), nil
		case tooBig:
		case first && !smtp && bytes.HasPrefix(text, []byte("From ")):
		default:
			if smtp && len(text) > 0 && text[0] == '.' {
				text = text[1:]
			}
			if len(text) == 0 {
				inHeader = false
			}
			for _, c := range text {
				switch {
				case c == 0:
				case c == '\r' && inHeader:
					out.WriteByte(' ')
				case c == '\r':
					out.WriteString("\r\n")
				default:
					out.WriteByte(c)
				}
			}
			out.WriteString("\r\n")
		}
		first = false
		if !tooBig && int64(out.Len()) > max {
			if !smtp {
				return nil, errMessageTooLarge
			}
			tooBig = true
			out.Reset()
		}
		if err != nil {
			break
		}
	}
	return out.Bytes(), nil
}

var errMessageTooLarge = errors.New("message too large")

// headerField is one field of the message's header: its name and its
// lines as read (CRLF included, continuation lines too).
type headerField struct {
	name string
	raw  []byte
}

// splitHeader cuts a CRLF message into its header fields and its body
// (what follows the empty line, or the first line that is neither a
// field nor a continuation: Postfix's cleanup ends the header there too).
// sep says whether the header ended at an empty line.
func splitHeader(msg []byte) (fields []headerField, body []byte, sep bool) {
	rest := msg
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\r\n"))
		if end < 0 {
			end = len(rest)
		} else {
			end += 2
		}
		line := rest[:end]
		switch {
		case bytes.Equal(line, []byte("\r\n")):
			return fields, rest[end:], true
		case (line[0] == ' ' || line[0] == '\t') && len(fields) > 0:
			f := &fields[len(fields)-1]
			f.raw = append(f.raw, line...)
		default:
			name, ok := fieldName(line)
			if !ok {
				return fields, rest, false
			}
			fields = append(fields, headerField{name: name, raw: append([]byte(nil), line...)})
		}
		rest = rest[end:]
	}
	return fields, nil, false
}

// fieldName is the name of a header field line (RFC 5322 §2.2: printable
// ASCII but the colon, then a colon; spaces or tabs may stand between the
// name and the colon, the obsolete syntax of §4.5 that Postfix's
// is_header accepts too).
func fieldName(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return "", false
	}
	for _, c := range name {
		if c <= ' ' || c > '~' {
			return "", false
		}
	}
	return string(name), true
}

// value is the field's unfolded value.
func (f headerField) value() string {
	v := string(f.raw[bytes.IndexByte(f.raw, ':')+1:])
	v = strings.ReplaceAll(v, "\r\n", "")
	return strings.TrimSpace(v)
}

// preparedMessage is what sendmail hands to the server.
type preparedMessage struct {
	data  []byte   // CRLF, not dot-stuffed
	rcpts []string // envelope recipients, qualified, in order, once each
}

// prepareMessage applies the command line to the message: with -t the
// recipients of To, Cc and Bcc (of the Resent- fields instead when the
// message has any, as Postfix) are added to the command line's, and the
// Bcc (Resent-Bcc) fields are removed; a message without From gets
// "From: full name <sender>" when there is a full name (-F, $NAME or the
// GECOS field: what the envelope cannot carry; the server adds a bare
// From, Date and Message-ID, one place for them). Unqualified addresses
// (root) get @host, the server's myhostname, as Postfix appends
// $myorigin: the envelope's, and those of the address fields of the
// header (addressFields), cron's "From: root (Cron Daemon)" and "To: root"
// among them, as Postfix's cleanup rewrites them. More than
// maxSendmailRecipients recipients in all is an error (errTooManyRecipients).
func prepareMessage(msg []byte, a *sendmailArgs, sender, fullName, host string) (preparedMessage, error) {
	fields, body, sep := splitHeader(msg)
	var p preparedMessage
	seen := map[string]bool{}
	tooMany := false
	add := func(addr string) {
		addr = qualify(addr, host)
		if k := strings.ToLower(addr); !seen[k] {
			if len(p.rcpts) == maxSendmailRecipients {
				tooMany = true
				return
			}
			seen[k] = true
			p.rcpts = append(p.rcpts, addr)
		}
	}
	for _, r := range a.rcpts {
		for _, addr := range headerAddresses(r) {
			add(addr)
		}
	}
	hasFrom, resent := false, false
	for _, f := range fields {
		switch strings.ToLower(f.name) {
		case "from":
			hasFrom = true
		case "resent-to", "resent-cc", "resent-bcc":
			resent = true
		}
	}
	var out bytes.Buffer
	if !hasFrom && fullName != "" && sender != "" {
		out.WriteString("From: ")
		out.WriteString((&mail.Address{Name: fullName, Address: sender}).String())
		out.WriteString("\r\n")
	}
	for _, f := range fields {
		name := strings.ToLower(f.name)
		if a.extract {
			// Either the Resent- fields or the others, never both.
			if r := strings.TrimPrefix(name, "resent-"); (r != name) == resent {
				name = r
			} else {
				name = ""
			}
			switch name {
			case "to", "cc", "bcc":
				for _, addr := range headerAddresses(f.value()) {
					add(addr)
				}
			}
			if name == "bcc" {
				continue // the Bcc recipients are not told to the others
			}
		}
		if host != "" && addressFields[strings.ToLower(f.name)] {
			f.raw = qualifyField(f.raw, host)
		}
		out.Write(f.raw)
	}
	if sep || len(body) > 0 {
		out.WriteString("\r\n")
	}
	out.Write(body)
	p.data = out.Bytes()
	if tooMany {
		return preparedMessage{}, errTooManyRecipients
	}
	return p, nil
}

// maxSendmailRecipients bounds the recipients of one message, the command
// line's and the header's (-t) together: maildrop.MaxRecipients, what one
// maildrop file may name, so that a message that fits the command fits
// the maildrop too. Postfix's pickup has none, but writes one queue file;
// here the server's recipient_limit splits a message into transactions
// (452 4.5.3), so that one message with a header of 700,000 addresses
// would be 700 of them, 700 queue entries and as many bounces: refused
// instead, exit 65.
const maxSendmailRecipients = maildrop.MaxRecipients

var errTooManyRecipients = fmt.Errorf("more than %d recipients (command line and header together); send it in parts, or to a list", maxSendmailRecipients)

// addressFields are the header fields whose unqualified addresses get
// @myhostname, as Postfix's cleanup qualifies them in mail from sendmail.
var addressFields = map[string]bool{
	"from": true, "sender": true, "reply-to": true, "to": true, "cc": true, "bcc": true,
	"resent-from": true, "resent-sender": true, "resent-reply-to": true,
	"resent-to": true, "resent-cc": true, "resent-bcc": true,
	"errors-to": true, "return-receipt-to": true,
}

// qualifyField is an address field (CRLF line and continuations) with
// @host after its addresses that have no domain; the rest (display
// names, comments, groups, folding) as it was.
func qualifyField(raw []byte, host string) []byte {
	colon := bytes.IndexByte(raw, ':')
	if colon < 0 {
		return raw
	}
	v := string(raw[colon+1:])
	crlf := strings.HasSuffix(v, "\r\n")
	v = strings.TrimSuffix(v, "\r\n")
	items := splitList(v)
	changed := false
	for i, item := range items {
		if q := qualifyItem(item, host); q != item {
			items[i], changed = q, true
		}
	}
	if !changed {
		return raw
	}
	out := append([]byte(nil), raw[:colon+1]...)
	out = append(out, strings.Join(items, ",")...)
	if crlf {
		out = append(out, "\r\n"...)
	}
	return out
}

// qualifyItem is one item of an address list (a mailbox, a group's start
// or end) with @host after its address when it has no domain: inside
// its angle brackets, else after the address outside comments.
func qualifyItem(item, host string) string {
	depth, quoted := 0, false
	lo, hi, angle, angleEnd, group := -1, -1, -1, -1, -1
	for i := 0; i < len(item); i++ {
		c := item[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if depth == 0 {
				if lo < 0 {
					lo = i
				}
				hi = i + 1
			}
			i++
			continue
		case depth == 0 && c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		case depth > 0:
			continue
		case c == '<' && angle < 0:
			angle = i
		case c == '>' && angle >= 0 && angleEnd < 0:
			angleEnd = i
		case c == ':' && angle < 0 && group < 0:
			group, lo, hi = i, -1, -1
			continue
		}
		if depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if angle >= 0 {
		if angleEnd < 0 {
			return item
		}
		addr := strings.TrimSpace(item[angle+1 : angleEnd])
		if addr == "" || strings.ContainsAny(addr, "@:<>\"() \t") {
			return item
		}
		return item[:angle+1] + addr + "@" + host + item[angleEnd:]
	}
	if lo < 0 {
		return item
	}
	if item[hi] == ';' { // a group's end
		hi--
		for hi >= lo && strings.IndexByte(" \t\r\n", item[hi]) >= 0 {
			hi--
		}
		if hi < lo {
			return item
		}
	}
	addr := item[lo : hi+1]
	if strings.ContainsAny(addr, "@:;<>\"()\\ \t\r\n") {
		return item
	}
	return item[:hi+1] + "@" + host + item[hi+1:]
}

// headerAddresses are the addresses of an address list (RFC 5322 §3.4),
// or, where net/mail cannot read it (an unqualified "root", a stray
// comma), the best reading of each comma-separated item, its comments
// left out: what is between < and >, else the item. Groups give their
// members.
func headerAddresses(v string) []string {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, 0, len(list))
		for _, a := range list {
			out = append(out, a.Address)
		}
		return out
	}
	var out []string
	for _, item := range splitList(v) {
		item = stripComments(item)
		if i := strings.IndexByte(item, ':'); i >= 0 && !strings.Contains(item[:i], "<") && !strings.Contains(item[:i], "\"") {
			item = item[i+1:] // a group's display name
		}
		item = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(item), ";"))
		if i := strings.LastIndexByte(item, '<'); i >= 0 {
			if j := strings.IndexByte(item[i:], '>'); j > 0 {
				item = item[i+1 : i+j]
			}
		}
		if item = strings.TrimSpace(item); item != "" && !strings.ContainsAny(item, " \t") {
			out = append(out, item)
		}
	}
	return out
}

// stripComments is item without its comments (RFC 5322 §3.2.2: nested
// parentheses, quoted pairs; none inside a quoted string), each a space.
func stripComments(item string) string {
	var b strings.Builder
	depth, quoted := 0, false
	for i := 0; i < len(item); i++ {
		c := item[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if depth == 0 {
				b.WriteByte(c)
				if i+1 < len(item) {
					b.WriteByte(item[i+1])
				}
			}
			i++
			continue
		case depth == 0 && c == '"':
			quoted = !quoted
		case quoted:
		case c == '(':
			if depth == 0 {
				b.WriteByte(' ')
			}
			depth++
			continue
		case c == ')' && depth > 0:
			depth--
			continue
		}
		if depth == 0 {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitList cuts an address list at the commas outside quotes, angle
// brackets and comments.
func splitList(v string) []string {
	var out []string
	depth, quoted, angle, start := 0, false, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case c == '"' && depth == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth > 0:
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case c == ',' && !angle:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// qualify appends @host to an address without a domain (root), as
// Postfix's sendmail appends $myorigin ($myhostname by default).
func qualify(addr, host string) string {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	if addr == "" || strings.Contains(addr, "@") {
		return addr
	}
	return addr + "@" + host
}

// stuffDots writes msg as SMTP DATA text (RFC 5321 §4.5.2): a line
// starting with "." gets another, and the end is <CRLF>.<CRLF>.
func stuffDots(w io.Writer, msg []byte) error {
	bw := bufio.NewWriter(w)
	start := true
	for len(msg) > 0 {
		if start && msg[0] == '.' {
			bw.WriteByte('.')
		}
		i := bytes.Index(msg, []byte("\r\n"))
		if i < 0 {
			bw.Write(msg)
			bw.WriteString("\r\n")
			break
		}
		bw.Write(msg[:i+2])
		msg = msg[i+2:]
		start = true
	}
	bw.WriteString(".\r\n")
	return bw.Flush()
}
