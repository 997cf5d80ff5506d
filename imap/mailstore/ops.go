package mailstore

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
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
	kept := mb.msgs[:0]
	var firstErr error
	for _, m := range mb.msgs {
		if (onlyDeleted && m.Flags&FlagDeleted == 0) || (filter != nil && !filter(m.UID)) {
			kept = append(kept, m)
			continue
		}
		if err := mb.root.Remove(m.Path()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if firstErr == nil {
				firstErr = fmt.Errorf("mailstore: expunge: %w", err)
			}
			kept = append(kept, m)
			continue
		}
		delete(mb.byBase, m.Base)
		delete(mb.cache, m.UID)
		gone = append(gone, m.UID)
	}
	for i := len(kept); i < len(mb.msgs); i++ {
		mb.msgs[i] = nil
	}
	mb.msgs = kept
	for _, uid := range gone {
		mb.appendChangeLocked(Change{Kind: Expunged, UID: uid})
	}
	mb.restampLocked(clean)
	return gone, firstErr
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

type pending struct {
	tmp   string
	base  string
	flags []string
	date  int64
	size  int64
}

// commitLocked moves written temp files into cur/, fsyncs cur/ and assigns
// their UIDs in one uidlist rewrite (RFC 4315 needs them for APPENDUID and
// COPYUID).
func (mb *Mailbox) commitLocked(ps []pending) ([]uint32, error) {
	clean := mb.cleanLocked()
	type placed struct {
		m *Msg
		p pending
	}
	var done []placed
	cleanup := func() {
		for _, d := range done {
			_ = mb.root.Remove("cur/" + FileName(d.m.Base, d.m.Flags))
		}
		for _, p := range ps {
			_ = mb.root.Remove("tmp/" + p.tmp)
		}
	}
	for _, p := range ps {
		bits, err := mb.flagBitsLocked(p.flags, true)
		if err != nil {
			cleanup()
			return nil, err
		}
		m := &Msg{Base: p.base, Flags: bits}
		if err := mb.root.Rename("tmp/"+p.tmp, "cur/"+FileName(p.base, bits)); err != nil {
			cleanup()
			return nil, fmt.Errorf("mailstore: deliver: %w", err)
		}
		done = append(done, placed{m, p})
	}
	if d, err := mb.root.Open("cur"); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			cleanup()
			return nil, fmt.Errorf("mailstore: fsync cur: %w", err)
		}
	}
	uid, gid := mb.owner.ids()
	lk, err := acquireUIDList(mb, uid, gid)
	if err != nil {
		cleanup()
		return nil, err
	}
	defer lk.Release()
	if st := statStamp(mb.root, "dovecot-uidlist"); st != mb.listSt {
		if err := mb.readUIDListLocked(); err != nil {
			cleanup()
			return nil, err
		}
	}
	uids := make([]uint32, len(done))
	mb.loadCacheLocked()
	for i, d := range done {
		d.m.UID = mb.nextUID
		mb.nextUID++
		mb.msgs = append(mb.msgs, d.m)
		mb.byBase[d.m.Base] = d.m
		uids[i] = d.m.UID
		mb.cache[d.m.UID] = &Cached{Size: d.p.size, Date: d.p.date}
		mb.cacheDirty = true
		mb.appendChangeLocked(Change{Kind: Added, UID: d.m.UID})
	}
	if err := mb.writeUIDListLocked(lk); err != nil {
		return nil, err
	}
	mb.restampLocked(clean)
	return uids, nil
}

// Append stores a message (RFC 9051 §6.3.12) and returns its UID.
func (mb *Mailbox) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	if date.IsZero() {
		date = time.Now()
	}
	tmp := mb.reg.uniqueBase()
	psize, vsize, err := mb.writeTemp(tmp, r, date)
	if err != nil {
		return 0, err
	}
	base := tmp + ",S=" + strconv.FormatInt(psize, 10) + ",W=" + strconv.FormatInt(vsize, 10)
	mb.mu.Lock()
	defer mb.mu.Unlock()
	uids, err := mb.commitLocked([]pending{{tmp: tmp, base: base, flags: flags, date: date.UnixNano(), size: vsize}})
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

// CopyTo copies messages into dst, keeping flags and internal dates, and
// returns the source UIDs copied and their new UIDs, in the same order.
func (mb *Mailbox) CopyTo(dst *Mailbox, uids []uint32) (src, dstUIDs []uint32, err error) {
	var ps []pending
	defer func() {
		if err != nil {
			for _, p := range ps {
				_ = dst.root.Remove("tmp/" + p.tmp)
			}
		}
	}()
	for _, uid := range uids {
		f, msg, oerr := mb.Open(uid)
		if errors.Is(oerr, fs.ErrNotExist) {
			continue // expunged meanwhile: RFC 9051 lets COPY skip it
		}
		if oerr != nil {
			return nil, nil, fmt.Errorf("mailstore: copy: %w", oerr)
		}
		size, date, merr := mb.Meta(uid)
		if merr != nil {
			f.Close()
			return nil, nil, merr
		}
		tmp := mb.reg.uniqueBase()
		psize, vsize, werr := dst.writeTemp(tmp, f, date)
		f.Close()
		if werr != nil {
			return nil, nil, werr
		}
		_ = size
		ps = append(ps, pending{
			tmp:   tmp,
			base:  tmp + ",S=" + strconv.FormatInt(psize, 10) + ",W=" + strconv.FormatInt(vsize, 10),
			flags: mb.FlagNames(msg.Flags &^ 0),
			date:  date.UnixNano(),
			size:  vsize,
		})
		src = append(src, uid)
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	dstUIDs, err = dst.commitLocked(ps)
	if err != nil {
		ps = nil // commitLocked cleaned up
		return nil, nil, err
	}
	return src, dstUIDs, nil
}
