package mailstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	goimap "github.com/emersion/go-imap/v2"
)

// IndexFileName is courriel's per-folder metadata cache. It only caches what
// can be recomputed from the message files; deleting it is always safe.
const IndexFileName = "courriel-index"

// indexMagic starts the file; the version digit changes with the layout.
var indexMagic = []byte("COURRIEL-INDEX 1\n")

// Cached is the per-message metadata that costs a file read to compute.
type Cached struct {
	Size     int64 // RFC822.SIZE: the size with CRLF line endings; 0 = unknown
	Date     int64 // internal date (file mtime), Unix nanoseconds; 0 = unknown
	Envelope *goimap.Envelope
	Body     *BodyPart
}

// BodyPart is a cached BODYSTRUCTURE node.
type BodyPart struct {
	Type, Subtype string
	Params        map[string]string
	ID            string
	Description   string
	Encoding      string
	Size          uint32
	Lines         int64
	Disposition   string
	DispParams    map[string]string
	Language      []string
	Location      string
	Children      []*BodyPart      // multipart
	Envelope      *goimap.Envelope // message/rfc822
	Sub           *BodyPart        // message/rfc822
}

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
	data, err := mb.root.ReadFile(IndexFileName)
	if err != nil {
		return
	}
	f, err := decodeIndex(data)
	if err != nil || f.UIDValidity != mb.uidValidity {
		mb.cacheDirty = true // rebuilt from the messages as they are read
		return
	}
	for i := range f.Entries {
		e := &f.Entries[i]
		if m := mb.findLocked(e.UID); m != nil && m.Base == e.Base {
			mb.cache[e.UID] = &e.C
		}
	}
}

func decodeIndex(data []byte) (*indexFile, error) {
	if !bytes.HasPrefix(data, indexMagic) || len(data) < len(indexMagic)+sha256.Size {
		return nil, errors.New("mailstore: index: bad header")
	}
	sum := data[len(indexMagic) : len(indexMagic)+sha256.Size]
	payload := data[len(indexMagic)+sha256.Size:]
	got := sha256.Sum256(payload)
	if !bytes.Equal(sum, got[:]) {
		return nil, errors.New("mailstore: index: checksum mismatch")
	}
	var f indexFile
	if err := gob.NewDecoder(bytes.NewReader(payload)).Decode(&f); err != nil {
		return nil, fmt.Errorf("mailstore: index: %w", err)
	}
	return &f, nil
}

func (mb *Mailbox) saveCacheLocked() {
	if !mb.cacheLoaded || !mb.cacheDirty || mb.detached {
		return
	}
	f := indexFile{UIDValidity: mb.uidValidity, Entries: make([]indexEntry, 0, len(mb.cache))}
	for _, m := range mb.msgs {
		if c, ok := mb.cache[m.UID]; ok {
			f.Entries = append(f.Entries, indexEntry{UID: m.UID, Base: m.Base, C: *c})
		}
	}
	var payload bytes.Buffer
	if err := gob.NewEncoder(&payload).Encode(&f); err != nil {
		return
	}
	sum := sha256.Sum256(payload.Bytes())
	tmp := IndexFileName + ".tmp"
	out, err := mb.root.Create(tmp)
	if err != nil {
		return
	}
	w := bufio.NewWriter(out)
	w.Write(indexMagic)
	w.Write(sum[:])
	w.Write(payload.Bytes())
	err = w.Flush()
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		mb.owner.chown(mb.root, tmp)
		err = mb.root.Rename(tmp, IndexFileName)
	}
	if err != nil {
		_ = mb.root.Remove(tmp)
		return
	}
	mb.cacheDirty = false
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
