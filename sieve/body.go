package sieve

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"html"
	"io"
	"mime"
	"mime/quotedprintable"
	"regexp"
	"strings"

	"github.com/emersion/go-message/charset"
	"github.com/emersion/go-message/textproto"

	"courriel/internal/mimepart"
)

// body (RFC 5173): the body test matches the body undecoded (:raw), the
// MIME parts of chosen content types decoded to UTF-8 (:content), or the
// text of the message (:text, the default: text/* parts, HTML reduced to
// its text). As in Pigeonhole, a multipart's preamble and epilogue are
// parts of its own type, and a message/rfc822 part's content is the
// header of the message it holds, whose parts follow.

var bodyTests = map[string]spec{
	"body": {ext: "body", pos: []valueKind{vStrings}, tags: tags(matchTags, map[string]tagSpec{
		"raw": {group: "transform"}, "content": {param: vStrings, group: "transform"}, "text": {group: "transform"}})},
}

// DefaultMaxBody is the part of a message body ReadMessage keeps for the
// body test: a longer body is seen only up to there (Message.BodyTruncated).
const DefaultMaxBody = 4 << 20

// MIME walking bounds: hostile messages nest and split without end. They
// are Dovecot's message parser's (message_max_nested_mime_parts,
// message_max_total_mime_parts), so a part Pigeonhole's tests reach is
// reached here too: a sender cannot slip an attachment past a user's rule
// by padding the message with a few hundred empty parts.
const (
	maxMIMEDepth = 100
	maxMIMEParts = 10000
)

func (s *Script) checkBody(t *Test, n *node) *Error {
	// Pigeonhole takes any :content string; one that is no type matches
	// no part.
	return nil
}

// bodyPart is one part as the body test sees it.
type bodyPart struct {
	contentType string       // type/subtype, lower case
	content     *cachedValue // transfer-decoded, text converted to UTF-8
	leaf        bool         // neither a multipart's preamble/epilogue nor a message/rfc822 header
	text        *cachedValue // content as :text sees it (HTML reduced), once asked for
}

// bodyCache is what the body tests of a run derive from the message, each
// made once: foreverypart runs the same tests for every part, and a test
// that read (and folded) the whole body again each time made the cost of
// a run grow with parts × size. The body test reads the message's own MIME
// structure: editheader does not change it (as in Pigeonhole, which reads
// the message as received).
type bodyCache struct {
	raw    *cachedValue // the body undecoded (:raw)
	walked bool         // parts has been filled
	parts  []bodyPart
	// results are the answers of the tests made so far (at most
	// maxBodyResults): a test's answer depends only on the message, its
	// node (transform, comparator, match type) and its expanded strings.
	results map[bodyResultKey]bool
}

// bodyResultKey is a body test: its node, and its content types and keys
// as expanded, each followed by a NUL.
type bodyResultKey struct {
	n    *node
	args string
}

// maxBodyResults bounds the answers a run remembers: keys made from
// variables can differ at every iteration of a loop.
const maxBodyResults = 256

func (r *runner) bodyTest(n *node) (bool, error) {
	if r.body == nil {
		r.body = &bodyCache{}
	}
	keys := r.strs(n.pos[0])
	var wanted []string
	_, raw := n.tags["raw"]
	text := !raw
	if a, ok := n.tags["content"]; ok {
		wanted = r.strs(a)
		text = false
	}
	var args strings.Builder
	for _, s := range append(wanted, keys...) {
		args.WriteString(s)
		args.WriteByte(0)
	}
	key := bodyResultKey{n: n, args: args.String()}
	if ok, found := r.body.results[key]; found {
		return ok, nil
	}
	var values []*cachedValue
	if raw {
		if r.body.raw == nil {
			r.body.raw = &cachedValue{s: string(r.msg.Body)}
		}
		values = []*cachedValue{r.body.raw}
	} else {
		if !r.body.walked {
			r.body.walked = true
			walkMIME(r.msg.Header, r.msg.Body, r.mimeTree(), 0, &r.body.parts, &r.budget)
		}
		if text {
			wanted = []string{"text", "application/xhtml+xml"}
		}
		for i := range r.body.parts {
			p := &r.body.parts[i]
			if !wantedType(wanted, p.contentType) {
				continue
			}
			v := p.content
			if text && p.leaf && (p.contentType == "text/html" || p.contentType == "application/xhtml+xml") {
				if p.text == nil {
					r.budget.spend(regexCost * len(p.content.s)) // htmlText's expressions
					p.text = &cachedValue{s: htmlText(p.content.s)}
				}
				v = p.text
			}
			values = append(values, v)
		}
	}
	// Pigeonhole's body test sets no match variables.
	ok := r.matchCached(n, values, keys)
	if r.body.results == nil {
		r.body.results = map[bodyResultKey]bool{}
	}
	if len(r.body.results) < maxBodyResults {
		r.body.results[key] = ok
	}
	return ok, nil
}

// wantedType is RFC 5173 §5.2's choice: "" every part, "type" every
// subtype, "type/subtype" that one.
func wantedType(wanted []string, ct string) bool {
	main := ct
	if i := strings.IndexByte(ct, '/'); i >= 0 {
		main = ct[:i]
	}
	for _, w := range wanted {
		w = strings.ToLower(w)
		switch {
		case w == "":
			return true
		case strings.Contains(w, "/"):
			if w == ct {
				return true
			}
		case w == main:
			return true
		}
	}
	return false
}

// walkMIME appends the parts of an entity, e of msg, depth first.
func walkMIME(h textproto.Header, msg []byte, e *mimepart.Entity, depth int, out *[]bodyPart, work *budget) {
	body := msg[e.BodyStart:e.End]
	if len(*out) >= maxMIMEParts || !work.spend(decodeCost*len(body)) {
		return
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || ct == "" {
		ct, params = "text/plain", map[string]string{"charset": "us-ascii"}
	}
	ct = strings.ToLower(ct)
	switch {
	case strings.HasPrefix(ct, "multipart/") && hasBoundary(params) && depth < maxMIMEDepth:
		// mimeKind cut it.
		*out = append(*out, bodyPart{contentType: ct, content: &cachedValue{s: string(msg[e.Preamble.Start:e.Preamble.End])}})
		for _, p := range e.Parts {
			walkMIME(parseHeader(msg[p.Start:p.BodyStart]), msg, p, depth+1, out, work)
			if len(*out) >= maxMIMEParts {
				return
			}
		}
		if e.Closed {
			*out = append(*out, bodyPart{contentType: ct, content: &cachedValue{s: string(msg[e.Epilogue.Start:e.Epilogue.End])}})
		}
	case ct == "message/rfc822" && depth < maxMIMEDepth:
		imsg, ie := encapsulated(h, msg, e, depth)
		*out = append(*out, bodyPart{contentType: ct, content: &cachedValue{s: string(headerBlock(imsg[ie.Start:ie.End]))}})
		walkMIME(parseHeader(imsg[ie.Start:ie.BodyStart]), imsg, ie, depth+1, out, work)
	default:
		content := transferDecode(h, body)
		if strings.HasPrefix(ct, "text/") {
			content = toUTF8(content, params["charset"])
		}
		*out = append(*out, bodyPart{contentType: ct, content: &cachedValue{s: string(content)}, leaf: true})
	}
}

// parseHeader parses an entity's header.
func parseHeader(b []byte) textproto.Header {
	h, err := textproto.ReadHeader(bufio.NewReaderSize(bytes.NewReader(b), 512))
	if err != nil {
		return textproto.Header{}
	}
	return h
}

// mimeTree is the message's body cut into its entities, once a run.
func (r *runner) mimeTree() *mimepart.Entity {
	if r.tree == nil {
		r.tree = mimeParser(0).ParseBody(r.msg.Body, mimeKind(&r.msg.Header, 0))
	}
	return r.tree
}

// mimeParser cuts a message depth levels deep as Pigeonhole's parser
// (Dovecot's) does: a delimiter line goes to the longest boundary of all
// the multiparts open around it (internal/mimepart).
func mimeParser(depth int) mimepart.Parser {
	return mimepart.Parser{
		HeaderEnd: headerEnd,
		MaxParts:  maxMIMEParts,
		Kind: func(header []byte, e *mimepart.Entity) mimepart.Kind {
			return mimeKind(rawHeader(header), depth+e.Depth)
		},
	}
}

// mimeKind is what the walkers look into: multiparts with a boundary,
// and messages, at most maxMIMEDepth levels deep. A message whose
// Content-Transfer-Encoding changes its bytes is parsed apart, decoded
// (encapsulated).
func mimeKind(h interface{ Get(string) string }, depth int) mimepart.Kind {
	if depth >= maxMIMEDepth {
		return mimepart.Kind{}
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	ct = strings.ToLower(ct)
	switch {
	case err == nil && strings.HasPrefix(ct, "multipart/") && hasBoundary(params):
		return mimepart.Kind{Multipart: true, Delimiter: mimepart.NewDelimiter(params["boundary"])}
	case ct == "message/rfc822" && !encoded(h):
		return mimepart.Kind{Message: true}
	}
	return mimepart.Kind{}
}

// encoded tells a Content-Transfer-Encoding that transferDecode undoes.
func encoded(h interface{ Get(string) string }) bool {
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64", "quoted-printable":
		return true
	}
	return false
}

// rawHeader is a header's bytes, read for a field or two without the
// cost of parsing all of it (mimeKind, for every part of a message).
type rawHeader []byte

// Get is the unfolded value of the first field name, as textproto's Get.
func (h rawHeader) Get(name string) string {
	var val []byte
	found := false
	for rest := []byte(h); len(rest) > 0; {
		ln := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			ln, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		ln = bytes.TrimSuffix(ln, []byte("\r"))
		if len(ln) > 0 && (ln[0] == ' ' || ln[0] == '\t') {
			if found {
				val = append(val, ln...)
			}
			continue
		}
		if found {
			break
		}
		if k, v, ok := bytes.Cut(ln, []byte(":")); ok && strings.EqualFold(string(bytes.TrimRight(k, " \t")), name) {
			val, found = append([]byte(nil), v...), true
		}
	}
	return strings.TrimSpace(string(val))
}

// encapsulated is the message that e, a message/rfc822 entity of msg
// with header h, depth levels deep, holds: with the bytes it is in.
func encapsulated(h textproto.Header, msg []byte, e *mimepart.Entity, depth int) ([]byte, *mimepart.Entity) {
	if e.Message != nil {
		return msg, e.Message
	}
	inner := transferDecode(h, msg[e.BodyStart:e.End])
	return inner, mimeParser(depth + 1).Parse(inner)
}

// headerEnd is where an entity's body starts: after the first empty line
// (LF or CRLF), where textproto.ReadHeader stops; len(raw) without one.
func headerEnd(raw []byte) int {
	for pos := 0; pos < len(raw); {
		nl := bytes.IndexByte(raw[pos:], '\n')
		if nl < 0 {
			break
		}
		if line := raw[pos : pos+nl]; len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return pos + nl + 1
		}
		pos += nl + 1
	}
	return len(raw)
}

// headerBlock is an entity's header text, without the empty line.
func headerBlock(raw []byte) []byte {
	if bytes.HasPrefix(raw, []byte("\n")) || bytes.HasPrefix(raw, []byte("\r\n")) {
		return nil
	}
	for _, sep := range [][]byte{[]byte("\r\n\r\n"), []byte("\n\n")} {
		if i := bytes.Index(raw, sep); i >= 0 {
			return raw[:i+len(sep)/2]
		}
	}
	return raw
}

// hasBoundary tells a multipart with a boundary parameter, even an empty
// one (which Dovecot splits at every "--" line), from one without.
func hasBoundary(params map[string]string) bool {
	_, ok := params["boundary"]
	return ok
}

// transferDecode undoes the Content-Transfer-Encoding; broken encodings
// give what decoded before the damage.
func transferDecode(h textproto.Header, body []byte) []byte {
	switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
				return -1
			}
			return r
		}, body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, _ := base64.StdEncoding.Decode(out, clean)
		if n == 0 {
			n, _ = base64.RawStdEncoding.Decode(out, bytes.TrimRight(clean, "="))
		}
		return out[:n]
	case "quoted-printable":
		out, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		return out
	}
	return body
}

// toUTF8 converts text in a charset; an unknown charset leaves it as it is.
func toUTF8(b []byte, cs string) []byte {
	switch strings.ToLower(cs) {
	case "", "us-ascii", "utf-8", "utf8":
		return b
	}
	rd, err := charset.Reader(cs, bytes.NewReader(b))
	if err != nil {
		return b
	}
	out, err := io.ReadAll(rd)
	if err != nil {
		return b
	}
	return out
}

var (
	htmlDropped = regexp.MustCompile(`(?is)<!--.*?-->|<(script|style)\b.*?</(script|style)\s*>`)
	htmlTag     = regexp.MustCompile(`(?s)<[^>]*>`)
	htmlSpace   = regexp.MustCompile(`[ \t\r\n]+`)
)

// htmlText reduces HTML to its text: markup, comments, scripts and styles
// dropped, entities decoded, white space squeezed.
func htmlText(s string) string {
	s = htmlDropped.ReplaceAllString(s, " ")
	s = htmlTag.ReplaceAllString(s, " ")
	s = html.UnescapeString(s)
	s = htmlSpace.ReplaceAllString(s, " ")
	return strings.TrimSpace(s)
}
