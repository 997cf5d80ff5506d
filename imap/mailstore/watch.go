package mailstore

// Watcher is one session's cursor in a mailbox's change log. C receives a
// value (coalesced) whenever a change is logged.
type Watcher struct {
	mb     *Mailbox
	cursor uint64 // guarded by mb.mu
	C      chan struct{}
}

// Watch registers a watcher and returns the UIDs it starts from: together
// they are the session's consistent view of the mailbox.
func (mb *Mailbox) Watch() (*Watcher, []uint32) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	w := &Watcher{mb: mb, cursor: mb.logBase + uint64(len(mb.log)), C: make(chan struct{}, 1)}
	mb.watchers[w] = struct{}{}
	uids := make([]uint32, len(mb.msgs))
	for i, m := range mb.msgs {
		uids[i] = m.UID
	}
	return w, uids
}

// Close unregisters the watcher.
func (w *Watcher) Close() {
	w.mb.mu.Lock()
	delete(w.mb.watchers, w)
	w.mb.mu.Unlock()
}

// Mailbox returns the watched mailbox.
func (w *Watcher) Mailbox() *Mailbox { return w.mb }

// Changes returns the changes logged since the last call. With
// allowExpunge false it stops before the first expunge (RFC 9051 §7.5.1: no
// EXPUNGE during FETCH, STORE or SEARCH), which stays pending.
func (w *Watcher) Changes(allowExpunge bool) []Change {
	mb := w.mb
	mb.mu.Lock()
	defer mb.mu.Unlock()
	start := int(w.cursor - mb.logBase)
	if start < 0 {
		start = 0 // cannot happen: the log is only trimmed below every cursor
	}
	var out []Change
	if n := len(mb.log) - start; n > 0 {
		out = make([]Change, 0, n)
	}
	i := start
	for ; i < len(mb.log); i++ {
		c := mb.log[i]
		if c.Kind == Expunged && !allowExpunge {
			break
		}
		out = append(out, c)
	}
	w.cursor = mb.logBase + uint64(i)
	return out
}

// FlagsOf returns the current flags of the given UIDs (0 and false for gone
// ones) in one lock acquisition, with the bits of their keywords beyond the
// letters (see FlagNamesOf).
func (mb *Mailbox) FlagsOf(uids []uint32) ([]Flags, []bool) {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	fl := make([]Flags, len(uids))
	ok := make([]bool, len(uids))
	j := 0
	for i, u := range uids {
		// uids usually ascend (a session's view): walk instead of
		// searching each.
		for j < len(mb.msgs) && mb.msgs[j].UID < u {
			j++
		}
		var m *Msg
		if j < len(mb.msgs) && mb.msgs[j].UID == u {
			m = mb.msgs[j]
		} else {
			m = mb.findLocked(u)
		}
		if m != nil {
			fl[i], ok[i] = m.Flags|mb.extraBitsLocked(m.Base), true
		}
	}
	return fl, ok
}

// FirstUnseen is the position (from 1) in uids, ascending (a session's
// view), of the first message without \Seen, 0 if none: SELECT's UNSEEN,
// without FlagsOf's copy of every message's flags. UIDs no longer in the
// folder are passed over.
func (mb *Mailbox) FirstUnseen(uids []uint32) uint32 {
	mb.mu.Lock()
	defer mb.mu.Unlock()
	j := 0
	for i, u := range uids {
		for j < len(mb.msgs) && mb.msgs[j].UID < u {
			j++
		}
		if j == len(mb.msgs) {
			break
		}
		if m := mb.msgs[j]; m.UID == u && m.Flags&FlagSeen == 0 {
			return uint32(i + 1)
		}
	}
	return 0
}
