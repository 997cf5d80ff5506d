package mimepart

import "bytes"

// A Kind is what a caller makes of an entity's header, as far as cutting
// the message goes.
type Kind struct {
	// Multipart: the body is cut at the delimiter lines of Delimiter (a
	// multipart with a boundary parameter).
	Multipart bool
	Delimiter Delimiter
	// Message: the body is an entity (message/rfc822, message/global).
	Message bool
}

// An Entity is where an entity lies in the message given to Parse: its
// header msg[Start:BodyStart], its body msg[BodyStart:End].
type Entity struct {
	Start, BodyStart, End int
	Depth                 int     // 0 for the message, parent's + 1
	Parent                *Entity // nil for the message
	// A multipart's pieces, as Multipart's: Parts are whole entities.
	Preamble, Epilogue Span
	Parts              []*Entity
	Closed             bool
	// Message is the entity a message/rfc822 body holds.
	Message *Entity
}

// KindFunc reads an entity's header. e has Start, BodyStart, Depth and
// Parent set; bounding the nesting is the caller's (a Kind{} is a leaf).
type KindFunc func(header []byte, e *Entity) Kind

// A Parser cuts messages into their entities, reading their headers as
// its fields say.
type Parser struct {
	// HeaderEnd is where the body of ent, an entity up to the next
	// delimiter line, starts (after the empty line that ends its header).
	HeaderEnd func(ent []byte) int
	Kind      KindFunc
	// MaxParts bounds the parts of each multipart: past them, as Split.
	MaxParts int
}

// Parse cuts msg, a message, into its entities. A delimiter line belongs
// to the multipart, of all those open around it, whose boundary is the
// longest that matches it, the innermost of equal ones (Dovecot's
// boundary_find, see Owner); it ends whatever is open inside that
// multipart. So a line of an outer multipart ends an inner one (its
// preamble, part or epilogue), and an outer boundary that is a prefix of
// an inner one ("l1" around "l10") does not take the inner one's lines.
func (ps Parser) Parse(msg []byte) *Entity {
	p := parser{Parser: ps, msg: msg}
	e, _ := p.entity(0, nil, nil, nil)
	return e
}

// ParseBody is Parse for a message whose header was read already: body
// is the message's body, and k what the header made of it.
func (ps Parser) ParseBody(body []byte, k Kind) *Entity {
	p := parser{Parser: ps, msg: body}
	e := &Entity{}
	p.body(e, k, nil, line{level: -1})
	return e
}

// open is the delimiters of the multiparts open at a point of the
// message, innermost first. Immutable.
type open []Delimiter

// push returns o with d inside.
func (o open) push(d Delimiter) open { return append(open{d}, o...) }

// line is a delimiter line: where it starts, where what it ends ends (the
// line break before it is the delimiter's), where the line after it starts
// (len(msg)+1 without a line break), the multipart it belongs to, as its
// nesting (0 for the outermost open; -1: no delimiter line was found),
// and whether it is that one's close delimiter.
type line struct {
	start, end, after int
	level             int
	isClose           bool
}

type parser struct {
	Parser
	msg []byte
}

// endOf is where what l ends ends: before l's line break, or at the end
// of the message; never before from, where it started.
func (p *parser) endOf(l line, from int) int {
	if l.level < 0 {
		return len(p.msg)
	}
	return max(l.end, from)
}

// entity parses the entity at start, inside the multiparts of o, and
// returns it with the delimiter line that ended it. known, when not nil,
// is the first delimiter line of o at or after start.
func (p *parser) entity(start int, parent *Entity, o open, known *line) (*Entity, line) {
	e := &Entity{Start: start, Parent: parent}
	if parent != nil {
		e.Depth = parent.Depth + 1
	}
	l := p.next(start, o)
	if known != nil {
		l = *known
	}
	// The header ends at an empty line, or else at the delimiter line.
	e.BodyStart = start + p.HeaderEnd(p.msg[start:p.endOf(l, start)])
	full, ended := e.BodyStart, true
	if l.level >= 0 {
		// Asked with one octet more, HeaderEnd tells a header that
		// ended right there from one that did not end.
		limit := max(l.end, start)
		if e.BodyStart == limit && p.HeaderEnd(p.msg[start:limit+1]) > limit-start {
			ended = false
			// Its empty line may end right before the delimiter
			// line, the line break being the delimiter's.
			if l.start > limit && p.HeaderEnd(p.msg[start:l.start+1]) == l.start-start {
				full = l.start
			}
		}
	}
	k := p.Kind(p.msg[start:full], e)
	if full > e.BodyStart && p.claims(k, o, l) {
		// The entity's own boundary takes the line: its body starts
		// with its first delimiter line, and the header keeps its
		// empty line.
		e.BodyStart, ended = full, true
	}
	if !ended {
		// A multipart whose header the delimiter line cut has no
		// parts (Dovecot: its boundary was never open).
		k.Multipart = false
	}
	return e, p.body(e, k, o, l)
}

// claims reports whether the multipart k, inside those of o, takes l, a
// delimiter line of o.
func (p *parser) claims(k Kind, o open, l line) bool {
	if !k.Multipart {
		return false
	}
	text := p.msg[l.start:min(l.after, len(p.msg))]
	text = bytes.TrimSuffix(bytes.TrimSuffix(text, []byte("\n")), []byte("\r"))
	i, _ := Owner(text, o.push(k.Delimiter))
	return i == 0
}

// body parses e's body as k says, inside the multiparts of o, of which l
// is the first delimiter line after the header, and returns the
// delimiter line that ended it.
func (p *parser) body(e *Entity, k Kind, o open, l line) line {
	switch {
	case k.Message:
		m, l := p.entity(e.BodyStart, e, o, &l)
		e.Message, e.End = m, m.End
		return l
	case !k.Multipart:
		e.End = p.endOf(l, e.BodyStart)
		return l
	}
	own := o.push(k.Delimiter)
	l = p.next(e.BodyStart, own)
	e.Preamble = Span{e.BodyStart, p.endOf(l, e.BodyStart)}
	end := e.BodyStart // where the last part ended
	for l.level == len(o) {
		if l.isClose || l.after > len(p.msg) || len(e.Parts) >= p.MaxParts {
			// The close delimiter, or one after which no part starts
			// (it ends the message, or the parts kept are enough): what
			// follows, to a delimiter line of an enclosing multipart,
			// is the epilogue, or in no span. The delimiter line keeps
			// its own line break even when the next line is an
			// enclosing one's (Dovecot: an inner close delimiter's CRLF
			// is in the outer part's body).
			from := min(l.after, len(p.msg))
			e.Closed = l.isClose
			l = p.next(from, o)
			e.End = p.endOf(l, from)
			e.Epilogue = Span{from, e.End}
			if !e.Closed {
				e.Epilogue.Start = e.End
			}
			return l
		}
		var c *Entity
		c, l = p.entity(l.after, e, own, nil)
		e.Parts = append(e.Parts, c)
		end = c.End
	}
	e.End = p.endOf(l, end)
	e.Epilogue = Span{e.End, e.End}
	return l
}

// next finds the first delimiter line of the multiparts of o at or after
// from, a line start.
func (p *parser) next(from int, o open) line {
	none := line{level: -1}
	if len(o) == 0 {
		return none
	}
	body := p.msg
	for i := from; i < len(body); {
		// "--" is looked for, not each line: a base64 attachment's
		// lines are many and short.
		j := bytes.Index(body[i:], []byte("--"))
		if j < 0 {
			break
		}
		j += i
		i = j + 1
		if j > 0 && body[j-1] != '\n' {
			continue
		}
		text, after := body[j:], len(body)+1
		if eol := bytes.IndexByte(text, '\n'); eol >= 0 {
			text, after = bytes.TrimSuffix(text[:eol], []byte("\r")), j+eol+1
		}
		if i, isClose := Owner(text, o); i >= 0 {
			return line{start: j, end: j - breakBefore(body, j), after: after, level: len(o) - 1 - i, isClose: isClose}
		}
	}
	return none
}

// Owner is which of ds, the delimiters of the multiparts open around a
// line, innermost first, text (the line without its line break) is a
// delimiter line of, and whether it is that one's close delimiter; -1
// when of none. It is Dovecot's boundary_find: the longest boundary
// matching, the innermost of equal ones, and the first (innermost) that
// is all of the line, or all but a close delimiter's "--".
func Owner(text []byte, ds []Delimiter) (i int, isClose bool) {
	i = -1
	for x, d := range ds {
		delim, cl := d.Line(text)
		if !delim || i >= 0 && len(d.dash) <= len(ds[i].dash) {
			continue
		}
		i, isClose = x, cl
		if rest := len(text) - len(d.dash); rest == 0 || rest == 2 && cl {
			break
		}
	}
	return i, isClose
}
