package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"
	"strconv"
	"strings"

	"courriel/imap/mailstore"
)

// A section of a message larger than maxKeptBuf (BODY[1], BODY[TEXT],
// BINARY[1], RFC822.TEXT, BODY[]<0.100>) is served from its file: the
// message's structure is found by scanMIME, the section's size (decoded
// by a first pass, for BINARY) computed before the response, and its
// bytes copied, decoded on the way, when the literal is written. Memory
// stays a few buffers whatever the message's size.

// formSpan is bytes [off, off+n) of a message's CRLF form; off is a line
// start, at fileOff in the file. skip and take then cut a range out of
// what comes, decoded when cte says so (BINARY's partial fetch).
type formSpan struct {
	fileOff, off, n int64
	cte             string // BINARY: the transfer encoding to undo; "" none
	skip, take      int64  // of what comes: skip bytes, then take (-1: all)
}

func headerSpan(p *mpart) formSpan {
	return formSpan{fileOff: p.span.fileStart, off: p.span.start, n: p.span.headerLen(), take: -1}
}

func bodySpan(p *mpart) formSpan {
	return formSpan{fileOff: p.span.fileBody, off: p.span.bodyStart, n: p.span.bodyLen(), take: -1}
}

// scanMessage finds the structure of a message of the selected mailbox
// in its file; errScanBounds when it is beyond the scanner's bounds.
func scanMessage(mb *mailstore.Mailbox, uid uint32) (*mpart, int64, error) {
	f, _, err := mb.Open(uid)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	return scanMIME(f, true)
}

// scannedSection is extractBody's answer in a scanned message (size
// bytes): a span of it; filter when HEADER.FIELDS is to be applied to
// the span (a header, within maxScanHeader).
func scannedSection(root *mpart, size int64, path []int, kind sectionKind, fields []string, not bool) (sp formSpan, filter bool) {
	if len(path) == 0 && kind == secAll {
		return formSpan{n: size, take: -1}, false
	}
	empty := formSpan{take: -1}
	p := resolvePart(root, path)
	if p == nil {
		return empty, false
	}
	switch kind {
	case secAll:
		return bodySpan(p), false
	case secMIME:
		return headerSpan(p), false
	}
	m := p
	if len(path) > 0 {
		if p.msg == nil {
			return empty, false
		}
		m = p.msg
	}
	if kind == secText {
		return bodySpan(m), false
	}
	return headerSpan(m), fields != nil || not
}

// scannedBinary is extractBinary's answer in a scanned message: a span
// and the transfer encoding to undo; ok is false for one it does not
// know (UNKNOWN-CTE).
func scannedBinary(root *mpart, size int64, path []int) (sp formSpan, ok bool) {
	if len(path) == 0 {
		return formSpan{n: size, take: -1}, true
	}
	p := resolvePart(root, path)
	if p == nil {
		return formSpan{take: -1}, true
	}
	sp = bodySpan(p)
	switch cte := strings.ToLower(strings.TrimSpace(p.fields.cte)); cte {
	case "base64", "quoted-printable":
		sp.cte = cte
	case "", "7bit", "8bit", "binary":
	default:
		return sp, false
	}
	return sp, true
}

// cut applies a partial fetch <offset.size> to a span whose content is
// total bytes long, as partial does to bytes; it returns the length of
// what is left.
func (sp *formSpan) cut(it fetchItem, total int64) int64 {
	if !it.partial {
		return total
	}
	if it.offset >= total {
		sp.skip, sp.take = total, 0
		return 0
	}
	end := it.offset + it.size
	if end > total || end < it.offset {
		end = total
	}
	sp.skip, sp.take = it.offset, end-it.offset
	return sp.take
}

// spanReader reads sp from f (the message's file), decoded when sp.cte
// says so, with sp.skip and sp.take applied.
func spanReader(f *os.File, sp formSpan) (io.Reader, error) {
	return spanReaderBuf(f, sp, nil)
}

// spanReaderBuf is spanReader reading f through br, reset to f (nil: a
// new one), for a caller reading many spans of one file.
func spanReaderBuf(f *os.File, sp formSpan, br *bufio.Reader) (io.Reader, error) {
	if _, err := f.Seek(sp.fileOff, io.SeekStart); err != nil {
		return nil, fmt.Errorf("imap: seek message: %w", err)
	}
	if br == nil {
		br = bufio.NewReaderSize(f, 32<<10)
	} else {
		br.Reset(f)
	}
	var r io.Reader = io.LimitReader(&crlfReader{r: br}, sp.n)
	switch sp.cte {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, lineJoiner{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	// extractBinary keeps what decoded before an error: so does this.
	r = &stopAtError{r: r}
	if sp.skip > 0 {
		if _, err := io.CopyN(io.Discard, r, sp.skip); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
	}
	if sp.take >= 0 {
		r = io.LimitReader(r, sp.take)
	}
	return r, nil
}

// stopAtError ends a decoded stream at its first error, as io.ReadAll's
// result with the error ignored: the bytes decoded before it.
type stopAtError struct {
	r    io.Reader
	done bool
}

func (s *stopAtError) Read(p []byte) (int, error) {
	if s.done {
		return 0, io.EOF
	}
	n, err := s.r.Read(p)
	if err != nil {
		s.done = true
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	return n, nil
}

// decoded is what a pass over a part of a message found: its length
// decoded and whether that holds a NUL. One FETCH keeps the last, so that
// BINARY.SIZE[1] and BINARY[1] of a 40 MB attachment decode it once
// before it is sent, not twice.
type decoded struct {
	uid   uint32
	name  string // the part's section; "" for none
	total int64
	nul   bool
}

// decodedSize measures what sp decodes to, and whether it, and the
// window of it a partial fetch keeps, hold a NUL (a literal8 then, RFC
// 3516).
func decodedSize(f *os.File, sp formSpan, it fetchItem) (total int64, nul, nulWindow bool, err error) {
	whole := sp
	whole.skip, whole.take = 0, -1
	r, err := spanReader(f, whole)
	if err != nil {
		return 0, false, false, err
	}
	lo, hi := int64(0), int64(-1) // the window kept
	if it.partial {
		lo, hi = it.offset, it.offset+it.size
		if hi < lo {
			hi = -1
		}
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := r.Read(buf)
		if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
			nul = true
			// The bytes [total, total+n) against the window [lo, hi).
			a, b := max(lo-total, 0), int64(n)
			if hi >= 0 {
				b = min(b, hi-total)
			}
			nulWindow = nulWindow || a < b && bytes.IndexByte(buf[a:b], 0) >= 0
		}
		total += int64(n)
		if rerr != nil {
			break // EOF: stopAtError ends at any error
		}
	}
	return total, nul, nulWindow, nil
}

// writeSpan writes sp of the message uid as a literal of size bytes
// (binary: a literal8). The file was there when the size was computed;
// if it is gone now, the literal is padded (streamMessage's rule).
func (s *session) writeSpan(uid uint32, sp formSpan, size int64, binary bool) error {
	f, _, err := s.sel.mb.Open(uid)
	if err != nil {
		s.logger.Warn("imap: message vanished while fetching", "uid", uid, "err", err)
		return s.w.LiteralFrom(strings.NewReader(""), size, binary)
	}
	defer f.Close()
	r, err := spanReader(f, sp)
	if err != nil {
		s.logger.Warn("imap: reading message while fetching", "uid", uid, "err", err)
		r = strings.NewReader("")
	}
	err = s.w.LiteralFrom(r, size, binary)
	if werr := s.w.Err(); werr != nil {
		return werr
	}
	if err != nil {
		s.logger.Warn("imap: reading message while fetching", "uid", uid, "err", err)
	}
	return nil
}

// readSpan reads sp (a header, within maxScanHeader) into memory.
func readSpan(mb *mailstore.Mailbox, uid uint32, sp formSpan) ([]byte, error) {
	f, _, err := mb.Open(uid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := spanReader(f, sp)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// scannedSectionPart is a BODY[...], RFC822.HEADER or RFC822.TEXT item of
// a scanned message of size bytes.
func (s *session) scannedSectionPart(uid uint32, root *mpart, size int64, it fetchItem) (fetchPart, error) {
	var sp formSpan
	filter := false
	name := ""
	switch it.kind {
	case fRFC822:
		sp, name = formSpan{n: size, take: -1}, "RFC822"
	case fRFC822Header:
		sp, name = headerSpan(root), "RFC822.HEADER"
	case fRFC822Text:
		sp, name = bodySpan(root), "RFC822.TEXT"
	default:
		sp, filter = scannedSection(root, size, it.path, it.sec, it.fields, it.not)
		name = "BODY[" + it.name + "]"
		if it.partial {
			name += "<" + strconv.FormatInt(it.offset, 10) + ">"
		}
	}
	if filter {
		h, err := readSpan(s.sel.mb, uid, sp)
		if err != nil {
			return fetchPart{}, err
		}
		return fetchPart{head: name + " ", lit: true, body: partial(filterHeader(h, it.fields, it.not), it)}, nil
	}
	n := sp.n
	if it.kind == fSection {
		n = sp.cut(it, sp.n)
	}
	return fetchPart{head: name + " ", span: true, sp: sp, size: n}, nil
}

// scannedBinaryPart is a BINARY[...] or BINARY.SIZE[...] item of sp, the
// part of a scanned message: its decoded size measured first.
func (s *session) scannedBinaryPart(uid uint32, sp formSpan, it fetchItem, last *decoded) (fetchPart, error) {
	var total int64
	nul := false
	known := last.name != "" && last.uid == uid && last.name == it.name
	switch {
	case sp.cte == "" && it.kind == fBinarySize:
		total = sp.n
	case known && (it.kind == fBinarySize || !it.partial || !last.nul):
		// Only a partial fetch of a part with a NUL needs its window read.
		total, nul = last.total, last.nul && !it.partial
	default:
		f, _, err := s.sel.mb.Open(uid)
		if err != nil {
			return fetchPart{}, err
		}
		var whole bool
		total, whole, nul, err = decodedSize(f, sp, it)
		f.Close()
		if err != nil {
			return fetchPart{}, err
		}
		*last = decoded{uid: uid, name: it.name, total: total, nul: whole}
		if !it.partial {
			nul = whole
		}
	}
	if it.kind == fBinarySize {
		return fetchPart{head: "BINARY.SIZE[" + it.name + "] " + strconv.FormatInt(total, 10)}, nil
	}
	name := "BINARY[" + it.name + "]"
	if it.partial {
		name += "<" + strconv.FormatInt(it.offset, 10) + ">"
	}
	n := sp.cut(it, total)
	return fetchPart{head: name + " ", span: true, sp: sp, size: n, bin: nul}, nil
}

// streamMessage writes the message file as a literal of size bytes (its
// RFC822.SIZE), bare LFs turned into CRLF on the way. A file that changed
// length meanwhile still gives a well-formed literal (cut or padded) and
// the error is logged: the client already has the literal's length.
func (s *session) streamMessage(uid uint32, size int64) error {
	f, _, err := s.sel.mb.Open(uid)
	if err != nil {
		// Expunged by another process between Meta and now.
		s.logger.Warn("imap: message vanished while fetching", "uid", uid, "err", err)
		return s.w.LiteralFrom(strings.NewReader(""), size, false)
	}
	defer f.Close()
	err = s.w.LiteralFrom(&crlfReader{r: bufio.NewReaderSize(f, 32<<10)}, size, false)
	if werr := s.w.Err(); werr != nil {
		return werr
	}
	if err != nil {
		s.logger.Warn("imap: reading message while fetching", "uid", uid, "err", err)
	}
	return nil
}

// crlfReader turns every bare LF of r into CRLF.
type crlfReader struct {
	r      *bufio.Reader
	prevCR bool
	owedLF bool // a CR was emitted for a bare LF; its LF comes next
}

func (c *crlfReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if c.owedLF {
			p[n] = '\n'
			n++
			c.owedLF, c.prevCR = false, false
			continue
		}
		b, err := c.r.ReadByte()
		if err != nil {
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if b == '\n' && !c.prevCR {
			p[n] = '\r'
			n++
			c.owedLF = true
			continue
		}
		p[n] = b
		n++
		c.prevCR = b == '\r'
	}
	return n, nil
}
