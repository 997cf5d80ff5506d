package imap

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime/quotedprintable"
	"slices"
	"strings"

	"courriel/imap/mailstore"
	"courriel/internal/mimepart"
)

// The MIME structure IMAP serves (RFC 9051 §6.4.5 sections, §7.5.2
// BODYSTRUCTURE, RFC 3516 BINARY) is read from the message's own bytes:
// every entity is a pair of slices of the raw (CRLF) message, nothing is
// copied. Hostile nesting is cut at maxBodyDepth and hostile part counts
// at maxParts: what lies beyond is served as opaque content.

// maxBodyDepth bounds MIME nesting: a hostile message nesting parts
// thousands deep must not cost a deep recursion per FETCH.
const maxBodyDepth = 32

// maxParts bounds the parts of one multipart entity.
const maxParts = 1000

// mpart is one MIME entity.
type mpart struct {
	header  []byte // including the blank line that ends it; may be empty
	body    []byte
	ctype   string            // lower case: "text"
	subtype string            // lower case: "plain"
	params  map[string]string // names lower case, the first of a name: for lookups
	// paramList is the parameters as BODYSTRUCTURE gives them (see
	// parseMIMEParams), the charset a text part defaults to last.
	paramList []mailstore.Param
	children  []*mpart // multipart
	msg       *mpart   // message/rfc822 and message/global: the encapsulated message
	fields    mimeFields
	// span is where an entity found by scanMIME lies in the message;
	// header and body are then nil (mimescan.go). Nil for parseEntity's.
	span *partSpan
}

// mimeFields are the first values of the MIME fields of an entity's
// header, unfolded and trimmed; hasType tells an empty Content-Type from
// none.
type mimeFields struct {
	ctype, cte, disposition, language, location, id, description, md5 string
	hasType                                                           bool
}

// parseMIMEFields reads the MIME fields of a header in one pass.
func parseMIMEFields(h []byte) mimeFields {
	var f mimeFields
	var seen uint8
	scanHeader(h, func(name, raw []byte) {
		if len(name) < len("content-id") || !nameIs(name[:8], "content-") {
			return
		}
		var dst *string
		var bit uint8
		switch rest := name[8:]; {
		case nameIs(rest, "type"):
			dst, bit = &f.ctype, 1
		case nameIs(rest, "transfer-encoding"):
			dst, bit = &f.cte, 2
		case nameIs(rest, "disposition"):
			dst, bit = &f.disposition, 4
		case nameIs(rest, "language"):
			dst, bit = &f.language, 8
		case nameIs(rest, "location"):
			dst, bit = &f.location, 16
		case nameIs(rest, "id"):
			dst, bit = &f.id, 32
		case nameIs(rest, "description"):
			dst, bit = &f.description, 64
		case nameIs(rest, "md5"):
			dst, bit = &f.md5, 128
		default:
			return
		}
		if seen&bit == 0 {
			seen |= bit
			*dst = fieldValue(raw)
		}
	})
	f.hasType = seen&1 != 0
	return f
}

// parseEntity parses raw as an entity whose Content-Type defaults to
// defType (text/plain, or message/rfc822 inside multipart/digest), depth
// levels below the message.
func parseEntity(raw []byte, defType string, depth int) *mpart {
	made := map[*mimepart.Entity]*mpart{}
	kind := func(header []byte, e *mimepart.Entity) mimepart.Kind {
		dt := defType
		if e.Parent != nil {
			dt = "text/plain"
			if pp := made[e.Parent]; pp.ctype == "multipart" {
				dt = pp.childType()
			}
		}
		p := &mpart{header: header}
		p.setType(header, dt)
		made[e] = p
		if depth+e.Depth >= maxBodyDepth {
			return mimepart.Kind{}
		}
		switch {
		case p.ctype == "multipart":
			// Cut as Dovecot cuts it (internal/mimepart); without a
			// boundary parameter, no parts.
			if b, ok := p.params["boundary"]; ok {
				return mimepart.Kind{Multipart: true, Delimiter: mimepart.NewDelimiter(b)}
			}
		case p.encapsulates():
			return mimepart.Kind{Message: true}
		}
		return mimepart.Kind{}
	}
	var fill func(e *mimepart.Entity) *mpart
	fill = func(e *mimepart.Entity) *mpart {
		p := made[e]
		p.header, p.body = raw[e.Start:e.BodyStart], raw[e.BodyStart:e.End]
		for _, c := range e.Parts {
			p.children = append(p.children, fill(c))
		}
		if e.Message != nil {
			p.msg = fill(e.Message)
		}
		return p
	}
	return fill(mimepart.Parser{HeaderEnd: headerEnd, Kind: kind, MaxParts: maxParts}.Parse(raw))
}

// setType reads the MIME fields of header, the entity's, and its type,
// defType when it names none.
func (p *mpart) setType(header []byte, defType string) {
	p.fields = parseMIMEFields(header)
	ct := defType
	if p.fields.hasType {
		ct = p.fields.ctype
	}
	mt, list := parseMIMEParams(ct, true) // mimeparams.go
	p.ctype, p.subtype, _ = strings.Cut(mt, "/")
	if p.ctype == "" || p.subtype == "" {
		p.ctype, p.subtype, list = "text", "plain", nil
	}
	params := paramMap(list)
	p.params, p.paramList = params, list
	if _, ok := params["charset"]; !ok && p.ctype == "text" {
		// RFC 2046 §4.1.2's default, named as Dovecot names it, after
		// the others as Dovecot writes it (imap-bodystructure.c,
		// params_write).
		if p.params == nil {
			p.params = map[string]string{}
		}
		p.params["charset"] = "us-ascii"
		p.paramList = append(slices.Clip(list), mailstore.Param{Name: "charset", Value: "us-ascii"})
	}
}

// childType is the default type of a multipart's parts.
func (p *mpart) childType() string {
	if p.subtype == "digest" {
		return "message/rfc822"
	}
	return "text/plain"
}

// encapsulates reports whether the entity's body is a message.
func (p *mpart) encapsulates() bool {
	return p.ctype == "message" && (p.subtype == "rfc822" || p.subtype == "global")
}

// resolvePart follows a section's part numbers from the message root: the
// parts of a multipart, the encapsulated message of a message/rfc822 part,
// and part 1 of a single-part entity being the entity itself.
func resolvePart(root *mpart, path []int) *mpart {
	cur := root
	top := true
	for _, n := range path {
		// Below the top, a message/rfc822 part's numbers are those of the
		// message it holds.
		if !top && cur.msg != nil {
			cur = cur.msg
		}
		top = false
		if cur.ctype == "multipart" {
			if n < 1 || n > len(cur.children) {
				return nil
			}
			cur = cur.children[n-1]
			continue
		}
		if n != 1 {
			return nil
		}
	}
	return cur
}

// sectionKind is what a BODY[...] section asks for after its part numbers.
type sectionKind uint8

const (
	secAll sectionKind = iota
	secHeader
	secText
	secMIME
)

// extractBody returns the bytes of BODY[path.spec] (RFC 9051 §6.4.5);
// a section that does not exist is empty, never an error.
func extractBody(raw []byte, path []int, kind sectionKind, fields []string, not bool) []byte {
	if len(path) == 0 && kind == secAll {
		return raw
	}
	root := parseEntity(raw, "text/plain", 0)
	p := resolvePart(root, path)
	if p == nil {
		return []byte{}
	}
	switch kind {
	case secAll:
		return p.body
	case secMIME:
		return p.header
	}
	m := p // HEADER and TEXT of the message itself, or of a message/rfc822 part
	if len(path) > 0 {
		if p.msg == nil {
			return []byte{}
		}
		m = p.msg
	}
	if kind == secText {
		return m.body
	}
	if fields == nil && !not {
		return m.header
	}
	return filterHeader(m.header, fields, not)
}

// filterHeader keeps the fields named (or, with not, the others), raw, with
// their continuation lines, and the blank line.
func filterHeader(h []byte, names []string, not bool) []byte {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[strings.ToLower(n)] = true
	}
	var out bytes.Buffer
	keep := false
	for len(h) > 0 {
		i := bytes.IndexByte(h, '\n')
		line := h
		if i >= 0 {
			line, h = h[:i+1], h[i+1:]
		} else {
			h = nil
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if line[0] != ' ' && line[0] != '\t' {
			name := line
			if c := bytes.IndexByte(line, ':'); c >= 0 {
				name = line[:c]
			}
			keep = want[strings.ToLower(string(bytes.TrimSpace(name)))] != not
		}
		if keep {
			out.Write(line)
		}
	}
	out.WriteString("\r\n")
	return out.Bytes()
}

// extractBinary returns BINARY[path]: the part's content with its
// transfer encoding undone (RFC 3516); ok is false for an encoding it
// does not know (UNKNOWN-CTE).
func extractBinary(raw []byte, path []int) (b []byte, ok bool) {
	if len(path) == 0 {
		return raw, true
	}
	root := parseEntity(raw, "text/plain", 0)
	p := resolvePart(root, path)
	if p == nil {
		return []byte{}, true
	}
	cte := strings.ToLower(strings.TrimSpace(p.fields.cte))
	switch cte {
	case "base64":
		out, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, lineJoiner{r: bytes.NewReader(p.body)}))
		return out, true
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(p.body)))
		return out, true
	case "", "7bit", "8bit", "binary":
		return p.body, true
	}
	return nil, false
}

// lineJoiner drops CR, LF and anything else base64 does not use, so that
// the lines of a part decode as one stream.
type lineJoiner struct{ r io.Reader }

func (n lineJoiner) Read(p []byte) (int, error) {
	for {
		c, err := n.r.Read(p)
		j := 0
		for _, b := range p[:c] {
			if b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '+' || b == '/' || b == '=' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

// bodyStructure computes the cached BODYSTRUCTURE of a message.
func bodyStructure(raw []byte) *mailstore.BodyPart {
	return bodyPartOf(parseEntity(raw, "text/plain", 0), 0)
}

func bodyPartOf(p *mpart, depth int) *mailstore.BodyPart {
	f := &p.fields
	bp := &mailstore.BodyPart{Type: p.ctype, Subtype: p.subtype, Params: p.paramList, Location: f.location}
	if d := f.disposition; d != "" {
		bp.Disposition, bp.DispParams = parseMIMEParams(d, false)
	}
	if l := f.language; l != "" {
		for _, x := range strings.Split(l, ",") {
			if x = strings.TrimSpace(x); x != "" {
				bp.Language = append(bp.Language, x)
			}
		}
	}
	if p.ctype == "multipart" {
		for _, c := range p.children {
			bp.Children = append(bp.Children, bodyPartOf(c, depth+1))
		}
		if len(bp.Children) == 0 {
			// IMAP needs at least one part (RFC 9051 body-type-mpart).
			bp.Children = []*mailstore.BodyPart{fallbackPart(0, 0)}
		}
		return bp
	}
	bp.ID = f.id
	bp.Description = f.description
	bp.MD5 = f.md5
	bp.Encoding = strings.TrimSpace(f.cte)
	if bp.Encoding == "" {
		bp.Encoding = "7bit"
	}
	bp.Size = uint32(min(p.bodySize(), 1<<32-1))
	switch {
	case p.msg != nil && depth < maxBodyDepth:
		bp.Envelope = buildEnvelope(p.msg.header)
		bp.Envelope.References = nil // only top-level messages are threaded
		bp.Sub = bodyPartOf(p.msg, depth+1)
		bp.Lines = p.bodyLines()
	case p.ctype == "text":
		bp.Lines = p.bodyLines()
	}
	return bp
}

// bodySize is the length of the entity's body, scanned or in memory.
func (p *mpart) bodySize() int64 {
	if p.span != nil {
		return p.span.bodyLen()
	}
	return int64(len(p.body))
}

// bodyLines counts the LFs of the entity's body.
func (p *mpart) bodyLines() int64 {
	if p.span != nil {
		return p.span.lines
	}
	return int64(bytes.Count(p.body, []byte("\n")))
}

func fallbackPart(size int, lines int64) *mailstore.BodyPart {
	return &mailstore.BodyPart{
		Type: "text", Subtype: "plain",
		Params:   []mailstore.Param{{Name: "charset", Value: "us-ascii"}},
		Encoding: "7bit", Size: uint32(size), Lines: lines,
	}
}

// encodeBinaryParts rewrites the leaf parts of raw whose transfer encoding
// is binary (or that hold NULs) as base64, leaving every other byte as it
// was.
func encodeBinaryParts(raw []byte) []byte {
	root := parseEntity(raw, "text/plain", 0)
	var out bytes.Buffer
	pos := 0 // bytes of raw already copied
	root.eachLeaf(func(p *mpart) {
		if !p.storedBase64() {
			return
		}
		start := cap(raw) - cap(p.header)
		out.Write(raw[pos:start])
		out.Write(withCTE(p.header, "base64"))
		enc := base64.StdEncoding.EncodeToString(p.body)
		for len(enc) > 76 {
			out.WriteString(enc[:76])
			out.WriteString("\r\n")
			enc = enc[76:]
		}
		out.WriteString(enc)
		if len(enc) > 0 {
			out.WriteString("\r\n")
		}
		pos = cap(raw) - cap(p.body) + len(p.body)
	})
	if pos == 0 {
		return raw
	}
	out.Write(raw[pos:])
	return out.Bytes()
}

// eachLeaf calls f for each leaf under p, in order: the parts of its
// multiparts and of the messages they encapsulate (a multipart without
// parts is a leaf).
func (p *mpart) eachLeaf(f func(*mpart)) {
	switch {
	case len(p.children) > 0:
		for _, c := range p.children {
			c.eachLeaf(f)
		}
	case p.msg != nil:
		p.msg.eachLeaf(f)
	default:
		f(p)
	}
}

// storedBase64 reports whether an APPENDed leaf is stored base64-encoded
// (encodeBinaryParts, binaryEncoded): its transfer encoding is binary, or
// it holds a NUL and is neither base64 nor quoted-printable, which are
// already line-safe (a NUL there is the client's problem).
func (p *mpart) storedBase64() bool {
	cte := strings.ToLower(strings.TrimSpace(p.fields.cte))
	nul := false
	if p.span != nil {
		nul = p.span.nul
	} else {
		nul = bytes.IndexByte(p.body, 0) >= 0
	}
	return cte == "binary" || nul && cte != "base64" && cte != "quoted-printable"
}

// withCTE returns a header with its Content-Transfer-Encoding set to cte.
func withCTE(h []byte, cte string) []byte {
	var out bytes.Buffer
	skip := false
	rest := h
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break // the blank line: written below
		}
		if line[0] != ' ' && line[0] != '\t' {
			skip = bytes.HasPrefix(bytes.ToLower(line), []byte("content-transfer-encoding:"))
		}
		if !skip {
			out.Write(line)
		}
	}
	out.WriteString("Content-Transfer-Encoding: " + cte + "\r\n\r\n")
	return out.Bytes()
}
