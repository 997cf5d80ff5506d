package inflate

import "fmt"

// huffman is a canonical Huffman code (RFC 1951 §3.2.2) by its counts of
// codes per length and its symbols in code order, decoded bit by bit: the
// input is a client's commands, small, and this keeps every step
// restartable.
type huffman struct {
	count  [maxBits + 1]uint16
	symbol []uint16
}

// newHuffman builds the code for the given code lengths (0 = unused). An
// over-subscribed set is corrupt; an incomplete one is allowed only when
// it has a single code of length 1 (RFC 1951 allows one distance code).
func newHuffman(lengths []uint8) (*huffman, error) { return buildHuffman(lengths, false) }

// buildHuffman is newHuffman; incomplete allows any incomplete code, as
// the fixed distance code is (30 codes of 5 bits).
func buildHuffman(lengths []uint8, incomplete bool) (*huffman, error) {
	h := &huffman{symbol: make([]uint16, 0, len(lengths))}
	for _, l := range lengths {
		h.count[l]++
	}
	left := 1
	for l := 1; l <= maxBits; l++ {
		left <<= 1
		left -= int(h.count[l])
		if left < 0 {
			return nil, fmt.Errorf("%w: over-subscribed code", ErrCorrupt)
		}
	}
	used := len(lengths) - int(h.count[0])
	if left > 0 && used != int(h.count[1]) && !incomplete {
		return nil, fmt.Errorf("%w: incomplete code", ErrCorrupt)
	}
	var offs [maxBits + 1]int
	for l := 1; l < maxBits; l++ {
		offs[l+1] = offs[l] + int(h.count[l])
	}
	h.symbol = h.symbol[:used]
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = uint16(sym)
			offs[l]++
		}
	}
	return h, nil
}

// decode reads one symbol; errShort when the input ends inside its code.
func (h *huffman) decode(c *cursor) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l <= maxBits; l++ {
		b, ok := c.bits(1)
		if !ok {
			return 0, errShort
		}
		code |= int(b)
		n := int(h.count[l])
		if code-n < first {
			return int(h.symbol[index+code-first]), nil
		}
		index += n
		first += n
		first <<= 1
		code <<= 1
	}
	return 0, fmt.Errorf("%w: no such code", ErrCorrupt)
}

// fixedCodes are the codes of block type 1 (RFC 1951 §3.2.6).
func fixedCodes() (lit, dist *huffman) {
	var l [288]uint8
	for i := range l {
		switch {
		case i < 144:
			l[i] = 8
		case i < 256:
			l[i] = 9
		case i < 280:
			l[i] = 7
		default:
			l[i] = 8
		}
	}
	lit, _ = newHuffman(l[:])
	var d [30]uint8
	for i := range d {
		d[i] = 5
	}
	dist, _ = buildHuffman(d[:], true)
	return lit, dist
}

// clOrder is the order of the code length code lengths (RFC 1951 §3.2.7).
var clOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// dynamicCodes reads a dynamic block's code tables (RFC 1951 §3.2.7).
func dynamicCodes(c *cursor) (lit, dist *huffman, err error) {
	v, ok := c.bits(14)
	if !ok {
		return nil, nil, errShort
	}
	nlen := int(v&0x1f) + 257
	ndist := int(v>>5&0x1f) + 1
	ncode := int(v>>10) + 4
	if nlen > maxLitLen || ndist > maxDist {
		return nil, nil, fmt.Errorf("%w: %d literal/length or %d distance codes", ErrCorrupt, nlen, ndist)
	}
	var cl [19]uint8
	for i := range ncode {
		b, ok := c.bits(3)
		if !ok {
			return nil, nil, errShort
		}
		cl[clOrder[i]] = uint8(b)
	}
	clh, err := newHuffman(cl[:])
	if err != nil {
		return nil, nil, err
	}
	var lengths [maxLitLen + maxDist]uint8
	for i := 0; i < nlen+ndist; {
		sym, err := clh.decode(c)
		if err != nil {
			return nil, nil, err
		}
		if sym < 16 {
			lengths[i] = uint8(sym)
			i++
			continue
		}
		var prev uint8
		var rep uint32
		switch sym {
		case 16:
			if i == 0 {
				return nil, nil, fmt.Errorf("%w: repeat with no previous length", ErrCorrupt)
			}
			prev = lengths[i-1]
			rep, ok = c.bits(2)
			rep += 3
		case 17:
			rep, ok = c.bits(3)
			rep += 3
		default:
			rep, ok = c.bits(7)
			rep += 11
		}
		if !ok {
			return nil, nil, errShort
		}
		if i+int(rep) > nlen+ndist {
			return nil, nil, fmt.Errorf("%w: code lengths overrun", ErrCorrupt)
		}
		for range rep {
			lengths[i] = prev
			i++
		}
	}
	if lengths[256] == 0 {
		return nil, nil, fmt.Errorf("%w: no end-of-block code", ErrCorrupt)
	}
	if lit, err = newHuffman(lengths[:nlen]); err != nil {
		return nil, nil, err
	}
	if dist, err = newHuffman(lengths[nlen : nlen+ndist]); err != nil {
		return nil, nil, err
	}
	return lit, dist, nil
}
