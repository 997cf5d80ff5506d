package imap

import (
	"bytes"
	"net/mail"
	"strings"

	"courriel/imap/mailstore"
)

// headerValues returns the unfolded raw values of a header's fields,
// keyed by lower-case name, in order. Only the header (up to the blank
// line) is read.
func headerValues(h []byte) map[string][]string {
	out := map[string][]string{}
	var key string
	var val []byte
	flush := func() {
		if key != "" {
			out[key] = append(out[key], strings.TrimSpace(string(val)))
		}
		key, val = "", nil
	}
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		var line []byte
		if i < 0 {
			line, h = h, nil
		} else {
			line, h = h[:i], h[i+1:]
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if key != "" {
				val = append(val, line...)
			}
			continue
		}
		flush()
		c := bytes.IndexByte(line, ':')
		if c <= 0 {
			continue
		}
		key = strings.ToLower(string(bytes.TrimRight(line[:c], " \t")))
		val = append([]byte(nil), line[c+1:]...)
	}
	flush()
	return out
}

// buildEnvelope computes ENVELOPE (RFC 9051 §7.5.2) from a raw header:
// strings as they are in the header (encoded words kept, as Dovecot
// sends), RFC 5322 groups kept as group start and end markers, Sender and
// Reply-To defaulting to From. It also keeps the References ids THREAD
// needs (referenceIDs), so that the index answers it.
func buildEnvelope(h []byte) *mailstore.Envelope {
	v := headerValues(h)
	first := func(k string) string {
		if l := v[k]; len(l) > 0 {
			return l[0]
		}
		return ""
	}
	env := &mailstore.Envelope{
		Subject:   first("subject"),
		MessageID: first("message-id"),
	}
	if d := first("date"); d != "" {
		if t, err := mail.ParseDate(d); err == nil {
			env.Date = t
		}
	}
	if irt := first("in-reply-to"); irt != "" {
		env.InReplyTo = []string{irt}
	}
	env.References = referenceIDs(first("references"))
	env.From = parseAddressList(first("from"))
	env.Sender = parseAddressList(first("sender"))
	env.ReplyTo = parseAddressList(first("reply-to"))
	env.To = parseAddressList(first("to"))
	env.Cc = parseAddressList(first("cc"))
	env.Bcc = parseAddressList(first("bcc"))
	if len(env.Sender) == 0 {
		env.Sender = env.From
	}
	if len(env.ReplyTo) == 0 {
		env.ReplyTo = env.From
	}
	return env
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

// writeEnvelope writes an ENVELOPE value.
func (s *session) writeEnvelope(env *mailstore.Envelope) {
	var b bytes.Buffer
	writeEnvelopeTo(&b, env, s.utf8())
	s.w.Bytes(b.Bytes())
}

func writeEnvelopeTo(b *bytes.Buffer, env *mailstore.Envelope, u bool) {
	nstr := func(s string) {
		if s == "" {
			b.WriteString("NIL")
		} else {
			writeQuoted(b, s, u)
		}
	}
	b.WriteByte('(')
	if env.Date.IsZero() {
		b.WriteString("NIL")
	} else {
		nstr(env.Date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	b.WriteByte(' ')
	nstr(env.Subject)
	for _, l := range [][]mailstore.Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		b.WriteByte(' ')
		if len(l) == 0 {
			b.WriteString("NIL")
			continue
		}
		b.WriteByte('(')
		for _, a := range l {
			adl, name := splitADL(a.Name)
			b.WriteByte('(')
			nstr(name)
			b.WriteByte(' ')
			nstr(adl)
			b.WriteByte(' ')
			nstr(a.Mailbox)
			b.WriteByte(' ')
			nstr(a.Host)
			b.WriteByte(')')
		}
		b.WriteByte(')')
	}
	b.WriteByte(' ')
	nstr(strings.Join(env.InReplyTo, " "))
	b.WriteByte(' ')
	nstr(env.MessageID)
	b.WriteByte(')')
}
