package mailstore

import (
	"sort"
	"unsafe"

	"courriel/imap/uidlist"
)

// The memory of a folder kept after its last release, by estimate: what
// the registry counts against keepMemoryBudget (and the
// courriel_imap_kept_folder_bytes metric shows). It counts what the heap
// holds for it, objects as the allocator sizes them (size classes, map
// groups), so that the budget bounds the memory: TestKeptFolderMemoryEstimate
// measures it against the heap.

// allocSize is what the allocator takes for an object of n bytes: its size
// class (Go's runtime/sizeclasses.go) up to 32 KiB, whole pages beyond.
func allocSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n > sizeClasses[len(sizeClasses)-1] {
		return (n + 8191) &^ 8191
	}
	return sizeClasses[sort.Search(len(sizeClasses), func(i int) bool { return sizeClasses[i] >= n })]
}

var sizeClasses = [...]int64{8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 256,
	288, 320, 352, 384, 416, 448, 480, 512, 576, 640, 704, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048,
	2304, 2688, 3072, 3200, 3456, 4096, 4864, 5376, 6144, 6528, 6784, 6912, 8192, 9472, 9728, 10240, 10880,
	12288, 13568, 14336, 16384, 18432, 19072, 20480, 21760, 24576, 27264, 28672, 32768}

// mapSize is the memory of a map of n entries of slot bytes each (key and
// value): Go's maps keep groups of eight slots with a control word, filled
// to 7/8 at most, doubled as they grow (a small map is one group).
func mapSize(n int, slot int64) int64 {
	if n == 0 {
		return 0
	}
	const header = 48
	group := 8 + 8*slot
	if n <= 8 {
		return header + allocSize(group)
	}
	slots := int64(8)
	for slots*7/8 < int64(n) {
		slots *= 2
	}
	// Tables of at most 1024 slots, and a directory of them.
	tables := max(slots/1024, 1)
	return header + tables*(48+8) + slots/8*group
}

func stringSize(s string) int64 { return allocSize(int64(len(s))) }

// memSizeLocked is the folder's memory without its metadata cache: the
// message table, the names, the records and change log beside them.
func (mb *Mailbox) memSizeLocked() int64 {
	size := int64(len(mb.msgs)) * int64(unsafe.Sizeof(Msg{}))
	size += allocSize(int64(cap(mb.msgs)) * 8)
	for _, m := range mb.msgs {
		size += int64(len(m.Base)) // in a few blocks (a listing's, courriel-state's)
	}
	if mb.byBase != nil {
		size += mapSize(len(mb.byBase), 16+8)
	}
	size += mapSize(len(mb.ext), 4+4+24)
	for _, e := range mb.ext {
		size += allocSize(int64(cap(e)) * 16)
		for _, f := range e {
			size += stringSize(f)
		}
	}
	// Keywords beyond the letters: the names are the folder's, shared.
	size += mapSize(len(mb.extra), 16+8)
	for base, x := range mb.extra {
		size += stringSize(base) + int64(unsafe.Sizeof(extraKw{})) + allocSize(int64(cap(x.names))*16)
	}
	size += mapSize(len(mb.extraNames), 16+8)
	for _, e := range mb.extraNames {
		size += int64(unsafe.Sizeof(extraName{})) + 2*stringSize(e.name)
	}
	size += mapSize(len(mb.listed), 16+int64(unsafe.Sizeof(uidlist.Record{})))
	for base := range mb.listed {
		size += stringSize(base)
	}
	size += mapSize(len(mb.stale), 16+4+4)
	size += allocSize(int64(cap(mb.log)) * int64(unsafe.Sizeof(Change{})))
	size += allocSize(int64(cap(mb.mod.vanished))*int64(unsafe.Sizeof(Vanished{}))) + allocSize(int64(cap(mb.mod.buf)))
	return size
}

// cacheSizeLocked is the memory of the metadata cache, decoded and not
// yet decoded; it stops counting past limit. Entries decoded from
// courriel-index are slices of its payload, counted once, in slabs (its
// structures are counted as allocated one by one: a little more).
func (mb *Mailbox) cacheSizeLocked(limit int64) int64 {
	c := cacheCounter{payload: mb.cachePayload}
	size := mapSize(len(mb.cache), 4+4+8) + int64(len(mb.cachePayload))
	if r := mb.cachePending; r != nil {
		size += mapSize(len(r.d.maps), 16+24)
	}
	for _, e := range mb.cache {
		if size > limit {
			break
		}
		size += int64(unsafe.Sizeof(indexEntry{})) + c.envelope(e.Envelope) + c.body(e.Body)
	}
	return size
}

// cacheCounter counts the structures of cached entries.
type cacheCounter struct {
	payload string
	// maps are the parameter lists decoded from the index seen so far:
	// shared by the parts whose parameters are the same (indexDecoder).
	maps map[unsafe.Pointer]bool
}

// str is the memory of a string: none of its own within the payload.
func (c *cacheCounter) str(s string) int64 {
	if len(s) == 0 {
		return 0
	}
	if p, base := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(c.payload))); len(c.payload) > 0 && p >= base && p < base+uintptr(len(c.payload)) {
		return 0
	}
	return stringSize(s)
}

func (c *cacheCounter) strs(l []string) int64 {
	size := allocSize(int64(cap(l)) * 16)
	for _, s := range l {
		size += c.str(s)
	}
	return size
}

func (c *cacheCounter) envelope(e *Envelope) int64 {
	if e == nil {
		return 0
	}
	size := allocSize(int64(unsafe.Sizeof(*e))) + c.str(e.DateField) + c.str(e.Subject) + c.str(e.MessageID)
	seen := [6]*Address{}
	for i, list := range [...][]Address{e.From, e.Sender, e.ReplyTo, e.To, e.Cc, e.Bcc} {
		if len(list) == 0 {
			continue
		}
		// Sender and Reply-To default to From: the same array.
		if shared := func() bool {
			for _, p := range seen[:i] {
				if p == &list[0] {
					return true
				}
			}
			return false
		}(); shared {
			continue
		}
		seen[i] = &list[0]
		size += allocSize(int64(cap(list)) * int64(unsafe.Sizeof(Address{})))
		for _, a := range list {
			size += c.str(a.Name) + c.str(a.Mailbox) + c.str(a.Host)
		}
	}
	return size + c.strs(e.InReplyTo) + c.strs(e.References)
}

func (c *cacheCounter) body(b *BodyPart) int64 {
	if b == nil {
		return 0
	}
	size := allocSize(int64(unsafe.Sizeof(*b))) + c.str(b.Type) + c.str(b.Subtype) + c.str(b.ID) +
		c.str(b.Description) + c.str(b.Encoding) + c.str(b.MD5) + c.str(b.Disposition) + c.str(b.Location)
	size += c.params(b.Params) + c.params(b.DispParams) + c.strs(b.Language)
	size += c.envelope(b.Envelope) + c.body(b.Sub)
	if len(b.Children) > 0 {
		size += allocSize(int64(cap(b.Children)) * 8)
		for _, p := range b.Children {
			size += c.body(p)
		}
	}
	return size
}

// params is the memory of a parameter list, counted once for the lists
// the index's entries share.
func (c *cacheCounter) params(l []Param) int64 {
	if len(l) == 0 {
		return 0
	}
	size := allocSize(int64(cap(l)) * int64(unsafe.Sizeof(Param{})))
	fromIndex := false
	for _, p := range l {
		if c.str(p.Name) == 0 && len(c.payload) > 0 {
			fromIndex = true
		}
		size += c.str(p.Name) + c.str(p.Value)
	}
	if fromIndex {
		p := unsafe.Pointer(unsafe.SliceData(l))
		if c.maps[p] {
			return 0
		}
		if c.maps == nil {
			c.maps = make(map[unsafe.Pointer]bool)
		}
		c.maps[p] = true
	}
	return size
}
