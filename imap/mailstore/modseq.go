package mailstore

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"
)

// ModSeqFileName is courriel's per-folder record of modification
// sequences (RFC 7162): each message's modseq with the flags it had then,
// the folder's HIGHESTMODSEQ, and the recent expunges with theirs. Dovecot
// keeps the same in its own index, which courriel does not read; this file
// is ours alone.
//
// Layout: a snapshot (header line, then one line per message and per
// remembered expunge), then records appended as changes happen; the last
// record of a UID wins. A torn last line is ignored.
//
//	COURRIEL-MODSEQ 1 <uidvalidity>
//	H <highest>               the folder's HIGHESTMODSEQ
//	R <reserved>              no modseq at or above it was given out
//	F <forgotten>             expunges up to this modseq are forgotten
//	M <uid> <flags hex> <modseq>
//	V <uid> <modseq>          an expunge
const ModSeqFileName = "courriel-modseq"

var modSeqMagic = []byte("COURRIEL-MODSEQ 1 ")

// modReserve is how far past the highest modseq a reservation reaches: a
// reservation is made durable (fsync) before any modseq under it is handed
// out, so that after a crash, whatever records were lost, the next load
// starts above every modseq a client may have seen. A clean release lowers
// the reservation to the highest modseq again.
const modReserve = 1 << 16

// maxVanished bounds the expunges remembered for VANISHED (EARLIER); older
// ones are forgotten, and a client resynchronising from before them is
// told every UID it may hold that is not in the folder (RFC 7162 §3.2.5.2
// allows it).
const maxVanished = 20000

// modState is a folder's modseq bookkeeping; guarded by Mailbox.mu.
type modState struct {
	highest   uint64
	reserved  uint64
	forgotten uint64
	vanished  []Vanished // ascending modseq

	buf          []byte // records not written yet
	mustSync     bool   // buf holds a reservation: fsync before handing out
	needSnapshot bool   // the file must be rewritten whole
	appended     int    // records appended since the last snapshot

	// crc is the CRC-32C of the file as last read or written (crcOK:
	// known), which courriel-state is checked against.
	crc   uint32
	crcOK bool
	// ver is the file's stamp verified settled with its content, for
	// courriel-state (see fileVer); any write forgets it.
	ver fileVer
}

// Vanished is a remembered expunge.
type Vanished struct {
	UID    uint32
	ModSeq uint64
}

// timeFloor is the lowest HIGHESTMODSEQ a folder rebuilt from nothing may
// start at: microseconds since 1970. Modseqs grow by one per change, far
// slower than the clock, so a folder whose file was lost starts above
// every modseq it gave out before (RFC 7162 §3.1.2.1: it must never go
// backwards for a client that cached it).
func timeFloor() uint64 { return uint64(time.Now().UnixMicro()) }

// nextModLocked hands out a new modseq, reserving ahead when needed.
func (mb *Mailbox) nextModLocked() uint64 {
	ms := &mb.mod
	ms.highest++
	if ms.highest >= ms.reserved {
		ms.reserved = ms.highest + modReserve
		ms.buf = fmt.Appendf(ms.buf, "R %d\n", ms.reserved)
		ms.mustSync = true
	}
	return ms.highest
}

// noteModLocked gives a change its modseq; called for every logged change
// once the folder is loaded (load reconciles the file with the disk). m is
// the message of c.UID, or nil to look it up.
func (mb *Mailbox) noteModLocked(c Change, m *Msg) {
	if !mb.loaded {
		return
	}
	ms := &mb.mod
	switch c.Kind {
	case Added, FlagsChanged:
		if m == nil {
			if m = mb.findLocked(c.UID); m == nil {
				return
			}
		}
		m.ModSeq = mb.nextModLocked()
		// "M uid flags-hex modseq": appended by hand, one per message of
		// a STORE over the whole folder.
		ms.buf = append(ms.buf, 'M', ' ')
		ms.buf = strconv.AppendUint(ms.buf, uint64(m.UID), 10)
		ms.buf = append(ms.buf, ' ')
		ms.buf = strconv.AppendUint(ms.buf, uint64(m.Flags), 16)
		ms.buf = append(ms.buf, ' ')
		ms.buf = strconv.AppendUint(ms.buf, m.ModSeq, 10)
		ms.buf = append(ms.buf, '\n')
		ms.appended++
	case Expunged:
		v := Vanished{UID: c.UID, ModSeq: mb.nextModLocked()}
		mb.rememberExpungeLocked(v)
		ms.buf = append(ms.buf, 'V', ' ')
		ms.buf = strconv.AppendUint(ms.buf, uint64(v.UID), 10)
		ms.buf = append(ms.buf, ' ')
		ms.buf = strconv.AppendUint(ms.buf, v.ModSeq, 10)
		ms.buf = append(ms.buf, '\n')
		ms.appended++
	case Invalidated:
		// New UIDs: every message is new to every client.
		ms.forgotten = ms.highest
		ms.vanished = nil
		n := mb.nextModLocked()
		for _, m := range mb.msgs {
			m.ModSeq = n
		}
		ms.needSnapshot = true
	}
	if len(ms.buf) > 64<<10 && !ms.mustSync {
		mb.flushModLocked()
	}
}

func (mb *Mailbox) rememberExpungeLocked(v Vanished) {
	ms := &mb.mod
	ms.vanished = append(ms.vanished, v)
	if len(ms.vanished) > maxVanished {
		drop := len(ms.vanished) - maxVanished*3/4
		ms.forgotten = max(ms.forgotten, ms.vanished[drop-1].ModSeq)
		ms.vanished = append(ms.vanished[:0:0], ms.vanished[drop:]...)
		ms.needSnapshot = true
	}
}

// flushModLocked writes the pending records: appended to the file, or the
// file rewritten whole when asked for or when the appended records
// outgrow the snapshot. Best effort: a write that fails leaves the records
// pending, and a reservation is made durable before the caller releases the
// folder's lock, i.e. before any client hears of a modseq under it.
func (mb *Mailbox) flushModLocked() {
	ms := &mb.mod
	if mb.detached || mb.closed || !mb.loaded {
		return
	}
	mb.flushExtraLocked() // entries of messages gone, as their expunges
	if ms.needSnapshot || ms.appended > max(4096, len(mb.msgs)) {
		if mb.writeModSnapshotLocked() == nil {
			return
		}
	}
	if len(ms.buf) == 0 {
		return
	}
	f, err := mb.root.OpenFile(ModSeqFileName, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		_ = mb.writeModSnapshotLocked()
		return
	}
	defer f.Close()
	ms.ver = fileVer{}
	if _, err := f.Write(ms.buf); err != nil {
		ms.needSnapshot = true
		ms.crcOK = false // some of it may be there
		return
	}
	ms.crc = crc32.Update(ms.crc, castagnoli, ms.buf)
	if ms.mustSync {
		if err := f.Sync(); err != nil {
			ms.needSnapshot = true
			return
		}
	}
	ms.buf = ms.buf[:0]
	if cap(ms.buf) > 256<<10 {
		ms.buf = nil
	}
	ms.mustSync = false
}

// writeModSnapshotLocked replaces the file with the current state: a
// temporary file, fsynced, renamed over it, and the folder fsynced, so
// that records appended to the new file never sit on top of an old one a
// crash brings back.
func (mb *Mailbox) writeModSnapshotLocked() error {
	ms := &mb.mod
	var b bytes.Buffer
	b.Grow(64 + 28*len(mb.msgs) + 24*len(ms.vanished))
	b.Write(modSeqMagic)
	fmt.Fprintf(&b, "%d\nH %d\nR %d\nF %d\n", mb.uidValidity, ms.highest, ms.reserved, ms.forgotten)
	var line []byte
	for _, m := range mb.msgs {
		line = append(line[:0], 'M', ' ')
		line = strconv.AppendUint(line, uint64(m.UID), 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(m.Flags), 16)
		line = append(line, ' ')
		line = strconv.AppendUint(line, m.ModSeq, 10)
		line = append(line, '\n')
		b.Write(line)
	}
	for _, v := range ms.vanished {
		fmt.Fprintf(&b, "V %d %d\n", v.UID, v.ModSeq)
	}
	ms.ver = fileVer{}
	err := mb.writeFileLocked(ModSeqFileName, syncFolder, b.Bytes())
	if err == nil || errors.Is(err, errFolderSync) {
		ms.crc, ms.crcOK = crc32.Checksum(b.Bytes(), castagnoli), true // renamed: its content
	}
	if err != nil {
		return fmt.Errorf("mailstore: write %s: %w", ModSeqFileName, err)
	}
	ms.buf = ms.buf[:0]
	ms.mustSync = false
	ms.needSnapshot = false
	ms.appended = 0
	return nil
}

// closeModLocked runs at the last release: the records are made durable,
// then the reservation comes down to the highest modseq, so a clean
// restart goes on from there rather than past the reservation.
func (mb *Mailbox) closeModLocked() {
	ms := &mb.mod
	if !mb.loaded || mb.detached || ms.reserved == ms.highest+1 && len(ms.buf) == 0 && !ms.needSnapshot {
		return
	}
	mb.flushModLocked()
	if len(ms.buf) > 0 || ms.needSnapshot {
		return // not written: the reservation stays as it is
	}
	f, err := mb.root.OpenFile(ModSeqFileName, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	if f.Sync() != nil {
		return
	}
	// No fsync for this one: losing it keeps the higher reservation.
	ms.ver = fileVer{}
	ms.reserved = ms.highest + 1
	line := fmt.Appendf(nil, "R %d\n", ms.reserved)
	if _, err := f.Write(line); err != nil {
		ms.crcOK = false
		return
	}
	ms.crc = crc32.Update(ms.crc, castagnoli, line)
}

type modRecord struct {
	flags  Flags
	modseq uint64
}

type modFile struct {
	uidValidity                  uint32
	highest, reserved, forgotten uint64
	msgs                         map[uint32]modRecord
	vanished                     []Vanished
	records                      int
}

// parseModFile reads the file; a line that does not parse ends it (a torn
// append), a bad header makes it unusable.
func parseModFile(data []byte) (*modFile, error) {
	if !bytes.HasPrefix(data, modSeqMagic) {
		return nil, errors.New("mailstore: modseq file: bad header")
	}
	data = data[len(modSeqMagic):]
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, errors.New("mailstore: modseq file: bad header")
	}
	v, err := strconv.ParseUint(string(data[:nl]), 10, 32)
	if err != nil {
		return nil, errors.New("mailstore: modseq file: bad header")
	}
	data = data[nl+1:]
	// A snapshot line is about 35 bytes: size the map once.
	f := &modFile{uidValidity: uint32(v), msgs: make(map[uint32]modRecord, len(data)/32)}
	var expunged map[uint32]bool
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			break // torn
		}
		line := data[:nl]
		data = data[nl+1:]
		if len(line) < 3 || line[1] != ' ' {
			break
		}
		kind, rest := line[0], line[2:]
		var a, b, c []byte
		a, rest = nextField(rest)
		if kind == 'M' || kind == 'V' {
			b, rest = nextField(rest)
		}
		if kind == 'M' {
			c, rest = nextField(rest)
		}
		if rest != nil {
			break // a field too many: not ours
		}
		ok := true
		switch kind {
		case 'H', 'R', 'F':
			var n uint64
			if n, ok = parseNum(a, 10, 63); ok {
				switch kind {
				case 'H':
					f.highest = max(f.highest, n)
				case 'R':
					f.reserved = n // the last one stands, lowered at a clean close
				case 'F':
					f.forgotten = max(f.forgotten, n)
				}
			}
		case 'M':
			uid, ok1 := parseNum(a, 10, 32)
			fl, ok2 := parseNum(b, 16, 64)
			n, ok3 := parseNum(c, 10, 63)
			if ok = ok1 && ok2 && ok3; ok {
				f.msgs[uint32(uid)] = modRecord{flags: Flags(fl), modseq: n}
				f.highest = max(f.highest, n)
				delete(expunged, uint32(uid))
			}
		case 'V':
			uid, ok1 := parseNum(a, 10, 32)
			n, ok2 := parseNum(b, 10, 63)
			if ok = ok1 && ok2; ok {
				delete(f.msgs, uint32(uid))
				if expunged == nil {
					expunged = make(map[uint32]bool)
				}
				if !expunged[uint32(uid)] {
					expunged[uint32(uid)] = true
					f.vanished = append(f.vanished, Vanished{UID: uint32(uid), ModSeq: n})
				}
				f.highest = max(f.highest, n)
			}
		default:
			ok = false
		}
		if !ok {
			break
		}
		f.records++
	}
	sort.SliceStable(f.vanished, func(i, j int) bool { return f.vanished[i].ModSeq < f.vanished[j].ModSeq })
	return f, nil
}

// nextField splits off the field before the next space; rest is nil when
// there is none left.
func nextField(line []byte) (field, rest []byte) {
	if i := bytes.IndexByte(line, ' '); i >= 0 {
		return line[:i], line[i+1:]
	}
	return line, nil
}

// parseNum reads a number of at most bits bits in base 10 or 16 (lower
// case), without strconv's string conversion: a 100,000-message folder's
// file has 300,000 of them.
func parseNum(b []byte, base uint64, bits uint) (uint64, bool) {
	maxLen := 19 // 10^19 > 2^63: no uint64 overflow below
	if base == 16 {
		maxLen = 16
	}
	if len(b) == 0 || len(b) > maxLen {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	if bits < 64 && n >= 1<<bits {
		return 0, false
	}
	return n, true
}

// loadModLocked gives every message its modseq when the folder is loaded:
// the recorded one when the message still has the flags recorded with it,
// a new one when another program changed them (or the file is new to us);
// recorded messages gone from the disk become expunges. Without a usable
// file the folder starts afresh above timeFloor.
func (mb *Mailbox) loadModLocked() {
	data, err := mb.root.ReadFile(ModSeqFileName)
	read := err == nil
	var f *modFile
	if err == nil {
		f, err = parseModFile(data)
	}
	mb.applyModFileLocked(f, err)
	if read {
		mb.mod.crc, mb.mod.crcOK = crc32.Checksum(data, castagnoli), true
	}
}

// applyModFileLocked is loadModLocked on a file read (or its copy in
// courriel-state), err when it could not be.
func (mb *Mailbox) applyModFileLocked(f *modFile, err error) {
	ms := &mb.mod
	*ms = modState{}
	if err != nil || f.uidValidity != mb.uidValidity {
		// Lost, unreadable or of another numbering: start afresh, above
		// what the old file said and above the clock floor. Every
		// expunge before is forgotten.
		h := timeFloor()
		if f != nil {
			h = max(h, f.highest+1, f.reserved)
		}
		ms.highest, ms.forgotten, ms.reserved = h, h, h+1
		for _, m := range mb.msgs {
			m.ModSeq = h
		}
		ms.needSnapshot = true
		return
	}
	// A crash may have lost records above the last durable reservation:
	// go on from the reservation.
	ms.highest = max(f.highest, f.reserved-min(f.reserved, 1))
	ms.reserved = max(f.reserved, ms.highest+1)
	ms.forgotten = f.forgotten
	ms.vanished = f.vanished
	if len(ms.vanished) > maxVanished {
		drop := len(ms.vanished) - maxVanished
		ms.forgotten = max(ms.forgotten, ms.vanished[drop-1].ModSeq)
		ms.vanished = slices.Clone(ms.vanished[drop:])
	}
	changed := f.records > max(4096, 2*len(mb.msgs))
	for _, m := range mb.msgs {
		r, ok := f.msgs[m.UID]
		if ok && r.flags == m.Flags {
			m.ModSeq = r.modseq
			delete(f.msgs, m.UID)
			continue
		}
		delete(f.msgs, m.UID)
		m.ModSeq = mb.nextModLocked()
		changed = true
	}
	gone := make([]uint32, 0, len(f.msgs))
	for uid := range f.msgs {
		gone = append(gone, uid)
	}
	slices.Sort(gone)
	for _, uid := range gone {
		mb.rememberExpungeLocked(Vanished{UID: uid, ModSeq: mb.nextModLocked()})
		changed = true
	}
	if changed {
		ms.needSnapshot = true
	}
}

// HighestModSeq is the folder's HIGHESTMODSEQ (RFC 7162 §3.1.2.1).
func (mb *Mailbox) HighestModSeq() uint64 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	return mb.mod.highest
}

// ModSeqsOf returns the modseqs of the given UIDs (0 for gone ones) in one
// lock acquisition.
func (mb *Mailbox) ModSeqsOf(uids []uint32) []uint64 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	out := make([]uint64, len(uids))
	j := 0
	for i, u := range uids {
		// uids usually ascend: walk instead of searching each.
		for j < len(mb.msgs) && mb.msgs[j].UID < u {
			j++
		}
		if j < len(mb.msgs) && mb.msgs[j].UID == u {
			out[i] = mb.msgs[j].ModSeq
			continue
		}
		if m := mb.findLocked(u); m != nil {
			out[i] = m.ModSeq
		}
	}
	return out
}

// ChangedSince returns the indexes in uids (ascending, as a session's
// view is) of the messages whose modseq is above since: FETCH
// (CHANGEDSINCE) over a 100,000-message folder allocates for the few
// changed, not for every message.
func (mb *Mailbox) ChangedSince(uids []uint32, since uint64) []int {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	var out []int
	j := 0
	for i, u := range uids {
		for j < len(mb.msgs) && mb.msgs[j].UID < u {
			j++
		}
		var m *Msg
		if j < len(mb.msgs) && mb.msgs[j].UID == u {
			m = mb.msgs[j]
		} else {
			m = mb.findLocked(u)
		}
		if m != nil && m.ModSeq > since {
			out = append(out, i)
		}
	}
	return out
}

// ModSeq returns the modseq of one message, 0 if it is gone.
func (mb *Mailbox) ModSeq(uid uint32) uint64 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	if m := mb.findLocked(uid); m != nil {
		return m.ModSeq
	}
	return 0
}

// VanishedSince returns the UIDs expunged with a modseq above since,
// ascending. complete is false when expunges after since may have been
// forgotten: the caller must then treat every UID not in the folder as
// possibly expunged.
func (mb *Mailbox) VanishedSince(since uint64) (uids []uint32, complete bool) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	ms := &mb.mod
	i := sort.Search(len(ms.vanished), func(i int) bool { return ms.vanished[i].ModSeq > since })
	for _, v := range ms.vanished[i:] {
		uids = append(uids, v.UID)
	}
	slices.Sort(uids)
	return slices.Compact(uids), since >= ms.forgotten
}

// StoreFlagsUnchangedSince is StoreFlags with RFC 7162's UNCHANGEDSINCE:
// messages whose modseq is above since are left alone and returned in
// modified; the test and the change happen under one lock. modseqs are the
// messages' modseqs afterwards.
func (mb *Mailbox) StoreFlagsUnchangedSince(uids []uint32, op StoreOp, flags []string, source *Watcher, since uint64) (newFlags []Flags, modseqs []uint64, ok []bool, modified []uint32, err error) {
	return mb.StoreFlagsUnchangedSincePiece(nil, uids, op, flags, source, since)
}

// StoreFlagsUnchangedSincePiece is StoreFlagsUnchangedSince for one piece
// of a command that changes flags in several (see FlagWait); fw nil: a
// command of one piece.
func (mb *Mailbox) StoreFlagsUnchangedSincePiece(fw *FlagWait, uids []uint32, op StoreOp, flags []string, source *Watcher, since uint64) (newFlags []Flags, modseqs []uint64, ok []bool, modified []uint32, err error) {
	if op != StoreReplace && op != StoreAdd && op != StoreRemove {
		return nil, nil, nil, nil, fmt.Errorf("mailstore: unknown store operation %d", op)
	}
	// mine: the modseqs a try that gave up for the uidlist lock
	// (errUIDListBusy, retried by flagChange) gave messages it changed
	// all the same (keywords beyond the letters, no rename): not
	// MODIFIED at the next try unless changed again since.
	var mine map[uint32]uint64
	err = mb.flagChange(fw, func(mode lockMode) error {
		var keep []uint32
		var idx []int
		modified = nil
		for i, u := range uids {
			m := mb.findLocked(u)
			if m != nil && m.ModSeq > since && (mine == nil || mine[u] != m.ModSeq) {
				modified = append(modified, u)
				continue
			}
			keep = append(keep, u)
			idx = append(idx, i)
		}
		fl, okk, err := mb.storeFlagsLocked(keep, op, flags, source, mode)
		if err != nil {
			if errors.Is(err, errUIDListBusy) {
				for _, u := range keep {
					if m := mb.findLocked(u); m != nil && m.ModSeq > since {
						if mine == nil {
							mine = make(map[uint32]uint64)
						}
						mine[u] = m.ModSeq
					}
				}
			}
			return err
		}
		newFlags = make([]Flags, len(uids))
		ok = make([]bool, len(uids))
		modseqs = make([]uint64, len(uids))
		for k, i := range idx {
			newFlags[i], ok[i] = fl[k], okk[k]
			if m := mb.findLocked(uids[i]); m != nil {
				modseqs[i] = m.ModSeq
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	return newFlags, modseqs, ok, modified, nil
}

// ModSeqFileSize is the size of the folder's modseq file (tests, figures).
func (mb *Mailbox) ModSeqFileSize() int64 {
	st, err := mb.root.Stat(ModSeqFileName)
	if err != nil {
		return -1
	}
	return st.Size()
}
