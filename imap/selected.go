package imap

import (
	"os"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// selected is the session's view of its selected mailbox: the UIDs the
// client knows, in sequence order (the seq↔UID map), the messages this
// session holds as \Recent, and the flag names it announced. The view
// changes only when the session reports EXISTS or EXPUNGE, so sequence
// numbers stay those the client was told; expunges it may not report yet
// stay in the watcher's log.
type selected struct {
	name     string
	key      string // Server.recent key
	mb       *mailstore.Mailbox
	w        *mailstore.Watcher
	view     []uint32 // ascending UIDs; view[i] has sequence number i+1
	recent   []uint32 // ascending UIDs claimed as \Recent by this session
	flags    string   // the FLAGS list last announced
	readOnly bool
	contexts []*searchContext      // live SEARCH/SORT results (context.go)
	ranks    map[string]*sortRanks // per SORT criterion (cmd_sort.go)
	// gone is the BYE's text once another session deleted or renamed
	// the folder (Server.folderGone); set by that session.
	gone atomic.Pointer[string]
}

func (s *session) folderKey(name string) string {
	dir, _ := mailstore.FolderDir(name)
	return s.store.Path() + "\x00" + dir
}

// SELECT and EXAMINE.
func cmdSelect(s *session, tag string, _ bool) error {
	readOnly := s.curName() == "EXAMINE"
	if err := s.r.SP(); err != nil {
		return err
	}
	name, err := s.mailboxArg()
	if err != nil {
		return err
	}
	params, err := s.parseSelectParams()
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if s.sel != nil {
		s.unselect()
		s.state = stateAuth
		// RFC 9051 §6.3.2: the end of the previous mailbox's responses.
		s.w.Raw("* OK [CLOSED] Previous mailbox closed\r\n")
	}
	mb, err := s.srv.reg.Open(s.store, name)
	if err != nil {
		return s.storeErr("select", err, "")
	}
	if err := mb.Sync(false); err != nil {
		mb.Release()
		return s.storeErr("select", err, "")
	}
	highest := mb.HighestModSeq() // before Watch: never above what the view shows
	w, view := mb.Watch()
	sel := &selected{name: name, key: s.folderKey(name), mb: mb, w: w, view: view, readOnly: readOnly}
	sum := mb.Status()
	next := sum.UIDNext
	if n := len(view); n > 0 && next <= view[n-1] {
		next = view[n-1] + 1
	}
	// EXAMINE sees what is recent without taking it (RFC 3501 §6.3.2).
	first := mb.RecentFrom()
	if !readOnly {
		first = mb.ClaimRecent(next)
	}
	i := sort.Search(len(view), func(i int) bool { return view[i] >= first })
	sel.recent = slices.Clone(view[i:])
	s.sel = sel
	s.shared.Store(sel)
	if mb.Detached() {
		// Deleted or renamed since the open: the folderGone that
		// detached it (after Registry.Forget) may have looked at the
		// sessions before this one showed its selection; after it, as
		// the sessions it found.
		text := "Selected mailbox was deleted/renamed, have to disconnect."
		sel.gone.Store(&text)
	}
	s.state = stateSelected
	s.searchRes = nil
	if params.condstore {
		s.enabled |= extCondstore // its HIGHESTMODSEQ comes below
	}
	s.announceFlags(true)
	s.w.Raw("* ")
	s.w.Number(uint64(len(view)))
	s.w.Raw(" EXISTS\r\n")
	if !s.rev2() {
		s.w.Raw("* ")
		s.w.Number(uint64(len(sel.recent)))
		s.w.Raw(" RECENT\r\n")
		if seq := mb.FirstUnseen(view); seq > 0 {
			s.w.Raw("* OK [UNSEEN ")
			s.w.Number(uint64(seq))
			s.w.Raw("] First unseen\r\n")
		}
	}
	s.w.Raw("* OK [UIDVALIDITY ")
	s.w.Number(uint64(sum.UIDValidity))
	s.w.Raw("] UIDs valid\r\n* OK [UIDNEXT ")
	s.w.Number(uint64(next))
	s.w.Raw("] Predicted next UID\r\n")
	if s.condstore() {
		s.writeHighestModSeq(highest)
	}
	s.qresyncSelect(params, sum.UIDValidity, next)
	if s.rev2() {
		s.w.Raw("* LIST (" + s.listAttrs(name) + ") \".\" ")
		s.writeMailbox(name)
		s.w.CRLF()
	}
	code := "READ-WRITE"
	if readOnly {
		code = "READ-ONLY"
	}
	s.tagged(tag, "OK", code, "Select completed")
	return nil
}

// announceFlags writes FLAGS and PERMANENTFLAGS when the folder's keyword
// set differs from what the client was told (always with force): a client
// must hear of a keyword before a FETCH shows it.
func (s *session) announceFlags(force bool) {
	sel := s.sel
	flags, perm := sel.mb.DefinedFlags()
	fl := flagList(flags)
	if !force && fl == sel.flags {
		return
	}
	sel.flags = fl
	s.w.Raw("* FLAGS (" + fl + ")\r\n")
	if sel.readOnly {
		s.w.Raw("* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n")
	} else {
		s.w.Raw("* OK [PERMANENTFLAGS (" + flagList(perm) + ")] Flags permitted\r\n")
	}
}

func flagList[T ~string](fl []T) string {
	var b strings.Builder
	for i, f := range fl {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(string(f))
	}
	return b.String()
}

func (s *session) unselect() {
	if s.sel == nil {
		return
	}
	s.shared.Store(nil)
	s.sel.w.Close()
	s.sel.mb.Release()
	s.sel = nil
	s.searchRes = nil
}

// selectedGone ends the session when another session deleted or renamed
// its selected folder, as Dovecot does ("IMAP session state is
// inconsistent, please relogin."): its messages and their numbers are no
// longer what the client holds, and the folder object it reads is
// detached from the registry, so that its changes would reach nobody.
func (s *session) selectedGone() error {
	if s.sel == nil {
		return nil
	}
	if text := s.sel.gone.Load(); text != nil {
		s.bye(*text)
		return errClose
	}
	return nil
}

// folderGone tells the sessions that have folder dir of the maildir at
// path selected (with children, also those with a folder under it) that
// by deleted or renamed it: each ends with a BYE at its next command, at
// once in IDLE or waiting with a NOTIFY set for its selected folder.
func (s *Server) folderGone(by *session, path, dir string, children bool, text string) {
	key := path + "\x00" + dir
	var gone []*session
	s.conns.Each(func(se *session) {
		sel := se.shared.Load()
		if se == by || sel == nil || sel.key != key && !(children && strings.HasPrefix(sel.key, key+".")) {
			return
		}
		sel.gone.Store(&text)
		gone = append(gone, se)
	})
	s.mu.Lock() // ordered against stopIdle, as wakeIdlers
	defer s.mu.Unlock()
	for _, se := range gone {
		if se.idleOn.Load() != nil {
			se.woken.Store(true)
			_ = se.raw.SetReadDeadline(time.Now())
		}
	}
}

// CLOSE expunges (read-write only: RFC 3501 §6.4.2, after EXAMINE it just
// closes) and leaves without EXPUNGE responses; UNSELECT only leaves.
func cmdClose(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	sel := s.sel
	if s.curName() == "CLOSE" && !sel.readOnly {
		visible := make(map[uint32]bool, len(sel.view))
		for _, u := range sel.view {
			visible[u] = true
		}
		if _, err := sel.mb.Expunge(func(uid uint32) bool { return visible[uid] }, true); err != nil {
			s.logger.Warn("imap: expunge at CLOSE failed", "err", err)
		}
		s.srv.wakeIdlers(sel.mb, s)
	}
	s.unselect()
	s.state = stateAuth
	s.tagged(tag, "OK", "", "Completed")
	return nil
}

// pushUpdates applies the changes others made (and our own expunges) to
// the view and writes them: EXPUNGE before EXISTS, FLAGS before a FETCH
// showing a new keyword. With allowExpunge false expunges wait.
func (s *session) pushUpdates(allowExpunge bool) error {
	sel := s.sel
	if sel == nil {
		return nil
	}
	if err := s.selectedGone(); err != nil {
		return err
	}
	changes := sel.w.Changes(allowExpunge)
	if len(changes) == 0 {
		return nil
	}
	var expunged []uint32
	var added []uint32
	flagged := map[uint32]bool{}
	for _, c := range changes {
		switch c.Kind {
		case mailstore.Added:
			added = append(added, c.UID)
		case mailstore.Expunged:
			expunged = append(expunged, c.UID)
			delete(flagged, c.UID)
		case mailstore.FlagsChanged:
			if c.Source != sel.w {
				flagged[c.UID] = true
			}
		case mailstore.Invalidated:
			// Another program renumbered the folder: the UIDs and sequence
			// numbers this client holds mean nothing now.
			s.bye("[UNAVAILABLE] Mailbox renumbered by another program, reconnect")
			return errClose
		}
	}
	s.contextsExpunged(changes)
	var vanished []uint32
	for _, u := range expunged {
		i, found := slices.BinarySearch(sel.view, u)
		if !found {
			// Added and expunged before we reported it.
			if j := slices.Index(added, u); j >= 0 {
				added = slices.Delete(added, j, j+1)
			}
			continue
		}
		if s.qresync() {
			vanished = append(vanished, u)
		} else {
			s.w.Raw("* ")
			s.w.Number(uint64(i + 1))
			s.w.Raw(" EXPUNGE\r\n")
		}
		sel.view = slices.Delete(sel.view, i, i+1)
		if j, ok := slices.BinarySearch(sel.recent, u); ok {
			sel.recent = slices.Delete(sel.recent, j, j+1)
		}
	}
	s.writeVanished(vanished)
	slices.Sort(added)
	grew := false
	for _, u := range added {
		if n := len(sel.view); n == 0 || u > sel.view[n-1] {
			sel.view = append(sel.view, u)
			grew = true
		}
	}
	if grew {
		if !sel.readOnly {
			last := sel.view[len(sel.view)-1]
			first := sel.mb.ClaimRecent(last + 1)
			for _, u := range added {
				if u >= first {
					if _, ok := slices.BinarySearch(sel.recent, u); !ok {
						sel.recent = append(sel.recent, u)
					}
				}
			}
			slices.Sort(sel.recent)
		}
		s.announceFlags(false)
		s.w.Raw("* ")
		s.w.Number(uint64(len(sel.view)))
		s.w.Raw(" EXISTS\r\n")
		if !s.rev2() {
			s.w.Raw("* ")
			s.w.Number(uint64(len(sel.recent)))
			s.w.Raw(" RECENT\r\n")
		}
		if err := s.notifyNewMessages(added); err != nil {
			return err
		}
	}
	s.contextsChanged(changes)
	if len(flagged) == 0 {
		return nil
	}
	s.announceFlags(false)
	uids := make([]uint32, 0, len(flagged))
	for u := range flagged {
		uids = append(uids, u)
	}
	slices.Sort(uids)
	fl, ok := sel.mb.FlagsOf(uids)
	var ms []uint64
	if s.condstore() {
		ms = sel.mb.ModSeqsOf(uids)
	}
	for i, u := range uids {
		seq, found := slices.BinarySearch(sel.view, u)
		if !found || !ok[i] || (ms != nil && ms[i] == 0) {
			continue
		}
		s.w.Raw("* ")
		s.w.Number(uint64(seq + 1))
		s.w.Raw(" FETCH (UID ")
		s.w.Number(uint64(u))
		s.w.Raw(" FLAGS (")
		s.writeFlags(u, fl[i])
		s.w.Byte(')')
		if ms != nil {
			s.w.Raw(" " + modSeqItem(ms[i]))
		}
		s.w.Raw(")\r\n")
	}
	return nil
}

// writeFlags writes a message's flags, \Recent included when held.
func (s *session) writeFlags(uid uint32, f mailstore.Flags) {
	var buf [5]string
	var names []string
	if f.HasKeywords() {
		names = s.sel.mb.FlagNamesOf(uid, f)
	} else {
		names = f.SystemNames(&buf)
	}
	for i, n := range names {
		if i > 0 {
			s.w.SP()
		}
		s.w.Raw(n)
	}
	if s.isRecent(uid) {
		if len(names) > 0 {
			s.w.SP()
		}
		s.w.Raw(`\Recent`)
	}
}

func (s *session) isRecent(uid uint32) bool {
	_, ok := slices.BinarySearch(s.sel.recent, uid)
	return ok
}

// resolve turns a sequence or UID set into (sequence number, UID) pairs of
// the view, ascending and without duplicates. Ranges are clamped to the view
// first, so a hostile set such as 1:4294967295 costs no more than the view.
// checkSeqSet refuses message sequence numbers beyond the session's view
// ("*" included when it is empty): RFC 9051 §9 asks for BAD, as Dovecot
// answers, rather than a command that quietly does less than it named.
// UIDs and "$" are never out of range.
func (s *session) checkSeqSet(set wire.NumSet, uid bool) error {
	if uid || set.Saved {
		return nil
	}
	n := uint32(len(s.sel.view))
	for _, r := range set.Ranges {
		if _, hi := rangeBounds(r.Lo, r.Hi, n); n == 0 || hi > n {
			return bad("", "Invalid messageset")
		}
	}
	return nil
}

func (s *session) resolve(set wire.NumSet, uid bool) (seqs []uint32, uids []uint32) {
	sel := s.sel
	if set.Saved {
		return sel.fromUIDs(s.searchRes)
	}
	n := uint32(len(sel.view))
	if n == 0 {
		return nil, nil
	}
	type rng struct{ lo, hi uint32 } // indexes into view, inclusive
	var rs []rng
	if !uid {
		for _, r := range set.Ranges {
			lo, hi := rangeBounds(r.Lo, r.Hi, n)
			if lo > n {
				continue
			}
			hi = min(hi, n)
			rs = append(rs, rng{lo - 1, hi - 1})
		}
	} else {
		maxUID := sel.view[n-1]
		for _, r := range set.Ranges {
			lo, hi := rangeBounds(r.Lo, r.Hi, maxUID)
			i := sort.Search(int(n), func(i int) bool { return sel.view[i] >= lo })
			j := sort.Search(int(n), func(i int) bool { return sel.view[i] > hi })
			if i < j {
				rs = append(rs, rng{uint32(i), uint32(j - 1)})
			}
		}
	}
	if len(rs) == 0 {
		return nil, nil
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	merged := rs[:1]
	for _, r := range rs[1:] {
		last := &merged[len(merged)-1]
		if r.lo <= last.hi+1 {
			last.hi = max(last.hi, r.hi)
		} else {
			merged = append(merged, r)
		}
	}
	total := 0
	for _, r := range merged {
		total += int(r.hi-r.lo) + 1
	}
	// Sized at once: 1:* over 100,000 messages grew each slice some 30
	// times, the garbage of a STORE that changed nothing.
	seqs, uids = make([]uint32, 0, total), make([]uint32, 0, total)
	for _, r := range merged {
		for i := r.lo; i <= r.hi; i++ {
			seqs = append(seqs, i+1)
		}
		uids = append(uids, sel.view[r.lo:r.hi+1]...)
	}
	return seqs, uids
}

// fromUIDs maps UIDs still in the view to their sequence numbers.
func (sel *selected) fromUIDs(list []uint32) (seqs, uids []uint32) {
	for _, u := range list {
		if i, ok := slices.BinarySearch(sel.view, u); ok {
			seqs = append(seqs, uint32(i+1))
			uids = append(uids, u)
		}
	}
	return seqs, uids
}

// rangeBounds orders a range's ends, "*" (0) standing for last (RFC 9051
// §9: "*" is the largest number in use; a:b equals b:a).
func rangeBounds(start, stop, last uint32) (lo, hi uint32) {
	lo, hi = start, stop
	if lo == 0 {
		lo = last
	}
	if hi == 0 {
		hi = last
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	return lo, hi
}

var errReadOnly = no("CANNOT", "Mailbox is read-only")

// IDLE (RFC 2177) on the connection's own goroutine: Server.wakeIdlers
// moves the read deadline to now when a delivery, another session or
// (through inotify, idlewatch.go) another program changed the folder, and
// the deadline wakes it every IdleCheck (WatchedIdleCheck under inotify)
// to look for changes itself. The read buffer stays released while idle.
//
// A change signalled is reported notifyDelay later, with those that came
// meanwhile, as Dovecot's mailbox watch does (NOTIFY_DELAY_MSECS): a
// message appended, flagged \Deleted and expunged within that time is
// one update in the order a NOOP gives (EXPUNGE, then EXISTS, then
// FETCH), not four that a client (mutt) miscounted. "* OK Still here"
// goes out every IdleNotifyInterval (idleKeepalive).
func cmdIdle(s *session, tag string, _ bool) error {
	if err := s.r.CRLF(); err != nil {
		return err
	}
	// Wake-ups and the watch begin before the last look at the folder, so
	// that a change is either seen by that look or wakes the session: a
	// change in between would otherwise wait for the next poll.
	var mb *mailstore.Mailbox
	defer s.stopIdle()
	if s.sel != nil {
		mb = s.sel.mb
		s.srv.setIdleOn(s, mb)
		if s.srv.watchFolder(mb) {
			defer s.srv.unwatchFolder(mb)
		}
		if err := mb.Sync(false); err != nil {
			s.logger.Warn("imap: rescan failed", "err", err)
		}
	}
	if err := s.pushUpdates(true); err != nil {
		return err
	}
	s.w.Raw("+ idling\r\n")
	if err := s.flush(); err != nil {
		return err
	}
	now := time.Now()
	end := now.Add(s.srv.autologout())
	// due is when the changes signalled are reported (zero: none is
	// waiting); pollAt when the session looks for changes itself;
	// keepAt when it says it is still here (zero: never).
	var due time.Time
	pollAt := now.Add(s.srv.idleCheck(s, mb))
	keepAt := s.idleKeepalive(now)
	s.readIdle = 0 // the loop sets absolute deadlines
	for {
		s.r.Release()
		s.trimBuffers()
		if s.z != nil {
			s.z.sleep()
		}
		watching := mb != nil || s.notify.Load() != nil
		wait := end
		for _, t := range []time.Time{due, keepAt} {
			if !t.IsZero() && t.Before(wait) {
				wait = t
			}
		}
		if watching && pollAt.Before(wait) {
			wait = pollAt
		}
		_ = s.conn.SetReadDeadline(wait)
		// After the deadline is set, as in waitCommand: a Shutdown
		// between a look before and the deadline was lost.
		if s.shutdown.Load() {
			s.bye("Server shutting down")
			return errClose
		}
		var err error
		signalled := false
		if s.woken.Swap(false) {
			// Woken while we were busy: the deadline just set may have
			// overwritten the wake-up.
			err = os.ErrDeadlineExceeded
			signalled = true
		} else if _, err = s.r.Peek(); err == nil {
			break
		}
		if s.woken.Swap(false) {
			signalled = true
		}
		if !isTimeout(err) {
			return err
		}
		if s.shutdown.Load() {
			s.bye("Server shutting down")
			return errClose
		}
		now := time.Now()
		if !now.Before(end) {
			s.bye("Autologout; idle for too long")
			return errClose
		}
		// A folder deleted or renamed under the session ends it at once.
		if err := s.selectedGone(); err != nil {
			return err
		}
		if signalled && due.IsZero() {
			due = now.Add(s.srv.notifyDelay())
		}
		if !due.IsZero() && !now.Before(due) || watching && !now.Before(pollAt) {
			if mb != nil {
				if err := mb.Sync(false); err != nil {
					s.logger.Warn("imap: rescan failed", "err", err)
				}
				if err := s.pushUpdates(true); err != nil {
					return err
				}
			}
			if err := s.notifyPoll(true); err != nil {
				return err
			}
			due = time.Time{}
			pollAt = now.Add(s.srv.idleCheck(s, mb))
		}
		if !keepAt.IsZero() && !now.Before(keepAt) {
			s.w.Raw("* OK Still here\r\n")
			// As Dovecot, an IDLE that says it is still here is not
			// logged out: a dead peer fails the write instead.
			end = now.Add(s.srv.autologout())
			keepAt = s.idleKeepalive(now)
		}
		if err := s.flush(); err != nil {
			return err
		}
	}
	s.stopIdle()
	s.readIdle = s.srv.cmdTimeout()
	s.r.Begin()
	word, err := s.r.Token(func(c byte) bool { return c != '\r' && c != '\n' }, "DONE")
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if !strings.EqualFold(word, "DONE") {
		return bad("", "Expected DONE")
	}
	return s.ok(tag, "", "IDLE terminated", true)
}

// stopIdle ends wake-ups: under the server's lock, so that no wakeIdlers
// still holding the old value moves the read deadline afterwards.
func (s *session) stopIdle() {
	s.srv.setIdleOn(s, nil)
	s.woken.Store(false)
}
