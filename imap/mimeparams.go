package imap

import (
	"slices"
	"strconv"
	"strings"

	"courriel/imap/mailstore"
)

// The parameters of Content-Type and Content-Disposition are served in
// BODYSTRUCTURE as Dovecot serves them: as the header has them, RFC 2231
// continuations joined but nothing decoded. A decoded value would be in
// a charset the client is not told of (RFC 2231 allows any), or 8-bit
// UTF-8 for a client that did not enable UTF8=ACCEPT; the raw form
// "name*" "charset'lang'%XX" is what the client's own MIME code reads.
// mime.ParseMediaType, which decodes, drops every charset but UTF-8 and
// US-ASCII, and fails the whole list on one bad parameter, is not used.

// parseMIMEValue parses a Content-Type (withSubtype) or
// Content-Disposition value: its type, lower case ("text/plain",
// "attachment"; "" when there is none), and its parameters, names lower
// case, the first of a name kept: for the lookups (boundary, charset).
func parseMIMEValue(v string, withSubtype bool) (typ string, params map[string]string) {
	typ, list := parseMIMEParams(v, withSubtype)
	return typ, paramMap(list)
}

// paramMap is list by lower-case names, the first of a name kept.
func paramMap(list []mailstore.Param) map[string]string {
	if len(list) == 0 {
		return nil
	}
	params := make(map[string]string, len(list))
	for _, p := range list {
		k := strings.ToLower(p.Name)
		if _, dup := params[k]; !dup {
			params[k] = p.Value
		}
	}
	return params
}

// parseMIMEParams is parseMIMEValue's type and the parameters as
// BODYSTRUCTURE gives them, in Dovecot 2.3's order (rfc2231-parser.c,
// rfc2231_parse): the plain ones as the header has them (names as
// written, two of one name both), then the RFC 2231 ones, joined, by
// name. Parameters are read leniently, as Dovecot reads them: one that
// does not parse is skipped up to the next ";", the others are kept.
func parseMIMEParams(v string, withSubtype bool) (typ string, list []mailstore.Param) {
	pos := skipCFWS(v, 0)
	typ, pos = mimeToken(v, pos)
	if withSubtype && typ != "" {
		pos = skipCFWS(v, pos)
		if pos >= len(v) || v[pos] != '/' {
			return "", nil
		}
		sub, end := mimeToken(v, skipCFWS(v, pos+1))
		if sub == "" {
			return "", nil
		}
		typ, pos = typ+"/"+sub, end
	}
	if typ == "" {
		return "", nil
	}
	var ext []extParam // RFC 2231 "name*", "name*0", "name*1*"...
	for pos < len(v) {
		pos = skipCFWS(v, pos)
		if pos >= len(v) {
			break
		}
		if v[pos] != ';' {
			pos++ // garbage: resynchronise on the next ";"
			continue
		}
		key, end := mimeToken(v, skipCFWS(v, pos+1))
		pos = skipCFWS(v, end)
		if key == "" || pos >= len(v) || v[pos] != '=' {
			continue
		}
		pos = skipCFWS(v, pos+1)
		var val string
		var ok bool
		switch {
		case pos < len(v) && v[pos] == '"':
			val, pos, ok = quotedValue(v, pos)
			if !ok {
				continue // unterminated: dropped, as Dovecot drops it
			}
		case pos < len(v) && v[pos] == '=':
			// name==?utf-8?q?...?=: an encoded word where it does not
			// belong, kept whole as Dovecot keeps it.
			end := pos
			for end < len(v) && v[end] != ';' && v[end] != ' ' && v[end] != '\t' {
				end++
			}
			val, pos = v[pos:end], end
		default:
			val, pos = mimeToken(v, pos)
		}
		if p, ok := parseExtKey(key); ok {
			p.value = val
			ext = append(ext, p)
			continue
		}
		list = append(list, mailstore.Param{Name: key, Value: val})
	}
	if len(ext) > 0 {
		list = joinExtParams(list, ext)
	}
	return strings.ToLower(typ), list
}

// extParam is one piece of an RFC 2231 parameter: name*N[*]=value, or
// name*=value (single, extended).
type extParam struct {
	name     string
	idx      int
	extended bool // "*" after the index: charset'lang'%XX
	single   bool // "name*" without an index
	value    string
}

// parseExtKey reads name*, name*N and name*N* (RFC 2231 §3, §4); any
// other key holding a "*" is an ordinary key.
func parseExtKey(key string) (extParam, bool) {
	star := strings.IndexByte(key, '*')
	if star <= 0 {
		return extParam{}, false
	}
	p := extParam{name: key[:star]}
	rest := key[star+1:]
	if rest == "" {
		p.extended, p.single = true, true
		return p, true
	}
	digits := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
	if digits == 0 || digits > 4 {
		return extParam{}, false
	}
	p.idx, _ = strconv.Atoi(rest[:digits])
	switch rest[digits:] {
	case "":
	case "*":
		p.extended = true
	default:
		return extParam{}, false
	}
	return p, true
}

// joinExtParams appends the RFC 2231 parameters to list, the pieces of
// each joined in index order under "name" (no piece extended) or "name*"
// (some piece extended: the charset'lang' of the first piece, an empty
// one when the first is not extended, and the "%" of plain pieces
// escaped, so that the whole reads as one extended value). A parameter
// whose indexes do not run 0, 1, 2... is left in its pieces, each under
// its own name. Names are sorted as Dovecot sorts them (strcmp), a
// parameter's pieces told apart from another's regardless of case.
func joinExtParams(list []mailstore.Param, ext []extParam) []mailstore.Param {
	slices.SortStableFunc(ext, func(a, b extParam) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return a.idx - b.idx
	})
	for i := 0; i < len(ext); {
		j := i
		ok, anyExt := true, false
		for ; j < len(ext) && strings.EqualFold(ext[j].name, ext[i].name); j++ {
			if ext[j].idx != j-i {
				ok = false
			}
			anyExt = anyExt || ext[j].extended
		}
		group := ext[i:j]
		i = j
		if !ok {
			for _, p := range group {
				key := p.name + "*"
				if !p.single {
					key += strconv.Itoa(p.idx)
					if p.extended {
						key += "*"
					}
				}
				list = append(list, mailstore.Param{Name: key, Value: p.value})
			}
			continue
		}
		if !anyExt {
			var b strings.Builder
			for _, p := range group {
				b.WriteString(p.value)
			}
			list = append(list, mailstore.Param{Name: group[0].name, Value: b.String()})
			continue
		}
		var b strings.Builder
		if !group[0].extended {
			b.WriteString("''")
		}
		for _, p := range group {
			if p.extended {
				b.WriteString(p.value)
			} else {
				b.WriteString(strings.ReplaceAll(p.value, "%", "%25"))
			}
		}
		list = append(list, mailstore.Param{Name: group[0].name + "*", Value: b.String()})
	}
	return list
}

// isTSpecial reports the tspecials of RFC 2045 §5.1, which end a token.
func isTSpecial(c byte) bool {
	return strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0
}

// mimeToken reads a token (RFC 2045 §5.1) at pos; 8-bit bytes are taken
// in it, as Dovecot takes them, for the mail that has them unencoded.
func mimeToken(v string, pos int) (string, int) {
	start := pos
	for pos < len(v) {
		c := v[pos]
		if c <= ' ' || c == 0x7f || isTSpecial(c) {
			break
		}
		pos++
	}
	return v[start:pos], pos
}

// quotedValue reads the quoted-string at v[pos] (a '"'), its quoted pairs
// undone; ok is false when it does not end.
func quotedValue(v string, pos int) (val string, end int, ok bool) {
	i := pos + 1
	var b []byte // only when there is a quoted pair
	for start := i; i < len(v); i++ {
		switch v[i] {
		case '"':
			if b == nil {
				return v[start:i], i + 1, true
			}
			return string(b), i + 1, true
		case '\\':
			if b == nil {
				b = append([]byte(nil), v[start:i]...)
			}
			if i+1 < len(v) {
				i++
				b = append(b, v[i])
			}
		default:
			if b != nil {
				b = append(b, v[i])
			}
		}
	}
	return "", i, false
}

// skipCFWS skips blanks and comments (RFC 5322 §3.2.2; nested, with
// quoted pairs) from pos.
func skipCFWS(v string, pos int) int {
	for pos < len(v) {
		switch v[pos] {
		case ' ', '\t', '\r', '\n':
			pos++
		case '(':
			for depth := 0; pos < len(v); {
				c := v[pos]
				pos++
				if c == '\\' {
					pos++
				} else if c == '(' {
					depth++
				} else if c == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
		default:
			return pos
		}
	}
	return pos
}
