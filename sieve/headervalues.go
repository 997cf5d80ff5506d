// Header field values as a test sees them: unfolded, decoded, split into addresses.

package sieve

import (
	"mime"
	"net/mail"
	"strings"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"
)

func (r *runner) decoded(name string) []string {
	key := strings.ToLower(name)
	if v, ok := r.headers[key]; ok {
		return v
	}
	var vals []string
	for _, v := range r.headerValues(name) {
		r.budget.spend(decodeCost * len(v))
		vals = append(vals, decodeHeader(v))
	}
	if r.headers == nil {
		r.headers = map[string][]string{}
	}
	r.headers[key] = vals
	return vals
}

// values are the unfolded values of a header field, in order. The raw
// field is read, since textproto's values squeeze the white space around
// line breaks: Pigeonhole (Dovecot's header parser) only drops the line
// break, a tab starting the continuation line becoming a space.
func (m *Message) values(key string) []string {
	return headerFieldValues(m.Header, key)
}

// headerFieldValues are the unfolded values of the fields of h named key.
func headerFieldValues(h textproto.Header, key string) []string {
	var out []string
	fields := h.FieldsByKey(key)
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			out = append(out, fields.Value())
			continue
		}
		v := string(raw)
		if i := strings.IndexByte(v, ':'); i >= 0 {
			v = v[i+1:]
		}
		out = append(out, strings.TrimLeft(unfold(strings.TrimRight(v, "\r\n")), " \t"))
	}
	return out
}

// unfold drops the line breaks of a folded value, a tab after one becoming a
// space.
func unfold(v string) string {
	if !strings.ContainsAny(v, "\r\n") {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\r' && i+1 < len(v) && v[i+1] == '\n':
		case c == '\n':
			if i+1 < len(v) && v[i+1] == '\t' {
				b = append(b, ' ')
				i++
			}
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// decodeHeader decodes the RFC 2047 words of an unfolded header value.
func decodeHeader(v string) string {
	v = strings.TrimSpace(v)
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// headerAddresses returns the addr-specs of an address header, ok true; a
// value that is not a list of addresses (or a group without members) gives
// itself, ok false: Pigeonhole lets :all see it whole and other parts not.
func headerAddresses(v string) (list []string, ok bool) {
	p := mail.AddressParser{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}}
	parsed, err := p.ParseList(v)
	if err != nil || len(parsed) == 0 {
		return []string{strings.TrimSpace(v)}, false
	}
	out := make([]string, 0, len(parsed))
	for _, a := range parsed {
		out = append(out, a.Address)
	}
	return out, true
}
