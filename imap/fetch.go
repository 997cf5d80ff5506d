package imap

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"io/fs"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
)

// maxHeaderRead bounds how much of a file is read for an ENVELOPE.
const maxHeaderRead = 1 << 20

func (s *session) Fetch(w *imapserver.FetchWriter, numSet goimap.NumSet, options *goimap.FetchOptions) error {
	sel := s.sel
	seqs, uids := sel.resolve(numSet)
	if len(uids) == 0 {
		return nil
	}
	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			if !bs.Peek {
				markSeen = true
			}
		}
		if len(options.BinarySection) > 0 {
			for _, bs := range options.BinarySection {
				if !bs.Peek {
					markSeen = true
				}
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
				return s.imapError("fetch", err, "")
			}
			fl, ok = sel.mb.FlagsOf(uids)
		}
	}
	defer s.trimBuffers()
	for i, uid := range uids {
		if !ok[i] {
			continue // expunged by another session; its EXPUNGE is pending
		}
		if err := s.fetchOne(w, seqs[i], uid, fl[i], options, markSeen); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return err
		}
	}
	return nil
}

type fetched struct {
	size     int64
	date     time.Time
	env      *goimap.Envelope
	bs       goimap.BodyStructure
	sections [][]byte
	binary   [][]byte
	binSizes []uint32
}

func (s *session) fetchOne(w *imapserver.FetchWriter, seq, uid uint32, flags mailstore.Flags, options *goimap.FetchOptions, markSeen bool) error {
	mb := s.sel.mb
	var f fetched
	var err error
	if options.RFC822Size || options.InternalDate {
		f.size, f.date, err = mb.Meta(uid)
		if err != nil {
			return s.fetchErr(err)
		}
	}
	if options.Envelope {
		if f.env, err = s.envelope(uid); err != nil {
			return s.fetchErr(err)
		}
	}
	var raw []byte
	needRaw := len(options.BodySection) > 0 || len(options.BinarySection) > 0 || len(options.BinarySectionSize) > 0
	if options.BodyStructure != nil {
		c := mb.Cached(uid)
		if c.Body == nil {
			if raw, err = s.readMessage(uid); err != nil {
				return s.fetchErr(err)
			}
			if !options.Envelope && c.Envelope == nil {
				// One read serves both: the envelope is cached too.
				mb.UpdateCached(uid, mailstore.Cached{Envelope: envToStore(safeEnvelope(parseHeader(raw[:headerEnd(raw)])))})
			}
			if parsed := safeBodyStructure(raw); parsed != nil {
				c.Body = bodyPartFrom(parsed, 0)
			} else {
				body := raw[headerEnd(raw):]
				c.Body = fallbackPart(len(body), int64(bytes.Count(body, []byte("\n"))))
			}
			mb.UpdateCached(uid, mailstore.Cached{Body: c.Body})
		}
		f.bs = bodyToIMAP(c.Body, 0)
	}
	if needRaw && raw == nil {
		if raw, err = s.readMessage(uid); err != nil {
			return s.fetchErr(err)
		}
	}
	for _, bs := range options.BodySection {
		f.sections = append(f.sections, extractSection(raw, bs))
	}
	for _, bs := range options.BinarySection {
		f.binary = append(f.binary, safeExtract(func() []byte { return imapserver.ExtractBinarySection(bytes.NewReader(raw), bs) }))
	}
	for _, bs := range options.BinarySectionSize {
		f.binSizes = append(f.binSizes, uint32(len(safeExtract(func() []byte {
			return imapserver.ExtractBinarySection(bytes.NewReader(raw), &goimap.FetchItemBinarySection{Part: bs.Part})
		}))))
	}

	m := w.CreateMessage(seq)
	m.WriteUID(goimap.UID(uid))
	if options.Flags || markSeen {
		m.WriteFlags(flagsToIMAP(mb.FlagNames(flags)))
	}
	if options.InternalDate {
		m.WriteInternalDate(f.date)
	}
	if options.RFC822Size {
		m.WriteRFC822Size(f.size)
	}
	if options.Envelope {
		m.WriteEnvelope(f.env)
	}
	if f.bs != nil {
		m.WriteBodyStructure(f.bs)
	}
	for i, bs := range options.BodySection {
		if err := writeLiteral(m.WriteBodySection(bs, int64(len(f.sections[i]))), f.sections[i]); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySection {
		if err := writeLiteral(m.WriteBinarySection(bs, int64(len(f.binary[i]))), f.binary[i]); err != nil {
			return err
		}
	}
	for i, bs := range options.BinarySectionSize {
		m.WriteBinarySectionSize(bs, f.binSizes[i])
	}
	return m.Close()
}

func (s *session) fetchErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return err // skipped by the caller
	}
	return s.imapError("fetch", err, "")
}

func writeLiteral(wc io.WriteCloser, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// readMessage returns the whole message with CRLF line endings, the form
// IMAP serves whatever the file uses. The bytes live in the session's
// scratch buffers and are valid until the next call.
func (s *session) readMessage(uid uint32) ([]byte, error) {
	b, _, err := s.sel.mb.ReadMessage(uid, s.readBuf, 0)
	if err != nil {
		return nil, err
	}
	s.readBuf = b[:0]
	out, changed := appendCRLF(s.crlfBuf[:0], b)
	if !changed {
		return b, nil // already CRLF: no copy
	}
	s.crlfBuf = out[:0]
	return out, nil
}

// Scratch buffers above this size are dropped after use, so that one huge
// message does not stay allocated for the life of the connection.
const maxKeptBuf = 256 << 10

func (s *session) trimBuffers() {
	if cap(s.readBuf) > maxKeptBuf {
		s.readBuf = nil
	}
	if cap(s.crlfBuf) > maxKeptBuf {
		s.crlfBuf = nil
	}
}

// toCRLF turns every bare LF into CRLF.
func toCRLF(b []byte) []byte {
	if out, changed := appendCRLF(nil, b); changed {
		return out
	}
	return b
}

// appendCRLF appends b to dst with every bare LF turned into CRLF. When b
// has none, dst is returned unchanged and changed is false (the caller uses
// b itself).
func appendCRLF(dst, b []byte) (out []byte, changed bool) {
	i := bytes.IndexByte(b, '\n')
	for i >= 0 && (i > 0 && b[i-1] == '\r') {
		j := bytes.IndexByte(b[i+1:], '\n')
		if j < 0 {
			i = -1
			break
		}
		i += 1 + j
	}
	if i < 0 {
		return dst, false
	}
	if need := len(b) + len(b)/32 + 64; cap(dst)-len(dst) < need {
		dst = append(make([]byte, 0, len(dst)+need), dst...)
	}
	start := 0
	for {
		// b[i] is a bare LF.
		dst = append(dst, b[start:i]...)
		dst = append(dst, '\r', '\n')
		start = i + 1
		j := bytes.IndexByte(b[start:], '\n')
		for j >= 0 && start+j > 0 && b[start+j-1] == '\r' {
			k := bytes.IndexByte(b[start+j+1:], '\n')
			if k < 0 {
				j = -1
				break
			}
			j += 1 + k
		}
		if j < 0 {
			return append(dst, b[start:]...), true
		}
		i = start + j
	}
}

// extractSection serves BODY[...]; the common whole-message and header
// cases are cut from the bytes directly, the rest goes through the library's
// MIME walker. Malformed MIME yields an empty section, never an error.
func extractSection(raw []byte, bs *goimap.FetchItemBodySection) []byte {
	if len(bs.Part) == 0 && len(bs.HeaderFields) == 0 && len(bs.HeaderFieldsNot) == 0 {
		var b []byte
		switch bs.Specifier {
		case goimap.PartSpecifierNone:
			b = raw
		case goimap.PartSpecifierHeader:
			b = raw[:headerEnd(raw)]
		case goimap.PartSpecifierText:
			b = raw[headerEnd(raw):]
		default:
			b = safeExtract(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(raw), bs) })
			return b
		}
		return partial(b, bs.Partial)
	}
	return safeExtract(func() []byte { return imapserver.ExtractBodySection(bytes.NewReader(raw), bs) })
}

func partial(b []byte, p *goimap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) {
		return nil
	}
	end := p.Offset + p.Size
	if end > int64(len(b)) || end < p.Offset {
		end = int64(len(b))
	}
	return b[p.Offset:end]
}

// headerEnd returns the offset just after the blank line ending the header
// (RFC 5322 §2.1), or len(raw) if there is none.
func headerEnd(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) {
		return 2
	}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	return len(raw)
}

// safeExtract shields the connection from a panic in MIME parsing of a
// hostile stored message.
func safeExtract(f func() []byte) (b []byte) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	return f()
}

func (s *session) envelope(uid uint32) (*goimap.Envelope, error) {
	mb := s.sel.mb
	if c := mb.Cached(uid); c.Envelope != nil {
		return envToIMAP(c.Envelope), nil
	}
	h, err := s.readHeader(uid)
	if err != nil {
		return nil, err
	}
	env := safeEnvelope(h)
	mb.UpdateCached(uid, mailstore.Cached{Envelope: envToStore(env)})
	return env, nil
}

// headerRead is the first read for an ENVELOPE: most headers fit.
const headerRead = 16 << 10

// readHeader reads and parses only the header of a message: the first
// headerRead bytes, more (up to maxHeaderRead) only if the header goes on.
func (s *session) readHeader(uid uint32) (textproto.Header, error) {
	b, size, err := s.sel.mb.ReadMessage(uid, s.readBuf, headerRead)
	if err != nil {
		return textproto.Header{}, err
	}
	if int64(len(b)) < size && !headerComplete(b) {
		if b, _, err = s.sel.mb.ReadMessage(uid, b, maxHeaderRead); err != nil {
			return textproto.Header{}, err
		}
	}
	s.readBuf = b[:0]
	return parseHeader(b), nil
}

// headerComplete reports whether b holds the blank line ending a header.
func headerComplete(b []byte) bool {
	return bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) ||
		bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

// parseHeader parses a header; a malformed one still gives whatever parsed.
func parseHeader(b []byte) textproto.Header {
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
	return h
}

func safeEnvelope(h textproto.Header) (env *goimap.Envelope) {
	defer func() {
		if recover() != nil {
			env = &goimap.Envelope{}
		}
	}()
	env = imapserver.ExtractEnvelope(h)
	if env == nil {
		env = &goimap.Envelope{}
	}
	return env
}
