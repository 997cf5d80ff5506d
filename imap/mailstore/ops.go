package mailstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// StoreOp is how STORE combines the given flags with a message's flags.
type StoreOp int

const (
	StoreReplace StoreOp = iota // FLAGS: the message gets exactly these
	StoreAdd                    // +FLAGS
	StoreRemove                 // -FLAGS
)

// StoreFlags changes the flags of uids and returns their new flags (ok false
// for messages that are gone). source is the session, whose own changes are
// not echoed back to it through the change log.
func (mb *Mailbox) StoreFlags(uids []uint32, op StoreOp, flags []string, source *Watcher) ([]Flags, []bool, error) {
	if op != StoreReplace && op != StoreAdd && op != StoreRemove {
		return nil, nil, fmt.Errorf("mailstore: unknown store operation %d", op)
	}
	mb.mu.Lock()
	defer mb.mu.Unlock()
	bits, err := mb.flagBitsLocked(flags, op != StoreRemove)
	if err != nil {
		return nil, nil, err
	}
	clean := mb.cleanLocked()
	out := make([]Flags, len(uids))
	ok := make([]bool, len(uids))
	var vanished bool
	for i, uid := range uids {
		m := mb.findLocked(uid)
		if m == nil {
			continue
		}
		var nf Flags
		switch op {
		case StoreReplace:
			nf = (m.Flags &^ (systemMask | keywordMask)) | bits
		case StoreAdd:
			nf = m.Flags | bits
		case StoreRemove:
			nf = m.Flags &^ bits
		}
		if nf != m.Flags || m.New {
			from := m.Path()
			to := "cur/" + FileName(m.Base, nf)
			if err := mb.renameLocked(from, to); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					vanished = true // expunged by someone else: resync below
					continue
				}
				return nil, nil, fmt.Errorf("mailstore: rename %s: %w", from, err)
			}
			changed := nf != m.Flags
			m.Flags, m.New = nf, false
			if changed {
				mb.appendChangeLocked(Change{Kind: FlagsChanged, UID: uid, Source: source})
			}
		}
		out[i], ok[i] = m.Flags, true
	}
	mb.restampLocked(clean)
	if vanished {
		_ = mb.syncLocked(true, nil)
	}
	return out, ok, nil
}

const keywordMask = Flags(1)<<26 - 1

// cleanLocked reports whether the directories are as last synchronised, so
// that an operation of ours may update the stamps afterwards without hiding
// a change made by someone else.
func (mb *Mailbox) cleanLocked() bool {
	return statStamp(mb.root, "new") == mb.newSt && statStamp(mb.root, "cur") == mb.curSt
}

func (mb *Mailbox) restampLocked(clean bool) {
	if clean {
		mb.newSt = statStamp(mb.root, "new")
		mb.curSt = statStamp(mb.root, "cur")
	}
}

// Expunge removes messages. With onlyDeleted, only those flagged \Deleted;
// filter (nil = all) restricts to some UIDs. The expunges are logged for
// every watcher, the caller's included: its EXPUNGE responses come from the
// log like everybody's.
func (mb *Mailbox) Expunge(filter func(uid uint32) bool, onlyDeleted bool) ([]uint32, error) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	clean := mb.cleanLocked()
	var gone []uint32
	goneSet := map[uint32]bool{}
	var firstErr error
	for _, m := range mb.msgs {
		if (onlyDeleted && m.Flags&FlagDeleted == 0) || (filter != nil && !filter(m.UID)) {
			continue
		}
		if err := mb.root.Remove(m.Path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("mailstore: expunge: %w", err)
			}
			continue
		}
		gone = append(gone, m.UID)
		goneSet[m.UID] = true
	}
	mb.dropLocked(goneSet)
	mb.restampLocked(clean)
	return gone, firstErr
}

// dropLocked forgets the messages whose UIDs are in gone and logs their
// expunge for every watcher, in ascending UID order.
func (mb *Mailbox) dropLocked(gone map[uint32]bool) {
	if len(gone) == 0 {
		return
	}
	kept := mb.msgs[:0]
	var expunged []uint32
	for _, m := range mb.msgs {
		if !gone[m.UID] {
			kept = append(kept, m)
			continue
		}
		delete(mb.byBase, m.Base)
		delete(mb.cache, m.UID)
		expunged = append(expunged, m.UID)
	}
	for i := len(kept); i < len(mb.msgs); i++ {
		mb.msgs[i] = nil
	}
	mb.msgs = kept
	for _, uid := range expunged {
		mb.appendChangeLocked(Change{Kind: Expunged, UID: uid})
	}
}

// writeTemp writes r into tmp/<name>, converting CRLF to LF (the form the
// delivery side stores) and returns the stored and the CRLF sizes.
func (mb *Mailbox) writeTemp(name string, r io.Reader, mtime time.Time) (psize, vsize int64, err error) {
	tmp := "tmp/" + name
	f, err := mb.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, 0, fmt.Errorf("mailstore: create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			_ = mb.root.Remove(tmp)
		}
	}()
	br := bufio.NewReaderSize(r, 64*1024)
	bw := bufio.NewWriterSize(f, 64*1024)
	for {
		line, rerr := br.ReadSlice('\n')
		if n := len(line); n >= 2 && line[n-1] == '\n' && line[n-2] == '\r' {
			line = append(line[:n-2], '\n')
		}
		if len(line) > 0 {
			if _, err := bw.Write(line); err != nil {
				return 0, 0, err
			}
			psize += int64(len(line))
			vsize += int64(len(line))
			if line[len(line)-1] == '\n' {
				vsize++
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil && !errors.Is(rerr, bufio.ErrBufferFull) {
			return 0, 0, fmt.Errorf("mailstore: read message: %w", rerr)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: fsync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return 0, 0, fmt.Errorf("mailstore: close %s: %w", tmp, err)
	}
	ok = true
	mb.owner.chown(mb.root, tmp)
	if !mtime.IsZero() {
		_ = mb.root.Chtimes(tmp, mtime, mtime)
	}
	return psize, vsize, nil
}
