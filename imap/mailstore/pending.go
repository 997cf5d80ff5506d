package mailstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
)

// PendingFlagsFileName holds the flag changes whose renames wait for the
// uidlist lock (see Mailbox.dirty): another process held the lock through
// the change. Dovecot 2.3 keeps such a change in its index and renames the
// file at a later sync; courriel keeps no index of flags, so the change is
// written here, and made again by the next open of the folder, under the
// lock, on the flags the file has then (as Dovecot applies its log to a
// file another program renamed meanwhile). A flag set by STORE thus ends
// up in the file's name, as a Dovecot user expects, rather than being lost
// with the folder's memory. Only the next courriel to open the folder
// reads it: Dovecot, reading the names, sees the old flags until then.
//
// The file holds every change still waiting, and only those: it is
// written when a change is deferred, before the command that made it is
// answered (see flagChange), written again or removed when renames that
// waited are made or their messages go (see recordPendingLocked), and
// written with fsync when the folder closes. A crash of courriel (kill -9)
// while the folder is open thus loses none of them (a power loss may lose
// the last: see recordPendingLocked); a change made, its
// rename done and its entry not yet taken out, is made again on the name
// it gave, which changes nothing. The open that reads the file makes the
// renames it can, and leaves in the file those still waiting.
const PendingFlagsFileName = "courriel-pending-flags"

// pendingMagic starts the file; after it the CRC-32C of the payload (4
// bytes, little endian) and the payload: uvarint count, then per change
// string base name (uvarint length and bytes), uvarint the flags of the
// file's name when the change was made, uvarint the flags the change
// gave.
const pendingMagic = "COURRIEL-PENDING-FLAGS 1\n"

// maxPendingSize bounds what is read of the file: some 50 bytes a change,
// a 100,000-message folder whose every file waits fits many times over.
const maxPendingSize = 64 << 20

// pendingFlag is one change of PendingFlagsFileName: the message of base
// name base had flags disk in its file's name, and was given want.
type pendingFlag struct {
	base       string
	disk, want Flags
}

func encodePending(l []pendingFlag) []byte {
	e := indexEncoder{b: make([]byte, 0, len(pendingMagic)+4+len(l)*64)}
	e.b = append(e.b, pendingMagic...)
	e.b = append(e.b, 0, 0, 0, 0) // CRC, below
	start := len(e.b)
	e.uvarint(uint64(len(l)))
	for _, p := range l {
		e.str(p.base)
		e.uvarint(uint64(p.disk))
		e.uvarint(uint64(p.want))
	}
	binary.LittleEndian.PutUint32(e.b[start-4:], crc32.Checksum(e.b[start:], castagnoli))
	return e.b
}

var errPendingFormat = errors.New("mailstore: " + PendingFlagsFileName + ": malformed")

func decodePending(data string) ([]pendingFlag, error) {
	if len(data) < len(pendingMagic)+4 || data[:len(pendingMagic)] != pendingMagic {
		return nil, errPendingFormat
	}
	payload := data[len(pendingMagic)+4:]
	if binary.LittleEndian.Uint32([]byte(data[len(pendingMagic):])) != crc32.Checksum([]byte(payload), castagnoli) {
		return nil, errPendingFormat
	}
	d := indexDecoder{s: payload}
	n := d.countOf(3) // a name's length and two flag sets at least
	out := make([]pendingFlag, 0, n)
	for range n {
		p := pendingFlag{base: d.str(), disk: Flags(d.uvarint()), want: Flags(d.uvarint())}
		out = append(out, p)
	}
	if d.err != nil || d.off != len(d.s) {
		return nil, errPendingFormat
	}
	return out, nil
}

// savePendingLocked writes the changes of dirty into PendingFlagsFileName
// when the folder is closed with renames still waiting for the lock, or
// removes the file when nothing waits. Fsynced with the folder
// (syncFolder): after the close it is the only record of a change the user
// made, and a close is rare enough to pay for it.
func (mb *Mailbox) savePendingLocked() {
	mb.writePendingLocked(syncFolder)
}

// recordPendingLocked brings PendingFlagsFileName up to date with dirty
// when dirty changed since it was written (pendingStale): a change
// deferred, or one that waited made or dropped. One write for all the
// changes of a command, whatever their number; none while no rename waits
// or waited (the lock was free: pendingStale is never set).
//
// Without fsync, as Dovecot 2.3 appends a flag change to its transaction
// log (dovecot.index.log) under its default mail_fsync=optimized: a write
// alone (mail-transaction-log-append.c, log_buffer_write, fdatasync only
// with want_fsync, which a flag change does not set: the maildir box's
// index has fsync_mask 0, index-storage.c). The page cache outlives the
// process, so a crash of courriel keeps the file; a power loss may lose
// it, or leave one that is short or empty, which its CRC rejects (the
// changes are then lost, as Dovecot's log may lose its last writes). The
// close writes it with fsync (savePendingLocked).
func (mb *Mailbox) recordPendingLocked() {
	if mb.pendingStale {
		mb.writePendingLocked(noSync)
	}
}

// writePendingLocked writes the changes of dirty into PendingFlagsFileName
// with durability d, or removes the file when nothing waits. Best effort:
// a folder we may not write keeps them in memory only, as before, and the
// failure is logged; the next change of dirty tries again.
func (mb *Mailbox) writePendingLocked(d durability) {
	if mb.closed || mb.detached || !mb.loaded {
		return
	}
	mb.pendingStale = false
	if len(mb.dirty) == 0 {
		if mb.pendingFile {
			if err := mb.root.Remove(PendingFlagsFileName); err == nil || errors.Is(err, fs.ErrNotExist) {
				mb.pendingFile = false
			}
		}
		return
	}
	l := make([]pendingFlag, 0, len(mb.dirty))
	for m, disk := range mb.dirty {
		if mb.findLocked(m.UID) == m {
			l = append(l, pendingFlag{base: m.Base, disk: disk, want: m.Flags})
		}
	}
	err := mb.writeFileLocked(PendingFlagsFileName, d, encodePending(l))
	if err == nil || errors.Is(err, errFolderSync) {
		mb.pendingFile = true
	}
	if err != nil {
		mb.reg.log().Warn("mailstore: flag changes waiting for the uidlist lock not written to "+PendingFlagsFileName, "folder", mb.root.Name(), "err", err)
	}
}

// loadPendingLocked makes again, as the folder is opened, the flag changes
// left in PendingFlagsFileName (by a close, or by a courriel that crashed):
// each on the flags the message's file has now (another program may have
// renamed it since: its change stands beside ours), given a modseq as any
// flag change. They join dirty and are renamed at once if the uidlist lock
// is free, else at a later sync (see flagChange); the file is then removed,
// or written again with those still waiting. A change of a message that is
// gone is dropped, as is a malformed file.
func (mb *Mailbox) loadPendingLocked() {
	data, err := mb.readString(PendingFlagsFileName, maxStateSize)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	mb.pendingFile = true
	mb.pendingStale = true // rewritten below, or removed
	var l []pendingFlag
	if err == nil && len(data) <= maxPendingSize {
		l, _ = decodePending(data)
	}
	for _, p := range l {
		m := mb.baseMapLocked()[p.base]
		if m == nil {
			continue
		}
		fl := mb.diskFlagsLocked(m)
		want := fl&^(p.disk&^p.want) | p.want&^p.disk
		if want == m.Flags {
			continue
		}
		mb.deferFlagsLocked(m, want)
		mb.noteModLocked(Change{Kind: FlagsChanged, UID: m.UID}, m)
	}
	mb.tryFlushDirtyLocked(0)
	mb.recordPendingLocked()
}
