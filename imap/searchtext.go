package imap

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/quotedprintable"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/unicode/norm"
)

// SEARCH BODY and TEXT (RFC 9051 §6.4.4) look for a string in the
// message as its reader sees it, as Dovecot does: every entity is
// visited, the message's, its MIME parts' and those of the messages it
// encapsulates (message/rfc822 and message/global parts). BODY reads the
// content of the text and message parts, its transfer encoding undone and
// its charset converted to UTF-8; other parts (images, PDFs) are not read.
// TEXT also reads each entity's header, one "Name: value" line per field
// with the value unfolded and its encoded words decoded (RFC 2047), as
// HEADER decodes them, and the values of RFC 2231 parameters decoded (the
// file name of an attachment as the reader shows it; Dovecot does not
// decode these). The encoded forms themselves ("=?UTF-8?B?...") are not
// searched. Matching is case-insensitive (Unicode simple case folding,
// as strings.ToLower) and finds a letter without its diacritic in one
// with it (appendFold), as Dovecot's comparator does.
//
// Search runs over every message of a mailbox. A small message is read
// whole, its entities slices of it (mime.go). A large one (over
// maxKeptBuf) is never held: scanMIME finds its structure in one pass,
// then each header is read alone and each part's content streams from
// the file, its transfer encoding undone and its charset converted on
// the way, and is searched piece by piece (searchStream): a SEARCH TEXT
// of a 50 MB message held the message five times over (its CRLF form,
// decoded, converted, folded) within the server's memory budget, 250 MB.
// Only a message beyond the scanner's bounds is still read whole. The
// text searched is built in the session's scratch buffers, kept from one
// message to the next.

// textScratch holds the buffers of BODY and TEXT; trim drops large ones
// after a command.
type textScratch struct {
	fold  []byte  // the text searched, case-folded
	line  []byte  // a folded field value, unfolded
	hdr   []byte  // a large message's entity header, read from its file
	chunk []byte  // a piece of a part's content, decoded (streamFold)
	found []uint8 // searchMsg.found
}

func (t *textScratch) trim() {
	for _, b := range []*[]byte{&t.fold, &t.line, &t.hdr, &t.chunk} {
		if cap(*b) > maxKeptBuf {
			*b = nil
		}
	}
}

// matchText answers BODY and TEXT. The message is searched once for all
// the strings of the program's BODY and TEXT keys (searchTexts), however
// many and however nested: a SEARCH of 1,000 NOT BODY keys read, decoded
// and folded a 5 MB message 1,000 times (39 s of CPU).
func (m *searchMsg) matchText(k *searchKey) bool {
	if m.raw == nil && m.scanned == nil && !m.failed {
		m.load()
	}
	if m.failed {
		return false
	}
	if k.value == "" {
		return true
	}
	if m.found == nil {
		m.searchTexts(programTexts(m.prog))
	}
	f := m.found[k.needle-1]
	if k.op == "TEXT" {
		return f&foundText != 0
	}
	return f&foundBody != 0
}

// textKeys are the distinct strings a program's BODY and TEXT keys look
// for, case-folded, and which keys look for each.
type textKeys struct {
	folds      [][]byte
	body, text []bool
}

// What a message holds of a string: found in the content of a part
// (BODY), in what TEXT searches.
const (
	foundBody uint8 = 1 << iota
	foundText
)

// programTexts gathers the BODY and TEXT strings of the program root,
// once: each key's needle is where its string is in them.
func programTexts(root *searchKey) *textKeys {
	if root.texts != nil {
		return root.texts
	}
	tk := &textKeys{}
	at := map[string]int{}
	var walk func(k *searchKey)
	walk = func(k *searchKey) {
		for _, c := range k.kids {
			walk(c)
		}
		if (k.op != "BODY" && k.op != "TEXT") || k.value == "" {
			return
		}
		if k.fold == nil {
			k.fold = appendFold(k.fold, k.value)
		}
		i, ok := at[string(k.fold)]
		if !ok {
			i = len(tk.folds)
			at[string(k.fold)] = i
			tk.folds = append(tk.folds, k.fold)
			tk.body = append(tk.body, false)
			tk.text = append(tk.text, false)
		}
		k.needle = i + 1
		if k.op == "BODY" {
			tk.body[i] = true
		} else {
			tk.text[i] = true
		}
	}
	walk(root)
	root.texts = tk
	return tk
}

// searchTexts searches the message, loaded, for all of tk's strings in
// one pass, each until it is found: m.found.
func (m *searchMsg) searchTexts(tk *textKeys) {
	t := &m.s.text
	if cap(t.found) < len(tk.folds) {
		t.found = make([]uint8, len(tk.folds))
	}
	m.found = t.found[:len(tk.folds)]
	clear(m.found)
	if h := m.s.srv.opts.textReadHook; h != nil {
		h(m.uid)
	}
	w := textWalk{t: t, keys: tk, found: m.found, left: len(tk.folds)}
	if m.scanned != nil {
		f, _, err := m.s.sel.mb.Open(m.uid)
		if err != nil {
			return
		}
		defer f.Close()
		w.f, w.br = f, bufio.NewReaderSize(f, 32<<10)
		w.entity(m.scanned, true)
		return
	}
	if m.root == nil {
		m.root = parseEntity(m.raw, "text/plain", 0)
	}
	w.entity(m.root, true)
}

// load makes the message searchable: its structure scanned from its file
// when it is large, else (or beyond the scanner's bounds) the message
// read whole.
func (m *searchMsg) load() {
	mb := m.s.sel.mb
	size, _, err := mb.Meta(m.uid)
	if err == nil && (size > maxKeptBuf || m.s.srv.opts.streamSearchAll) {
		root, _, err := scanMessage(mb, m.uid)
		if err == nil {
			m.scanned = root
			return
		}
		if !errors.Is(err, errScanBounds) {
			m.failed = true
			return
		}
		// Read whole after all: its CRLF form, its parts decoded,
		// converted and folded, within the server's memory budget.
		if err := m.s.holdMem(5 * size); err != nil {
			m.failed, m.err = true, err
			return
		}
	}
	raw, err := m.s.readMessage(m.uid)
	if err != nil {
		m.failed = true
		return
	}
	m.raw = raw
}

// textWalk searches a message's entities for the strings of keys:
// entities that hold their bytes (parseEntity's), or, with f, spans of
// the message's file (scanMIME's), read from it as they are searched.
type textWalk struct {
	t     *textScratch
	keys  *textKeys
	found []uint8 // for each of keys' strings, where it was found
	left  int     // strings some key still waits for
	f     *os.File
	br    *bufio.Reader // reads f, one for all the spans
}

// mark records that string i is in text the keys of kind want searched
// (foundBody, or foundBody|foundText), and whether every string is then
// settled.
func (w *textWalk) mark(i int, kind uint8) bool {
	was := w.settled(i)
	w.found[i] |= kind
	if !was && w.settled(i) {
		w.left--
	}
	return w.left == 0
}

// settled: every key looking for string i has its answer.
func (w *textWalk) settled(i int) bool {
	f := w.found[i]
	return (!w.keys.body[i] || f&foundBody != 0) && (!w.keys.text[i] || f&foundText != 0)
}

// wants: string i is still looked for in text searched for kind.
func (w *textWalk) wants(i int, kind uint8) bool {
	f := w.found[i]
	return w.keys.body[i] && kind&foundBody != 0 && f&foundBody == 0 ||
		w.keys.text[i] && kind&foundText != 0 && f&foundText == 0
}

// entity searches p and what it holds, for the BODY keys and, with
// withText, the TEXT keys (an entity whose header cannot be read is not
// searched for them, nor what it holds); parseEntity and scanMIME bound
// the depth. It reports whether every string is settled.
func (w *textWalk) entity(p *mpart, withText bool) bool {
	kind := foundBody
	if withText {
		kind |= foundText
	}
	if withText && w.wantsAny(foundText) {
		h := p.header
		if p.span != nil {
			r, err := spanReaderBuf(w.f, headerSpan(p), w.br) // within maxScanHeader
			if err == nil {
				w.t.hdr = readAllInto(w.t.hdr[:0], r)
				h = w.t.hdr
			} else {
				kind, withText = foundBody, false
			}
		}
		if withText && w.look(w.t.foldHeader(h), foundText) {
			return true
		}
	}
	switch {
	case p.ctype == "multipart":
		// Its preamble and epilogue are not content, as Dovecot has it.
		for _, c := range p.children {
			if w.entity(c, withText) {
				return true
			}
		}
		return false
	case p.msg != nil:
		return w.entity(p.msg, withText)
	case p.ctype == "text" || p.ctype == "message":
		if !w.wantsAny(kind) {
			return false
		}
		return w.content(p, kind)
	}
	return false
}

func (w *textWalk) wantsAny(kind uint8) bool {
	for i := range w.found {
		if w.wants(i, kind) {
			return true
		}
	}
	return false
}

// look marks the strings still looked for in text of kind that b holds;
// it reports whether every string is then settled.
func (w *textWalk) look(b []byte, kind uint8) bool {
	if len(b) == 0 {
		return false
	}
	for i, n := range w.keys.folds {
		if w.wants(i, kind) && bytes.Contains(b, n) && w.mark(i, kind) {
			return true
		}
	}
	return false
}

// content searches the content of a text or message part, its transfer
// encoding undone and its charset converted to UTF-8, for the strings of
// kind; it reports whether every string is then settled.
func (w *textWalk) content(p *mpart, kind uint8) bool {
	cte := strings.ToLower(strings.TrimSpace(p.fields.cte))
	var r io.Reader // nil: p.body as it is
	if p.span != nil {
		sp := bodySpan(p)
		if cte == "base64" || cte == "quoted-printable" {
			sp.cte = cte
		}
		var err error
		if r, err = spanReaderBuf(w.f, sp, w.br); err != nil {
			return false
		}
	} else {
		switch cte {
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, lineJoiner{r: bytes.NewReader(p.body)})
		case "quoted-printable":
			r = quotedprintable.NewReader(bytes.NewReader(p.body))
		}
		if r != nil {
			// What a broken encoding gave before its error is searched.
			r = &stopAtError{r: r}
		}
	}
	if cs := p.params["charset"]; p.ctype == "text" && !isUTF8Charset(cs) {
		src := r
		if src == nil {
			src = bytes.NewReader(p.body)
		}
		if cr, err := charset.Reader(cs, src); err == nil {
			r = &stopAtError{r: cr}
		}
		// A charset no decoder knows: the bytes as they are.
	}
	if r == nil {
		w.t.fold = appendFold(w.t.fold[:0], p.body)
		return w.look(w.t.fold, kind)
	}
	longest := 0
	for i, n := range w.keys.folds {
		if w.wants(i, kind) {
			longest = max(longest, len(n))
		}
	}
	return w.t.streamFold(r, longest, func(b []byte) bool { return w.look(b, kind) })
}

// searchChunk is how much of a part's decoded content searchStream folds
// at a time.
const searchChunk = 32 << 10

// searchStream looks for needle, folded, in what r gives (streamFold).
func (t *textScratch) searchStream(r io.Reader, needle []byte) bool {
	return t.streamFold(r, len(needle), func(b []byte) bool { return bytes.Contains(b, needle) })
}

// streamFold folds what r gives piece by piece, for look to search
// strings of up to longest bytes, folded, until it answers true: the
// last longest-1 folded bytes stay before the next piece, so that a match
// across two pieces is found, and the bytes of a rune cut at a piece's
// end wait for the rest of it (folded apart, they would not be lowered).
func (t *textScratch) streamFold(r io.Reader, longest int, look func([]byte) bool) bool {
	if cap(t.chunk) < searchChunk {
		t.chunk = make([]byte, searchChunk)
	}
	buf := t.chunk[:searchChunk]
	keep := max(longest-1, 0)
	fold := t.fold[:0]
	defer func() { t.fold = fold[:0] }()
	held := 0 // bytes at buf's start: the start of a rune cut last time
	for {
		n, err := r.Read(buf[held:])
		n += held
		end := n
		if err == nil {
			end -= cutRune(buf[:n])
		}
		fold = appendFold(fold, buf[:end])
		if look(fold) {
			return true
		}
		if len(fold) > keep {
			fold = fold[:copy(fold, fold[len(fold)-keep:])]
		}
		held = copy(buf, buf[end:n])
		if err != nil {
			return false
		}
	}
}

// cutRune is the length of the start of a rune that b ends with, its
// other bytes still to come; 0 when b ends with a whole rune (or bytes
// that are no UTF-8, which no further byte makes one).
func cutRune(b []byte) int {
	for i := 1; i <= min(len(b), utf8.UTFMax-1); i++ {
		c := b[len(b)-i]
		if c < utf8.RuneSelf {
			return 0
		}
		if utf8.RuneStart(c) {
			if utf8.FullRune(b[len(b)-i:]) {
				return 0
			}
			return i
		}
	}
	return 0
}

// foldHeader is the text TEXT searches in a header, folded into t.fold:
// its fields, each as "name:" and the blanks after the colon as they
// are, then the value unfolded and decoded, then CRLF: the text Dovecot
// searches, so that "Subject: caf" finds a subject "café" that was sent
// encoded.
func (t *textScratch) foldHeader(h []byte) []byte {
	if len(h) == 0 {
		return nil
	}
	b := t.fold[:0]
	scanHeader(h, func(name, raw []byte) {
		b = appendFold(b, name)
		b = append(b, ':')
		i := 0
		for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t') {
			i++
		}
		b = append(b, raw[:i]...)
		raw = raw[i:]
		params := (nameIs(name, "content-type") || nameIs(name, "content-disposition")) && bytes.IndexByte(raw, '*') >= 0
		if bytes.IndexByte(raw, '\n') >= 0 {
			t.line = appendUnfolded(t.line[:0], raw)
			raw = t.line
		}
		if !params && !bytes.Contains(raw, []byte("=?")) {
			b = appendFold(b, raw) // most fields: nothing to decode
			b = append(b, "\r\n"...)
			return
		}
		v := string(raw)
		b = appendFold(b, decodeWords(v))
		b = append(b, "\r\n"...)
		if params {
			_, ps := parseMIMEValue(v, nameIs(name, "content-type"))
			for k, pv := range ps {
				if strings.HasSuffix(k, "*") {
					b = appendFold(b, decodeRFC2231(pv))
					b = append(b, "\r\n"...)
				}
			}
		}
	})
	t.fold = b
	return b
}

// decodeWords decodes the encoded words (RFC 2047) of a field value: for
// TEXT, HEADER and the address keys, and SORT's and THREAD's subjects and
// display names. A value that does not decode (a charset no decoder
// knows) is left as it is.
func decodeWords(v string) string {
	if !strings.Contains(v, "=?") {
		return v
	}
	dec := mime.WordDecoder{CharsetReader: charset.Reader}
	if d, err := dec.DecodeHeader(v); err == nil {
		return d
	}
	return v
}

// decodeRFC2231 decodes an extended parameter value, charset'lang' then
// %XX escapes (RFC 2231 §4), to UTF-8. A bad escape stays as it is, and
// so do the bytes of a charset no decoder knows.
func decodeRFC2231(v string) string {
	cs, rest, ok := strings.Cut(v, "'")
	if !ok {
		return v
	}
	if _, rest, ok = strings.Cut(rest, "'"); !ok {
		return v
	}
	b := make([]byte, 0, len(rest))
	for i := 0; i < len(rest); i++ {
		if rest[i] == '%' && i+2 < len(rest) && unhex(rest[i+1]) >= 0 && unhex(rest[i+2]) >= 0 {
			b = append(b, byte(unhex(rest[i+1])<<4|unhex(rest[i+2])))
			i += 2
			continue
		}
		b = append(b, rest[i])
	}
	if !isUTF8Charset(cs) {
		if r, err := charset.Reader(cs, bytes.NewReader(b)); err == nil {
			if out, err := io.ReadAll(r); err == nil {
				return string(out)
			}
		}
	}
	return string(b)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c - 'a' + 10)
	case 'A' <= c && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// isUTF8Charset reports a charset whose text is searched as it is: UTF-8,
// or US-ASCII (none named is US-ASCII, RFC 2045 §5.2), whose 8-bit bytes,
// where a sender put them anyway, are most likely UTF-8.
func isUTF8Charset(cs string) bool {
	return cs == "" || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "us-ascii") || strings.EqualFold(cs, "utf8")
}

// readAllInto appends what r gives to buf; what a broken encoding gave
// before its error is kept.
func readAllInto(buf []byte, r io.Reader) []byte {
	bb := bytes.NewBuffer(buf)
	_, _ = bb.ReadFrom(r)
	return bb.Bytes()
}

// appendUnfolded appends a folded field value without its line breaks;
// the tab starting a continuation line becomes a space, as Dovecot
// unfolds ("alpha\r\n\tbeta" is "alpha beta").
func appendUnfolded(dst, raw []byte) []byte {
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		if i < 0 {
			return append(dst, raw...)
		}
		line := raw[:i]
		if i > 0 && line[i-1] == '\r' {
			line = line[:i-1]
		}
		dst = append(dst, line...)
		raw = raw[i+1:]
		if len(raw) > 0 && raw[0] == '\t' {
			dst = append(dst, ' ')
			raw = raw[1:]
		}
	}
	return dst
}

// appendFold appends s lower-cased rune by rune, as strings.ToLower
// lowers, and each letter with a diacritic decomposed (é → e and a
// combining acute, NFD): the comparator Dovecot searches with
// (i;unicode-casemap, RFC 5051, titlecased and decomposed), so that
// "cafe" finds "Café", "eleve" finds "Élève", and a word written
// precomposed finds it written decomposed. Bytes that are not UTF-8 are
// kept as they are (the needle, being UTF-8, never matches them).
func appendFold[S string | []byte](dst []byte, s S) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, n := decodeRune(s[i:])
		if r == utf8.RuneError && n <= 1 {
			dst = append(dst, c)
			i++
			continue
		}
		dst = appendDecomposed(dst, unicode.ToLower(r))
		i += n
	}
	return dst
}

// appendDecomposed appends r in its canonical decomposition (NFD's), r
// itself when it has none.
func appendDecomposed(dst []byte, r rune) []byte {
	if r < 0xc0 { // below À: nothing decomposes
		return utf8.AppendRune(dst, r)
	}
	var b [utf8.UTFMax]byte
	if d := norm.NFD.Properties(utf8.AppendRune(b[:0], r)).Decomposition(); d != nil {
		return append(dst, d...)
	}
	return utf8.AppendRune(dst, r)
}

// decodeRune is utf8.DecodeRune for a string or a byte slice, copying
// neither.
func decodeRune[S string | []byte](s S) (rune, int) {
	if len(s) == 0 {
		return utf8.RuneError, 0
	}
	// utf8.FullRune's longest case: four bytes.
	var buf [utf8.UTFMax]byte
	n := copy(buf[:], s[:min(len(s), utf8.UTFMax)])
	return utf8.DecodeRune(buf[:n])
}
