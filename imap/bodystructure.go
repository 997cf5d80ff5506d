package imap

import (
	"strconv"
	"strings"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// appendBodyStructure appends BODYSTRUCTURE (ext) or BODY of a cached part.
func appendBodyStructure(b []byte, p *mailstore.BodyPart, ext, utf8 bool, depth int) []byte {
	b = append(b, '(')
	if p.Type == "multipart" && depth < maxBodyDepth {
		for _, c := range p.Children {
			b = appendBodyStructure(b, c, ext, utf8, depth+1)
		}
		b = append(b, ' ')
		b = appendQuoted(b, p.Subtype, utf8)
		if ext {
			b = append(b, ' ')
			b = appendParams(b, p.Params, utf8)
			b = appendExtTail(b, p, utf8)
		}
		return append(b, ')')
	}
	b = appendQuoted(b, p.Type, utf8)
	b = append(b, ' ')
	b = appendQuoted(b, p.Subtype, utf8)
	b = append(b, ' ')
	b = appendParams(b, p.Params, utf8)
	b = append(b, ' ')
	b = appendNString(b, p.ID, utf8)
	b = append(b, ' ')
	b = appendNString(b, p.Description, utf8)
	b = append(b, ' ')
	b = appendQuoted(b, p.Encoding, utf8)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(p.Size), 10)
	switch {
	case p.Sub != nil && depth < maxBodyDepth:
		b = append(b, ' ')
		env := p.Envelope
		if env == nil {
			env = &mailstore.Envelope{}
		}
		b = appendEnvelope(b, env, utf8)
		b = append(b, ' ')
		b = appendBodyStructure(b, p.Sub, ext, utf8, depth+1)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	case strings.EqualFold(p.Type, "text"):
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Lines, 10)
	}
	if ext {
		b = append(b, ' ')
		b = appendNString(b, p.MD5, utf8)
		b = appendExtTail(b, p, utf8)
	}
	return append(b, ')')
}

// appendParams appends a body parameter list, in its order, names as
// the header spells them, as Dovecot gives them.
func appendParams(b []byte, l []mailstore.Param, utf8 bool) []byte {
	if len(l) == 0 {
		return append(b, "NIL"...)
	}
	b = append(b, '(')
	for i, p := range l {
		if i > 0 {
			b = append(b, ' ')
		}
		b = appendQuoted(b, p.Name, utf8)
		b = append(b, ' ')
		b = appendQuoted(b, p.Value, utf8)
	}
	return append(b, ')')
}

// appendExtTail appends the disposition, language and location of the
// extensible BODYSTRUCTURE.
func appendExtTail(b []byte, p *mailstore.BodyPart, utf8 bool) []byte {
	b = append(b, ' ')
	if p.Disposition == "" {
		b = append(b, "NIL"...)
	} else {
		b = append(b, '(')
		b = appendQuoted(b, p.Disposition, utf8)
		b = append(b, ' ')
		b = appendParams(b, p.DispParams, utf8)
		b = append(b, ')')
	}
	b = append(b, ' ')
	switch len(p.Language) {
	case 0:
		b = append(b, "NIL"...)
	case 1:
		b = appendQuoted(b, p.Language[0], utf8)
	default:
		b = append(b, '(')
		for i, l := range p.Language {
			if i > 0 {
				b = append(b, ' ')
			}
			b = appendQuoted(b, l, utf8)
		}
		b = append(b, ')')
	}
	b = append(b, ' ')
	return appendNString(b, p.Location, utf8)
}

// appendLiteral appends s as a literal, NULs replaced (see
// wire.NULInLiteral).
func appendLiteral(b []byte, s string) []byte {
	b = append(b, '{')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, "}\r\n"...)
	start := len(b)
	b = append(b, s...)
	for i := start; i < len(b); i++ {
		if b[i] == 0 {
			b[i] = wire.NULInLiteral
		}
	}
	return b
}

// appendNString appends NIL for "", else s quoted.
func appendNString(b []byte, s string, utf8 bool) []byte {
	if s == "" {
		return append(b, "NIL"...)
	}
	return appendQuoted(b, s, utf8)
}

// appendQuoted appends s quoted, or as a literal when it cannot be.
func appendQuoted(b []byte, s string, utf8 bool) []byte {
	esc, high := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == 0 || c == '\r' || c == '\n' || (c >= 0x80 && !utf8):
			return appendLiteral(b, s)
		case c >= 0x80:
			high = true
		case c == '"' || c == '\\':
			esc = true
		}
	}
	if high && !wire.ValidUTF8(s) {
		// A quoted string holds UTF-8 only, even after UTF8=ACCEPT
		// (RFC 9051 utf8-quoted): other 8-bit text (a raw Latin-1
		// Subject) goes as a literal, its bytes as they are, as before
		// UTF8=ACCEPT.
		return appendLiteral(b, s)
	}
	b = append(b, '"')
	if !esc {
		b = append(b, s...)
	} else {
		for i := 0; i < len(s); i++ {
			if s[i] == '"' || s[i] == '\\' {
				b = append(b, '\\')
			}
			b = append(b, s[i])
		}
	}
	return append(b, '"')
}
