package imap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"courriel/internal/mimepart"
)

// scanMIME finds a message's MIME structure in one pass over its bytes,
// holding no more than a header at a time: the structure parseEntity
// gives for the same bytes, each entity with offsets (a partSpan) instead
// of slices. A large message's sections are then served from its file
// (FETCH BODY[1], BINARY[1]), its parts copied (CATENATE) and its binary
// parts encoded (APPEND of a literal8) without the message in memory:
// one FETCH BINARY of a 59 MB message held 235 MiB.
//
// parseEntity lets mimepart.Parser cut the message in memory. The
// scanner reads lines in order with a stack of open entities, and so must
// know where an entity ends before it acts on the entity's last line: a
// delimiter line ends the parts below its multipart, and the line break
// before it (CRLF, or a bare LF) belongs to the delimiter (RFC 2046
// §5.1.1), not to those parts, unless that line break ends a delimiter
// line itself. So a line's own line break is acted on (a header's end, a
// part's start) once the next line is known. The multipart a delimiter
// line belongs to is mimepart.Owner's pick among those splitting, as in
// the Parser: the longest boundary, the innermost of equal ones, with a
// header ending right before the line counted in (claimedBelow).
// TestScanMIMEAsParseEntity and FuzzScanMIME compare the two.

// partSpan is where an entity lies in the message: its header
// [start, bodyStart) and body [bodyStart, end), offsets in the form the
// scanner read (CRLF lines when it turned bare LFs into CRLF), and
// fileStart and fileBody the file's offsets of start and bodyStart, both
// line starts (fileBody only when the header ended: else the body is
// empty).
type partSpan struct {
	start, bodyStart, end int64
	fileStart, fileBody   int64
	lines                 int64 // LFs in the body
	nul                   bool  // the body holds a NUL
}

// headerLen and bodyLen are the lengths of the entity's header and body.
func (s *partSpan) headerLen() int64 { return s.bodyStart - s.start }
func (s *partSpan) bodyLen() int64   { return s.end - s.bodyStart }

// Bounds of what the scanner holds: a header of an entity and the
// headers of encapsulated messages it keeps (BODYSTRUCTURE has their
// envelopes). Past them it gives up with errScanBounds and the caller
// reads the message whole, within the server's memory budget.
const (
	maxScanHeader = maxHeaderRead
	maxScanKept   = 4 << 20
)

// scanPeek is how much of a line the scanner looks at before reading it:
// a delimiter line is known by its first mimepart.MaxDelimiter octets
// and the "--" of a close delimiter, and a line that short by its line
// break too.
const scanPeek = mimepart.MaxDelimiter + 2 + 2

var errScanBounds = errors.New("imap: MIME structure beyond the scanner's bounds")

// Line terminators.
const (
	termNone = iota // the last line, without one
	termLF
	termCRLF
)

// scanLine is a line read, acted on once the next one is known.
type scanLine struct {
	frame            *scanFrame // the innermost open entity when it was read
	first            bool       // the first line of that entity
	end, fileEnd     int64      // after the terminator
	term             int
	empty            bool // no byte before the terminator
	delim, closeDlim bool // a delimiter line of frame; its close delimiter
}

// scanFrame is an open entity.
type scanFrame struct {
	p        *mpart
	depth    int
	defType  string
	inHeader bool
	hdr      []byte
	keep     bool  // an encapsulated message: its header is kept in p.header
	prevCRLF bool  // in the header: the last line ended with CRLF
	nlBody   int64 // the scanner's nl where the body starts
	// A multipart's split (hasDelim): delim's lines are looked for while
	// splitting; parts counts the parts closed.
	delim     mimepart.Delimiter
	hasDelim  bool
	splitting bool
	parts     int
}

type mimeScanner struct {
	br       *bufio.Reader
	lfToCRLF bool
	off      int64 // where the next line starts, in the form read
	fileOff  int64 // and in the file
	nl       int64 // LFs so far: a body's lines are the difference
	kept     int   // header bytes kept (maxScanKept)
	stack    []*scanFrame
	// open and openAt are the delimiters of the multiparts splitting,
	// innermost first, and their places in stack: reused for each line.
	open   []mimepart.Delimiter
	openAt []int
}

// scanMIME reads a message from r to its end and returns its structure.
// With lfToCRLF, a bare LF counts as CRLF, as in the message's CRLF form
// that IMAP serves (maildir files have LF lines): the offsets are then
// those of the CRLF form, and the file offsets those of r. Without, the
// bytes count as they are (a literal spooled as received), as parseEntity
// takes them. size is the form's length.
func scanMIME(r io.Reader, lfToCRLF bool) (root *mpart, size int64, err error) {
	sc := &mimeScanner{br: bufio.NewReaderSize(r, 64<<10), lfToCRLF: lfToCRLF}
	root = sc.push(0, 0, "text/plain", 0)
	var prev scanLine // the line before, acted on when this one is known
	havePrev := false
	for {
		peek, err := sc.br.Peek(scanPeek)
		if len(peek) == 0 {
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, 0, fmt.Errorf("imap: scan message: %w", err)
			}
			break
		}
		// The line without its line break; one longer than the peek is
		// known by its start.
		if i := bytes.IndexByte(peek, '\n'); i >= 0 {
			peek = bytes.TrimSuffix(peek[:i], []byte("\r"))
		}
		// The multipart whose delimiter this line is (mimepart.Owner):
		// it ends what is open below it, whose last line loses its line
		// break, unless that line is a delimiter line itself.
		x, _ := sc.owner(peek)
		if x >= 0 && havePrev && sc.claimedBelow(&prev, peek) {
			x = -1 // the next owner() finds it, once prev ends the header
		}
		if havePrev {
			keep := prev.delim && prev.term != termNone
			y := x
			if keep {
				y = -1
			}
			if err := sc.finish(&prev, y); err != nil {
				return nil, 0, err
			}
			switch {
			case x >= 0 && keep:
				sc.closeAbove(x, prev.end, false)
			case x >= 0:
				sc.closeAbove(x, prev.end-prev.termLen(), prev.term != termNone)
			}
		}
		f := sc.stack[len(sc.stack)-1]
		prev = scanLine{frame: f, first: sc.off == f.p.span.start}
		// Asked again: the line before may have ended a header, and
		// started a split.
		if x, isClose := sc.owner(peek); x >= 0 && x == len(sc.stack)-1 {
			prev.delim, prev.closeDlim = true, isClose
		}
		if err := sc.consume(&prev); err != nil {
			return nil, 0, err
		}
		havePrev = true
	}
	if havePrev {
		if err := sc.finish(&prev, -1); err != nil {
			return nil, 0, err
		}
	}
	sc.closeAbove(-1, sc.off, false)
	return root, sc.off, nil
}

// owner is the place in the stack of the multipart whose delimiter line
// text is (mimepart.Owner), -1 for none, and whether it is the close
// delimiter.
func (sc *mimeScanner) owner(text []byte) (x int, isClose bool) {
	sc.open, sc.openAt = sc.open[:0], sc.openAt[:0]
	for i := len(sc.stack) - 1; i >= 0; i-- {
		if f := sc.stack[i]; f.splitting {
			sc.open, sc.openAt = append(sc.open, f.delim), append(sc.openAt, i)
		}
	}
	x, isClose = mimepart.Owner(text, sc.open)
	if x >= 0 {
		x = sc.openAt[x]
	}
	return x, isClose
}

// claimedBelow reports whether l, the line before text, ends the header
// of a multipart whose own delimiter takes text from the multiparts open
// around it (mimepart.Parser: an outer "a" does not end an inner "ab"
// whose first delimiter line follows its header). sc.open is owner's.
func (sc *mimeScanner) claimedBelow(l *scanLine, text []byte) bool {
	f := l.frame
	if f != sc.stack[len(sc.stack)-1] || !f.inHeader || f.depth >= maxBodyDepth ||
		l.term != termCRLF || !l.empty || !(l.first || f.prevCRLF) {
		return false
	}
	var p mpart
	p.setType(f.hdr, f.defType)
	b, ok := p.params["boundary"]
	if p.ctype != "multipart" || !ok {
		return false
	}
	i, _ := mimepart.Owner(text, append([]mimepart.Delimiter{mimepart.NewDelimiter(b)}, sc.open...))
	return i == 0
}

// push opens an entity at off (fileOff in the file) and returns its part.
func (sc *mimeScanner) push(off, fileOff int64, defType string, depth int) *mpart {
	p := &mpart{span: &partSpan{start: off, bodyStart: off, end: off, fileStart: fileOff, fileBody: fileOff}}
	sc.stack = append(sc.stack, &scanFrame{p: p, depth: depth, defType: defType, inHeader: true})
	return p
}

// consume reads one line into the innermost entity: its bytes to the
// header being read, a NUL to the bodies open, and its length.
func (sc *mimeScanner) consume(l *scanLine) error {
	f := l.frame
	var n int64 // bytes before the terminator
	emit := func(b []byte) error {
		n += int64(len(b))
		if f.inHeader {
			if len(f.hdr)+len(b) > maxScanHeader {
				return errScanBounds
			}
			if f.keep {
				if sc.kept += len(b); sc.kept > maxScanKept {
					return errScanBounds
				}
			}
			f.hdr = append(f.hdr, b...)
		}
		if bytes.IndexByte(b, 0) >= 0 {
			for _, o := range sc.stack {
				if !o.inHeader {
					o.p.span.nul = true
				}
			}
		}
		return nil
	}
	var raw int64 // bytes of the file
	cr := false   // a CR ended the last piece: a terminator if LF follows
	for {
		b, err := sc.br.ReadSlice('\n')
		raw += int64(len(b))
		if len(b) > 0 && b[len(b)-1] == '\n' {
			b = b[:len(b)-1]
			switch {
			case len(b) > 0 && b[len(b)-1] == '\r':
				if cr {
					if err := emit([]byte{'\r'}); err != nil {
						return err
					}
				}
				b, l.term = b[:len(b)-1], termCRLF
			case len(b) == 0 && cr:
				l.term = termCRLF
			default:
				if cr {
					if err := emit([]byte{'\r'}); err != nil {
						return err
					}
				}
				l.term = termLF
			}
			cr = false
			if err := emit(b); err != nil {
				return err
			}
			break
		}
		if cr {
			if err := emit([]byte{'\r'}); err != nil {
				return err
			}
			cr = false
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if len(b) > 0 && b[len(b)-1] == '\r' {
				b, cr = b[:len(b)-1], true
			}
			if err := emit(b); err != nil {
				return err
			}
			continue
		}
		if err := emit(b); err != nil {
			return err
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("imap: scan message: %w", err)
		}
		break // the last line, without a terminator
	}
	if l.term == termLF && sc.lfToCRLF {
		l.term = termCRLF
	}
	l.empty = n == 0
	switch l.term {
	case termCRLF:
		n += 2
		sc.nl++
	case termLF:
		n++
		sc.nl++
	}
	sc.off += n
	sc.fileOff += raw
	l.end, l.fileEnd = sc.off, sc.fileOff
	return nil
}

// termLen is the length of the line's terminator, as counted in end.
func (l *scanLine) termLen() int64 {
	switch l.term {
	case termCRLF:
		return 2
	case termLF:
		return 1
	}
	return 0
}

// finish acts on a line once the next is known: the next is a delimiter
// of stack[x] (x < 0: of none), which takes the line's line break, CRLF
// or bare LF, from the entities above stack[x].
func (sc *mimeScanner) finish(l *scanLine, x int) error {
	f := l.frame
	if x >= 0 && sc.stack[x] != f || l.term == termNone {
		// The line is the entity's last, without its terminator: no
		// header ends there and no part starts after it.
		if f.splitting && l.delim && !l.closeDlim {
			f.splitting = false
		}
		return nil
	}
	switch {
	case f.inHeader:
		// headerEnd: "\r\n" at the start, or the first "\r\n\r\n".
		if l.term == termCRLF && l.empty && (l.first || f.prevCRLF) {
			f.hdr = append(f.hdr, '\r', '\n')
			return sc.endHeader(f, l)
		}
		if l.term == termCRLF {
			f.hdr = append(f.hdr, '\r', '\n')
		} else {
			f.hdr = append(f.hdr, '\n')
		}
		if len(f.hdr) > maxScanHeader {
			return errScanBounds
		}
		f.prevCRLF = l.term == termCRLF
	case f.splitting && l.delim:
		// splitMultipart: a close delimiter, or the last part it keeps,
		// ends the split; else a part starts on the next line.
		if l.closeDlim || f.parts >= maxParts {
			f.splitting = false
			return nil
		}
		c := sc.push(l.end, l.fileEnd, f.p.childType(), f.depth+1)
		f.p.children = append(f.p.children, c)
	}
	return nil
}

// endHeader makes f's body start after line l, which ended its header.
func (sc *mimeScanner) endHeader(f *scanFrame, l *scanLine) error {
	p := f.p
	p.span.bodyStart, p.span.fileBody = l.end, l.fileEnd
	f.inHeader, f.nlBody = false, sc.nl
	f.endHeader()
	if f.depth >= maxBodyDepth {
		return nil
	}
	switch {
	case p.ctype == "multipart":
		b, ok := p.params["boundary"]
		if !ok {
			return nil // parseEntity: no parts
		}
		f.delim, f.hasDelim, f.splitting = mimepart.NewDelimiter(b), true, true
	case p.encapsulates():
		p.msg = sc.push(l.end, l.fileEnd, "text/plain", f.depth+1)
		sc.stack[len(sc.stack)-1].keep = true
	}
	return nil
}

// endHeader reads f's type from its header, which is dropped unless kept.
func (f *scanFrame) endHeader() {
	f.p.setType(f.hdr, f.defType)
	if f.keep {
		f.p.header = f.hdr
	}
	f.hdr = nil
}

// closeAbove ends the entities above stack[x] (all for x < 0) at e, or
// at their start when they started after e (a part right before the next
// delimiter line is empty); cut says that the last LF read is not theirs
// (it ended the line break before the delimiter line).
func (sc *mimeScanner) closeAbove(x int, e int64, cut bool) {
	nl := sc.nl
	if cut {
		nl--
	}
	for len(sc.stack) > x+1 {
		f := sc.stack[len(sc.stack)-1]
		sc.stack = sc.stack[:len(sc.stack)-1]
		p := f.p
		end := max(e, p.span.start)
		p.span.end = end
		if !f.inHeader && end > p.span.bodyStart {
			p.span.lines = nl - f.nlBody
		}
		if f.inHeader {
			// headerEnd found no end: all header, no body.
			p.span.bodyStart = end
			f.endHeader()
			if f.depth < maxBodyDepth && p.encapsulates() {
				m := &mpart{span: &partSpan{start: end, bodyStart: end, end: end}, header: []byte{}}
				m.setType(nil, "text/plain")
				p.msg = m
			}
		}
		if len(sc.stack) > 0 {
			if o := sc.stack[len(sc.stack)-1]; o.hasDelim && len(o.p.children) > 0 && o.p.children[len(o.p.children)-1] == p {
				o.parts++
			}
		}
	}
}
