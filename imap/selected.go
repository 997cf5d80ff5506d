package imap

import (
	"slices"
	"sort"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"courriel/imap/mailstore"
)

// selected is the session's view of its selected mailbox: the UIDs the
// client knows, in sequence order. It changes only when the session reports
// EXISTS or EXPUNGE, so sequence numbers stay those the client was told.
type selected struct {
	name     string
	mb       *mailstore.Mailbox
	w        *mailstore.Watcher
	view     []uint32 // ascending UIDs; view[i] has sequence number i+1
	readOnly bool
}

func (s *session) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.unselect()
	mb, err := s.srv.reg.Open(s.store, name)
	if err != nil {
		return nil, s.imapError("select", err, "")
	}
	if err := mb.Sync(false); err != nil {
		mb.Release()
		return nil, s.imapError("select", err, "")
	}
	w, view := mb.Watch()
	s.sel = &selected{name: name, mb: mb, w: w, view: view, readOnly: options.ReadOnly}
	flags, perm := mb.DefinedFlags()
	if options.ReadOnly {
		perm = nil
	}
	data := &goimap.SelectData{
		Flags:          flagsToIMAP(flags),
		PermanentFlags: flagsToIMAP(perm),
		NumMessages:    uint32(len(view)),
		UIDValidity:    mb.UIDValidity(),
	}
	next := mb.Status().UIDNext
	if n := len(view); n > 0 && next <= view[n-1] {
		next = view[n-1] + 1
	}
	data.UIDNext = goimap.UID(next)
	fl, ok := mb.FlagsOf(view)
	for i := range view {
		if ok[i] && fl[i]&mailstore.FlagSeen == 0 {
			data.FirstUnseenSeqNum = uint32(i + 1)
			break
		}
	}
	return data, nil
}

func (s *session) unselect() {
	if s.sel == nil {
		return
	}
	s.sel.w.Close()
	s.sel.mb.Release()
	s.sel = nil
}

func (s *session) Unselect() error {
	s.unselect()
	return nil
}

// Poll runs after every command: a cheap stat of new/ and cur/, then the
// changes other sessions and processes made, as EXISTS, EXPUNGE and FETCH.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if s.sel == nil {
		return nil
	}
	if err := s.sel.mb.Sync(false); err != nil {
		s.logger.Warn("imap: rescan failed", "err", err)
	}
	return s.flush(s.sel, w, allowExpunge)
}

// Idle pushes changes as they are logged: deliveries announced by Notify at
// once, changes by other processes within IdleCheck.
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	// imapserver returns from IDLE without waiting for this goroutine when
	// the connection drops, and then calls Close: Close waits for it
	// (idling), and it never starts after Close.
	s.idleMu.Lock()
	if s.closing {
		s.idleMu.Unlock()
		return nil
	}
	s.idling.Add(1)
	sel := s.sel
	s.idleMu.Unlock()
	defer s.idling.Done()
	if sel == nil {
		<-stop
		return nil
	}
	tick := time.NewTicker(s.srv.opts.IdleCheck)
	defer tick.Stop()
	if err := s.flush(sel, w, true); err != nil {
		return err
	}
	for {
		select {
		case <-stop:
			return nil
		case <-s.srv.closed:
			return nil
		case <-sel.w.C:
			if err := s.flush(sel, w, true); err != nil {
				return err
			}
		case <-tick.C:
			if err := sel.mb.Sync(false); err != nil {
				s.logger.Warn("imap: rescan failed", "err", err)
			}
		}
	}
}

// flush applies pending changes to the view and writes them.
func (s *session) flush(sel *selected, w *imapserver.UpdateWriter, allowExpunge bool) error {
	changes := sel.w.Changes(allowExpunge)
	if len(changes) == 0 {
		return nil
	}
	type out struct {
		exists  uint32
		expunge uint32
	}
	var outs []out
	pendingExists := false
	flagged := map[uint32]bool{}
	for _, c := range changes {
		switch c.Kind {
		case mailstore.Added:
			if n := len(sel.view); n == 0 || c.UID > sel.view[n-1] {
				sel.view = append(sel.view, c.UID)
				pendingExists = true
			}
		case mailstore.Expunged:
			i, found := slices.BinarySearch(sel.view, c.UID)
			if !found {
				continue
			}
			if pendingExists {
				outs = append(outs, out{exists: uint32(len(sel.view))})
				pendingExists = false
			}
			outs = append(outs, out{expunge: uint32(i + 1)})
			sel.view = slices.Delete(sel.view, i, i+1)
			delete(flagged, c.UID)
		case mailstore.FlagsChanged:
			if c.Source != sel.w {
				flagged[c.UID] = true
			}
		}
	}
	if pendingExists {
		outs = append(outs, out{exists: uint32(len(sel.view))})
	}
	for _, o := range outs {
		var err error
		if o.expunge != 0 {
			err = w.WriteExpunge(o.expunge)
		} else {
			err = w.WriteNumMessages(o.exists)
		}
		if err != nil {
			return err
		}
	}
	if len(flagged) == 0 {
		return nil
	}
	uids := make([]uint32, 0, len(flagged))
	for u := range flagged {
		uids = append(uids, u)
	}
	slices.Sort(uids)
	fl, ok := sel.mb.FlagsOf(uids)
	for i, u := range uids {
		seq, found := slices.BinarySearch(sel.view, u)
		if !found || !ok[i] {
			continue
		}
		if err := w.WriteMessageFlags(uint32(seq+1), goimap.UID(u), flagsToIMAP(sel.mb.FlagNames(fl[i]))); err != nil {
			return err
		}
	}
	return nil
}

// resolve turns a sequence or UID set into (sequence number, UID) pairs of
// the view, ascending and without duplicates. Ranges are clamped to the view
// first, so a hostile set such as 1:4294967295 costs no more than the view.
func (sel *selected) resolve(numSet goimap.NumSet) (seqs []uint32, uids []uint32) {
	n := uint32(len(sel.view))
	if n == 0 {
		return nil, nil
	}
	type rng struct{ lo, hi uint32 } // indexes into view, inclusive
	var rs []rng
	switch set := numSet.(type) {
	case goimap.SeqSet:
		for _, r := range set {
			lo, hi := rangeBounds(r.Start, r.Stop, n)
			if lo > n {
				continue
			}
			hi = min(hi, n)
			rs = append(rs, rng{lo - 1, hi - 1})
		}
	case goimap.UIDSet:
		maxUID := sel.view[n-1]
		for _, r := range set {
			lo, hi := rangeBounds(uint32(r.Start), uint32(r.Stop), maxUID)
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
	for _, r := range merged {
		for i := r.lo; i <= r.hi; i++ {
			seqs = append(seqs, i+1)
			uids = append(uids, sel.view[i])
		}
	}
	return seqs, uids
}

var errReadOnly = &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Mailbox is read-only"}
