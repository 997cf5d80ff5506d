package imap

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	"courriel/imap/mailstore"
)

// writeBodyStructure writes BODYSTRUCTURE (ext) or BODY of a cached part.
func writeBodyStructure(b *bytes.Buffer, p *mailstore.BodyPart, ext, utf8 bool, depth int) {
	str := func(s string) { writeQuoted(b, s, utf8) }
	nstr := func(s string) {
		if s == "" {
			b.WriteString("NIL")
		} else {
			str(s)
		}
	}
	params := func(m map[string]string) {
		if len(m) == 0 {
			b.WriteString("NIL")
			return
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteByte('(')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(' ')
			}
			str(strings.ToLower(k))
			b.WriteByte(' ')
			str(m[k])
		}
		b.WriteByte(')')
	}
	extTail := func() {
		b.WriteByte(' ')
		if p.Disposition == "" {
			b.WriteString("NIL")
		} else {
			b.WriteByte('(')
			str(p.Disposition)
			b.WriteByte(' ')
			params(p.DispParams)
			b.WriteByte(')')
		}
		b.WriteByte(' ')
		switch len(p.Language) {
		case 0:
			b.WriteString("NIL")
		case 1:
			str(p.Language[0])
		default:
			b.WriteByte('(')
			for i, l := range p.Language {
				if i > 0 {
					b.WriteByte(' ')
				}
				str(l)
			}
			b.WriteByte(')')
		}
		b.WriteByte(' ')
		nstr(p.Location)
	}
	b.WriteByte('(')
	if p.Type == "multipart" && depth < maxBodyDepth {
		for _, c := range p.Children {
			writeBodyStructure(b, c, ext, utf8, depth+1)
		}
		b.WriteByte(' ')
		str(p.Subtype)
		if ext {
			b.WriteByte(' ')
			params(p.Params)
			extTail()
		}
		b.WriteByte(')')
		return
	}
	str(p.Type)
	b.WriteByte(' ')
	str(p.Subtype)
	b.WriteByte(' ')
	params(p.Params)
	b.WriteByte(' ')
	nstr(p.ID)
	b.WriteByte(' ')
	nstr(p.Description)
	b.WriteByte(' ')
	str(p.Encoding)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatUint(uint64(p.Size), 10))
	switch {
	case p.Sub != nil && depth < maxBodyDepth:
		b.WriteByte(' ')
		var sw bytes.Buffer
		env := p.Envelope
		if env == nil {
			env = &mailstore.Envelope{}
		}
		writeEnvelopeTo(&sw, env, utf8)
		b.Write(sw.Bytes())
		b.WriteByte(' ')
		writeBodyStructure(b, p.Sub, ext, utf8, depth+1)
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(p.Lines, 10))
	case strings.EqualFold(p.Type, "text"):
		b.WriteByte(' ')
		b.WriteString(strconv.FormatInt(p.Lines, 10))
	}
	if ext {
		b.WriteString(" NIL") // MD5
		extTail()
	}
	b.WriteByte(')')
}

// writeQuoted writes s quoted, or as a literal when it cannot be.
func writeQuoted(b *bytes.Buffer, s string, utf8 bool) {
	lit := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == 0 || c == '\r' || c == '\n' || (c >= 0x80 && !utf8) {
			lit = true
			break
		}
	}
	if lit {
		b.WriteByte('{')
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteString("}\r\n")
		b.WriteString(s)
		return
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}
