package mailstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"courriel/imap/uidlist"
)

// StateFileName is courriel's record of a folder as it last had it in
// memory: every message's UID, base name, flags and modseq, the
// dovecot-uidlist and courriel-modseq contents they came from (by CRC-32C)
// and the stamps of new/ and cur/. Opening a folder whose files still
// match it reads this file alone, where the full way parses the uidlist,
// lists cur/ (100,000 names) and parses the modseq file, as Dovecot trusts
// its index while the directories' stamps are unchanged. Each part is
// checked against what it comes from, and a part that does not match is
// read the full way; deleting the file is always safe.
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
//	uvarint uidlist records; fixed32 uidlist CRC;
//	stamp new/, stamp cur/ (uvarint inode, varint size, mtime, ctime, at);
//	byte 1 then the modseq state, or 0: fixed32 file CRC, uvarint highest,
//	reserved, forgotten, appended, uvarint count of expunges then uvarint
//	UID and modseq each;
//	uvarint message count, then per message: uvarint UID step from the
//	previous one, uvarint flags >> 32, uvarint flags & 0xffffffff, varint
//	modseq step from the previous one, byte in new/, strings uidlist
//	extensions, string base name.
//
// A string is a uvarint length and its bytes, strings a uvarint count of
// them.
var stateMagic = []byte("COURRIEL-STATE 1\n")

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

// folderState is courriel-state decoded.
type folderState struct {
	uidValidity, nextUID uint32
	guid                 string
	hdrExt               []string
	listRecords          int
	listCRC              uint32
	newSt, curSt         stamp
	newAt, curAt         int64

	modOK                        bool
	modCRC                       uint32
	highest, reserved, forgotten uint64
	appended                     int
	vanished                     []Vanished

	msgs []Msg // ascending UIDs, ModSeq set; one array for the folder
}

// stateSummary says whether the folder changed since courriel-state was
// last read or written: every change of a message gets a modseq, and every
// change of a file or a directory's stamp is here.
type stateSummary struct {
	newSt, curSt         stamp
	newAt, curAt         int64
	listCRC, modCRC      uint32
	highest, reserved    uint64
	uidValidity, nextUID uint32
	msgs, listRecords    int
}

func (mb *Mailbox) stateSummaryLocked() stateSummary {
	return stateSummary{
		newSt: mb.newSt, curSt: mb.curSt, newAt: mb.newAt, curAt: mb.curAt,
		listCRC: mb.listCRC, modCRC: mb.mod.crc, highest: mb.mod.highest, reserved: mb.mod.reserved,
		uidValidity: mb.uidValidity, nextUID: mb.nextUID, msgs: len(mb.msgs), listRecords: mb.listRecords,
	}
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

// settleSlack is waited past a stamp's margin before confirming it: more
// than a tick of the kernel's coarse clock.
const settleSlack = 20 * time.Millisecond

// saveStateLocked writes courriel-state when the folder changed since it
// was read or written. No fsync: a file a crash leaves short or empty
// fails its CRC, and one a crash leaves older than the folder no longer
// matches its files, so the folder is read the full way.
func (mb *Mailbox) saveStateLocked() {
	if mb.detached || !mb.loaded || mb.listDirty || len(mb.listed) > 0 || !mb.listCRCOK {
		return
	}
	ms := &mb.mod
	sum := mb.stateSummaryLocked()
	if sum == mb.savedState {
		return
	}
	data := mb.encodeStateLocked(ms.crcOK && len(ms.buf) == 0 && !ms.needSnapshot && !ms.mustSync)
	tmp := StateFileName + ".tmp"
	out, err := mb.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return
	}
	_, err = out.Write(data)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		mb.owner.chown(mb.root, tmp)
		err = mb.root.Rename(tmp, StateFileName)
	}
	if err != nil {
		_ = mb.root.Remove(tmp)
		return
	}
	mb.savedState = sum
}

func (mb *Mailbox) encodeStateLocked(modOK bool) []byte {
	e := indexEncoder{b: make([]byte, 0, 4096+len(mb.msgs)*64)}
	e.b = append(e.b, stateMagic...)
	e.b = append(e.b, make([]byte, 12)...) // CRC and length, below
	start := len(e.b)
	e.uvarint(uint64(mb.uidValidity))
	e.uvarint(uint64(mb.nextUID))
	e.str(mb.guid)
	e.strs(mb.hdrExt)
	e.uvarint(uint64(mb.listRecords))
	e.b = binary.LittleEndian.AppendUint32(e.b, mb.listCRC)
	newAt := mb.newAt
	if !mb.trustedAt.IsZero() {
		newAt = 0 // Delivered's stamp: new/ may hold what no listing saw
	}
	for _, d := range [...]struct {
		st stamp
		at int64
	}{{mb.newSt, newAt}, {mb.curSt, mb.curAt}} {
		if !d.st.ok {
			d.at = 0
		}
		e.uvarint(d.st.ino)
		e.varint(d.st.size)
		e.varint(d.st.mtime)
		e.varint(d.st.ctime)
		e.varint(d.at)
	}
	ms := &mb.mod
	if e.present(modOK) {
		e.b = binary.LittleEndian.AppendUint32(e.b, ms.crc)
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
	var prevUID uint32
	var prevMod uint64
	for _, m := range mb.msgs {
		e.uvarint(uint64(m.UID - prevUID))
		e.uvarint(uint64(m.Flags >> 32))
		e.uvarint(uint64(m.Flags & 0xffffffff))
		e.varint(int64(m.ModSeq - prevMod))
		e.present(m.New)
		e.strs(m.Ext)
		e.str(m.Base)
		prevUID, prevMod = m.UID, m.ModSeq
	}
	payload := e.b[start:]
	binary.LittleEndian.PutUint32(e.b[start-12:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint64(e.b[start-8:], uint64(len(payload)))
	return e.b
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
	for _, p := range [...]struct {
		st *stamp
		at *int64
	}{{&s.newSt, &s.newAt}, {&s.curSt, &s.curAt}} {
		p.st.ino = d.uvarint()
		p.st.size = d.varint()
		p.st.mtime = d.varint()
		p.st.ctime = d.varint()
		*p.at = d.varint()
		p.st.ok = true
	}
	if s.modOK = d.present(); s.modOK {
		s.modCRC = fixed32()
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
	count := d.countOf(6) // UID, flags twice, modseq, new, extensions: a byte each at least
	s.msgs = make([]Msg, count)
	var uid uint32
	var mod uint64
	for i := 0; i < count && d.err == nil; i++ {
		m := &s.msgs[i]
		step := d.uvarint()
		if step == 0 || step > uint64(math.MaxUint32-uid) {
			d.fail()
			break
		}
		uid += uint32(step)
		hi, lo := d.uvarint(), d.uvarint()
		if hi > math.MaxUint32 || lo > math.MaxUint32 {
			d.fail()
		}
		mod += uint64(d.varint())
		m.UID, m.Flags, m.ModSeq = uid, Flags(hi<<32|lo), mod
		m.New = d.present()
		m.Ext = d.strs()
		m.Base = d.str()
		if !validBase(m.Base) {
			d.fail()
		}
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
		for _, m := range s.msgs {
			if m.ModSeq > s.highest {
				return nil, errStateFormat
			}
		}
	}
	return s, nil
}

// validBase reports whether a base name from courriel-state is one a
// message file may have in cur/ or new/: a single path component, no info
// part, not hidden.
func validBase(b string) bool {
	if b == "" || len(b) > 255 || b[0] == '.' {
		return false
	}
	for i := 0; i < len(b); i++ {
		if c := b[i]; c == '/' || c == ':' || c == 0 {
			return false
		}
	}
	return true
}

// crcString is the CRC-32C of s, without a copy of all of it.
func crcString(s string) uint32 {
	var buf [32 << 10]byte
	var sum uint32
	for len(s) > 0 {
		n := copy(buf[:], s)
		sum = crc32.Update(sum, castagnoli, buf[:n])
		s = s[n:]
	}
	return sum
}

// readString reads a file of the folder into a string, without the copy
// of a []byte conversion: the names decoded from it are slices of it.
func (mb *Mailbox) readString(name string) (string, error) {
	f, err := mb.root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() || st.Size() > maxStateSize {
		return "", fmt.Errorf("mailstore: %s: not a regular file of at most %d bytes", name, maxStateSize)
	}
	var b strings.Builder
	b.Grow(int(st.Size()) + 1)
	if _, err := io.Copy(&b, io.LimitReader(f, maxStateSize+1)); err != nil {
		return "", err
	}
	return b.String(), nil
}

// fileCRC is the CRC-32C of a file of the folder, read in pieces.
func (mb *Mailbox) fileCRC(name string) (uint32, bool) {
	f, err := mb.root.Open(name)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var buf [64 << 10]byte
	var sum uint32
	for {
		n, err := f.Read(buf[:])
		sum = crc32.Update(sum, castagnoli, buf[:n])
		if err == io.EOF {
			return sum, true
		}
		if err != nil {
			return 0, false
		}
	}
}

// loadStateLocked opens the folder from courriel-state when the uidlist
// it was made from is unchanged (ok false: read the folder the full way).
// The messages come from the file; new/ and cur/ are listed only when
// their stamps changed or were not settled (new/ alone when cur/ is as it
// was); the modseqs come from the file when courriel-modseq is unchanged,
// else from that file as loadModLocked reads it.
func (mb *Mailbox) loadStateLocked() (ok bool, err error) {
	data, err := mb.readString(StateFileName)
	if err != nil {
		return false, nil
	}
	s, err := decodeState(data)
	if err != nil {
		return false, nil
	}
	listSt := mb.statLocked(uidlist.FileName)
	if crc, ok := mb.fileCRC(uidlist.FileName); !ok || crc != s.listCRC {
		return false, nil
	}
	mb.uidValidity, mb.nextUID, mb.guid, mb.hdrExt = s.uidValidity, s.nextUID, s.guid, s.hdrExt
	mb.listRecords, mb.listSt, mb.listCRC, mb.listCRCOK = s.listRecords, listSt, s.listCRC, true
	mb.msgs = make([]*Msg, len(s.msgs))
	anyNew := false
	for i := range s.msgs {
		mb.msgs[i] = &s.msgs[i]
		anyNew = anyNew || s.msgs[i].New
	}
	mb.byBase, mb.listed = nil, nil
	mb.newSt, mb.newAt, mb.curSt, mb.curAt = s.newSt, s.newAt, s.curSt, s.curAt
	modOK := s.modOK
	if modOK {
		crc, ok := mb.fileCRC(ModSeqFileName)
		modOK = ok && crc == s.modCRC
	}
	newSt, curSt := mb.statLocked("new"), mb.statLocked("cur")
	trusted := !anyNew && newSt == s.newSt && settled(s.newSt, s.newAt) && curSt == s.curSt && settled(s.curSt, s.curAt)
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
			vanished: s.vanished, appended: s.appended, crc: s.modCRC, crcOK: true}
	default:
		mb.applyModFileLocked(&modFile{uidValidity: mb.uidValidity, highest: s.highest, reserved: s.reserved,
			forgotten: s.forgotten, msgs: recorded, vanished: s.vanished,
			records: s.appended + len(s.msgs) + len(s.vanished)}, nil)
		if !mb.mod.needSnapshot {
			mb.mod.appended = s.appended
		}
		mb.mod.crc, mb.mod.crcOK = s.modCRC, true
	}
	if trusted && modOK {
		mb.savedState = mb.stateSummaryLocked()
	}
	return true, nil
}
