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

// Split cuts body, a multipart's body, at the delimiter lines of d. It
// keeps at most maxParts parts: the delimiter line after the last of them
// is then the close delimiter (Closed), or the rest of the body is in no
// span. It allocates only the Parts slice.
func Split(body []byte, d Delimiter, maxParts int) Multipart {
	m := Multipart{Preamble: Span{0, len(body)}, Epilogue: Span{len(body), len(body)}}
	start := -1 // where the open part starts; -1 before the first delimiter line
	for from := 0; from <= len(body); {
		j, after, isClose := d.next(body, from)
		if j < 0 {
			break
		}
		end := j - breakBefore(body, j)
		if start < 0 {
			m.Preamble.End = end
		} else {
			// Two delimiter lines in a row: the line break before the
			// second is the first's own, and the part is empty.
			m.Parts = append(m.Parts, Span{start, max(end, start)})
			start = -1
		}
		if isClose {
			m.Closed = true
			m.Epilogue.Start = min(after, len(body))
			return m
		}
		if after > len(body) || len(m.Parts) >= maxParts {
			// A delimiter line without a line break ends the body:
			// no part starts after it.
			return m
		}
		start, from = after, after
	}
	if start >= 0 {
		m.Parts = append(m.Parts, Span{start, len(body)})
	}
	return m
}
