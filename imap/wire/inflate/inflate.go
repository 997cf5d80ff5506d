package inflate

import (
	"errors"
	"fmt"
	"io"
)

const (
	windowSize = 1 << 15 // RFC 1951 §2: distances reach back 32 KiB
	maxBits    = 15      // longest Huffman code
	maxLitLen  = 286     // literal/length codes 0..285
	maxDist    = 30      // distance codes 0..29
	// maxPending bounds the input held while a step waits for the rest of
	// itself: the longest step, a dynamic block header, takes under 300
	// bytes, so a source that fills this without completing one is not
	// sending DEFLATE.
	maxPending = 4096
)

// ErrCorrupt is returned for input that is not a valid DEFLATE stream.
var ErrCorrupt = errors.New("inflate: corrupt DEFLATE stream")

// errShort says a step needs more input than is buffered; the step left
// nothing changed.
var errShort = errors.New("inflate: more input needed")

type state uint8

const (
	atHeader  state = iota // before a block's header
	inStored               // inside a stored block: stored bytes left
	inHuffman              // inside a Huffman-coded block
	atEnd                  // after the final block
)

// Reader decodes a raw DEFLATE stream from its source. It is not safe
// for concurrent use.
type Reader struct {
	src io.Reader
	in  []byte // input read and not yet consumed, from in[off]
	off int
	bit uint // bits of in[off] already consumed (0..7)

	st     state
	final  bool // the current block is the last one
	stored int  // inStored: bytes of the block left
	lit    *huffman
	dist   *huffman
	fixedL *huffman // the fixed codes (RFC 1951 §3.2.6), made on first use
	fixedD *huffman

	win     []byte // the last windowSize bytes written, a ring
	written int64  // bytes written in all
	copyLen int    // a back-reference still to copy out (Read's p was full)
	copyDst int

	err error // a corrupt stream: sticky
}

// NewReader returns a Reader decoding the DEFLATE stream read from src.
func NewReader(src io.Reader) *Reader {
	return &Reader{src: src, win: make([]byte, windowSize)}
}

// Read decodes into p. It returns as soon as it has decoded something and
// the next step needs input not yet read; it blocks on the source only
// with nothing decoded. After an error of the source (a deadline), a later
// Read continues the stream.
func (r *Reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	n := 0
	for n < len(p) {
		if r.copyLen > 0 {
			n += r.copyOut(p[n:])
			continue
		}
		var err error
		switch r.st {
		case atEnd:
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		case atHeader:
			if n > 0 {
				// Blocking for the next header here is what stalls
				// compress/flate: give out what this block gave first.
				return n, nil
			}
			err = r.header()
		case inStored:
			var k int
			k, err = r.storedOut(p[n:])
			n += k
		case inHuffman:
			var k int
			k, err = r.symbols(p[n:])
			n += k
		}
		switch {
		case err == nil:
		case errors.Is(err, errShort):
			if n > 0 {
				return n, nil
			}
			if err := r.fill(); err != nil {
				return 0, err
			}
		default:
			r.err = err
			return n, err
		}
	}
	return n, nil
}

// fill reads more input from the source, keeping what is not consumed.
func (r *Reader) fill() error {
	if r.off > 0 {
		k := copy(r.in, r.in[r.off:])
		r.in = r.in[:k]
		r.off = 0
	}
	if len(r.in) >= maxPending {
		r.err = fmt.Errorf("%w: no progress in %d bytes", ErrCorrupt, maxPending)
		return r.err
	}
	if cap(r.in)-len(r.in) < 512 {
		grown := make([]byte, len(r.in), min(max(2*cap(r.in), 1024), maxPending))
		copy(grown, r.in)
		r.in = grown
	}
	k, err := r.src.Read(r.in[len(r.in):cap(r.in)])
	r.in = r.in[:len(r.in)+k]
	if k > 0 {
		return nil
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err == nil {
		return io.ErrNoProgress
	}
	return err
}

// Buffered is how many bytes of input have been read from the source and
// not consumed yet (a byte partly consumed counts).
func (r *Reader) Buffered() int { return len(r.in) - r.off }

// Release drops the input buffer when it holds nothing, so an idle
// connection keeps only the window.
func (r *Reader) Release() {
	if r.off == len(r.in) && r.bit == 0 {
		r.in, r.off = nil, 0
	}
}

// cursor is a position in the buffered input, advanced by an attempt and
// committed when the attempt completes.
type cursor struct {
	in  []byte
	off int
	bit uint
}

func (r *Reader) cursor() cursor { return cursor{r.in, r.off, r.bit} }

func (r *Reader) commit(c cursor) { r.off, r.bit = c.off, c.bit }

// bits takes n (≤ 16) bits, least significant first (RFC 1951 §3.1.1).
func (c *cursor) bits(n uint) (uint32, bool) {
	var v uint32
	for got := uint(0); got < n; {
		if c.off >= len(c.in) {
			return 0, false
		}
		take := min(8-c.bit, n-got)
		b := uint32(c.in[c.off]>>c.bit) & (1<<take - 1)
		v |= b << got
		got += take
		c.bit += take
		if c.bit == 8 {
			c.bit = 0
			c.off++
		}
	}
	return v, true
}

// header reads a block header; for a dynamic block, its code tables.
func (r *Reader) header() error {
	c := r.cursor()
	h, ok := c.bits(3)
	if !ok {
		return errShort
	}
	final := h&1 == 1
	switch h >> 1 {
	case 0: // stored: skip to a byte boundary, LEN and NLEN
		if c.bit > 0 {
			c.bit = 0
			c.off++
		}
		if c.off+4 > len(c.in) {
			return errShort
		}
		ln := int(c.in[c.off]) | int(c.in[c.off+1])<<8
		nln := int(c.in[c.off+2]) | int(c.in[c.off+3])<<8
		if ln != ^nln&0xffff {
			return fmt.Errorf("%w: stored block length check", ErrCorrupt)
		}
		c.off += 4
		r.commit(c)
		r.st, r.stored = inStored, ln
	case 1:
		if r.fixedL == nil {
			r.fixedL, r.fixedD = fixedCodes()
		}
		r.commit(c)
		r.lit, r.dist, r.st = r.fixedL, r.fixedD, inHuffman
	case 2:
		lit, dist, err := dynamicCodes(&c)
		if err != nil {
			return err
		}
		r.commit(c)
		r.lit, r.dist, r.st = lit, dist, inHuffman
	default:
		return fmt.Errorf("%w: block type 3", ErrCorrupt)
	}
	r.final = final
	return nil
}

// endBlock moves on after a block's end.
func (r *Reader) endBlock() {
	if r.final {
		r.st = atEnd
	} else {
		r.st = atHeader
	}
}

// storedOut copies a stored block's bytes out.
func (r *Reader) storedOut(p []byte) (int, error) {
	if r.stored == 0 {
		r.endBlock()
		return 0, nil
	}
	avail := r.in[r.off:]
	if len(avail) == 0 {
		return 0, errShort
	}
	k := min(len(p), len(avail), r.stored)
	copy(p, avail[:k])
	r.remember(p[:k])
	r.off += k
	r.stored -= k
	if r.stored == 0 {
		r.endBlock()
	}
	return k, nil
}

// Base values and extra bits of lengths (codes 257..285) and distances
// (RFC 1951 §3.2.5).
var (
	lenBase   = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra  = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase  = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

// symbols decodes literals and back-references into p until p is full,
// the block ends, or the input runs short in the middle of a symbol.
func (r *Reader) symbols(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.copyLen == 0 {
		c := r.cursor()
		sym, err := r.lit.decode(&c)
		if err != nil {
			return n, err
		}
		switch {
		case sym < 256:
			r.commit(c)
			p[n] = byte(sym)
			r.remember(p[n : n+1])
			n++
		case sym == 256:
			r.commit(c)
			r.endBlock()
			return n, nil
		default:
			sym -= 257
			if sym >= 29 {
				return n, fmt.Errorf("%w: length code %d", ErrCorrupt, sym+257)
			}
			e, ok := c.bits(uint(lenExtra[sym]))
			if !ok {
				return n, errShort
			}
			length := int(lenBase[sym]) + int(e)
			dsym, err := r.dist.decode(&c)
			if err != nil {
				return n, err
			}
			if dsym >= 30 {
				return n, fmt.Errorf("%w: distance code %d", ErrCorrupt, dsym)
			}
			e, ok = c.bits(uint(distExtra[dsym]))
			if !ok {
				return n, errShort
			}
			d := int(distBase[dsym]) + int(e)
			if int64(d) > r.written {
				return n, fmt.Errorf("%w: distance %d before the start", ErrCorrupt, d)
			}
			r.commit(c)
			r.copyLen, r.copyDst = length, d
			n += r.copyOut(p[n:])
		}
	}
	return n, nil
}

// copyOut copies what it can of the pending back-reference into p.
func (r *Reader) copyOut(p []byte) int {
	k := min(len(p), r.copyLen)
	for i := range k {
		b := r.win[(r.written-int64(r.copyDst))&(windowSize-1)]
		r.win[r.written&(windowSize-1)] = b
		r.written++
		p[i] = b
	}
	r.copyLen -= k
	return k
}

// remember adds decoded bytes to the window.
func (r *Reader) remember(b []byte) {
	for len(b) > 0 {
		at := int(r.written & (windowSize - 1))
		k := copy(r.win[at:], b)
		r.written += int64(k)
		b = b[k:]
	}
}
