package mailstore

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io/fs"
)

// PendingFlagsFileName holds the flag changes whose renames still waited
// for the uidlist lock when the folder was closed (see Mailbox.dirty):
// another process held the lock through the change and through the
// close's own wait. Dovecot 2.3 keeps such a change in its index and
// renames the file at a later sync; courriel keeps no index of flags, so
// the change is written here at the close and made again by the next
// open of the folder, under the lock, on the flags the file has then (as
// Dovecot applies its log to a file another program renamed meanwhile). A
// flag set by STORE thus ends up in the file's name, as a Dovecot user
// expects, rather than being lost with the folder's memory. Only the
// next courriel to open the folder reads it: Dovecot, reading the names,
// sees the old flags until then.
//
// The file is consumed by the open that reads it (removed once its
// changes are in memory, which a later close writes again when they still
// wait): a crash while the folder is open loses them, as it loses any
// change held in memory only.
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
// (syncFolder): it is the only record of a change the user made. Best effort:
// a folder we may not write loses them, as before.
func (mb *Mailbox) savePendingLocked() {
	if mb.closed || mb.detached || !mb.loaded {
		return
	}
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
	err := mb.writeFileLocked(PendingFlagsFileName, syncFolder, encodePending(l))
	if err == nil || errors.Is(err, errFolderSync) {
		mb.pendingFile = true
	}
}

// loadPendingLocked makes again, as the folder is opened, the flag changes
// a close left in PendingFlagsFileName: each on the flags the message's
// file has now (another program may have renamed it since: its change
// stands beside ours), given a modseq as any flag change. They join dirty
// and are renamed at once if the uidlist lock is free, else at a later
// sync (see flagChange); the file is removed once they are in memory. A
// change of a message that is gone is dropped, as is a malformed file.
func (mb *Mailbox) loadPendingLocked() {
	data, err := mb.readString(PendingFlagsFileName)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	mb.pendingFile = true
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
	if err := mb.root.Remove(PendingFlagsFileName); err == nil || errors.Is(err, fs.ErrNotExist) {
		mb.pendingFile = false
	}
}
