package mailstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"strconv"
	"time"
)

// IndexFileName is courriel's per-folder metadata cache. It only caches what
// can be recomputed from the message files; deleting it is always safe.
const IndexFileName = "courriel-index"

// indexMagic starts the file; the version digit changes with the layout
// or with what a field holds (9: the binary encoding with
// Envelope.References and DateField, BodyPart parameters raw as the header
// has them, in its order and with its names' case, part sizes of nested
// multiparts as Dovecot cuts them, Content-MD5). An index of another
// version is not read: the cache is rebuilt from the messages as they are
// read, because an older one cannot tell "no References" from
// "References not kept", nor a decoded RFC 2231 parameter from a raw one,
// nor "no Content-MD5" from "Content-MD5 not kept", nor does it have the
// parameters' order and case, and its nested parts' sizes are two octets
// short of what BODY[n] now returns.
// The magic is followed by a fixed-width header line (indexHeader), then the
// SHA-256 of the payload and the payload, an indexFile (indexcodec.go). The
// header is outside the checksum so that it can be rewritten in place
// without rewriting (or even reading) the cache.
var indexMagic = []byte("COURRIEL-INDEX 9\n")

// oldIndexMagics are earlier versions whose header line (indexHeader) has
// the same layout: their \Recent boundary is still read, their cache
// rebuilt. (2: a gob payload; 3: gob with References; 4: this
// encoding without References; 5: without DateField; 6: RFC 2231
// parameters decoded; 7: nested multiparts cut by their own boundary; 8:
// parameters as a map, names lower case, without Content-MD5.)
var oldIndexMagics = [][]byte{[]byte("COURRIEL-INDEX 2\n"), []byte("COURRIEL-INDEX 3\n"), []byte("COURRIEL-INDEX 4\n"), []byte("COURRIEL-INDEX 5\n"), []byte("COURRIEL-INDEX 6\n"), []byte("COURRIEL-INDEX 7\n"), []byte("COURRIEL-INDEX 8\n")}

// indexHeaderLen is the length of "V<10 digits> R<10 digits>\n".
const indexHeaderLen = 24

// indexHeader is the folder state kept beside the cache: the UIDVALIDITY it
// belongs to and the first UID no session claimed as \Recent.
type indexHeader struct {
	UIDValidity uint32
	RecentFrom  uint32
}

func (h indexHeader) marshal() []byte {
	return fmt.Appendf(nil, "V%010d R%010d\n", h.UIDValidity, h.RecentFrom)
}

func parseIndexHeader(b []byte) (indexHeader, bool) {
	if len(b) < indexHeaderLen || b[0] != 'V' || b[11] != ' ' || b[12] != 'R' || b[23] != '\n' {
		return indexHeader{}, false
	}
	v, err1 := strconv.ParseUint(string(b[1:11]), 10, 32)
	r, err2 := strconv.ParseUint(string(b[13:23]), 10, 32)
	if err1 != nil || err2 != nil {
		return indexHeader{}, false
	}
	return indexHeader{UIDValidity: uint32(v), RecentFrom: uint32(r)}, true
}

// Cached is the per-message metadata that costs a file read to compute.
type Cached struct {
	Size     int64 // RFC822.SIZE: the size with CRLF line endings; 0 = unknown
	Date     int64 // internal date (file mtime), Unix nanoseconds; 0 = unknown
	Envelope *Envelope
	Body     *BodyPart
}

// Envelope is a cached ENVELOPE (RFC 9051 §7.5.2), decoded: the protocol
// layer quotes and encodes it.
type Envelope struct {
	// DateField is the Date field's value as the message has it
	// (unfolded): what ENVELOPE returns, as Dovecot does, comments, zone
	// names and dates no parser reads included. Date is that value
	// parsed (zero when it does not parse), for SEARCH SENT*, SORT and
	// THREAD.
	DateField string
	Date      time.Time
	Subject   string
	From      []Address
	Sender    []Address
	ReplyTo   []Address
	To        []Address
	Cc        []Address
	Bcc       []Address
	InReplyTo []string
	MessageID string
	// References are the message ids of the References field, without
	// their angle brackets and white space, in order: what THREAD=
	// REFERENCES links (RFC 5256 §3), kept so that threading reads no
	// message file. The IMAP layer bounds them when it parses the header
	// (the first id and the last ones, a bounded count of bounded ids).
	// Nil in the envelopes of message/rfc822 parts.
	References []string
}

// Address is one element of an address list, in IMAP's own encoding of
// RFC 5322 groups: a group starts with an element whose Mailbox is the group
// name and Host is empty, and ends with an element whose Mailbox and Host
// are both empty.
type Address struct {
	Name    string
	Mailbox string
	Host    string
}

// BodyPart is a cached BODYSTRUCTURE node. It is never modified once
// cached: parts read from the index share equal Params and DispParams.
type BodyPart struct {
	Type, Subtype string
	// Params and DispParams are the parameters of Content-Type and
	// Content-Disposition in the order BODYSTRUCTURE gives them, names
	// as the header spells them (see the IMAP layer's parser).
	Params      []Param
	ID          string
	Description string
	Encoding    string
	// MD5 is the Content-MD5 field's value, as Content-ID's is kept.
	MD5         string
	Size        uint32
	Lines       int64
	Disposition string
	DispParams  []Param
	Language    []string
	Location    string
	Children    []*BodyPart // multipart
	Envelope    *Envelope   // message/rfc822
	Sub         *BodyPart   // message/rfc822
}

// Param is a body parameter: its name as written, its value.
type Param struct{ Name, Value string }

type indexFile struct {
	UIDValidity uint32
	Entries     []indexEntry
}

type indexEntry struct {
	UID  uint32
	Base string
	C    Cached
}

func (mb *Mailbox) loadCacheLocked() {
	if mb.cacheLoaded {
		return
	}
	mb.cacheLoaded = true
	mb.cache = make(map[uint32]*Cached, len(mb.msgs))
	mb.cachePending, mb.cachePayload = nil, ""
	data, err := mb.root.ReadFile(IndexFileName)
	if err != nil {
		return
	}
	r, uidValidity, err := openIndex(data)
	if err != nil || uidValidity != mb.uidValidity {
		mb.cacheDirty = true // rebuilt from the messages as they are read
		return
	}
	mb.cachePending, mb.cachePayload = r, r.d.s
}

// cacheUpToLocked decodes the entries of courriel-index not read yet up to
// UID uid (they are in ascending UIDs), into the cache: an entry is taken
// when its message is still the folder's, and nothing since filled its
// place. A FETCH 1:* decodes them as it goes.
func (mb *Mailbox) cacheUpToLocked(uid uint32) {
	r := mb.cachePending
	if r == nil {
		return
	}
	for {
		if r.held == nil {
			en, ok := r.next()
			if !ok {
				mb.cachePending = nil // all read (or the rest unreadable: rebuilt as read)
				return
			}
			r.held = en
		}
		if r.held.UID > uid {
			return
		}
		en := r.held
		r.held = nil
		if m := mb.findLocked(en.UID); m != nil && m.Base == en.Base {
			if _, ok := mb.cache[en.UID]; !ok {
				mb.cache[en.UID] = &en.C
			}
		}
	}
}

// openIndex checks an index file (this version's, its checksum) and
// returns the reader of its entries and the UIDVALIDITY they belong to.
func openIndex(data []byte) (*indexReader, uint32, error) {
	start := len(indexMagic) + indexHeaderLen
	if !bytes.HasPrefix(data, indexMagic) || len(data) < start+sha256.Size {
		return nil, 0, errors.New("mailstore: index: bad header")
	}
	sum := data[start : start+sha256.Size]
	payload := data[start+sha256.Size:]
	got := sha256.Sum256(payload)
	if !bytes.Equal(sum, got[:]) {
		return nil, 0, errors.New("mailstore: index: checksum mismatch")
	}
	r, uidValidity := newIndexReader(payload)
	return r, uidValidity, nil
}

func (mb *Mailbox) saveCacheLocked() {
	if mb.detached {
		return
	}
	if !mb.cacheLoaded || !mb.cacheDirty {
		if mb.recentDirty && mb.writeIndexHeaderLocked() != nil && !mb.cacheLoaded {
			// No index file to update in place: write one with an
			// empty cache rather than forget the \Recent claims.
			mb.loadCacheLocked()
			mb.cacheDirty = true
		}
		if !mb.cacheLoaded || !mb.cacheDirty {
			return
		}
	}
	mb.cacheUpToLocked(math.MaxUint32) // every entry, to write them back
	f := indexFile{UIDValidity: mb.uidValidity, Entries: make([]indexEntry, 0, len(mb.cache))}
	for _, m := range mb.msgs {
		if c, ok := mb.cache[m.UID]; ok {
			f.Entries = append(f.Entries, indexEntry{UID: m.UID, Base: m.Base, C: *c})
		}
	}
	payload := encodeIndexPayload(&f)
	sum := sha256.Sum256(payload)
	// 0600 (writeFileLocked): it holds envelopes (subjects, addresses).
	hdr := indexHeader{UIDValidity: mb.uidValidity, RecentFrom: mb.recentFrom}.marshal()
	if mb.writeFileLocked(IndexFileName, syncFile, indexMagic, hdr, sum[:], payload) != nil {
		return
	}
	mb.cacheDirty = false
	mb.recentDirty = false
}

// SaveCache writes the metadata cache if it changed.
func (mb *Mailbox) SaveCache() {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if !mb.closed {
		mb.saveCacheLocked()
	}
}

// Cached returns the cached metadata of a message.
func (mb *Mailbox) Cached(uid uint32) Cached {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.loadCacheLocked()
	mb.cacheUpToLocked(uid)
	if c, ok := mb.cache[uid]; ok {
		return *c
	}
	return Cached{}
}

// UpdateCached merges the non-zero fields of c into the cache of uid.
func (mb *Mailbox) UpdateCached(uid uint32, c Cached) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	mb.loadCacheLocked()
	if mb.findLocked(uid) == nil {
		return
	}
	mb.cacheUpToLocked(uid) // merged into the entry the index has
	cur, ok := mb.cache[uid]
	if !ok {
		cur = &Cached{}
		mb.cache[uid] = cur
	}
	if c.Size != 0 {
		cur.Size = c.Size
	}
	if c.Date != 0 {
		cur.Date = c.Date
	}
	if c.Envelope != nil {
		cur.Envelope = c.Envelope
	}
	if c.Body != nil {
		cur.Body = c.Body
	}
	mb.cacheDirty = true
}

// Meta returns a message's RFC822.SIZE and internal date, from the file name
// (",W=") or the cache when possible, else from the file, caching the result.
func (mb *Mailbox) Meta(uid uint32) (size int64, date time.Time, err error) {
	c := mb.Cached(uid)
	msg, ok := mb.Get(uid)
	if !ok {
		return 0, time.Time{}, fs.ErrNotExist
	}
	if c.Size == 0 {
		if w, ok := sizeField(msg.Base, 'W'); ok {
			c.Size = w
		}
	}
	if c.Size != 0 && c.Date != 0 {
		return max(c.Size, 0), time.Unix(0, c.Date), nil
	}
	f, _, err := mb.Open(uid)
	if err != nil {
		return 0, time.Time{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, time.Time{}, err
	}
	c.Date = st.ModTime().UnixNano()
	if c.Size == 0 {
		n, err := CRLFSize(f)
		if err != nil {
			return 0, time.Time{}, err
		}
		c.Size = n
		if c.Size == 0 {
			c.Size = -1 // empty file: remember that it is known
		}
	}
	mb.UpdateCached(uid, Cached{Size: c.Size, Date: c.Date})
	if c.Size < 0 {
		c.Size = 0
	}
	return c.Size, time.Unix(0, c.Date), nil
}

// CRLFSize is the length of r once every bare LF becomes CRLF.
func CRLFSize(r io.Reader) (int64, error) {
	br := bufio.NewReaderSize(r, 64*1024)
	var n int64
	var prev byte
	for {
		b, err := br.ReadByte()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		if b == '\n' && prev != '\r' {
			n++
		}
		n++
		prev = b
	}
}
