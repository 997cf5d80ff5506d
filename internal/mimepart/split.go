package mimepart

// A Span is where a piece of a multipart body lies: body[Start:End].
type Span struct{ Start, End int }

// Multipart is a multipart body cut at its delimiter lines, as offsets
// into the body. What lies in no span is the delimiter lines themselves,
// each with the line break before it and its own; and, when Split stopped
// at maxParts, the rest of the body.
type Multipart struct {
	// Preamble is what comes before the first delimiter line (the whole
	// body when there is none).
	Preamble Span
	// Parts are the bodies between the delimiter lines, each a whole
	// entity (header and body); one whose delimiter line is followed at
	// once by the next is empty.
	Parts []Span
	// Epilogue is what follows the close delimiter line; empty, at the
	// end of the body, when Closed is false.
	Epilogue Span
	// Closed tells that the close delimiter was found: else the last part
	// runs to the end of the body, or Split stopped at maxParts.
	Closed bool
}

// Split cuts body, a multipart's body, at the delimiter lines of d,
// looking into none of its parts (Parse does). It keeps at most maxParts
// parts: the delimiter line after the last of them is then the close
// delimiter (Closed), or the rest of the body is in no span.
func Split(body []byte, d Delimiter, maxParts int) Multipart {
	ps := Parser{
		HeaderEnd: func([]byte) int { return 0 },
		Kind:      func([]byte, *Entity) Kind { return Kind{} },
		MaxParts:  maxParts,
	}
	e := ps.ParseBody(body, Kind{Multipart: true, Delimiter: d})
	m := Multipart{Preamble: e.Preamble, Epilogue: e.Epilogue, Closed: e.Closed}
	for _, c := range e.Parts {
		m.Parts = append(m.Parts, Span{c.Start, c.End})
	}
	return m
}
