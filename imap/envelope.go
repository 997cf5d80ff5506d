package imap

import (
	"bytes"
	"net/mail"
	"strings"
	"time"

	"courriel/imap/mailstore"
)

// scanHeader calls fn for each field of a header (up to the blank line)
// with its name (trailing blanks cut) and its raw value: from after the
// colon to the end of its last continuation line, that line's ending left
// out. A line without a colon ends the field before it and is skipped;
// continuation lines before any field are dropped. Nothing is copied.
func scanHeader(h []byte, fn func(name, raw []byte)) {
	var name []byte
	vs, ve := -1, -1 // the current field's value, h[vs:ve]
	for pos := 0; pos < len(h); {
		i := bytes.IndexByte(h[pos:], '\n')
		lineEnd, next := len(h), len(h)
		if i >= 0 {
			lineEnd, next = pos+i, pos+i+1
		}
		if lineEnd > pos && h[lineEnd-1] == '\r' {
			lineEnd--
		}
		line := h[pos:lineEnd]
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if name != nil {
				ve = lineEnd
			}
			pos = next
			continue
		}
		if name != nil {
			fn(name, h[vs:ve])
			name = nil
		}
		if c := bytes.IndexByte(line, ':'); c > 0 {
			name = bytes.TrimRight(line[:c], " \t")
			vs, ve = pos+c+1, lineEnd
		}
		pos = next
	}
	if name != nil {
		fn(name, h[vs:ve])
	}
}

// fieldValue is a raw value from scanHeader unfolded (every line ending
// taken out, with one CR before each) and trimmed.
func fieldValue(raw []byte) string {
	if bytes.IndexByte(raw, '\n') < 0 {
		return string(bytes.TrimSpace(raw))
	}
	out := make([]byte, 0, len(raw))
	for {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			out = append(out, raw...)
			break
		}
		line := raw[:i]
		if i > 0 && line[i-1] == '\r' {
			line = line[:i-1]
		}
		out = append(out, line...)
		raw = raw[i+1:]
	}
	return strings.TrimSpace(string(out))
}

// nameIs reports whether a field name is want (lower-case ASCII) in any
// case. ASCII folding is what strings.ToLower does for these names: none
// holds a letter that a non-ASCII rune lowers to (K, Å).
func nameIs(name []byte, want string) bool {
	if len(name) != len(want) {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}

// The fields ENVELOPE reads, as indexes into envelopeFields.
const (
	efDate = iota
	efSubject
	efFrom
	efSender
	efReplyTo
	efTo
	efCc
	efBcc
	efInReplyTo
	efMessageID
	efReferences
	efCount
)

var envelopeFieldNames = [efCount]string{"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc", "in-reply-to", "message-id", "references"}

// envelopeField returns the index of an ENVELOPE field, or -1.
func envelopeField(name []byte) int {
	if len(name) < 2 {
		return -1
	}
	// The first letter picks the candidates: most fields of a header
	// (Received, X-…, Content-…) are refused after one comparison.
	switch name[0] | 0x20 {
	case 'd':
		if nameIs(name, "date") {
			return efDate
		}
	case 's':
		if nameIs(name, "subject") {
			return efSubject
		}
		if nameIs(name, "sender") {
			return efSender
		}
	case 'f':
		if nameIs(name, "from") {
			return efFrom
		}
	case 'r':
		if nameIs(name, "reply-to") {
			return efReplyTo
		}
		if nameIs(name, "references") {
			return efReferences
		}
	case 't':
		if nameIs(name, "to") {
			return efTo
		}
	case 'c':
		if nameIs(name, "cc") {
			return efCc
		}
	case 'b':
		if nameIs(name, "bcc") {
			return efBcc
		}
	case 'i':
		if nameIs(name, "in-reply-to") {
			return efInReplyTo
		}
	case 'm':
		if nameIs(name, "message-id") {
			return efMessageID
		}
	}
	return -1
}

// buildEnvelope computes ENVELOPE (RFC 9051 §7.5.2) from a raw header:
// strings as they are in the header (encoded words kept, as Dovecot
// sends), RFC 5322 groups kept as group start and end markers, Sender and
// Reply-To defaulting to From. The first of each field counts. It also
// keeps the References ids THREAD needs (referenceIDs), so that the index
// answers it.
func buildEnvelope(h []byte) *mailstore.Envelope {
	var raw [efCount][]byte
	var seen [efCount]bool
	scanHeader(h, func(name, v []byte) {
		if i := envelopeField(name); i >= 0 && !seen[i] {
			raw[i], seen[i] = v, true
		}
	})
	first := func(i int) string {
		if !seen[i] {
			return ""
		}
		return fieldValue(raw[i])
	}
	env := &mailstore.Envelope{
		Subject:   first(efSubject),
		MessageID: first(efMessageID),
	}
	if d := first(efDate); d != "" {
		env.DateField = d
		if t, err := parseMailDate(d); err == nil {
			env.Date = t
		}
	}
	if irt := first(efInReplyTo); irt != "" {
		env.InReplyTo = []string{irt}
	}
	env.References = referenceIDs(first(efReferences))
	env.From = parseAddressList(first(efFrom))
	env.Sender = parseAddressList(first(efSender))
	env.ReplyTo = parseAddressList(first(efReplyTo))
	env.To = parseAddressList(first(efTo))
	env.Cc = parseAddressList(first(efCc))
	env.Bcc = parseAddressList(first(efBcc))
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
}

// rfc5322Date is the layout of almost every Date field, and the first
// layout with a day of the week that net/mail tries.
const rfc5322Date = "Mon, 2 Jan 2006 15:04:05 -0700"

// parseMailDate is mail.ParseDate, quicker on the common form: a date that
// starts with a letter and ends with its numeric zone is what ParseDate
// hands to time.Parse unchanged, and no layout ParseDate tries before
// rfc5322Date (they start with the day's digits) can match it, so when
// rfc5322Date parses it the result is ParseDate's. ParseDate's failed
// layouts each cost an error value: on 20,000 messages, a tenth of the
// cold ENVELOPE pass.
func parseMailDate(d string) (time.Time, error) {
	if len(d) > 5 && ('A' <= d[0] && d[0] <= 'Z' || 'a' <= d[0] && d[0] <= 'z') &&
		strings.IndexAny(d, "+-") == len(d)-5 && strings.IndexByte(d, '\r') < 0 {
		if t, err := time.Parse(rfc5322Date, d); err == nil {
			return t, nil
		}
	}
	return mail.ParseDate(d)
}

// addrToken is one lexical token of an address header.
type addrToken struct {
	kind byte // 'a' atom, 'q' quoted, 'c' comment, or the special itself
	text string
}

const maxAddrTokens = 4096

func lexAddresses(s string) []addrToken {
	var out []addrToken
	for i := 0; i < len(s) && len(out) < maxAddrTokens; {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '"':
			var b strings.Builder
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
			i++
			out = append(out, addrToken{'q', b.String()})
		case c == '(':
			depth := 0
			start := i
			for i < len(s) {
				if s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '(' {
					depth++
				} else if s[i] == ')' {
					depth--
					if depth == 0 {
						i++
						break
					}
				}
				i++
			}
			out = append(out, addrToken{'c', strings.Trim(s[start:min(i, len(s))], "()")})
		case strings.IndexByte("<>@,;:.[]", c) >= 0:
			if c == '[' { // domain literal
				j := strings.IndexByte(s[i:], ']')
				if j < 0 {
					j = len(s) - i - 1
				}
				out = append(out, addrToken{'a', s[i : i+j+1]})
				i += j + 1
				continue
			}
			out = append(out, addrToken{c, string(c)})
			i++
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\r\n\"(<>@,;:.[]", s[j]) < 0 {
				j++
			}
			out = append(out, addrToken{'a', s[i:j]})
			i = j
		}
	}
	return out
}

// parseAddressList parses an RFC 5322 address-list leniently, as Dovecot
// does: groups give a start marker (mailbox = group name, no host), their
// members and an end marker (all empty).
func parseAddressList(s string) []mailstore.Address {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	toks := lexAddresses(s)
	var out []mailstore.Address
	p := 0
	inGroup := false
	for p < len(toks) && len(out) < 1000 {
		// Collect one mailbox, group start or group end.
		var phrase []string
		var comment string
		start := p
		done := false
		for p < len(toks) && !done {
			t := toks[p]
			switch t.kind {
			case 'a', 'q':
				phrase = append(phrase, t.text)
				p++
			case '.':
				phrase = append(phrase, ".")
				p++
			case 'c':
				comment = t.text
				p++
			case ':':
				if inGroup {
					p++
					continue
				}
				out = append(out, mailstore.Address{Mailbox: joinPhrase(phrase)})
				inGroup = true
				p++
				phrase, comment = nil, ""
				start = p
			case '<':
				p++
				var route, local, host []string
				part := &local
				for p < len(toks) && toks[p].kind != '>' {
					t := toks[p]
					switch {
					case t.kind == '@' && len(local) == 0 && part == &local:
						// source route: "@route:" or "@a,@b:"
						part = &route
						route = append(route, "@")
					case t.kind == ':' && part == &route:
						part = &local
					case t.kind == '@':
						part = &host
					case t.kind == ',' && part == &route:
						route = append(route, ",")
					case t.kind == 'c':
					default:
						*part = append(*part, t.text)
					}
					p++
				}
				p++ // '>'
				out = append(out, mailstore.Address{
					Name: joinPhrase(phrase), Mailbox: strings.Join(local, ""), Host: strings.Join(host, ""),
				})
				if len(route) > 0 {
					out[len(out)-1].Name = joinPhrase(phrase)
				}
				if r := strings.Join(route, ""); r != "" {
					// go-imap's Address has no adl: kept in the name's place is
					// wrong, so it is carried in a marker the writer knows.
					out[len(out)-1].Name = adlMarker + r + adlMarker + joinPhrase(phrase)
				}
				phrase = nil
				done = true
			case '@':
				// addr-spec: local@domain
				p++
				var host []string
				for p < len(toks) && (toks[p].kind == 'a' || toks[p].kind == '.') {
					host = append(host, toks[p].text)
					p++
				}
				out = append(out, mailstore.Address{Name: comment, Mailbox: strings.Join(phrase, ""), Host: strings.Join(host, "")})
				phrase = nil
				for p < len(toks) && toks[p].kind == 'c' {
					out[len(out)-1].Name = toks[p].text
					p++
				}
				done = true
			case ',':
				p++
				if len(phrase) > 0 {
					out = append(out, mailstore.Address{Mailbox: strings.Join(phrase, "")})
				}
				phrase = nil
				done = true
			case ';':
				if len(phrase) > 0 {
					out = append(out, mailstore.Address{Mailbox: strings.Join(phrase, "")})
					phrase = nil
				}
				p++
				if inGroup {
					out = append(out, mailstore.Address{})
					inGroup = false
				}
				done = true
			default:
				p++
			}
		}
		if !done && len(phrase) > 0 {
			out = append(out, mailstore.Address{Mailbox: strings.Join(phrase, "")})
		}
		if p == start {
			p++
		}
	}
	if inGroup {
		out = append(out, mailstore.Address{})
	}
	return out
}

// adlMarker brackets a source route kept in Address.Name (go-imap's
// Address has no field for it); writeAddress takes it out.
const adlMarker = "\x00"

func splitADL(name string) (adl, rest string) {
	if !strings.HasPrefix(name, adlMarker) {
		return "", name
	}
	i := strings.Index(name[1:], adlMarker)
	if i < 0 {
		return "", name
	}
	return name[1 : 1+i], name[2+i:]
}

func joinPhrase(p []string) string {
	var b strings.Builder
	for i, w := range p {
		if i > 0 && w != "." && p[i-1] != "." {
			b.WriteByte(' ')
		}
		b.WriteString(w)
	}
	return b.String()
}

// appendEnvelope appends an ENVELOPE value.
func appendEnvelope(b []byte, env *mailstore.Envelope, u bool) []byte {
	b = append(b, '(')
	switch {
	case env.DateField != "":
		b = appendQuoted(b, env.DateField, u)
	case env.Date.IsZero():
		b = append(b, "NIL"...)
	default:
		b = append(b, '"')
		b = env.Date.AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 -0700")
		b = append(b, '"')
	}
	b = append(b, ' ')
	b = appendNString(b, env.Subject, u)
	for _, l := range [...][]mailstore.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b = append(b, ' ')
		if len(l) == 0 {
			b = append(b, "NIL"...)
			continue
		}
		b = append(b, '(')
		for _, a := range l {
			adl, name := splitADL(a.Name)
			b = append(b, '(')
			b = appendNString(b, name, u)
			b = append(b, ' ')
			b = appendNString(b, adl, u)
			b = append(b, ' ')
			b = appendNString(b, a.Mailbox, u)
			b = append(b, ' ')
			b = appendNString(b, a.Host, u)
			b = append(b, ')')
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	if len(env.InReplyTo) == 1 {
		b = appendNString(b, env.InReplyTo[0], u)
	} else {
		b = appendNString(b, strings.Join(env.InReplyTo, " "), u)
	}
	b = append(b, ' ')
	b = appendNString(b, env.MessageID, u)
	return append(b, ')')
}
