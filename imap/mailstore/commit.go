package mailstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// pending is a message written (or linked) into tmp/, waiting for its UID.
type pending struct {
	tmp   string   // name in tmp/
	base  string   // base name it gets in cur/
	flags []string // IMAP flag names, mapped to the folder's keywords on commit
	c     Cached   // metadata known already: size and date, a copy's envelope and body
}

// commitLocked moves written tmp/ files into cur/ and numbers them (RFC 4315
// needs the UIDs for APPENDUID and COPYUID). The uidlist lock is taken
// before the first file appears in cur/, so that no other process (Dovecot,
// another courriel) finds a file without a UID and numbers it itself; cur/
// is fsynced before the UIDs are written, so a UID never names a file a
// crash could lose.
func (mb *Mailbox) commitLocked(ps []pending) ([]uint32, error) {
	removeTmps := func() {
		for _, p := range ps {
			_ = mb.root.Remove("tmp/" + p.tmp)
		}
	}
	if mb.closed {
		removeTmps()
		return nil, errors.New("mailstore: folder closed")
	}
	clean := mb.cleanLocked()
	lk, err := acquireUIDList(mb)
	if err != nil {
		removeTmps()
		return nil, err
	}
	defer lk.Release()
	if err := mb.refreshHeldLocked(lk); err != nil {
		removeTmps()
		return nil, err
	}
	bits := make([]Flags, len(ps))
	extras := make([][]string, len(ps))
	for i, p := range ps {
		if bits[i], extras[i], err = mb.flagBitsLocked(p.flags, true); err != nil {
			removeTmps()
			return nil, err
		}
	}
	anyExtra := false
	for i, p := range ps {
		if len(extras[i]) > 0 {
			// Past the letters: kept by base name, the message is
			// stored whatever the size of the keyword table.
			kept, dropped := mb.extraKeepLocked(extras[i])
			if len(dropped) > 0 {
				mb.reg.log().Warn("mailstore: keywords not kept, too many in the folder or on the message", "folder", mb.root.Name(), "keywords", dropped)
			}
			if mb.setExtraLocked(p.base, kept) {
				anyExtra = true
			}
		}
	}
	if anyExtra {
		// Durable before the files are in cur/, where a crash would
		// leave them without their keywords; not kept, the messages are
		// not stored (rather than lose their keywords). An entry whose
		// file does not follow is dropped at the next write or open.
		if err := mb.saveExtraLocked(syncFolder); err != nil {
			for _, p := range ps {
				mb.dropExtraLocked(p.base)
			}
			mb.extraStale = false
			removeTmps()
			return nil, err
		}
	}
	var placed []string
	undo := func() {
		for _, n := range placed {
			_ = mb.root.Remove(n)
		}
		removeTmps()
		if anyExtra {
			for _, p := range ps {
				mb.dropExtraLocked(p.base) // the file has them: stale
			}
		}
	}
	for i, p := range ps {
		to := "cur/" + FileName(p.base, bits[i])
		if err := mb.root.Rename("tmp/"+p.tmp, to); err != nil {
			undo()
			return nil, fmt.Errorf("mailstore: deliver: %w", err)
		}
		placed = append(placed, to)
		mb.heldStepLocked(lk)
	}
	if err := mb.syncDirLocked("cur"); err != nil {
		undo()
		return nil, err
	}
	msgs := make([]*Msg, len(ps))
	uids := make([]uint32, len(ps))
	for i, p := range ps {
		msgs[i] = &Msg{UID: mb.nextUID + uint32(i), Base: p.base, Flags: bits[i]}
		uids[i] = msgs[i].UID
	}
	if err := mb.addToUIDListLocked(lk, msgs); err != nil {
		undo()
		return nil, err
	}
	mb.loadCacheLocked()
	var added int64
	for i, m := range msgs {
		mb.addMsgLocked(m, ps[i].c)
		sz, _ := sizeField(m.Base, 'S')
		added += sz
	}
	mb.restampLocked(clean)
	mb.quotaChange(added, int64(len(msgs)))
	return uids, nil
}

// addMsgLocked records a numbered message in memory and in the change log.
// UIDs only grow (callers number files after adopting other processes'),
// but msgs stays sorted whatever happens: lookups depend on it.
func (mb *Mailbox) addMsgLocked(m *Msg, c Cached) {
	mb.nextUID = max(mb.nextUID, m.UID+1)
	if n := len(mb.msgs); n > 0 && mb.msgs[n-1].UID >= m.UID {
		i := sort.Search(n, func(i int) bool { return mb.msgs[i].UID >= m.UID })
		if mb.msgs[i].UID == m.UID {
			return
		}
		mb.msgs = slices.Insert(mb.msgs, i, m)
	} else {
		mb.msgs = append(mb.msgs, m)
	}
	if mb.byBase != nil {
		mb.byBase[m.Base] = m
	}
	if mb.cacheLoaded && (c.Size != 0 || c.Date != 0 || c.Envelope != nil || c.Body != nil) {
		mb.cache[m.UID] = &c
		mb.cacheDirty = true
	}
	mb.appendChangeLocked(Change{Kind: Added, UID: m.UID})
}

// syncDirLocked fsyncs cur/ or new/, making renames into it durable.
func (mb *Mailbox) syncDirLocked(sub string) error {
	fd, err := mb.dirFDLocked(sub)
	if err == nil {
		for {
			err = unix.Fsync(fd)
			if err != unix.EINTR {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("mailstore: fsync %s: %w", sub, err)
	}
	return nil
}

// Append stores a message (RFC 9051 §6.3.12) and returns its UID.
func (mb *Mailbox) Append(r io.Reader, flags []string, date time.Time) (uint32, error) {
	a := mb.NewAppender()
	if err := a.Add(r, flags, date); err != nil {
		return 0, err
	}
	uids, err := a.Commit()
	if err != nil {
		return 0, err
	}
	return uids[0], nil
}

// Appender gathers the messages of one APPEND, several with MULTIAPPEND
// (RFC 3502), and stores them all or none: each is written to tmp/ as it
// arrives, and Commit numbers them together (one uidlist write) or, on any
// failure, Abort leaves nothing behind.
type Appender struct {
	mb *Mailbox
	ps []pending
}

// NewAppender starts an APPEND into mb.
func (mb *Mailbox) NewAppender() *Appender { return &Appender{mb: mb} }

// Add writes one message to tmp/ (date zero: now).
func (a *Appender) Add(r io.Reader, flags []string, date time.Time) error {
	now := time.Now()
	if date.IsZero() || date.After(now.Add(maxFutureDate)) || !nanoTime(date) {
		// A date in the future is the time of the APPEND, as Dovecot
		// 2.3 takes it (INTERNALDATE_MAX_FUTURE_SECS): spam dated in
		// the year 2100 copied by a client would sort first for
		// decades. So is one before what the file's mtime (os.Chtimes)
		// and the index hold alike, Unix nanoseconds (1678), which
		// would wrap round. Neither is refused.
		date = now
	}
	tmp := a.mb.reg.uniqueBase()
	psize, vsize, err := a.mb.writeTemp(tmp, r, date)
	if err != nil {
		return err
	}
	a.ps = append(a.ps, pending{
		tmp: tmp, base: sizedBase(tmp, psize, vsize), flags: flags,
		c: Cached{Size: knownSize(vsize), Date: date.UnixNano()},
	})
	return nil
}

// maxFutureDate is how far in the future an APPEND date may be: clocks
// and time zones that disagree, not more.
const maxFutureDate = 2 * time.Hour

// nanoTime reports whether t is within Unix nanoseconds' range (the
// years 1678 to 2262).
func nanoTime(t time.Time) bool {
	return !t.Before(time.Unix(0, math.MinInt64)) && !t.After(time.Unix(0, math.MaxInt64))
}

// Commit stores every message added, in order, and returns their UIDs.
// On an error none of them is in the folder.
func (a *Appender) Commit() ([]uint32, error) {
	if len(a.ps) == 0 {
		return nil, errors.New("mailstore: append: no message")
	}
	a.mb.mu.Lock()
	defer a.mb.mu.Unlock()
	uids, err := a.mb.commitLocked(a.ps) // removes the tmp/ files on failure
	a.ps = nil
	return uids, err
}

// Len is the number of messages added so far.
func (a *Appender) Len() int { return len(a.ps) }

// Abort removes what was written for messages not committed.
func (a *Appender) Abort() {
	for _, p := range a.ps {
		_ = a.mb.root.Remove("tmp/" + p.tmp)
	}
	a.ps = nil
}

// knownSize is the cache's form of a size: -1 for an empty message, as 0
// means "not known".
func knownSize(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}

// sizedBase is a new base name with Dovecot's S= (file size) and W= (size
// with CRLF) fields, which spare a stat or a read later.
func sizedBase(unique string, psize, vsize int64) string {
	return unique + ",S=" + strconv.FormatInt(psize, 10) + ",W=" + strconv.FormatInt(vsize, 10)
}

// CopyTo copies messages into dst, keeping flags and internal dates, and
// returns the source UIDs copied and their new UIDs, in the same order. A
// copy is a hard link to the same file where the file system allows it
// (maildir files are never modified), else a copy of the bytes. It is
// all or nothing: when one of uids is gone (expunged by another session
// or program since the caller looked), nothing is copied and src is
// empty, as RFC 9051 §6.4.7 asks and Dovecot's COPY rolls back.
func (mb *Mailbox) CopyTo(dst *Mailbox, uids []uint32) (src, dstUIDs []uint32, err error) {
	tmpDir, err := dst.root.Open("tmp")
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: copy: %w", err)
	}
	defer tmpDir.Close()
	var ps []pending
	abandon := func() {
		for _, p := range ps {
			_ = dst.root.Remove("tmp/" + p.tmp)
		}
	}
	for _, uid := range uids {
		p, ok, perr := mb.prepareCopy(uid, dst, tmpDir)
		if perr != nil || !ok {
			abandon()
			return nil, nil, perr
		}
		ps = append(ps, p)
		src = append(src, uid)
	}
	if len(ps) == 0 {
		return nil, nil, nil
	}
	dst.mu.Lock()
	defer dst.mu.Unlock()
	dstUIDs, err = dst.commitLocked(ps) // it removes ps's files on error
	if err != nil {
		return nil, nil, err
	}
	return src, dstUIDs, nil
}

// prepareCopy puts message uid into dst's tmp/ under a new name: a hard
// link, or a copy when linking fails. ok is false for a message that is
// gone.
func (mb *Mailbox) prepareCopy(uid uint32, dst *Mailbox, tmpDir *os.File) (p pending, ok bool, err error) {
	size, date, err := mb.Meta(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("mailstore: copy: %w", err)
	}
	c := mb.Cached(uid)
	p.c = Cached{Size: knownSize(size), Date: date.UnixNano(), Envelope: c.Envelope, Body: c.Body}
	p.tmp = dst.reg.uniqueBase()
	tfd := int(tmpDir.Fd())

	mb.mu.Lock()
	m := mb.findLocked(uid)
	if m == nil {
		mb.mu.Unlock()
		return p, false, nil
	}
	p.flags = mb.appendExtraLocked(mb.flagNamesLocked(m.Flags), m.Base)
	linkErr := error(unix.EPERM)
	if sub, name, ok := splitRel(mb.pathLocked(m)); ok && !mb.reg.noHardLinks {
		var sfd int
		if sfd, linkErr = mb.dirFDLocked(sub); linkErr == nil {
			linkErr = ignoringEINTR(func() error { return unix.Linkat(sfd, name, tfd, p.tmp, 0) })
		}
	}
	mb.mu.Unlock()
	if linkErr == nil {
		var st unix.Stat_t
		if err := unix.Fstatat(tfd, p.tmp, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			_ = unix.Unlinkat(tfd, p.tmp, 0)
			return p, false, fmt.Errorf("mailstore: copy: %w", err)
		}
		p.base = sizedBase(p.tmp, st.Size, size)
		return p, true, nil
	}
	// EXDEV, EPERM (no hard links here), EMLINK: copy the bytes.
	f, _, err := mb.Open(uid)
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("mailstore: copy: %w", err)
	}
	psize, vsize, err := dst.writeTemp(p.tmp, f, date)
	f.Close()
	if err != nil {
		return p, false, err
	}
	p.base = sizedBase(p.tmp, psize, vsize)
	return p, true, nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

// MoveTo moves messages into dst (RFC 6851) and returns the source UIDs
// moved and their new UIDs, in the same order. Within one maildir each
// message is renamed into dst's cur/ (no copy): the file is in exactly one
// of the two folders at every moment, and dst's uidlist lock is held from
// before the first rename until the new UIDs are written, so a crash
// leaves at worst an unnumbered file in dst that the next look at dst
// numbers. The moved messages are expunged from this folder through its
// change log, for every session (the caller's included). Between maildirs,
// and onto the same folder, it is a copy then an expunge.
func (mb *Mailbox) MoveTo(dst *Mailbox, uids []uint32) (src, dstUIDs []uint32, err error) {
	if dst == mb || mb.key.maildir != dst.key.maildir {
		src, dstUIDs, err = mb.CopyTo(dst, uids)
		if err != nil || len(src) == 0 {
			return src, dstUIDs, err
		}
		moved := make(map[uint32]bool, len(src))
		for _, u := range src {
			moved[u] = true
		}
		_, err = mb.Expunge(func(u uint32) bool { return moved[u] }, false)
		return src, dstUIDs, err
	}
	// Two folders' mutexes: always in the order of their directory names,
	// so that moves in both directions cannot deadlock.
	first, second := mb, dst
	if dst.key.dir < mb.key.dir {
		first, second = dst, mb
	}
	first.mu.Lock()
	defer first.mu.Unlock()
	second.mu.Lock()
	defer second.mu.Unlock()
	if mb.closed || dst.closed {
		return nil, nil, errors.New("mailstore: folder closed")
	}
	srcClean, dstClean := mb.cleanLocked(), dst.cleanLocked()
	lk, err := acquireUIDList(dst)
	if err != nil {
		return nil, nil, err
	}
	defer lk.Release()
	if err := dst.refreshHeldLocked(lk); err != nil {
		return nil, nil, err
	}
	dfd, err := dst.dirFDLocked("cur")
	if err != nil {
		return nil, nil, fmt.Errorf("mailstore: move: %w", err)
	}
	type move struct {
		m         *Msg   // in mb
		sub, name string // where it was in mb
		to        string // its name in dst's cur/
		nm        *Msg   // in dst
	}
	var moves []move
	var moveErr error
	subs := map[string]bool{}
	missing := map[string]bool{}
	// A message is planned (its flags in dst, its new base name), the
	// keywords beyond dst's letters of those planned written to dst's
	// ExtraKeywordsFileName (fsynced) before any of them is renamed into
	// dst's cur/, where a crash would leave it without them; an entry
	// whose file does not follow is dropped at the next write or open.
	type plan struct {
		m     *Msg
		bits  Flags
		extra []string
		nb    string
	}
	planOne := func(m *Msg) (plan, error) {
		bits, extra, err := dst.flagBitsLocked(mb.appendExtraLocked(mb.flagNamesLocked(m.Flags), m.Base), true)
		if err != nil {
			return plan{}, err
		}
		// A new base name, as for a copy: the old one may linger in
		// this folder's uidlist as the record of a gone message.
		psize, ok := sizeField(m.Base, 'S')
		vsize, okW := sizeField(m.Base, 'W')
		nb := dst.reg.uniqueBase()
		if ok && okW {
			nb = sizedBase(nb, psize, vsize)
		}
		return plan{m: m, bits: bits, extra: extra, nb: nb}, nil
	}
	keepExtras := func(plans []plan) error {
		any := false
		for _, p := range plans {
			if len(p.extra) > 0 {
				kept, dropped := dst.extraKeepLocked(p.extra)
				if len(dropped) > 0 {
					dst.reg.log().Warn("mailstore: keywords not kept, too many in the folder or on the message", "folder", dst.root.Name(), "keywords", dropped)
				}
				any = dst.setExtraLocked(p.nb, kept) || any
			}
		}
		if !any {
			return nil
		}
		if err := dst.saveExtraLocked(syncFolder); err != nil {
			for _, p := range plans {
				dst.dropExtraLocked(p.nb)
			}
			dst.extraStale = false
			return err
		}
		return nil
	}
	moveOne := func(p plan) (retry bool) {
		m, bits, nb := p.m, p.bits, p.nb
		from := mb.pathLocked(m)
		sub, name, _ := splitRel(from)
		sfd, err := mb.dirFDLocked(sub)
		if err != nil {
			moveErr = err
			return false
		}
		to := FileName(nb, bits)
		if err := ignoringEINTR(func() error { return unix.Renameat(sfd, name, dfd, to) }); err != nil {
			if err == unix.ENOENT {
				return true // gone, or renamed by another program
			}
			moveErr = fmt.Errorf("mailstore: move %s: %w", from, err)
			return false
		}
		subs[sub] = true
		moves = append(moves, move{m: m, sub: sub, name: name, to: to, nm: &Msg{Base: nb, Flags: bits}})
		dst.heldStepLocked(lk)
		return false
	}
	moveAll := func(ms []*Msg) (gone []*Msg) {
		plans := make([]plan, 0, len(ms))
		var planErr error
		for _, m := range ms {
			p, err := planOne(m)
			if err != nil {
				planErr = err
				break
			}
			plans = append(plans, p)
		}
		if err := keepExtras(plans); err != nil {
			moveErr = err
			return nil
		}
		for _, p := range plans {
			moved := false
			if moveErr == nil {
				if moveOne(p) {
					gone = append(gone, p.m)
				} else {
					moved = moveErr == nil
				}
			}
			if !moved {
				dst.dropExtraLocked(p.nb) // stale in the file
			}
		}
		if moveErr == nil {
			moveErr = planErr
		}
		return gone
	}
	var ms []*Msg
	for _, u := range uids {
		if m := mb.findLocked(u); m != nil {
			ms = append(ms, m)
		}
	}
	for _, m := range moveAll(ms) {
		missing[m.Base] = true
	}
	if len(missing) > 0 && moveErr == nil {
		// Renamed by another program (its flags changed): find it by
		// its base name and move it with the flags it has now.
		found, err := mb.locateLocked(missing)
		if err != nil {
			moveErr = err
		}
		if moveErr == nil {
			byBase := mb.baseMapLocked()
			var again []*Msg
			for base := range found {
				again = append(again, byBase[base])
			}
			moveAll(again)
		}
		srcClean.ok = false
	}
	if len(moves) == 0 {
		return nil, nil, moveErr
	}
	// UIDs in the order of the source's, as COPYUID pairs them.
	sort.Slice(moves, func(i, j int) bool { return moves[i].m.UID < moves[j].m.UID })
	for i := range moves {
		moves[i].nm.UID = dst.nextUID + uint32(i)
	}
	err = dst.syncDirLocked("cur")
	for sub := range subs {
		if err == nil {
			err = mb.syncDirLocked(sub)
		}
	}
	nms := make([]*Msg, len(moves))
	for i, mv := range moves {
		nms[i] = mv.nm
	}
	if err == nil {
		err = dst.addToUIDListLocked(lk, nms)
	}
	if err != nil {
		for _, mv := range moves {
			dst.dropExtraLocked(mv.nm.Base) // the file has them: stale
		}
		// Put them back; what cannot go back stays in dst, where the
		// next synchronisation numbers it: never lost.
		for _, mv := range moves {
			if sfd, ferr := mb.dirFDLocked(mv.sub); ferr == nil {
				_ = ignoringEINTR(func() error { return unix.Renameat(dfd, mv.to, sfd, mv.name) })
			}
		}
		_ = dst.syncDirLocked("cur")
		for sub := range subs {
			_ = mb.syncDirLocked(sub)
		}
		return nil, nil, err
	}
	mb.loadCacheLocked()
	dst.loadCacheLocked()
	gone := make(map[uint32]bool, len(moves))
	for _, mv := range moves {
		var c Cached
		mb.cacheUpToLocked(mv.m.UID)
		if pc := mb.cache[mv.m.UID]; pc != nil {
			c = *pc
		}
		dst.addMsgLocked(mv.nm, c)
		src = append(src, mv.m.UID)
		dstUIDs = append(dstUIDs, mv.nm.UID)
		gone[mv.m.UID] = true
	}
	mb.dropLocked(gone)
	mb.restampLocked(srcClean)
	dst.restampLocked(dstClean)
	return src, dstUIDs, moveErr
}
