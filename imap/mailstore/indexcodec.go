package mailstore

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// The index payload is a flat binary encoding written and read by hand:
// gob decoded a 20,000-message index in a third of a second by
// reflection, allocating every string and struct apart, and a session's
// first ENVELOPE after a restart waited for it. Here the payload becomes
// one string that every decoded string is a slice of, and the structs come
// from a few large arrays.
//
// Layout: uvarint UIDVALIDITY, uvarint entry count, then per entry:
// uvarint UID, string Base, varint Size, varint Date, envelope?, body?.
// A string is a uvarint length and its bytes; x? is a byte 0 (absent) or 1
// followed by x. An envelope is a date (byte 0, or 1 with varint Unix
// seconds, uvarint nanoseconds and varint zone offset in seconds), DateField, Subject,
// six address lists (uvarint count, then Name, Mailbox, Host each),
// InReplyTo (uvarint count and strings), MessageID. A body part is Type,
// Subtype, Params (uvarint count and name, value pairs, in order), ID,
// Description, Encoding, MD5, uvarint Size, varint Lines, Disposition,
// DispParams, Language
// (as InReplyTo), Location, uvarint child count and children, envelope?,
// body? (Sub).
//
// Adding a field to Cached, Envelope, Address or BodyPart means adding it
// here and changing indexMagic's version; TestIndexCodecCoversFields fails
// until then.

// maxIndexDepth bounds the nesting of body parts read back, whatever the
// file says (the IMAP layer nests at most 32).
const maxIndexDepth = 64

var errIndexFormat = errors.New("mailstore: index: malformed payload")

type indexEncoder struct{ b []byte }

func (e *indexEncoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *indexEncoder) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *indexEncoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *indexEncoder) strs(l []string) {
	e.uvarint(uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

func (e *indexEncoder) present(ok bool) bool {
	if ok {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
	return ok
}

func (e *indexEncoder) params(l []Param) {
	e.uvarint(uint64(len(l)))
	for _, p := range l {
		e.str(p.Name)
		e.str(p.Value)
	}
}

func (e *indexEncoder) envelope(env *Envelope) {
	if e.present(!env.Date.IsZero()) {
		_, off := env.Date.Zone()
		e.varint(env.Date.Unix())
		e.uvarint(uint64(env.Date.Nanosecond()))
		e.varint(int64(off))
	}
	e.str(env.DateField)
	e.str(env.Subject)
	for _, l := range [...][]Address{env.From, env.Sender, env.ReplyTo, env.To, env.Cc, env.Bcc} {
		e.uvarint(uint64(len(l)))
		for _, a := range l {
			e.str(a.Name)
			e.str(a.Mailbox)
			e.str(a.Host)
		}
	}
	e.strs(env.InReplyTo)
	e.str(env.MessageID)
	e.strs(env.References)
}

func (e *indexEncoder) body(p *BodyPart) {
	e.str(p.Type)
	e.str(p.Subtype)
	e.params(p.Params)
	e.str(p.ID)
	e.str(p.Description)
	e.str(p.Encoding)
	e.str(p.MD5)
	e.uvarint(uint64(p.Size))
	e.varint(p.Lines)
	e.str(p.Disposition)
	e.params(p.DispParams)
	e.strs(p.Language)
	e.str(p.Location)
	e.uvarint(uint64(len(p.Children)))
	for _, c := range p.Children {
		e.body(c)
	}
	if e.present(p.Envelope != nil) {
		e.envelope(p.Envelope)
	}
	if e.present(p.Sub != nil) {
		e.body(p.Sub)
	}
}

func encodeIndexPayload(f *indexFile) []byte {
	e := indexEncoder{b: make([]byte, 0, 64+len(f.Entries)*256)}
	e.uvarint(uint64(f.UIDValidity))
	e.uvarint(uint64(len(f.Entries)))
	for i := range f.Entries {
		en := &f.Entries[i]
		e.uvarint(uint64(en.UID))
		e.str(en.Base)
		e.varint(en.C.Size)
		e.varint(en.C.Date)
		if e.present(en.C.Envelope != nil) {
			e.envelope(en.C.Envelope)
		}
		if e.present(en.C.Body != nil) {
			e.body(en.C.Body)
		}
	}
	return e.b
}

// slab hands out elements of large arrays, so that decoding allocates a
// few of them rather than one object per element. Each slice handed out
// has its capacity cut to its length: appending to it never reaches the
// next one.
type slab[T any] struct{ buf []T }

func (s *slab[T]) take(n int) []T {
	if n > cap(s.buf)-len(s.buf) {
		s.buf = make([]T, 0, max(n, 512))
	}
	start := len(s.buf)
	s.buf = s.buf[:start+n]
	return s.buf[start : start+n : start+n]
}

type indexDecoder struct {
	s     string // the payload; decoded strings are slices of it
	off   int
	err   error
	envs  slab[Envelope]
	addrs slab[Address]
	parts slab[BodyPart]
	ptrs  slab[*BodyPart]
	strl  slab[string]
	// maps are the parameter lists decoded so far, by their encoding:
	// most parts share a few ({"charset": "utf-8"}), and a map each was a
	// third of the decoding.
	maps map[string][]Param
}

func (d *indexDecoder) fail() {
	if d.err == nil {
		d.err = errIndexFormat
	}
	d.off = len(d.s)
}

func (d *indexDecoder) uvarint() uint64 {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if d.off >= len(d.s) {
			d.fail()
			return 0
		}
		c := d.s[d.off]
		d.off++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v
		}
	}
	d.fail()
	return 0
}

func (d *indexDecoder) varint() int64 {
	u := d.uvarint()
	v := int64(u >> 1)
	if u&1 != 0 {
		v = ^v
	}
	return v
}

// count reads a number of elements, each at least one byte long: more
// than the bytes left is a malformed file, never a huge allocation.
func (d *indexDecoder) count() int { return d.countOf(1) }

// countOf is count for elements of at least size bytes each, so that what
// is allocated for them stays within a small multiple of the file.
func (d *indexDecoder) countOf(size int) int {
	n := d.uvarint()
	if n > uint64((len(d.s)-d.off)/size) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *indexDecoder) str() string {
	n := d.count()
	s := d.s[d.off : d.off+n]
	d.off += n
	return s
}

func (d *indexDecoder) strs() []string {
	n := d.count()
	if n == 0 {
		return nil
	}
	l := d.strl.take(n)
	for i := range l {
		l[i] = d.str()
	}
	return l
}

func (d *indexDecoder) present() bool {
	if d.off >= len(d.s) {
		d.fail()
		return false
	}
	c := d.s[d.off]
	d.off++
	if c > 1 {
		d.fail()
	}
	return c == 1
}

// params decodes a parameter list, shared with every other part whose
// parameters are the same (BodyPart's are never modified).
func (d *indexDecoder) params() []Param {
	start := d.off
	n := d.countOf(2) // two string lengths at least
	if n == 0 {
		return nil
	}
	first := d.off
	for range 2 * n {
		d.str()
	}
	if d.err != nil {
		return nil
	}
	enc := d.s[start:d.off]
	if shared, ok := d.maps[enc]; ok {
		return shared
	}
	end := d.off
	d.off = first
	m := make([]Param, n)
	for i := range m {
		m[i] = Param{Name: d.str(), Value: d.str()}
	}
	d.off = end
	if d.maps == nil {
		d.maps = map[string][]Param{}
	}
	d.maps[enc] = m
	return m
}

func (d *indexDecoder) envelope() *Envelope {
	env := &d.envs.take(1)[0]
	if d.present() {
		sec, nsec, off := d.varint(), d.uvarint(), d.varint()
		if nsec >= 1e9 || off < -100*3600 || off > 100*3600 {
			d.fail()
		} else {
			env.Date = time.Unix(sec, int64(nsec)).In(time.FixedZone("", int(off)))
		}
	}
	env.DateField = d.str()
	env.Subject = d.str()
	for _, l := range [...]*[]Address{&env.From, &env.Sender, &env.ReplyTo, &env.To, &env.Cc, &env.Bcc} {
		n := d.countOf(3) // three string lengths at least
		if n == 0 {
			continue
		}
		as := d.addrs.take(n)
		for i := range as {
			as[i] = Address{Name: d.str(), Mailbox: d.str(), Host: d.str()}
		}
		*l = as
	}
	env.InReplyTo = d.strs()
	env.MessageID = d.str()
	env.References = d.strs()
	return env
}

func (d *indexDecoder) body(depth int) *BodyPart {
	if depth > maxIndexDepth {
		d.fail()
		return nil
	}
	p := &d.parts.take(1)[0]
	p.Type = d.str()
	p.Subtype = d.str()
	p.Params = d.params()
	p.ID = d.str()
	p.Description = d.str()
	p.Encoding = d.str()
	p.MD5 = d.str()
	size := d.uvarint()
	if size > math.MaxUint32 {
		d.fail()
	}
	p.Size = uint32(size)
	p.Lines = d.varint()
	p.Disposition = d.str()
	p.DispParams = d.params()
	p.Language = d.strs()
	p.Location = d.str()
	if n := d.countOf(16); n > 0 { // a part is 16 bytes at least
		p.Children = d.ptrs.take(n)
		for i := range p.Children {
			if p.Children[i] = d.body(depth + 1); d.err != nil {
				return nil
			}
		}
	}
	if d.present() {
		p.Envelope = d.envelope()
	}
	if d.present() {
		p.Sub = d.body(depth + 1)
	}
	return p
}

func decodeIndexPayload(payload []byte) (*indexFile, error) {
	r, uidValidity := newIndexReader(payload)
	f := &indexFile{UIDValidity: uidValidity, Entries: make([]indexEntry, 0, r.left)}
	for {
		en, ok := r.next()
		if !ok {
			break
		}
		f.Entries = append(f.Entries, *en)
	}
	if r.d.err == nil && r.d.off != len(r.d.s) {
		r.d.fail()
	}
	if r.d.err != nil {
		return nil, r.d.err
	}
	return f, nil
}

// indexReader decodes the entries of an index payload one at a time, in
// the order they were written (ascending UIDs): a FETCH over a large
// folder writes its first response as soon as the first entry is
// decoded, rather than after all of them (0.3 s for 100,000 messages,
// while the client waited).
type indexReader struct {
	d       indexDecoder
	left    int              // entries not decoded yet
	entries slab[indexEntry] // decoded entries, a few arrays of them
	held    *indexEntry      // decoded, past the UID asked for (see cacheUpToLocked)
}

// newIndexReader starts reading payload, whose UIDVALIDITY it returns.
func newIndexReader(payload []byte) (*indexReader, uint32) {
	r := &indexReader{d: indexDecoder{s: string(payload)}}
	v := r.d.uvarint()
	if v > math.MaxUint32 {
		r.d.fail()
	}
	r.left = r.d.countOf(6) // UID, Base, Size, Date and two presence bytes at least
	return r, uint32(v)
}

// next decodes the next entry; false at the end or at a malformed one
// (then d.err is set).
func (r *indexReader) next() (*indexEntry, bool) {
	d := &r.d
	if r.left == 0 || d.err != nil {
		return nil, false
	}
	r.left--
	en := &r.entries.take(1)[0]
	uid := d.uvarint()
	if uid > math.MaxUint32 {
		d.fail()
	}
	en.UID = uint32(uid)
	en.Base = d.str()
	en.C.Size = d.varint()
	en.C.Date = d.varint()
	if d.present() {
		en.C.Envelope = d.envelope()
	}
	if d.present() {
		en.C.Body = d.body(0)
	}
	if d.err != nil {
		return nil, false
	}
	return en, true
}
