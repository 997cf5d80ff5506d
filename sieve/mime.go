package sieve

import (
	"courriel/internal/mimepart"
	"errors"
	"html"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// mime, foreverypart and extracttext (RFC 5703). foreverypart runs its
// block once per MIME part, depth first, the message itself first (as in
// Pigeonhole); a nested loop visits the descendants of the enclosing
// loop's part. header, address and exists with :mime read the current
// part's header (the message's outside a loop), and with :anychild that
// part's and its descendants'. extracttext sets a variable to the current
// part's content, decoded.
//
// Bounds against hostile messages: the parts are those walkMIME's limits
// allow (maxMIMEDepth levels, maxMIMEParts parts), loops nest at most
// maxLoopNesting deep (Pigeonhole's limit), a run makes at most
// maxLoopIterations iterations in all (a runtime error past them),
// extracttext keeps at most maxVariableSize octets, and the work of all
// the iterations counts in the run's budget (budget.go).

var (
	mimeTags = map[string]tagSpec{
		"mime": {ext: "mime"}, "anychild": {ext: "mime"},
	}
	mimeOptionTags = map[string]tagSpec{
		"type": {ext: "mime", group: "mime-option"}, "subtype": {ext: "mime", group: "mime-option"},
		"contenttype": {ext: "mime", group: "mime-option"},
		"param":       {param: vStrings, ext: "mime", group: "mime-option"},
	}
	mimeCommands = map[string]spec{
		"foreverypart": {ext: "foreverypart", block: true, tags: map[string]tagSpec{"name": {param: vString}}},
		"break":        {ext: "foreverypart", tags: map[string]tagSpec{"name": {param: vString}}},
		"extracttext": {ext: "extracttext", pos: []valueKind{vString}, tags: map[string]tagSpec{
			"lower": {group: "case"}, "upper": {group: "case"},
			"lowerfirst": {group: "first"}, "upperfirst": {group: "first"},
			"quotewildcard": {}, "length": {}, "encodeurl": {ext: "enotify"}, "first": {param: vNumber}}},
	}
)

const (
	// maxLoopNesting is how deep foreverypart loops nest (Pigeonhole's
	// limit: "<= 4 levels").
	maxLoopNesting = 4
	// maxLoopIterations bounds the iterations of all loops of a run:
	// nested loops over a deep message multiply. One loop over a message
	// of maxMIMEParts parts stays well within it.
	maxLoopIterations = 100000
	// partCost is the work of looking at a part's header (:anychild),
	// beside the values read.
	partCost = 16
)

// checkMIMETags refuses the options of :mime without it.
func checkMIMETags(name string, p Pos, n *node) *Error {
	if _, ok := n.tags["mime"]; ok {
		return nil
	}
	for _, t := range []string{"anychild", "type", "subtype", "contenttype", "param"} {
		if _, ok := n.tags[t]; ok {
			return errAt(p, "the :%s tag of the %s test needs :mime", t, name)
		}
	}
	return nil
}

// checkLoopCommand checks foreverypart's nesting and that break and
// extracttext are inside a loop (a named one for break :name).
func (s *Script) checkLoopCommand(c *Command, n *node) *Error {
	switch c.Name {
	case "foreverypart":
		if len(s.loops) >= maxLoopNesting {
			return errAt(c.Pos, "foreverypart loops nest at most %d levels", maxLoopNesting)
		}
	case "break":
		if len(s.loops) == 0 {
			return errAt(c.Pos, "break must be inside a foreverypart loop")
		}
		if a, ok := n.tags["name"]; ok {
			for _, l := range s.loops {
				if l == a.Strings[0] {
					return nil
				}
			}
			return errAt(c.Pos, "break: no enclosing foreverypart loop is named \"%s\"", a.Strings[0])
		}
	case "extracttext":
		for _, e := range []string{"variables", "foreverypart"} {
			if !s.required[e] {
				return errAt(c.Pos, "extracttext needs require \"%s\"", e)
			}
		}
		if len(s.loops) == 0 {
			return errAt(c.Pos, "extracttext must be inside a foreverypart loop")
		}
		name := n.pos[0].Strings[0]
		if !validIdentifier(name) {
			return errAt(n.pos[0].Pos, "invalid variable name \"%s\"", name)
		}
		if s.required["include"] {
			s.noteLocal(name)
		}
	}
	return nil
}

// mimeEntity is one part of the message, in depth-first order.
type mimeEntity struct {
	header textproto.Header
	body   []byte // raw, as in the message
	end    int    // the index after its last descendant
	ct     string // type/subtype in lower case; "" without a valid Content-Type
	params map[string]string
}

// mimeParts flattens the message's MIME structure once per run; the
// message itself is part 0.
func (r *runner) mimeParts() []mimeEntity {
	if r.parts == nil {
		r.parts = []mimeEntity{}
		flattenMIME(r.msg.Header, r.msg.Body, r.mimeTree(), 0, &r.parts, &r.budget)
	}
	return r.parts
}

func flattenMIME(h textproto.Header, msg []byte, e *mimepart.Entity, depth int, out *[]mimeEntity, work *budget) {
	body := msg[e.BodyStart:e.End]
	if len(*out) >= maxMIMEParts || !work.spend(decodeCost*len(body)) {
		return
	}
	ct, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		ct, params = "", nil
	}
	ct = strings.ToLower(ct)
	i := len(*out)
	*out = append(*out, mimeEntity{header: h, body: body, ct: ct, params: params})
	switch {
	case depth >= maxMIMEDepth:
	case strings.HasPrefix(ct, "multipart/") && hasBoundary(params):
		// mimeKind cut it.
		for _, p := range e.Parts {
			flattenMIME(parseHeader(msg[p.Start:p.BodyStart]), msg, p, depth+1, out, work)
			if len(*out) >= maxMIMEParts {
				break
			}
		}
	case ct == "message/rfc822":
		imsg, ie := encapsulated(h, msg, e, depth)
		flattenMIME(parseHeader(imsg[ie.Start:ie.BodyStart]), imsg, ie, depth+1, out, work)
	}
	(*out)[i].end = len(*out)
}

// loopFrame is one running foreverypart loop.
type loopFrame struct {
	name string
	part int // the index of the current part
}

// breakLoop ends the loop named name ("" the innermost).
type breakLoop struct{ name string }

func (b *breakLoop) Error() string { return "break outside foreverypart" }

func (r *runner) foreverypart(c *Command, n *node) error {
	parts := r.mimeParts()
	first, end := 0, len(parts)
	if len(r.loops) > 0 {
		cur := r.loops[len(r.loops)-1].part
		first, end = cur+1, parts[cur].end
	}
	name := ""
	if a, ok := n.tags["name"]; ok {
		name = a.Strings[0]
	}
	for i := first; i < end; i++ {
		r.loopIterations++
		if r.loopIterations > maxLoopIterations {
			return r.errorf(c.Pos, "more than %d foreverypart iterations", maxLoopIterations)
		}
		if err := r.step(c.Pos); err != nil {
			return err
		}
		r.loops = append(r.loops, loopFrame{name: name, part: i})
		err := r.block(c.Block)
		r.loops = r.loops[:len(r.loops)-1]
		var b *breakLoop
		if errors.As(err, &b) && (b.name == "" || b.name == name) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) breakCommand(n *node) error {
	if a, ok := n.tags["name"]; ok {
		return &breakLoop{name: a.Strings[0]}
	}
	return &breakLoop{}
}

// currentPart is the part the innermost loop is at; 0 (the message)
// outside loops.
func (r *runner) currentPart() int {
	if len(r.loops) == 0 {
		return 0
	}
	return r.loops[len(r.loops)-1].part
}

// mimeFields are the values of the named fields in the parts a :mime test
// reads (unfolded, not decoded), part by part.
func (r *runner) mimeFields(n *node, name string) [][]string {
	parts := r.mimeParts()
	cur := r.currentPart()
	end := cur + 1
	if _, ok := n.tags["anychild"]; ok {
		end = parts[cur].end
	}
	var out [][]string
	for i := cur; i < end; i++ {
		r.budget.spend(partCost)
		if i == 0 {
			// the message's header as editheader left it
			out = append(out, r.headerValues(name))
			continue
		}
		vals := headerFieldValues(parts[i].header, name)
		for _, v := range vals {
			r.budget.spend(decodeCost * len(v))
		}
		out = append(out, vals)
	}
	return out
}

// mimeHeaderValues are the values a header :mime test matches: whole,
// decoded, or the part of a Content-Type-like value an option picks.
func (r *runner) mimeHeaderValues(n *node, names []string) []string {
	var values []string
	for _, h := range names {
		for _, part := range r.mimeFields(n, h) {
			for _, v := range part {
				if mv, ok := mimeOption(n, v); ok {
					values = append(values, mv)
				}
			}
		}
	}
	return values
}

// mimeOption applies :type, :subtype, :contenttype or :param to a field
// value (decoded without them); ok false: the value has no such part.
func mimeOption(n *node, v string) (string, bool) {
	if a, ok := n.tags["param"]; ok {
		_, params, err := mime.ParseMediaType(v)
		if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
			return "", true
		}
		// One value per field, as Pigeonhole: the first parameter
		// named that the field has, "" for none.
		for _, p := range a.Strings {
			if pv, ok := params[strings.ToLower(p)]; ok {
				return pv, true
			}
		}
		return "", true
	}
	_, ty := n.tags["type"]
	_, sub := n.tags["subtype"]
	_, whole := n.tags["contenttype"]
	if !ty && !sub && !whole {
		return decodeHeader(v), true
	}
	// The media type as written (Pigeonhole keeps its case): a token or
	// token/token before any parameter.
	mt, _, _ := strings.Cut(v, ";")
	mt = strings.TrimSpace(mt)
	typ, subtype, slash := strings.Cut(mt, "/")
	if !isToken(typ) || (slash && !isToken(subtype)) {
		return "", false
	}
	switch {
	case ty:
		return typ, true
	case sub:
		return subtype, slash
	}
	return mt, true
}

// isToken is RFC 2045's token: printable ASCII but tspecials and space.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// mimeExists: some part read holds every field named.
func (r *runner) mimeExists(n *node, names []string) bool {
	parts := r.mimeParts()
	cur := r.currentPart()
	end := cur + 1
	if _, ok := n.tags["anychild"]; ok {
		end = parts[cur].end
	}
	for i := cur; i < end; i++ {
		r.budget.spend(partCost)
		all := true
		for _, h := range names {
			if i == 0 {
				all = all && r.headerExists(h)
			} else {
				all = all && parts[i].header.Has(h)
			}
		}
		if all {
			return true
		}
	}
	return false
}

// extracttext sets the variable to the current part's content: transfer
// decoding undone, text in UTF-8, HTML reduced to its text as Dovecot's
// html2text does, nothing for a multipart or message/rfc822; :first N
// keeps N octets, as Pigeonhole (a character may be cut).
func (r *runner) extracttext(n *node) {
	text := r.partText(r.currentPart())
	if a, ok := n.tags["first"]; ok && uint64(len(text)) > a.Number {
		text = text[:a.Number]
	}
	r.setVar(n.pos[0].Strings[0], modify(n, text))
}

// partText is extracttext's text of a part, at most maxVariableSize
// octets, decoded once per run: nested loops visit a part again for each
// enclosing iteration.
func (r *runner) partText(i int) string {
	if t, ok := r.extracted[i]; ok {
		return t
	}
	p := r.mimeParts()[i]
	r.budget.spend(decodeCost * len(p.body))
	var text []byte
	switch {
	case strings.HasPrefix(p.ct, "multipart/") || p.ct == "message/rfc822":
	default:
		text = transferDecode(p.header, p.body)
		if strings.EqualFold(strings.TrimSpace(p.header.Get("Content-Transfer-Encoding")), "quoted-printable") {
			// Dovecot's decoder ends the hard line breaks of
			// quoted-printable with CRLF
			text = toCRLF(text)
		}
		if p.ct == "" || strings.HasPrefix(p.ct, "text/") {
			text = toUTF8(text, p.params["charset"])
		}
		if p.ct == "text/html" {
			text = html2text(text)
		}
	}
	t := string(text[:min(len(text), maxVariableSize)])
	if r.extracted == nil {
		r.extracted = map[int]string{}
	}
	r.extracted[i] = t
	return t
}

// html2text reduces HTML to its text as Dovecot's html2text, which
// Pigeonhole's extracttext uses: a tag becomes one space unless the text
// so far is empty or ends in white space; comments, scripts and styles
// are dropped; entities are decoded; the text's own white space stays.
func html2text(b []byte) []byte {
	s := string(b)
	out := make([]byte, 0, len(b))
	space := func() {
		if n := len(out); n > 0 && !isHTMLSpace(out[n-1]) {
			out = append(out, ' ')
		}
	}
	for len(s) > 0 {
		lt := strings.IndexByte(s, '<')
		if lt < 0 {
			out = append(out, html.UnescapeString(s)...)
			break
		}
		out = append(out, html.UnescapeString(s[:lt])...)
		s = s[lt:]
		if strings.HasPrefix(s, "<!--") {
			end := strings.Index(s[4:], "-->")
			if end < 0 {
				break
			}
			s = s[4+end+3:]
			continue
		}
		gt := strings.IndexByte(s, '>')
		if gt < 0 {
			break
		}
		tag := strings.ToLower(strings.TrimLeft(s[1:gt], " \t\r\n"))
		s = s[gt+1:]
		for _, skip := range []string{"script", "style"} {
			if strings.HasPrefix(tag, skip) && (len(tag) == len(skip) || isHTMLSpace(tag[len(skip)])) {
				end := indexASCIIFold(s, "</"+skip)
				if end < 0 {
					s = ""
					break
				}
				s = s[end:]
			}
		}
		space()
	}
	return out
}

// indexASCIIFold is the index of lower (in lower case) in s, ASCII case
// ignored. (Lowering the rest of the text at every <script> made
// html2text quadratic.)
func indexASCIIFold(s, lower string) int {
	for i := 0; len(s)-i >= len(lower); i++ {
		k := strings.IndexByte(s[i:], lower[0])
		if k < 0 {
			return -1
		}
		i += k
		if len(s)-i < len(lower) {
			return -1
		}
		j := 1
		for j < len(lower) && asciiLowerByte(s[i+j]) == lower[j] {
			j++
		}
		if j == len(lower) {
			return i
		}
	}
	return -1
}

func isHTMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// toCRLF ends every line with CRLF.
func toCRLF(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
