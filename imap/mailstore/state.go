package mailstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"strings"
	"time"
	"unsafe"

	"courriel/imap/uidlist"
)

// StateFileName is courriel's record of a folder as it last had it in
// memory: every message's UID, base name, flags and modseq, the
// dovecot-uidlist and courriel-modseq contents they came from (by CRC-32C
// and, once settled, by stamp) and the stamps of new/ and cur/. Opening a
// folder whose files still match it reads this file alone, where the full
// way parses the uidlist, lists cur/ (100,000 names) and parses the modseq
// file, as Dovecot trusts its index while the directories' stamps are
// unchanged. Each part is checked against what it comes from, and a part
// that does not match is read the full way; deleting the file is always
// safe.
//
// It is apart from courriel-index, the cache of envelopes and body
// structures (tens of megabytes for a large folder), because it changes
// whenever a flag does, and the cache rarely: one is rewritten without the
// other.
const StateFileName = "courriel-state"

// stateMagic starts the file; the digit is the layout's version. A file of
// another version is ignored (the folder is read the full way, and the
// file rewritten when released).
//
// After the magic: the CRC-32C of the payload (4 bytes, little endian),
// the payload's length (8 bytes, little endian), the payload:
//
//	uvarint UIDVALIDITY, next UID; string GUID; strings header extensions;
//	uvarint uidlist records; fixed32 uidlist CRC; stamp uidlist;
//	stamp new/, stamp cur/;
//	byte 1 then the modseq state, or 0: fixed32 file CRC, stamp file,
//	uvarint highest, reserved, forgotten, appended, uvarint count of
//	expunges then uvarint UID and modseq each;
//	uvarint message count; string the base names back to back; per
//	message: uvarint UID step from the previous one, uvarint flags,
//	varint modseq step from the previous one, uvarint length of the base
//	name; uvarint count of the messages in new/, then uvarint step of
//	each one's index from the previous one (the first from -1); uvarint
//	count of the messages with uidlist extensions, then the index step
//	and strings of each; uvarint count of the messages whose cur/ name
//	has no info part (see bareKept), then the index step of each.
//
// A stamp is uvarint inode, varint size, mtime, ctime, at (see fileVer and
// settled; a file's at is 0 when its stamp is not to be trusted). A string
// is a uvarint length and its bytes, strings a uvarint count of them.
//
// The names are together so that one scan of them checks that none
// leads out of the folder, and the fixed part of each message is a few
// bytes decoded without allocating: a 100,000-message folder opens in
// milliseconds.
var stateMagic = []byte("COURRIEL-STATE 3\n")

// maxStateSize bounds what is read of courriel-state: some 50 bytes a
// message, a file planted in the folder does not make the server allocate
// more.
const maxStateSize = 1 << 30

// castagnoli is the CRC-32C table (crc32 makes it once; never modified).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// How long after a directory's last change its stamp becomes trustworthy.
// A directory's mtime comes from the kernel's coarse clock (one tick, 1 to
// 10 ms) truncated to the file system's granularity: a file renamed in the
// same tick as the stamp was taken, after it, leaves the stamp as it was.
// A stamp taken more than a tick plus the granularity after the
// directory's last change is safe: any later change gives another mtime.
// Sub-second times (ext4, XFS, btrfs, tmpfs) mean a fine granularity;
// whole seconds (ext4 with small inodes, some NFS servers) may be one or
// two (FAT) seconds. Dovecot waits one second (MAILDIR_SYNC_SECS) in all
// cases.
const (
	fineStampMargin   = 250 * time.Millisecond
	coarseStampMargin = 3 * time.Second
)

// settled reports whether the memory, which had every change of a
// directory up to its stamp st as of at, can be trusted while the
// directory keeps that stamp: at must be well after the directory's last
// change.
func settled(st stamp, at int64) bool {
	if !st.ok || at == 0 {
		return false
	}
	return at-max(st.mtime, st.ctime) > int64(stampMargin(st))
}

// stampMargin is how long after its last change a directory's stamp st
// settles: fine or coarse, as its times say.
func stampMargin(st stamp) time.Duration {
	if st.mtime%1e9 != 0 || st.ctime%1e9 != 0 {
		return fineStampMargin
	}
	return coarseStampMargin
}

// fileVer says that a file of the folder (dovecot-uidlist,
// courriel-modseq) had CRC-32C crc while it had stamp st. at is when that
// was read (Unix nanoseconds), with st settled by then (see settled), else
// 0. A file's stamp changes with every write after a settled stamp was
// taken (the same rule as for new/ and cur/), so while the file keeps st
// it keeps the content of crc, and opening the folder need not read it
// whole to check it: the stamp is trusted as the directories' stamps are.
type fileVer struct {
	st  stamp
	at  int64
	crc uint32
}

// sure reports whether v's stamp was settled when its content was read:
// while the file keeps that stamp, it keeps that content.
func (v fileVer) sure() bool { return settled(v.st, v.at) }

// trusts reports whether a file that has stamp cur now still has the
// content ver was read with, of CRC crc, without reading it.
func (v fileVer) trusts(cur stamp, crc uint32) bool {
	return v.crc == crc && v.st == cur && v.sure()
}

// known is v when it is sure, else nothing.
func (v fileVer) known() fileVer {
	if !v.sure() {
		return fileVer{}
	}
	return v
}

// verifyFileLocked reads a file of the folder whole and reports whether
// its CRC-32C is want. The stamp is taken by name before the read and on
// the open file after it: when they agree, ver.at is when the read began,
// and if the stamp was settled by then (ver.sure), the content read is
// that stamp's.
func (mb *Mailbox) verifyFileLocked(name string, want uint32) (ver fileVer, ok bool) {
	t0 := mb.reg.now().UnixNano()
	st := mb.statLocked(name)
	f, err := mb.root.Open(name)
	if err != nil {
		return fileVer{}, false
	}
	defer f.Close()
	mb.fileReads++
	buf := make([]byte, 256<<10)
	var sum uint32
	for {
		n, err := f.Read(buf)
		sum = crc32.Update(sum, castagnoli, buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return fileVer{}, false
		}
	}
	if sum != want {
		return fileVer{}, false
	}
	ver = fileVer{st: st, crc: sum}
	if fi, err := f.Stat(); err == nil && mb.stampOf(fi) == st {
		ver.at = t0
	}
	return ver, true
}

// folderState is courriel-state decoded.
type folderState struct {
	uidValidity, nextUID uint32
	guid                 string
	hdrExt               []string
	listRecords          int
	listCRC              uint32
	listVer              fileVer // at 0: not verified
	newSt, curSt         stamp
	newAt, curAt         int64

	modOK                        bool
	modCRC                       uint32
	modVer                       fileVer
	highest, reserved, forgotten uint64
	appended                     int
	vanished                     []Vanished

	msgs     []Msg // ascending UIDs, ModSeq set; one array for the folder
	ext      map[uint32][]string
	anyNew   bool
	bareKept map[string]struct{} // see Mailbox.bareKept
}

// stateSummary says whether the folder changed since courriel-state was
// last read or written: every change of a message gets a modseq, and every
// change of a file or a directory's stamp is here.
type stateSummary struct {
	newSt, curSt         stamp
	newAt, curAt         int64
	listCRC, modCRC      uint32
	listVer, modVer      fileVer
	highest, reserved    uint64
	uidValidity, nextUID uint32
	msgs, listRecords    int
}

func (mb *Mailbox) stateSummaryLocked() stateSummary {
	return stateSummary{
		newSt: mb.newSt, curSt: mb.curSt, newAt: mb.newAt, curAt: mb.curAt,
		listCRC: mb.listCRC, modCRC: mb.mod.crc, highest: mb.mod.highest, reserved: mb.mod.reserved,
		listVer: mb.listVerLocked(), modVer: mb.modVerLocked(),
		uidValidity: mb.uidValidity, nextUID: mb.nextUID, msgs: len(mb.msgs), listRecords: mb.listRecords,
	}
}

// listVerLocked is what courriel-state records of dovecot-uidlist's
// stamp: the verified one while it is the file's stamp and content as the
// memory has them, else none.
func (mb *Mailbox) listVerLocked() fileVer {
	if v := mb.listVer; v.sure() && v.st == mb.listSt && v.crc == mb.listCRC && mb.listCRCOK {
		return v
	}
	return fileVer{}
}

// modVerLocked is listVerLocked for courriel-modseq.
func (mb *Mailbox) modVerLocked() fileVer {
	if ms := &mb.mod; ms.ver.sure() && ms.ver.crc == ms.crc && ms.crcOK {
		return ms.ver
	}
	return fileVer{}
}

// confirmLocked lists the directories once more when their stamps are not
// settled yet but would be now (the last change is older than the
// margin): the next open then reads courriel-state alone. It runs when the
// last session leaves, where a listing delays nobody. When a directory
// changed too recently, it returns how long until its stamp settles (0:
// nothing to wait for), for Release to confirm it then.
func (mb *Mailbox) confirmLocked() time.Duration {
	if mb.detached || !mb.loaded || (settled(mb.newSt, mb.newAt) && settled(mb.curSt, mb.curAt)) {
		return 0
	}
	now := mb.reg.now().UnixNano()
	var wait int64
	for _, sub := range []string{"new", "cur"} {
		if st := mb.statLocked(sub); !settled(st, now) {
			if !st.ok {
				return 0
			}
			// A tick of the coarse clock past the margin.
			wait = max(wait, max(st.mtime, st.ctime)+int64(stampMargin(st)+settleSlack)-now)
		}
	}
	if wait > 0 {
		if wait > int64(coarseStampMargin+settleSlack) {
			return 0 // the clock is off: the next open lists
		}
		return time.Duration(wait)
	}
	_ = mb.syncLocked(true, nil)
	return 0
}

// confirmFilesLocked is confirmLocked for dovecot-uidlist and
// courriel-modseq, whose contents courriel-state records by CRC: a file
// whose stamp is not verified settled yet is read once more when it has
// settled, so that the next open trusts its stamp rather than read it
// whole (some megabytes for a large folder). It runs when the last
// session leaves, after the modseq file's last write, and returns how long
// until a stamp settles (0: nothing to wait for).
func (mb *Mailbox) confirmFilesLocked() time.Duration {
	if mb.detached || !mb.loaded {
		return 0
	}
	now := mb.reg.now().UnixNano()
	var wait int64
	confirm := func(name string, ver *fileVer, crc uint32) {
		if ver.sure() && ver.crc == crc {
			return // verified, and not written since
		}
		st := mb.statLocked(name)
		switch {
		case !st.ok:
		case !settled(st, now):
			wait = max(wait, max(st.mtime, st.ctime)+int64(stampMargin(st)+settleSlack)-now)
		default:
			if v, ok := mb.verifyFileLocked(name, crc); ok && v.sure() {
				*ver = v
			}
		}
	}
	if mb.listCRCOK && !mb.listDirty && len(mb.listed) == 0 && !mb.listVerLocked().sure() {
		mb.listVer = fileVer{}
		confirm(uidlist.FileName, &mb.listVer, mb.listCRC)
		if mb.listVer.st != mb.listSt {
			mb.listVer = fileVer{} // changed since it was read: the next sync reads it
		}
	}
	if ms := &mb.mod; ms.crcOK && len(ms.buf) == 0 && !ms.needSnapshot && !ms.mustSync {
		confirm(ModSeqFileName, &ms.ver, ms.crc)
	}
	if wait > int64(coarseStampMargin+settleSlack) {
		return 0 // the clock is off: the next open reads the files
	}
	return time.Duration(wait)
}

// settleSlack is waited past a stamp's margin before confirming it: more
// than a tick of the kernel's coarse clock.
const settleSlack = 20 * time.Millisecond

// saveStateLocked writes courriel-state when the folder changed since it
// was read or written. No fsync: a file a crash leaves short or empty
// fails its CRC, and one a crash leaves older than the folder no longer
// matches its files, so the folder is read the full way.
func (mb *Mailbox) saveStateLocked() {
	if mb.detached || !mb.loaded || mb.listDirty || len(mb.listed) > 0 || !mb.listCRCOK || len(mb.dirty) > 0 || len(mb.bare) > 0 || len(mb.odd) > 0 {
		return // (dirty, bare, odd: the files' names are not the ones it would give)
	}
	for base := range mb.bareKept {
		if m := mb.baseMapLocked()[base]; m == nil || m.New {
			return // a name the file records no message of
		}
	}
	ms := &mb.mod
	sum := mb.stateSummaryLocked()
	if sum == mb.savedState {
		return
	}
	data := mb.encodeStateLocked(ms.crcOK && len(ms.buf) == 0 && !ms.needSnapshot && !ms.mustSync)
	if mb.writeFileLocked(StateFileName, noSync, data) != nil {
		return
	}
	mb.savedState = sum
}

func (mb *Mailbox) encodeStateLocked(modOK bool) []byte {
	names := 0
	for _, m := range mb.msgs {
		names += len(m.Base)
	}
	e := indexEncoder{b: make([]byte, 0, 4096+len(mb.msgs)*12+names)}
	e.b = append(e.b, stateMagic...)
	e.b = append(e.b, make([]byte, 12)...) // CRC and length, below
	start := len(e.b)
	e.uvarint(uint64(mb.uidValidity))
	e.uvarint(uint64(mb.nextUID))
	e.str(mb.guid)
	e.strs(mb.hdrExt)
	e.uvarint(uint64(mb.listRecords))
	e.b = binary.LittleEndian.AppendUint32(e.b, mb.listCRC)
	lv := mb.listVerLocked()
	e.stamp(lv.st, lv.at)
	newAt := mb.newAt
	if !mb.trustedAt.IsZero() {
		newAt = 0 // Delivered's stamp: new/ may hold what no listing saw
	}
	e.stamp(mb.newSt, newAt)
	e.stamp(mb.curSt, mb.curAt)
	ms := &mb.mod
	if e.present(modOK) {
		e.b = binary.LittleEndian.AppendUint32(e.b, ms.crc)
		mv := mb.modVerLocked()
		e.stamp(mv.st, mv.at)
		e.uvarint(ms.highest)
		e.uvarint(ms.reserved)
		e.uvarint(ms.forgotten)
		e.uvarint(uint64(ms.appended))
		e.uvarint(uint64(len(ms.vanished)))
		for _, v := range ms.vanished {
			e.uvarint(uint64(v.UID))
			e.uvarint(v.ModSeq)
		}
	}
	e.uvarint(uint64(len(mb.msgs)))
	e.uvarint(uint64(names))
	for _, m := range mb.msgs {
		e.b = append(e.b, m.Base...)
	}
	var prevUID uint32
	var prevMod uint64
	inNew, withExt := 0, 0
	for _, m := range mb.msgs {
		e.uvarint(uint64(m.UID - prevUID))
		e.uvarint(uint64(m.Flags))
		e.varint(int64(m.ModSeq - prevMod))
		e.uvarint(uint64(len(m.Base)))
		prevUID, prevMod = m.UID, m.ModSeq
		if m.New {
			inNew++
		}
		if len(mb.ext[m.UID]) > 0 {
			withExt++
		}
	}
	e.uvarint(uint64(inNew))
	prev := -1
	for i, m := range mb.msgs {
		if m.New {
			e.uvarint(uint64(i - prev))
			prev = i
		}
	}
	e.uvarint(uint64(withExt))
	prev = -1
	for i, m := range mb.msgs {
		if ext := mb.ext[m.UID]; len(ext) > 0 {
			e.uvarint(uint64(i - prev))
			e.strs(ext)
			prev = i
		}
	}
	// Names kept bare: the file gives them as they are, or the next
	// open would look for a name with ':2,' and list cur/ to find it.
	e.uvarint(uint64(len(mb.bareKept)))
	prev = -1
	for i, m := range mb.msgs {
		if mb.isKeptBareLocked(m.Base) {
			e.uvarint(uint64(i - prev))
			prev = i
		}
	}
	payload := e.b[start:]
	binary.LittleEndian.PutUint32(e.b[start-12:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint64(e.b[start-8:], uint64(len(payload)))
	return e.b
}

// stamp writes a stamp and since when it is known (0 for a stamp not
// taken).
func (e *indexEncoder) stamp(st stamp, at int64) {
	if !st.ok {
		st, at = stamp{}, 0
	}
	e.uvarint(st.ino)
	e.varint(st.size)
	e.varint(st.mtime)
	e.varint(st.ctime)
	e.varint(at)
}

// stamp reads what indexEncoder.stamp wrote.
func (d *indexDecoder) stamp() (stamp, int64) {
	st := stamp{ino: d.uvarint(), size: d.varint(), mtime: d.varint(), ctime: d.varint(), ok: true}
	return st, d.varint()
}

// smallUvarint is uvarint for the common one-byte case, inlined in the
// loop over a folder's messages.
func (d *indexDecoder) smallUvarint() uint64 {
	if d.off < len(d.s) {
		if c := d.s[d.off]; c < 0x80 {
			d.off++
			return uint64(c)
		}
	}
	return d.uvarint()
}

var errStateFormat = errors.New("mailstore: courriel-state: malformed")

// decodeState checks and decodes courriel-state. Whatever the file says,
// what it allocates stays within a small multiple of its size, and every
// name it gives is one a message file may have.
func decodeState(data string) (*folderState, error) {
	start := len(stateMagic) + 12
	if len(data) < start || data[:len(stateMagic)] != string(stateMagic) {
		return nil, errStateFormat
	}
	sum := binary.LittleEndian.Uint32([]byte(data[len(stateMagic) : len(stateMagic)+4]))
	n := binary.LittleEndian.Uint64([]byte(data[len(stateMagic)+4 : start]))
	payload := data[start:]
	if n != uint64(len(payload)) || crcString(payload) != sum {
		return nil, errStateFormat
	}
	d := indexDecoder{s: payload}
	u32 := func() uint32 {
		v := d.uvarint()
		if v > math.MaxUint32 {
			d.fail()
		}
		return uint32(v)
	}
	fixed32 := func() uint32 {
		if len(d.s)-d.off < 4 {
			d.fail()
			return 0
		}
		v := binary.LittleEndian.Uint32([]byte(d.s[d.off : d.off+4]))
		d.off += 4
		return v
	}
	s := &folderState{}
	s.uidValidity = u32()
	s.nextUID = u32()
	s.guid = d.str()
	s.hdrExt = d.strs()
	s.listRecords = int(u32()) // records of gone messages too: not bounded by the file
	s.listCRC = fixed32()
	s.listVer.st, s.listVer.at = d.stamp()
	s.listVer.crc = s.listCRC
	s.newSt, s.newAt = d.stamp()
	s.curSt, s.curAt = d.stamp()
	if s.modOK = d.present(); s.modOK {
		s.modCRC = fixed32()
		s.modVer.st, s.modVer.at = d.stamp()
		s.modVer.crc = s.modCRC
		s.highest = d.uvarint()
		s.reserved = d.uvarint()
		s.forgotten = d.uvarint()
		s.appended = int(u32())
		if k := d.countOf(2); k > 0 {
			s.vanished = make([]Vanished, k)
			for i := range s.vanished {
				s.vanished[i] = Vanished{UID: u32(), ModSeq: d.uvarint()}
			}
		}
	}
	count := d.countOf(5) // UID, flags, modseq, name length, a name byte: a byte each at least
	// The names, back to back: one scan finds any that would lead out of
	// the folder or hide in an info part.
	block := d.str()
	if strings.IndexByte(block, '/') >= 0 || strings.IndexByte(block, ':') >= 0 || strings.IndexByte(block, 0) >= 0 {
		d.fail()
	}
	s.msgs = make([]Msg, count)
	var uid uint32
	var mod uint64
	maxMod := uint64(math.MaxUint64)
	if s.modOK {
		maxMod = s.highest
	}
	off := 0
	for i := 0; i < count && d.err == nil; i++ {
		m := &s.msgs[i]
		step := d.smallUvarint()
		if step == 0 || step > uint64(math.MaxUint32-uid) {
			d.fail()
			break
		}
		uid += uint32(step)
		m.UID = uid
		m.Flags = Flags(d.smallUvarint())
		mod += uint64(d.varint())
		m.ModSeq = mod
		ln := int(d.smallUvarint())
		if ln == 0 || ln > 255 || ln > len(block)-off || block[off] == '.' || mod > maxMod {
			d.fail()
			break
		}
		m.Base = block[off : off+ln]
		off += ln
	}
	if off != len(block) {
		d.fail()
	}
	prev := -1
	for k := d.countOf(1); k > 0 && d.err == nil; k-- {
		step := d.uvarint()
		if step == 0 || step > uint64(count-1-prev) {
			d.fail()
			break
		}
		prev += int(step)
		s.msgs[prev].New = true
		s.anyNew = true
	}
	prev = -1
	for k := d.countOf(2); k > 0 && d.err == nil; k-- {
		step := d.uvarint()
		if step == 0 || step > uint64(count-1-prev) {
			d.fail()
			break
		}
		prev += int(step)
		if s.ext == nil {
			s.ext = make(map[uint32][]string)
		}
		s.ext[s.msgs[prev].UID] = d.strs()
	}
	prev = -1
	for k := d.countOf(1); k > 0 && d.err == nil; k-- {
		step := d.uvarint()
		if step == 0 || step > uint64(count-1-prev) || s.msgs[prev+int(step)].New {
			d.fail()
			break
		}
		prev += int(step)
		if s.bareKept == nil {
			s.bareKept = make(map[string]struct{})
		}
		s.bareKept[s.msgs[prev].Base] = struct{}{}
	}
	if d.err == nil && d.off != len(d.s) {
		d.fail()
	}
	if d.err != nil {
		return nil, errStateFormat
	}
	if s.uidValidity == 0 || (count > 0 && s.nextUID <= s.msgs[count-1].UID) {
		return nil, errStateFormat
	}
	if s.modOK {
		if s.reserved <= s.highest || s.forgotten > s.highest {
			return nil, errStateFormat
		}
		var prev uint64
		for _, v := range s.vanished {
			if v.ModSeq < prev || v.ModSeq > s.highest {
				return nil, errStateFormat // VanishedSince searches them in order
			}
			prev = v.ModSeq
		}
	}
	return s, nil
}

// crcString is the CRC-32C of s, read in place.
func crcString(s string) uint32 {
	return crc32.Checksum(unsafe.Slice(unsafe.StringData(s), len(s)), castagnoli)
}

// readString reads a file of the folder, of at most limit bytes, into a
// string, without the copy of a []byte conversion: the names decoded from
// it are slices of it.
func (mb *Mailbox) readString(name string, limit int64) (string, error) {
	f, err := mb.root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return "", fmt.Errorf("mailstore: %s: not a regular file of at most %d bytes", name, limit)
	}
	// One read for all of it (plus one to see the end), into a buffer
	// that is the string's: nothing writes to it once read.
	buf := make([]byte, st.Size()+1)
	n := 0
	for n < len(buf) {
		k, err := f.Read(buf[n:])
		n += k
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	if n == len(buf) {
		return "", fmt.Errorf("mailstore: %s: grew while read", name)
	}
	return unsafe.String(unsafe.SliceData(buf), n), nil
}

// loadStateLocked opens the folder from courriel-state when the uidlist
// it was made from is unchanged (ok false: read the folder the full way):
// its stamp verified settled and unchanged, or its content read whole to
// check its CRC. The messages come from the file; new/ and cur/ are
// listed only when their stamps changed or were not settled (new/ alone
// when cur/ is as it was); the modseqs come from the file when
// courriel-modseq is unchanged (by its stamp or its CRC), else from that
// file as loadModLocked reads it.
func (mb *Mailbox) loadStateLocked() (ok bool, err error) {
	data, err := mb.readString(StateFileName, maxStateSize)
	if err != nil {
		return false, nil
	}
	s, err := decodeState(data)
	if err != nil {
		return false, nil
	}
	listSt := mb.statLocked(uidlist.FileName)
	listVer := s.listVer
	if !listVer.trusts(listSt, s.listCRC) {
		v, ok := mb.verifyFileLocked(uidlist.FileName, s.listCRC)
		if !ok {
			return false, nil
		}
		listVer, listSt = v, v.st
	}
	mb.uidValidity, mb.nextUID, mb.guid, mb.hdrExt = s.uidValidity, s.nextUID, s.guid, s.hdrExt
	mb.listRecords, mb.listSt, mb.listCRC, mb.listCRCOK = s.listRecords, listSt, s.listCRC, true
	mb.listVer = listVer
	mb.msgs = make([]*Msg, len(s.msgs))
	for i := range s.msgs {
		mb.msgs[i] = &s.msgs[i]
	}
	mb.byBase, mb.listed, mb.ext = nil, nil, s.ext
	mb.bare, mb.bareKept = nil, s.bareKept
	mb.stale, mb.staleKnown, mb.listRead = nil, mb.listRecords == len(mb.msgs), true
	mb.newSt, mb.newAt, mb.curSt, mb.curAt = s.newSt, s.newAt, s.curSt, s.curAt
	modOK := s.modOK
	var modVer fileVer
	if modOK {
		modVer = s.modVer
		if !modVer.trusts(mb.statLocked(ModSeqFileName), s.modCRC) {
			modVer, modOK = mb.verifyFileLocked(ModSeqFileName, s.modCRC)
		}
	}
	newSt, curSt := mb.statLocked("new"), mb.statLocked("cur")
	trusted := !s.anyNew && newSt == s.newSt && settled(s.newSt, s.newAt) && curSt == s.curSt && settled(s.curSt, s.curAt)
	var recorded map[uint32]modRecord
	if !trusted {
		if modOK {
			// The flags the modseqs were recorded with, before the
			// listing changes them.
			recorded = make(map[uint32]modRecord, len(s.msgs))
			for _, m := range s.msgs {
				recorded[m.UID] = modRecord{flags: m.Flags, modseq: m.ModSeq}
			}
		}
		if err := mb.syncLocked(true, nil); err != nil {
			return false, err
		}
	}
	switch {
	case !modOK:
		mb.loadModLocked()
	case trusted:
		ms := &mb.mod
		*ms = modState{highest: s.highest, reserved: s.reserved, forgotten: s.forgotten,
			vanished: s.vanished, appended: s.appended, crc: s.modCRC, crcOK: true, ver: modVer}
	default:
		mb.applyModFileLocked(&modFile{uidValidity: mb.uidValidity, highest: s.highest, reserved: s.reserved,
			forgotten: s.forgotten, msgs: recorded, vanished: s.vanished,
			records: s.appended + len(s.msgs) + len(s.vanished)}, nil)
		if !mb.mod.needSnapshot {
			mb.mod.appended = s.appended
		}
		mb.mod.crc, mb.mod.crcOK, mb.mod.ver = s.modCRC, true, modVer
	}
	if trusted && modOK {
		// As the file has it: a stamp verified only now is written.
		mb.savedState = mb.stateSummaryLocked()
		mb.savedState.listVer, mb.savedState.modVer = s.listVer.known(), s.modVer.known()
	}
	return true, nil
}
