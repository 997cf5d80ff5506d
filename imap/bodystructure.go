package imap

import (
	"bytes"
	"sort"
	"strconv"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"courriel/imap/mailstore"
)

// maxBodyDepth bounds MIME nesting kept in BODYSTRUCTURE: a hostile message
// nesting parts thousands deep must not cost a deep recursion per FETCH.
const maxBodyDepth = 32

// safeBodyStructure parses raw (CRLF) with the library and falls back to a
// single text/plain part when the MIME is too broken to parse.
func safeBodyStructure(raw []byte) (bs goimap.BodyStructure) {
	defer func() {
		if recover() != nil {
			bs = nil
		}
	}()
	return imapserver.ExtractBodyStructure(bytes.NewReader(raw))
}

func fallbackPart(size int, lines int64) *mailstore.BodyPart {
	return &mailstore.BodyPart{
		Type: "text", Subtype: "plain",
		Params:   map[string]string{"charset": "us-ascii"},
		Encoding: "7bit", Size: uint32(size), Lines: lines,
	}
}

func bodyPartFrom(bs goimap.BodyStructure, depth int) *mailstore.BodyPart {
	switch b := bs.(type) {
	case *goimap.BodyStructureMultiPart:
		if depth >= maxBodyDepth {
			return fallbackPart(0, 0)
		}
		p := &mailstore.BodyPart{Type: "multipart", Subtype: b.Subtype}
		if b.Extended != nil {
			p.Params = b.Extended.Params
			if b.Extended.Disposition != nil {
				p.Disposition, p.DispParams = b.Extended.Disposition.Value, b.Extended.Disposition.Params
			}
			p.Language, p.Location = b.Extended.Language, b.Extended.Location
		}
		for _, c := range b.Children {
			p.Children = append(p.Children, bodyPartFrom(c, depth+1))
		}
		if len(p.Children) == 0 {
			// IMAP needs at least one part (RFC 9051 body-type-mpart).
			p.Children = []*mailstore.BodyPart{fallbackPart(0, 0)}
		}
		if p.Subtype == "" {
			p.Subtype = "mixed"
		}
		return p
	case *goimap.BodyStructureSinglePart:
		p := &mailstore.BodyPart{
			Type: b.Type, Subtype: b.Subtype, Params: b.Params,
			ID: b.ID, Description: b.Description, Encoding: b.Encoding, Size: b.Size,
		}
		if p.Type == "" || p.Subtype == "" {
			p.Type, p.Subtype = "text", "plain"
		}
		if p.Encoding == "" {
			p.Encoding = "7bit"
		}
		if b.Text != nil {
			p.Lines = b.Text.NumLines
		}
		if b.MessageRFC822 != nil && depth < maxBodyDepth {
			p.Envelope = envToStore(b.MessageRFC822.Envelope)
			p.Sub = bodyPartFrom(b.MessageRFC822.BodyStructure, depth+1)
			p.Lines = b.MessageRFC822.NumLines
		}
		if b.Extended != nil {
			if b.Extended.Disposition != nil {
				p.Disposition, p.DispParams = b.Extended.Disposition.Value, b.Extended.Disposition.Params
			}
			p.Language, p.Location = b.Extended.Language, b.Extended.Location
		}
		return p
	}
	return fallbackPart(0, 0)
}

func bodyToIMAP(p *mailstore.BodyPart, depth int) goimap.BodyStructure {
	var disp *goimap.BodyStructureDisposition
	if p.Disposition != "" {
		disp = &goimap.BodyStructureDisposition{Value: p.Disposition, Params: p.DispParams}
	}
	if p.Type == "multipart" {
		m := &goimap.BodyStructureMultiPart{
			Subtype: p.Subtype,
			Extended: &goimap.BodyStructureMultiPartExt{
				Params: p.Params, Disposition: disp, Language: p.Language, Location: p.Location,
			},
		}
		for _, c := range p.Children {
			m.Children = append(m.Children, bodyToIMAP(c, depth+1))
		}
		return m
	}
	s := &goimap.BodyStructureSinglePart{
		Type: p.Type, Subtype: p.Subtype, Params: p.Params,
		ID: p.ID, Description: p.Description, Encoding: p.Encoding, Size: p.Size,
		Extended: &goimap.BodyStructureSinglePartExt{Disposition: disp, Language: p.Language, Location: p.Location},
	}
	switch {
	case p.Sub != nil:
		env := envToIMAP(p.Envelope)
		if env == nil {
			env = &goimap.Envelope{}
		}
		s.MessageRFC822 = &goimap.BodyStructureMessageRFC822{Envelope: env, BodyStructure: bodyToIMAP(p.Sub, depth+1), NumLines: p.Lines}
	case p.Type == "text":
		s.Text = &goimap.BodyStructureText{NumLines: p.Lines}
	}
	return s
}

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
