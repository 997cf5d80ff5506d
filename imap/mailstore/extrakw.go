package mailstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"courriel/imap/uidlist"
)

// ExtraKeywordsFileName holds the keywords of the folder's messages that
// have no maildir letter: dovecot-keywords names 26 keywords (a..z), and a
// folder whose table is full keeps any further keyword of a message here,
// by the message's base name, as Dovecot keeps them in its index
// (dovecot.index: its keyword list is not bounded by the letters, and a
// keyword past them lives in the index alone). A message thus keeps every
// keyword it is given, stored, appended, copied or moved, and a folder's
// keywords are never "full", within these bounds: up to MaxExtraKeywords
// distinct names beyond the letters in the folder, up to
// MaxMessageExtraKeywords of them on one message, and a file of at most
// maxExtraSize bytes (64 MiB). Past a bound a STORE is refused
// (ErrTooManyKeywords, NO [LIMIT]) before anything changes, and APPEND,
// COPY and MOVE store the message without the keywords past the first
// two bounds (logged); one that would make the file too large is refused
// whole (ErrTooManyKeywords).
//
// A file that cannot be read (unreadable, larger than maxExtraSize,
// malformed: more than MaxExtraKeywords names or keywords on a message,
// empty or repeated names) is logged and left as it is: it is never
// rewritten without the keywords it may hold, and a command that would
// change keywords beyond the letters in the folder fails
// (errExtraUnusable) until it is repaired or removed (read again at the
// next sync, or when the folder is opened again).
//
// The file is courriel's only: Dovecot, reading this maildir (an admin
// switching back), sees the 26 lettered keywords, which stay in the file
// names as always, and not those kept here (nor does Dovecot's own index
// hold them). Keywords are compared case-insensitively (RFC 9051 §2.3.2).
//
// A name here is freed once no message carries it, unlike a letter: no
// file name carries it, so it cannot come back to another message. A
// letter is never freed, even when no message carries it any more: a file
// courriel does not see (another program's, one being delivered, one in a
// folder being restored) may still carry it, and the letter would then
// name another keyword on that message; dovecot-keywords never shrinks in
// Dovecot either.
//
// The file is written whole (a temporary file renamed over it) and, when
// a client changes keywords it holds (STORE, APPEND, COPY, MOVE), fsynced
// with the folder before the command is answered (for APPEND, COPY and
// MOVE before the messages' files are renamed into cur/, so that a crash
// between leaves no file without its keywords; an entry whose file does
// not follow is dropped), as courriel-modseq (a
// write that fails, a full disk, fails the command and leaves every
// message with the keywords it had: no keyword is lost silently);
// entries of messages gone are dropped at the next write after their
// expunge, without fsync (an entry left behind names a base name no file
// has, and is dropped when the folder is next opened). It is read when the
// folder is opened and written whole from memory, the file read again
// and merged under its dotlock at each write, so that a second courriel
// process with the folder open (a CLI tool beside the server, two servers
// on shared storage) loses none of the other's changes (see
// saveExtraLocked); and read again at a sync when the other process
// changed it, so that a process that only reads (sessions in NOOP or
// IDLE) shows its changes too (see refreshExtraLocked). A delivery's Sieve imap4flags keywords past the
// letters are dropped and logged, the message stored (see
// filter.KeywordLetters; Dovecot's LDA would keep them in its index).
const ExtraKeywordsFileName = "courriel-keywords"

// MaxExtraKeywords bounds the distinct keywords a folder keeps beyond the
// 26 letters; past it a STORE of a new keyword is refused
// (ErrTooManyKeywords) and APPEND, COPY and MOVE store the message without
// it (RFC 9051 §2.3.2: PERMANENTFLAGS then lacks \*).
const MaxExtraKeywords = 1024

// MaxMessageExtraKeywords bounds the keywords beyond the letters of one
// message: past it a STORE is refused (ErrTooManyKeywords) and APPEND,
// COPY and MOVE store the message without the excess (logged).
const MaxMessageExtraKeywords = 128

// errExtraUnusable: ExtraKeywordsFileName could not be read when the
// folder was opened; it is kept as it is, and no keyword beyond the
// letters is changed in the folder.
var errExtraUnusable = errors.New("mailstore: " + ExtraKeywordsFileName + " unreadable: keywords beyond the maildir letters cannot be changed in this folder")

// extraMagic starts the file; after it the CRC-32C of the payload (4
// bytes, little endian) and the payload: uvarint count of names, then each
// name (string); uvarint count of messages, then per message its base name
// (string), uvarint count of its keywords and the uvarint index of each in
// the names. A string is a uvarint length and its bytes.
const extraMagic = "COURRIEL-KEYWORDS 1\n"

// maxExtraSize bounds the file, read or written (a variable for the
// tests).
var maxExtraSize int64 = 64 << 20

// extraKw is a message's keywords beyond the letters. gen counts its
// changes, for the bits a session sees (extraBits): a session tells a
// change from the Flags value alone (STORE's FETCH, IDLE).
type extraKw struct {
	names []string
	gen   uint16
}

// extraName is a keyword beyond the letters and how many messages carry
// it.
type extraName struct {
	name string // as first given
	refs int
}

// The bits of a message's Flags, as the store's API gives them, that stand
// for its keywords beyond the letters: flagExtra when it has any, and 11
// bits of their change count, so that each change gives another value.
// Never in a file name (Flags.String writes letters only) nor in Msg.Flags:
// FlagsOf and the STORE calls add them. FlagNamesOf names the keywords.
const (
	flagExtra     = Flags(1) << 26
	extraGenLow   = 27 // 5 bits, 27..31
	extraGenHigh  = 58 // 6 bits, 58..63
	extraBitsMask = flagExtra | Flags(0x1f)<<extraGenLow | Flags(0x3f)<<extraGenHigh
)

func (x *extraKw) bits() Flags {
	if x == nil || len(x.names) == 0 {
		return 0
	}
	g := Flags(x.gen & 0x7ff)
	return flagExtra | (g&0x1f)<<extraGenLow | (g>>5)<<extraGenHigh
}

// extraBitsLocked is the bits of the keywords beyond the letters of the
// message of base name base.
func (mb *Mailbox) extraBitsLocked(base string) Flags {
	if len(mb.extra) == 0 {
		return 0
	}
	return mb.extra[base].bits()
}

// extraOfLocked is the keywords beyond the letters of the message of base
// name base.
func (mb *Mailbox) extraOfLocked(base string) []string {
	if len(mb.extra) == 0 {
		return nil
	}
	if x := mb.extra[base]; x != nil {
		return x.names
	}
	return nil
}

// containsFold reports whether l has name, compared case-insensitively.
func containsFold(l []string, name string) bool {
	for _, n := range l {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// foldSet is the lower-case names of l.
func foldSet(l []string) map[string]bool {
	set := make(map[string]bool, len(l))
	for _, n := range l {
		set[strings.ToLower(n)] = true
	}
	return set
}

// setExtraLocked gives the message of base name base the keywords names
// beyond the letters (none: it has none), and reports whether they
// changed. The folder's spelling of a name it knows is kept. The change
// is this process's, for the merge of the next write (extraDirty).
func (mb *Mailbox) setExtraLocked(base string, names []string) bool {
	before := mb.extraOfLocked(base)
	if !mb.putExtraLocked(base, names) {
		return false
	}
	if _, ok := mb.extraDirty[base]; !ok {
		if mb.extraDirty == nil {
			mb.extraDirty = make(map[string][]string)
		}
		mb.extraDirty[base] = before
	}
	return true
}

// putExtraLocked is setExtraLocked for keywords read from the file: no
// change of this process's.
func (mb *Mailbox) putExtraLocked(base string, names []string) bool {
	old := mb.extra[base]
	var nl []string
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		k := strings.ToLower(n)
		if !seen[k] {
			seen[k] = true
			if e := mb.extraNames[k]; e != nil {
				n = e.name
			}
			nl = append(nl, n)
		}
	}
	if old != nil && len(old.names) == len(nl) {
		same := true
		for _, n := range old.names {
			if !seen[strings.ToLower(n)] {
				same = false
				break
			}
		}
		if same {
			return false
		}
	} else if old == nil && len(nl) == 0 {
		return false
	}
	var gen uint16
	if old != nil {
		gen = old.gen
		for _, n := range old.names {
			k := strings.ToLower(n)
			if e := mb.extraNames[k]; e != nil {
				if e.refs--; e.refs <= 0 {
					delete(mb.extraNames, k)
					mb.extraOrder = removeFold(mb.extraOrder, n)
				}
			}
		}
	}
	mb.extraStale = true
	if len(nl) == 0 {
		delete(mb.extra, base)
		return true
	}
	if mb.extraNames == nil {
		mb.extraNames = make(map[string]*extraName)
	}
	for _, n := range nl {
		k := strings.ToLower(n)
		e := mb.extraNames[k]
		if e == nil {
			e = &extraName{name: n}
			mb.extraNames[k] = e
			mb.extraOrder = append(mb.extraOrder, n)
		}
		e.refs++
	}
	if mb.extra == nil {
		mb.extra = make(map[string]*extraKw)
	}
	gen++
	if gen&0x7ff == 0 {
		gen++
	}
	mb.extra[base] = &extraKw{names: nl, gen: gen}
	return true
}

func removeFold(l []string, name string) []string {
	for i, n := range l {
		if strings.EqualFold(n, name) {
			return append(l[:i:i], l[i+1:]...)
		}
	}
	return l
}

// extraRoomLocked is names without those the folder cannot take any more
// (past MaxExtraKeywords distinct names).
func (mb *Mailbox) extraRoomLocked(names []string) (kept, dropped []string) {
	n := len(mb.extraNames)
	for _, name := range names {
		if mb.extraNames[strings.ToLower(name)] == nil {
			if n >= MaxExtraKeywords {
				dropped = append(dropped, name)
				continue
			}
			n++
		}
		kept = append(kept, name)
	}
	return kept, dropped
}

// extraKeepLocked is the keywords beyond the letters an APPEND, COPY or
// MOVE keeps of names (a message's, without repeats): those the folder
// has room for (MaxExtraKeywords), up to MaxMessageExtraKeywords.
func (mb *Mailbox) extraKeepLocked(names []string) (kept, dropped []string) {
	kept, dropped = mb.extraRoomLocked(names)
	if len(kept) > MaxMessageExtraKeywords {
		dropped = append(dropped, kept[MaxMessageExtraKeywords:]...)
		kept = kept[:MaxMessageExtraKeywords:MaxMessageExtraKeywords]
	}
	return kept, dropped
}

// extraAfterLocked is the keywords beyond the letters of the message of
// base name base after a STORE op naming the keywords of namedSet
// (lower-case), of which extra (extraSet) have no letter. A keyword named
// that has a letter (a table another program emptied, then filled again)
// leaves them: it is not shown twice, and -FLAGS takes it away wherever
// it is.
func (mb *Mailbox) extraAfterLocked(base string, op StoreOp, extra []string, extraSet, namedSet map[string]bool) []string {
	cur := mb.extraOfLocked(base)
	if op == StoreReplace {
		return extra
	}
	var out []string
	have := make(map[string]bool, len(cur))
	for _, n := range cur {
		k := strings.ToLower(n)
		if !namedSet[k] || (op == StoreAdd && extraSet[k]) {
			out = append(out, n)
			have[k] = true
		}
	}
	if op == StoreAdd {
		for _, n := range extra {
			if !have[strings.ToLower(n)] {
				out = append(out, n)
			}
		}
	}
	return out
}

// keywordNames is the keywords among IMAP flag names.
func keywordNames(flags []string) []string {
	var out []string
	for _, f := range flags {
		if !strings.HasPrefix(f, `\`) && uidlist.ValidKeyword(f) {
			out = append(out, f)
		}
	}
	return out
}

// dropExtraLocked forgets the keywords of a message gone: the next write
// drops its entry, whatever another process gave it meanwhile.
func (mb *Mailbox) dropExtraLocked(base string) {
	if len(mb.extra) > 0 && mb.extra[base] != nil {
		mb.setExtraLocked(base, nil)
		mb.markExtraGoneLocked(base)
	}
}

func (mb *Mailbox) markExtraGoneLocked(base string) {
	if mb.extraGone == nil {
		mb.extraGone = make(map[string]bool)
	}
	mb.extraGone[base] = true
}

func (mb *Mailbox) encodeExtraLocked() []byte {
	idx := make(map[string]int, len(mb.extraOrder))
	e := indexEncoder{b: make([]byte, 0, 64+len(mb.extra)*48)}
	e.b = append(e.b, extraMagic...)
	e.b = append(e.b, 0, 0, 0, 0) // CRC, below
	start := len(e.b)
	e.uvarint(uint64(len(mb.extraOrder)))
	for i, n := range mb.extraOrder {
		idx[strings.ToLower(n)] = i
		e.str(n)
	}
	e.uvarint(uint64(len(mb.extra)))
	for base, x := range mb.extra {
		e.str(base)
		e.uvarint(uint64(len(x.names)))
		for _, n := range x.names {
			e.uvarint(uint64(idx[strings.ToLower(n)]))
		}
	}
	binary.LittleEndian.PutUint32(e.b[start-4:], crc32.Checksum(e.b[start:], castagnoli))
	return e.b
}

var errExtraFormat = errors.New("mailstore: " + ExtraKeywordsFileName + ": malformed")

// decodeExtra reads ExtraKeywordsFileName: the keywords of each base name
// (of those keep takes, nil: all), and every name in the order the folder
// had them. More than MaxExtraKeywords names or keywords on a message,
// an empty or repeated name, base name or keyword of a message make it
// malformed; what is allocated is bounded by those counts, and by the
// entries kept.
func decodeExtra(data string, keep func(base string) bool) (map[string][]string, []string, error) {
	if len(data) < len(extraMagic)+4 || data[:len(extraMagic)] != extraMagic {
		return nil, nil, errExtraFormat
	}
	payload := data[len(extraMagic)+4:]
	if binary.LittleEndian.Uint32([]byte(data[len(extraMagic):])) != crcString(payload) {
		return nil, nil, errExtraFormat
	}
	d := indexDecoder{s: payload}
	nn := d.countOf(2)
	if d.err != nil || nn > MaxExtraKeywords {
		return nil, nil, errExtraFormat
	}
	names := make([]string, 0, nn)
	seen := make(map[string]bool, nn)
	for range nn {
		n := d.str()
		k := strings.ToLower(n)
		if d.err != nil || n == "" || seen[k] {
			return nil, nil, errExtraFormat
		}
		seen[k] = true
		names = append(names, n)
	}
	n := d.countOf(2)
	out := make(map[string][]string, min(n, 1<<12))
	var has [MaxExtraKeywords / 64]uint64 // a message's keywords, by index
	for range n {
		base := d.str()
		k := d.countOf(1)
		if d.err != nil || base == "" || k > len(names) {
			return nil, nil, errExtraFormat
		}
		if _, dup := out[base]; dup {
			return nil, nil, errExtraFormat
		}
		take := keep == nil || keep(base)
		var l []string
		if take {
			l = make([]string, 0, k)
		}
		clear(has[:])
		for range k {
			i := d.uvarint()
			if d.err != nil || i >= uint64(len(names)) || has[i/64]&(1<<(i%64)) != 0 {
				return nil, nil, errExtraFormat
			}
			has[i/64] |= 1 << (i % 64)
			if take {
				l = append(l, names[i])
			}
		}
		if take {
			out[base] = l
		}
	}
	if d.err != nil || d.off != len(d.s) {
		return nil, nil, errExtraFormat
	}
	return out, names, nil
}

// loadExtraLocked reads ExtraKeywordsFileName as the folder is opened:
// the keywords of its messages (by base name) beyond the letters. Those
// of a base name no message has are dropped (the file is written again
// without them at the next change), as are invalid names. A file that
// cannot be read (unreadable, too large, malformed) is logged and kept:
// the folder's keywords beyond the letters cannot be changed
// (extraBroken) until it is read again.
func (mb *Mailbox) loadExtraLocked() {
	mb.extra, mb.extraNames, mb.extraOrder = nil, nil, nil
	mb.extraDirty, mb.extraGone = nil, nil
	mb.extraStale, mb.extraBroken = false, false
	mb.extraSt = mb.statLocked(ExtraKeywordsFileName) // before the read: a change after it is read again
	data, err := mb.readString(ExtraKeywordsFileName, maxExtraSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	byBase := mb.baseMapLocked()
	dropped := false
	var l map[string][]string
	var order []string
	if err == nil {
		l, order, err = decodeExtra(data, func(base string) bool {
			if byBase[base] == nil {
				dropped = true
				mb.markExtraGoneLocked(strings.Clone(base))
				return false
			}
			return true
		})
	}
	if err != nil {
		mb.reg.log().Error("mailstore: keywords beyond the maildir letters not read; "+ExtraKeywordsFileName+" kept as it is, they cannot be changed in this folder until it is repaired or removed", "folder", mb.root.Name(), "err", err)
		mb.extraBroken = true
		return
	}
	for base, names := range l {
		var valid []string
		for _, n := range names {
			if uidlist.ValidKeyword(n) {
				valid = append(valid, strings.Clone(n))
			}
		}
		mb.putExtraLocked(strings.Clone(base), valid)
	}
	// FLAGS in the folder's order, not the map's.
	rank := make(map[string]int, len(order))
	for i, n := range order {
		if _, ok := rank[strings.ToLower(n)]; !ok {
			rank[strings.ToLower(n)] = i
		}
	}
	slices.SortStableFunc(mb.extraOrder, func(a, b string) int {
		return rank[strings.ToLower(a)] - rank[strings.ToLower(b)]
	})
	mb.extraStale = dropped
}

// saveExtraLocked writes ExtraKeywordsFileName with durability d (or
// removes it when no message has keywords beyond the letters). Failures
// are logged and returned (but for the folder's fsync, after the file is
// in place): the keywords stay in memory, and the next change writes them
// again.
//
// Another courriel process may have the folder open too (a CLI tool
// beside the server, two servers on shared storage) and write the file
// meanwhile: the write is a read-modify-write under the file's dotlock
// (ExtraKeywordsFileName+".lock", Dovecot's kind, broken when its holder
// is gone: see uidlist.Acquire), which the file renamed into place does
// not disturb. Under it the file is read again and merged (mergeExtraLocked):
// the messages this process changed since its last read or write
// (extraDirty) get this process's changes applied to the file's
// keywords, every other message the file's, which this process adopts
// (its sessions see them as flag changes).
func (mb *Mailbox) saveExtraLocked(d durability) error {
	if mb.closed || mb.detached || !mb.loaded {
		return nil
	}
	if mb.extraBroken {
		return errExtraUnusable // the file is kept as it is
	}
	lk, err := mb.lockLocked(ExtraKeywordsFileName)
	if err != nil {
		mb.reg.log().Warn("mailstore: keywords beyond the maildir letters not written: "+ExtraKeywordsFileName+" locked", "folder", mb.root.Name(), "err", err)
		return err
	}
	defer lk.Release()
	if err := mb.mergeExtraLocked(); err != nil {
		return err
	}
	var data []byte
	if len(mb.extra) > 0 {
		data = mb.encodeExtraLocked()
		if int64(len(data)) > maxExtraSize {
			mb.reg.log().Warn("mailstore: keywords beyond the maildir letters refused: "+ExtraKeywordsFileName+" would exceed its bound", "folder", mb.root.Name(), "size", len(data), "bound", maxExtraSize)
			return ErrTooManyKeywords
		}
	}
	mb.extraStale = false
	if len(mb.extra) == 0 {
		if err = mb.root.Remove(ExtraKeywordsFileName); errors.Is(err, fs.ErrNotExist) {
			err = nil
		}
	} else {
		err = mb.writeFileLocked(ExtraKeywordsFileName, d, data)
	}
	// Under the dotlock nobody else writes it: the file is this
	// process's (written, or as mergeExtraLocked read it).
	mb.extraSt = mb.statLocked(ExtraKeywordsFileName)
	if err != nil && !errors.Is(err, errFolderSync) {
		mb.extraStale = true
	} else {
		mb.extraDirty, mb.extraGone = nil, nil // the file has them
	}
	if err != nil {
		mb.reg.log().Warn("mailstore: keywords beyond the maildir letters not written to "+ExtraKeywordsFileName, "folder", mb.root.Name(), "err", err)
	}
	if errors.Is(err, errFolderSync) {
		return nil
	}
	return err
}

// mergeExtraLocked reads ExtraKeywordsFileName again, under its lock, and
// makes extra the keywords the file is to have: for a message this
// process changed since its last read or write, the file's with this
// process's additions and removals (so that two processes' changes to
// one message are both kept), for any other the file's. A message the
// file names that this process does not know yet (another process's new
// one) is kept with its keywords. A file that cannot be decoded is kept
// as it is (errExtraUnusable, as at open); a read that fails is this
// write's error. Names of this process's that would take the folder past
// MaxExtraKeywords are dropped.
func (mb *Mailbox) mergeExtraLocked() error {
	st := mb.statLocked(ExtraKeywordsFileName) // before the read: a change after it is read again
	data, err := mb.readString(ExtraKeywordsFileName, maxExtraSize)
	var disk map[string][]string
	var order []string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		err = nil
	case err == nil:
		disk, order, err = decodeExtra(data, nil)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			// The read failed (EIO, EMFILE, ESTALE): the write is
			// refused this time, the changes kept for the next one
			// (and a sync reads it again: extraSt is left).
			return err
		}
		mb.extraSt = st
		mb.reg.log().Error("mailstore: keywords beyond the maildir letters cannot be changed; "+ExtraKeywordsFileName+" unreadable, kept as it is", "folder", mb.root.Name(), "err", err)
		mb.extraBroken = true
		return errExtraUnusable
	}
	mb.extraSt = st
	want := make(map[string][]string, len(disk)+len(mb.extraDirty))
	for base, names := range disk {
		var valid []string
		for _, n := range names {
			if uidlist.ValidKeyword(n) {
				valid = append(valid, strings.Clone(n)) // not the whole file's
			}
		}
		if len(valid) > 0 {
			want[base] = valid
		}
	}
	for base := range mb.extraGone {
		if mb.extra[base] == nil {
			delete(want, base)
		}
	}
	// The names the file has stay; this process's new ones fit in what
	// is left of MaxExtraKeywords, the others are dropped (another
	// process took the room meanwhile), as a message stored with too
	// many is stored without the excess (extraKeepLocked).
	names := map[string]bool{}
	for _, l := range want {
		for _, n := range l {
			names[strings.ToLower(n)] = true
		}
	}
	dropped := 0
	for _, base := range slices.Sorted(maps.Keys(mb.extraDirty)) {
		theirs := want[base]
		l := mergeKeywords(mb.extraDirty[base], mb.extraOfLocked(base), theirs)
		// The file read is what this process's changes are made to
		// from now on: kept unwritten (a sync's read, a write that
		// failed), they are merged again with the file's next
		// version, where a keyword another process took away meanwhile
		// does not come back as this one's.
		mb.extraDirty[base] = theirs
		l = slices.DeleteFunc(l, func(n string) bool {
			k := strings.ToLower(n)
			if !names[k] && len(names) >= MaxExtraKeywords {
				dropped++
				return true
			}
			names[k] = true
			return false
		})
		if len(l) > 0 {
			want[base] = l
		} else {
			delete(want, base)
		}
	}
	if dropped > 0 {
		mb.reg.log().Warn("mailstore: keywords beyond the maildir letters dropped: with another process's, too many in the folder", "folder", mb.root.Name(), "dropped", dropped, "bound", MaxExtraKeywords)
	}
	byBase := mb.baseMapLocked()
	adopted := false
	adopt := func(base string, l []string) {
		if !mb.putExtraLocked(strings.Clone(base), l) {
			return
		}
		if m := byBase[base]; m != nil {
			// Another process's change (or this one's, merged): the
			// sessions see the message's flags again.
			mb.recordChangeLocked(Change{Kind: FlagsChanged, UID: m.UID}, m)
			adopted = true
		}
	}
	for base := range mb.extra {
		if _, ok := want[base]; !ok {
			adopt(base, nil)
		}
	}
	for base, l := range want {
		adopt(base, l)
	}
	if adopted {
		mb.wakeWatchersLocked()
	}
	// FLAGS in the file's order, then the names it did not have.
	rank := make(map[string]int, len(order))
	for i, n := range order {
		if _, ok := rank[strings.ToLower(n)]; !ok {
			rank[strings.ToLower(n)] = i
		}
	}
	slices.SortStableFunc(mb.extraOrder, func(a, b string) int {
		ra, oka := rank[strings.ToLower(a)]
		rb, okb := rank[strings.ToLower(b)]
		switch {
		case oka && okb:
			return ra - rb
		case oka:
			return -1
		case okb:
			return 1
		}
		return 0
	})
	return nil
}

// mergeKeywords is theirs with the changes from was to ours: the names
// ours added, without those it removed (compared case-insensitively).
func mergeKeywords(was, ours, theirs []string) []string {
	wasSet, oursSet := foldSet(was), foldSet(ours)
	var out []string
	seen := map[string]bool{}
	for _, n := range theirs {
		k := strings.ToLower(n)
		if wasSet[k] && !oursSet[k] || seen[k] {
			continue // removed here
		}
		seen[k] = true
		out = append(out, n)
	}
	for _, n := range ours {
		k := strings.ToLower(n)
		if !wasSet[k] && !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	return out
}

// flushExtraLocked writes the file, without fsync, when messages gone
// left entries in it.
func (mb *Mailbox) flushExtraLocked() {
	if mb.extraStale {
		_ = mb.saveExtraLocked(noSync)
	}
}

// refreshExtraLocked reads ExtraKeywordsFileName again at a sync when
// another courriel process wrote it since this one last read or wrote it
// (its stamp, extraSt: one stat and nothing more while it is unchanged),
// and merges it as a write does (mergeExtraLocked, without the dotlock:
// the file is replaced whole by rename): the messages whose keywords
// changed there change for the sessions (FlagsChanged), this process's
// own changes not written yet (extraDirty) are kept, and nothing is
// written here (the flush that follows a sync writes those, as before).
// A file that could not be read is read again once changed, and the
// keywords beyond the letters can be changed again when it now can be.
// A read that fails (EIO) is tried again at the next sync.
func (mb *Mailbox) refreshExtraLocked() {
	if mb.closed || mb.detached || !mb.loaded {
		return
	}
	if mb.statLocked(ExtraKeywordsFileName) == mb.extraSt {
		return
	}
	stale := mb.extraStale // putExtraLocked sets it: the file has what is adopted
	if err := mb.mergeExtraLocked(); err != nil {
		return
	}
	mb.extraStale = stale
	if mb.extraBroken {
		mb.extraBroken = false
		mb.reg.log().Info("mailstore: "+ExtraKeywordsFileName+" readable again; keywords beyond the maildir letters can be changed", "folder", mb.root.Name())
	}
}
