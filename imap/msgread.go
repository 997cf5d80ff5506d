package imap

import (
	"bufio"
	"bytes"
	"errors"

	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
)

// Messages read into memory: whole in CRLF form for a small one's
// sections and SEARCH TEXT, headers alone for ENVELOPE and the header
// keys, and the cached ENVELOPE and BODYSTRUCTURE computed from them.

// readMessage returns the whole message with CRLF line endings, the form
// IMAP serves whatever the file uses. The bytes live in the session's
// scratch buffers and are valid until the next call.
func (s *session) readMessage(uid uint32) ([]byte, error) {
	sc := parseScratch{read: s.readBuf, crlf: s.crlfBuf}
	b, err := readMessageCRLF(s.sel.mb, uid, &sc)
	s.readBuf, s.crlfBuf = sc.read, sc.crlf
	return b, err
}

// readMessageCRLF is readMessage into sc's buffers.
func readMessageCRLF(mb *mailstore.Mailbox, uid uint32, sc *parseScratch) ([]byte, error) {
	b, _, err := mb.ReadMessage(uid, sc.read, 0)
	if err != nil {
		return nil, err
	}
	sc.read = b[:0]
	out, changed := appendCRLF(sc.crlf[:0], b)
	if !changed {
		return b, nil // already CRLF: no copy
	}
	sc.crlf = out[:0]
	return out, nil
}

// Scratch buffers above this size are dropped after use, so that one huge
// message does not stay allocated for the life of the connection; idle
// connections keep none.
const maxKeptBuf = 256 << 10

func (s *session) trimBuffers() {
	if cap(s.readBuf) > maxKeptBuf || s.sel == nil {
		s.readBuf = nil
	}
	if cap(s.crlfBuf) > maxKeptBuf || s.sel == nil {
		s.crlfBuf = nil
	}
	if s.sel == nil {
		s.text = textScratch{}
	}
	s.text.trim()
	// What the budget covered is above maxKeptBuf: dropped now.
	s.releaseMem()
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

func (s *session) envelope(uid uint32) (*mailstore.Envelope, error) {
	env, _, err := s.parsed(uid, nil, true, false)
	return env, err
}

// parseRead is what one read of a message for its BODYSTRUCTURE takes
// in: a message that fits is parsed for its ENVELOPE too, at little more
// cost, so that an ENVELOPE asked later costs no second open and read.
const parseRead = 64 << 10

// parsed returns the cached ENVELOPE and BODYSTRUCTURE of a message,
// computing and caching what is asked for and missing. raw is the whole
// message (CRLF) when the caller already read it, else nil; the session's
// scratch buffers are used only when raw is nil, so that they never
// overwrite it.
func (s *session) parsed(uid uint32, raw []byte, wantEnv, wantBody bool) (*mailstore.Envelope, *mailstore.BodyPart, error) {
	sc := parseScratch{read: s.readBuf, crlf: s.crlfBuf, hold: s.holdMem}
	env, body, err := parseCached(s.sel.mb, uid, raw, wantEnv, wantBody, &sc)
	s.readBuf, s.crlfBuf = sc.read, sc.crlf
	return env, body, err
}

// parseScratch holds the buffers of parseCached: a file's bytes and their
// CRLF form, kept empty with their capacity between calls. hold, when
// set, is asked for the bytes before a message over maxKeptBuf is read
// whole into them (the server's memory budget); an error stops it.
type parseScratch struct {
	read, crlf []byte
	hold       func(n int64) error
}

// parseCached is parsed with its own buffers, so that the prefetcher's
// goroutines can run it too.
func parseCached(mb *mailstore.Mailbox, uid uint32, raw []byte, wantEnv, wantBody bool, sc *parseScratch) (*mailstore.Envelope, *mailstore.BodyPart, error) {
	c := mb.Cached(uid)
	if (c.Envelope != nil || !wantEnv) && (c.Body != nil || !wantBody) {
		return c.Envelope, c.Body, nil
	}
	var upd mailstore.Cached
	if raw == nil && !wantBody {
		// ENVELOPE alone reads and parses the header alone, as Dovecot
		// does: a BODYSTRUCTURE asked later reads the file then. Parsing
		// the body meanwhile (its CRLF form, its MIME walk) was a quarter
		// of a cold FETCH 1:* (ENVELOPE) over messages of 11 KB.
		b, err := readHeaderInto(mb, uid, sc.read)
		if err != nil {
			return nil, nil, err
		}
		sc.read = b[:0]
		c.Envelope = buildEnvelope(b)
		mb.UpdateCached(uid, mailstore.Cached{Envelope: c.Envelope})
		return c.Envelope, c.Body, nil
	}
	if raw == nil {
		b, size, err := mb.ReadMessage(uid, sc.read, parseRead)
		if err != nil {
			return nil, nil, err
		}
		sc.read = b[:0]
		if int64(len(b)) < size {
			// Too large to parse for both: what is asked only.
			if wantEnv && c.Envelope == nil {
				if !headerComplete(b) {
					if b, _, err = mb.ReadMessage(uid, b, maxHeaderRead); err != nil {
						return nil, nil, err
					}
					sc.read = b[:0]
				}
				c.Envelope = buildEnvelope(b)
				upd.Envelope = c.Envelope
			}
			if wantBody && c.Body == nil {
				body, err := largeBodyStructure(mb, uid, size, sc)
				if err != nil {
					return nil, nil, err
				}
				c.Body = body
				upd.Body = c.Body
			}
			mb.UpdateCached(uid, upd)
			return c.Envelope, c.Body, nil
		}
		raw = b
		if out, changed := appendCRLF(sc.crlf[:0], b); changed {
			sc.crlf = out[:0]
			raw = out
		}
	}
	if c.Envelope == nil {
		c.Envelope = buildEnvelope(raw)
		upd.Envelope = c.Envelope
	}
	if c.Body == nil {
		c.Body = bodyStructure(raw)
		upd.Body = c.Body
	}
	mb.UpdateCached(uid, upd)
	return c.Envelope, c.Body, nil
}

// largeBodyStructure computes the BODYSTRUCTURE of a message of size
// bytes, over parseRead: scanned from its file (sizes and line counts
// come with the structure) rather than read whole, unless it is small or
// beyond the scanner's bounds.
func largeBodyStructure(mb *mailstore.Mailbox, uid uint32, size int64, sc *parseScratch) (*mailstore.BodyPart, error) {
	if size > maxKeptBuf {
		root, _, err := scanMessage(mb, uid)
		if err == nil {
			return bodyPartOf(root, 0), nil
		}
		if !errors.Is(err, errScanBounds) {
			return nil, err
		}
		if sc.hold != nil {
			// The file, its CRLF form and the parse.
			if err := sc.hold(3 * size); err != nil {
				return nil, err
			}
		}
	}
	r, err := readMessageCRLF(mb, uid, sc)
	if err != nil {
		return nil, err
	}
	return bodyStructure(r), nil
}

// headerRead is the first read for a header: most headers fit.
const headerRead = 16 << 10

// readHeaderBytes reads only the header of a message: the first
// headerRead bytes, more (up to maxHeaderRead) only if the header goes on.
func (s *session) readHeaderBytes(uid uint32) ([]byte, error) {
	b, err := readHeaderInto(s.sel.mb, uid, s.readBuf)
	if err != nil {
		return nil, err
	}
	s.readBuf = b[:0]
	return b, nil
}

// readHeaderInto is readHeaderBytes into buf (reused when large enough).
func readHeaderInto(mb *mailstore.Mailbox, uid uint32, buf []byte) ([]byte, error) {
	b, size, err := mb.ReadMessage(uid, buf, headerRead)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) < size && !headerComplete(b) {
		if b, _, err = mb.ReadMessage(uid, b, maxHeaderRead); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// readHeader parses the header of a message.
func (s *session) readHeader(uid uint32) (textproto.Header, error) {
	b, err := s.readHeaderBytes(uid)
	if err != nil {
		return textproto.Header{}, err
	}
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
