package imap

import (
	"bytes"
	"errors"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// maxHeaderRead bounds how much of a file is read for an ENVELOPE.
const maxHeaderRead = 1 << 20

type fetchKind uint8

const (
	fUID fetchKind = iota + 1
	fFlags
	fInternalDate
	fSize
	fEnvelope
	fBodyStructure
	fBody // BODY without section: non-extensible BODYSTRUCTURE
	fSection
	fBinary
	fBinarySize
	fRFC822
	fRFC822Header
	fRFC822Text
)

// fetchItem is one parsed FETCH attribute.
type fetchItem struct {
	kind    fetchKind
	peek    bool
	path    []int       // part numbers of the section
	sec     sectionKind // after the part numbers
	fields  []string    // HEADER.FIELDS (.NOT: not)
	not     bool
	name    string // the section as echoed: "HEADER.FIELDS (TO)"
	partial bool
	offset  int64
	size    int64
}

func (s *session) parseFetchItems() ([]fetchItem, error) {
	c, err := s.r.Peek()
	if err != nil {
		return nil, err
	}
	if c == '(' {
		var items []fetchItem
		err := s.r.List(false, func() error {
			it, err := s.parseFetchItem()
			items = append(items, it...)
			return err
		})
		return items, err
	}
	return s.parseFetchItem()
}

func (s *session) parseFetchItem() ([]fetchItem, error) {
	name, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) && c != '[' }, "FETCH item")
	if err != nil {
		return nil, err
	}
	switch strings.ToUpper(name) {
	case "ALL":
		return []fetchItem{{kind: fFlags}, {kind: fInternalDate}, {kind: fSize}, {kind: fEnvelope}}, nil
	case "FAST":
		return []fetchItem{{kind: fFlags}, {kind: fInternalDate}, {kind: fSize}}, nil
	case "FULL":
		return []fetchItem{{kind: fFlags}, {kind: fInternalDate}, {kind: fSize}, {kind: fEnvelope}, {kind: fBody}}, nil
	case "UID":
		return []fetchItem{{kind: fUID}}, nil
	case "MODSEQ":
		return []fetchItem{{kind: fModSeq}}, nil
	case "FLAGS":
		return []fetchItem{{kind: fFlags}}, nil
	case "INTERNALDATE":
		return []fetchItem{{kind: fInternalDate}}, nil
	case "RFC822.SIZE":
		return []fetchItem{{kind: fSize}}, nil
	case "ENVELOPE":
		return []fetchItem{{kind: fEnvelope}}, nil
	case "BODYSTRUCTURE":
		return []fetchItem{{kind: fBodyStructure}}, nil
	case "RFC822":
		return []fetchItem{{kind: fRFC822}}, nil
	case "RFC822.HEADER":
		return []fetchItem{{kind: fRFC822Header, peek: true}}, nil
	case "RFC822.TEXT":
		return []fetchItem{{kind: fRFC822Text}}, nil
	case "BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE":
	default:
		return nil, bad("", "Unknown FETCH item "+sanitize(name))
	}
	up := strings.ToUpper(name)
	open, err := s.r.Is('[')
	if err != nil {
		return nil, err
	}
	if !open {
		if up == "BODY" {
			return []fetchItem{{kind: fBody}}, nil
		}
		return nil, bad("", "Expected [ after "+up)
	}
	it := fetchItem{kind: fSection, peek: strings.HasSuffix(up, ".PEEK")}
	binary := strings.HasPrefix(up, "BINARY")
	if binary {
		it.kind = fBinary
		if up == "BINARY.SIZE" {
			it.kind = fBinarySize
		}
	}
	if err := s.parseSection(&it, binary); err != nil {
		return nil, err
	}
	if it.kind != fBinarySize {
		if lt, err := s.r.Is('<'); err != nil {
			return nil, err
		} else if lt {
			off, err := s.r.Number()
			if err != nil {
				return nil, err
			}
			if err := s.r.Expect('.', "."); err != nil {
				return nil, err
			}
			n, err := s.r.Number()
			if err != nil {
				return nil, err
			}
			if err := s.r.Expect('>', ">"); err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, bad("", "Partial size must not be 0")
			}
			it.partial, it.offset, it.size = true, int64(off), int64(n)
		}
	}
	return []fetchItem{it}, nil
}

// parseSection reads "part.part.SPEC (fields)]".
func (s *session) parseSection(it *fetchItem, binary bool) error {
	var b strings.Builder
	for {
		c, err := s.r.Peek()
		if err != nil {
			return err
		}
		if c < '0' || c > '9' {
			break
		}
		n, err := s.r.Number()
		if err != nil {
			return err
		}
		if n == 0 {
			return bad("", "Invalid section part 0")
		}
		it.path = append(it.path, int(n))
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
		if dot, err := s.r.Is('.'); err != nil {
			return err
		} else if !dot {
			break
		}
		if c, err := s.r.Peek(); err != nil {
			return err
		} else if c < '0' || c > '9' {
			b.WriteByte('.')
			break
		}
	}
	if ok, err := s.r.Is(']'); err != nil || ok {
		it.name = b.String()
		return err
	}
	if binary {
		return bad("", "BINARY takes part numbers only")
	}
	spec, err := s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "section")
	if err != nil {
		return err
	}
	spec = strings.ToUpper(spec)
	switch spec {
	case "HEADER":
		it.sec = secHeader
	case "TEXT":
		it.sec = secText
	case "MIME":
		if len(it.path) == 0 {
			return bad("", "MIME needs a part number")
		}
		it.sec = secMIME
	case "HEADER.FIELDS", "HEADER.FIELDS.NOT":
		it.sec = secHeader
		if err := s.r.SP(); err != nil {
			return err
		}
		var fields []string
		if err := s.r.List(false, func() error {
			f, err := s.r.AString()
			fields = append(fields, strings.ToUpper(f))
			return err
		}); err != nil {
			return err
		}
		it.fields, it.not = fields, spec == "HEADER.FIELDS.NOT"
		spec += " (" + strings.Join(fields, " ") + ")"
	default:
		return bad("", "Unknown section "+sanitize(spec))
	}
	b.WriteString(spec)
	it.name = b.String()
	return s.r.Expect(']', "]")
}

func cmdFetch(s *session, tag string, uid bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	set, err := s.r.SeqSet()
	if err != nil {
		return err
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	items, err := s.parseFetchItems()
	if err != nil {
		return err
	}
	mods, err := s.parseFetchModifiers(uid)
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if uid {
		// UID first, and once: "UID FETCH 5 (FLAGS UID)" is no reason
		// to send it twice.
		items = slices.DeleteFunc(items, func(it fetchItem) bool { return it.kind == fUID })
		items = append([]fetchItem{{kind: fUID}}, items...)
	}
	if err := s.checkSeqSet(set, uid); err != nil {
		return err
	}
	sel := s.sel
	seqs, uids := s.resolve(set, uid)
	items, seqs, uids = s.applyFetchModifiers(mods, set, items, seqs, uids)
	markSeen := false
	if !sel.readOnly {
		for _, it := range items {
			if (it.kind == fSection || it.kind == fBinary || it.kind == fRFC822 || it.kind == fRFC822Text) && !it.peek {
				markSeen = true
			}
		}
	}
	fl, ok := sel.mb.FlagsOf(uids)
	if markSeen {
		var unseen []uint32
		for i, u := range uids {
			if ok[i] && fl[i]&mailstore.FlagSeen == 0 {
				unseen = append(unseen, u)
			}
		}
		if len(unseen) > 0 {
			// Others are told through the log; this session reports FLAGS
			// in the FETCH responses below.
			if _, _, err := sel.mb.StoreFlags(unseen, mailstore.StoreAdd, []string{mailstore.Seen}, sel.w); err != nil {
				return s.storeErr("fetch", err, "")
			}
			s.srv.wakeIdlers(sel.mb, s)
			fl, ok = sel.mb.FlagsOf(uids)
		} else {
			markSeen = false
		}
	}
	s.announceFlags(false)
	defer s.trimBuffers()
	pf := s.startPrefetch(uids, items)
	defer pf.close()
	gone := false // a message expunged by another session, not sent
	for i, u := range uids {
		pf.claim(i)
		if !ok[i] {
			gone = true // its EXPUNGE is pending
			continue
		}
		if err := s.fetchOne(seqs[i], u, fl[i], items, markSeen); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				gone = true
				continue
			}
			return err
		}
	}
	if gone {
		// RFC 5530: the client learns why a message is missing, and
		// that a NOOP will bring the EXPUNGE (Dovecot answers the same).
		return s.ok(tag, "EXPUNGEISSUED", "Some messages were expunged meanwhile", uid)
	}
	return s.ok(tag, "", "Fetch completed", uid)
}

// fetchPart is one item of a FETCH response, computed before the first
// byte of it is written.
type fetchPart struct {
	head  string // written as is
	uid   bool   // "UID " and the UID
	lit   bool   // body follows as a literal
	body  []byte
	bin   bool
	flags bool
	env   *mailstore.Envelope
	bs    *mailstore.BodyPart
	ext   bool // bs as BODYSTRUCTURE, else as BODY
	// stream: a literal of size bytes copied from the message file;
	// span: sp of it, as a literal8 when bin
	stream bool
	span   bool
	sp     formSpan
	size   int64
}

func (s *session) fetchOne(seq, uid uint32, flags mailstore.Flags, items []fetchItem, markSeen bool) error {
	mb := s.sel.mb
	var raw []byte
	var err error
	getRaw := func() ([]byte, error) {
		if raw == nil {
			raw, err = s.readMessage(uid)
		}
		return raw, err
	}
	// A message over maxKeptBuf is not read whole for a section: its
	// structure is scanned (once for all the items) and the section
	// streamed from the file (fetchstream.go). One beyond the scanner's
	// bounds is read whole after all, within the memory budget.
	var scan *mpart
	var scanSize int64
	var lastBin decoded // BINARY.SIZE's pass, for BINARY of the same part
	scanErr := error(nil)
	large := func() (bool, error) {
		if raw != nil || errors.Is(scanErr, errScanBounds) {
			return false, nil
		}
		if scan != nil {
			return true, nil
		}
		size, _, err := mb.Meta(uid)
		if err != nil {
			return false, err
		}
		if size <= maxKeptBuf {
			return false, nil
		}
		scan, scanSize, scanErr = scanMessage(mb, uid)
		switch {
		case errors.Is(scanErr, errScanBounds):
			// Held: the message, its CRLF form, a decoded part.
			return false, s.holdMem(3 * size)
		case scanErr != nil:
			return false, scanErr
		}
		return true, nil
	}
	// Everything is computed before the first byte of the response, so a
	// failure never leaves a half-written FETCH.
	// The common FETCH asks few items: their parts stay on the stack
	// (no allocation a message for UID FETCH 1:* (FLAGS)).
	var few [4]fetchPart
	parts := few[:0]
	wroteFlags := false
	for _, it := range items {
		switch it.kind {
		case fUID:
			parts = append(parts, fetchPart{uid: true})
		case fFlags:
			if !wroteFlags {
				parts = append(parts, fetchPart{flags: true})
				wroteFlags = true
			}
		case fModSeq:
			ms := mb.ModSeq(uid)
			if ms == 0 {
				return fs.ErrNotExist // expunged meanwhile: skipped
			}
			parts = append(parts, fetchPart{head: modSeqItem(ms)})
		case fInternalDate, fSize:
			size, date, err := mb.Meta(uid)
			if err != nil {
				return s.fetchErr(err)
			}
			if it.kind == fSize {
				parts = append(parts, fetchPart{head: "RFC822.SIZE " + strconv.FormatInt(size, 10)})
			} else {
				parts = append(parts, fetchPart{head: `INTERNALDATE "` + date.Format("02-Jan-2006 15:04:05 -0700") + `"`})
			}
		case fEnvelope:
			env, _, err := s.parsed(uid, raw, true, false)
			if err != nil {
				return s.fetchErr(err)
			}
			parts = append(parts, fetchPart{env: env})
		case fBodyStructure, fBody:
			_, bs, err := s.parsed(uid, raw, false, true)
			if err != nil {
				return s.fetchErr(err)
			}
			parts = append(parts, fetchPart{bs: bs, ext: it.kind == fBodyStructure})
		case fSection, fRFC822, fRFC822Header, fRFC822Text:
			if whole := it.kind == fRFC822 || (it.kind == fSection && len(it.path) == 0 && it.sec == secAll && !it.partial); whole && raw == nil {
				// A large whole message is streamed from its file at write
				// time, never held in memory; a small one is read into the
				// session's scratch buffer, which is cheaper.
				size, _, err := mb.Meta(uid)
				if err != nil {
					return s.fetchErr(err)
				}
				if size > maxKeptBuf {
					name := "RFC822 "
					if it.kind == fSection {
						name = "BODY[] "
					}
					parts = append(parts, fetchPart{head: name, stream: true, size: size})
					continue
				}
			}
			if it.kind == fSection && len(it.path) == 0 && it.sec == secAll && raw == nil {
				// BODY[]<offset.size> of a large message (clients fetch
				// one in chunks): a range of the file, no structure.
				size, _, err := mb.Meta(uid)
				if err != nil {
					return s.fetchErr(err)
				}
				if size > maxKeptBuf {
					sp := formSpan{n: size, take: -1}
					n := sp.cut(it, size)
					parts = append(parts, fetchPart{head: "BODY[]<" + strconv.FormatInt(it.offset, 10) + "> ", span: true, sp: sp, size: n})
					continue
				}
			}
			if ok, err := large(); err != nil {
				return s.fetchErr(err)
			} else if ok {
				pt, err := s.scannedSectionPart(uid, scan, scanSize, it)
				if err != nil {
					return s.fetchErr(err)
				}
				parts = append(parts, pt)
				continue
			}
			r, err := getRaw()
			if err != nil {
				return s.fetchErr(err)
			}
			var b []byte
			var name string
			switch it.kind {
			case fRFC822:
				b, name = r, "RFC822"
			case fRFC822Header:
				b, name = r[:headerEnd(r)], "RFC822.HEADER"
			case fRFC822Text:
				b, name = r[headerEnd(r):], "RFC822.TEXT"
			default:
				b = partial(extractBody(r, it.path, it.sec, it.fields, it.not), it)
				name = "BODY[" + it.name + "]"
				if it.partial {
					name += "<" + strconv.FormatInt(it.offset, 10) + ">"
				}
			}
			parts = append(parts, fetchPart{head: name + " ", lit: true, body: b})
		case fBinary, fBinarySize:
			if ok, err := large(); err != nil {
				return s.fetchErr(err)
			} else if ok {
				sp, ok := scannedBinary(scan, scanSize, it.path)
				if !ok {
					return no("UNKNOWN-CTE", "Unknown content transfer encoding")
				}
				pt, err := s.scannedBinaryPart(uid, sp, it, &lastBin)
				if err != nil {
					return s.fetchErr(err)
				}
				parts = append(parts, pt)
				continue
			}
			r, err := getRaw()
			if err != nil {
				return s.fetchErr(err)
			}
			b, ok := extractBinary(r, it.path)
			if !ok {
				return no("UNKNOWN-CTE", "Unknown content transfer encoding")
			}
			if it.kind == fBinarySize {
				parts = append(parts, fetchPart{head: "BINARY.SIZE[" + it.name + "] " + strconv.Itoa(len(b))})
				continue
			}
			name := "BINARY[" + it.name + "]"
			if it.partial {
				b = partial(b, it)
				name += "<" + strconv.FormatInt(it.offset, 10) + ">"
			}
			parts = append(parts, fetchPart{head: name + " ", lit: true, body: b, bin: bytes.IndexByte(b, 0) >= 0})
		}
	}
	if markSeen && !wroteFlags {
		parts = append(parts, fetchPart{flags: true})
	}
	w := s.w
	w.Raw("* ")
	w.Number(uint64(seq))
	w.Raw(" FETCH (")
	for i, p := range parts {
		if i > 0 {
			w.SP()
		}
		switch {
		case p.flags:
			w.Raw("FLAGS (")
			s.writeFlags(uid, flags)
			w.Byte(')')
		case p.uid:
			w.Raw("UID ")
			w.Number(uint64(uid))
		case p.env != nil:
			w.Raw("ENVELOPE ")
			w.Bytes(appendEnvelope(w.AvailableBuffer(), p.env, s.utf8()))
		case p.bs != nil:
			b := w.AvailableBuffer()
			if p.ext {
				b = append(b, "BODYSTRUCTURE "...)
			} else {
				b = append(b, "BODY "...)
			}
			w.Bytes(appendBodyStructure(b, p.bs, p.ext, s.utf8(), 0))
		case p.lit:
			w.Raw(p.head)
			w.LiteralBytes(p.body, p.bin)
		case p.stream:
			w.Raw(p.head)
			if err := s.streamMessage(uid, p.size); err != nil {
				return err
			}
		case p.span:
			w.Raw(p.head)
			if err := s.writeSpan(uid, p.sp, p.size, p.bin); err != nil {
				return err
			}
		default:
			w.Raw(p.head)
		}
	}
	w.Raw(")\r\n")
	return w.Err()
}

func (s *session) fetchErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err // skipped by the caller
	}
	return s.storeErr("fetch", err, "")
}

// partial cuts <offset.size> out of b when the item asks for it.
func partial(b []byte, it fetchItem) []byte {
	if !it.partial {
		return b
	}
	if it.offset >= int64(len(b)) {
		return []byte{}
	}
	end := it.offset + it.size
	if end > int64(len(b)) || end < it.offset {
		end = int64(len(b))
	}
	return b[it.offset:end]
}
