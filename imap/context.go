package imap

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4): a SEARCH or SORT with
// RETURN (UPDATE) stays live while the mailbox is selected, and the
// session tells the client how its result changes (ESEARCH ADDTO and
// REMOVEFROM) as messages arrive, change flags or go away, whoever did
// it. PARTIAL (§4.4) returns a window of the result.

// maxContexts bounds the live contexts of one session: each costs a
// re-evaluation of the changed messages at every change (Dovecot allows
// as many).
const maxContexts = 10

// searchContext is one live result.
type searchContext struct {
	tag  string
	uid  bool
	root *searchKey
	sort []sortKey // nil for SEARCH
	ret  searchArgs
	// hits are the UIDs of the result: ascending for SEARCH, in sort
	// order for SORT.
	hits []uint32
	// whole: the program depends on more than the message itself
	// (sequence numbers, $, \Recent), so every change re-runs it on the
	// whole view instead of on the changed messages.
	whole bool
}

// parsePartial reads PARTIAL's range "n:m" (both ends numbers from 1,
// in either order; RFC 5267 §4.4).
func (s *session) parsePartial(a *searchArgs) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	tok, err := s.r.Token(func(c byte) bool { return c >= '0' && c <= '9' || c == ':' || c == '*' }, "partial range")
	if err != nil {
		return err
	}
	lo, hi, ok := strings.Cut(tok, ":")
	if !ok {
		return bad("", "PARTIAL needs a range n:m")
	}
	l, err1 := strconv.ParseUint(lo, 10, 32)
	h, err2 := strconv.ParseUint(hi, 10, 32)
	if err1 != nil || err2 != nil || l == 0 || h == 0 {
		return bad("", "Invalid PARTIAL range")
	}
	if l > h {
		l, h = h, l
	}
	a.retPartial, a.partLo, a.partHi = true, uint32(l), uint32(h)
	return nil
}

// impliesAll reports whether RETURN asks for no result option by name,
// which means ALL (RFC 4731 §3.1).
func (a *searchArgs) impliesAll() bool {
	return !a.retMin && !a.retMax && !a.retCount && !a.retSave && !a.retPartial && !a.retAll
}

// writePartial writes " PARTIAL (lo:hi set)" for nums in the command's
// order, or NIL when the window is past the end.
func (s *session) writePartial(a *searchArgs, nums []uint32, set func([]uint32) string) {
	s.w.Raw(" PARTIAL (" + strconv.FormatUint(uint64(a.partLo), 10) + ":" + strconv.FormatUint(uint64(a.partHi), 10) + " ")
	lo, hi := int(a.partLo)-1, int(a.partHi)
	if lo >= len(nums) {
		s.w.Raw("NIL)")
		return
	}
	hi = min(hi, len(nums))
	s.w.Raw(set(nums[lo:hi]) + ")")
}

// checkUpdate refuses RETURN options UPDATE cannot go with.
func (a *searchArgs) checkUpdate() error {
	if !a.retUpdate {
		return nil
	}
	if a.retPartial {
		return bad("", "UPDATE cannot be combined with PARTIAL")
	}
	if a.retSave {
		return bad("", "UPDATE cannot be combined with SAVE")
	}
	return nil
}

// saveContext keeps a SEARCH or SORT result live (RETURN (UPDATE)); uids
// is the result as answered. Past maxContexts the search is answered
// without updates, with an untagged NO [NOUPDATE] (RFC 5267 §4.3.1).
func (s *session) saveContext(tag string, uid bool, a *searchArgs, root *searchKey, keys []sortKey, uids []uint32) {
	sel := s.sel
	if sel == nil || !a.retUpdate {
		return
	}
	sel.contexts = slices.DeleteFunc(sel.contexts, func(c *searchContext) bool { return c.tag == tag })
	if len(sel.contexts) >= maxContexts {
		s.w.Raw(`* NO [NOUPDATE "` + tag + `"] Too many search contexts`)
		s.w.CRLF()
		return
	}
	c := &searchContext{tag: tag, uid: uid, root: root, sort: keys, ret: *a, hits: slices.Clone(uids), whole: dependsOnView(root)}
	sel.contexts = append(sel.contexts, c)
}

// dependsOnView reports whether a program's answer for one message may
// change when other messages change: sequence numbers shift on expunges,
// $ is replaced by later searches, \Recent is the session's own.
func dependsOnView(k *searchKey) bool {
	switch k.op {
	case "SEQ", "RECENT", "OLD", "NEW":
		return true
	case "UID":
		return k.set.Saved || slices.ContainsFunc(k.set.Ranges, func(r wire.NumRange) bool { return r.Lo == 0 || r.Hi == 0 })
	case "KEYWORD", "UNKEYWORD":
		return k.flag == `\Recent`
	}
	return slices.ContainsFunc(k.kids, dependsOnView)
}

// CANCELUPDATE "tag" *(SP "tag") (RFC 5267 §4.3).
func cmdCancelUpdate(s *session, tag string, _ bool) error {
	var tags []string
	for {
		if err := s.r.SP(); err != nil {
			return err
		}
		t, err := s.r.String()
		if err != nil {
			return err
		}
		tags = append(tags, t)
		if eol, err := s.r.AtEOL(); err != nil {
			return err
		} else if eol {
			break
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	sel := s.sel
	for _, t := range tags {
		i := slices.IndexFunc(sel.contexts, func(c *searchContext) bool { return c.tag == t })
		if i < 0 {
			return bad("", "Unknown search context "+sanitize(t))
		}
		sel.contexts = slices.Delete(sel.contexts, i, i+1)
	}
	return s.ok(tag, "", "Updates cancelled", true)
}

// contextsExpunged writes REMOVEFROM for the expunged messages of
// changes that are in a live result, while their sequence numbers still
// hold (before the EXPUNGE responses).
func (s *session) contextsExpunged(changes []mailstore.Change) {
	sel := s.sel
	if len(sel.contexts) == 0 {
		return
	}
	gone := map[uint32]bool{}
	for _, c := range changes {
		if c.Kind == mailstore.Expunged {
			gone[c.UID] = true
		}
	}
	if len(gone) == 0 {
		return
	}
	for _, c := range sel.contexts {
		before := c.summary()
		if removed := c.remove(gone); len(removed) > 0 {
			s.writeContextUpdate(c, "REMOVEFROM", removed, before)
		}
	}
}

// remove takes the UIDs of drop out of the result and returns them with
// their positions as the client applies them one after the other (each
// counted after the removals before it: RFC 5267 §4.3.1).
func (c *searchContext) remove(drop map[uint32]bool) []ctxPos {
	var removed []ctxPos
	kept := c.hits[:0]
	for i, u := range c.hits {
		if drop[u] {
			removed = append(removed, ctxPos{pos: uint32(i + 1 - len(removed)), uid: u})
			continue
		}
		kept = append(kept, u)
	}
	c.hits = kept
	return removed
}

// ctxPos is a message's place in a context's result (1-based; 0 in a
// SEARCH context, whose result has no order but the UIDs').
type ctxPos struct {
	pos uint32
	uid uint32
}

// contextsChanged re-evaluates the live results after messages arrived
// or changed flags (touched) and writes ADDTO and REMOVEFROM. Only the
// touched messages are looked at, unless the program depends on the
// whole view.
func (s *session) contextsChanged(changes []mailstore.Change) {
	sel := s.sel
	if len(sel.contexts) == 0 {
		return
	}
	touched := map[uint32]bool{}
	anyChange := false
	for _, c := range changes {
		anyChange = true
		if c.Kind == mailstore.Added || c.Kind == mailstore.FlagsChanged {
			touched[c.UID] = true
		}
	}
	if !anyChange {
		return
	}
	for _, c := range sel.contexts {
		var cand []uint32
		if c.whole {
			cand = sel.view
		} else {
			for u := range touched {
				if _, ok := slices.BinarySearch(sel.view, u); ok {
					cand = append(cand, u)
				}
			}
			slices.Sort(cand)
		}
		if len(cand) == 0 {
			continue
		}
		fl, ok := sel.mb.FlagsOf(cand)
		in := make(map[uint32]bool, len(c.hits))
		for _, u := range c.hits {
			in[u] = true
		}
		var add []uint32
		drop := map[uint32]bool{}
		for i, u := range cand {
			seq, _ := slices.BinarySearch(sel.view, u)
			m := &searchMsg{s: s, seq: uint32(seq + 1), uid: u, flags: fl[i]}
			match := ok[i] && m.match(c.root)
			if m.err != nil {
				continue // no memory for it now: left as it was
			}
			switch {
			case match && !in[u]:
				add = append(add, u)
			case !match && in[u]:
				drop[u] = true
			}
		}
		if len(add) == 0 && len(drop) == 0 {
			continue
		}
		before := c.summary()
		if len(drop) > 0 {
			s.writeContextUpdate(c, "REMOVEFROM", c.remove(drop), before)
			before = c.summary()
		}
		if len(add) > 0 {
			s.writeContextUpdate(c, "ADDTO", c.insert(s, add), before)
		}
	}
	s.trimBuffers()
}

// insert puts UIDs into the result at their places and returns them.
func (c *searchContext) insert(s *session, uids []uint32) []ctxPos {
	var out []ctxPos
	if c.sort == nil {
		for _, u := range uids {
			i, _ := slices.BinarySearch(c.hits, u)
			c.hits = slices.Insert(c.hits, i, u)
			out = append(out, ctxPos{uid: u})
		}
		return out
	}
	for _, u := range uids {
		m := s.sortMsg(0, u, c.sort)
		i := sortInsertPoint(s, c, m)
		c.hits = slices.Insert(c.hits, i, u)
		out = append(out, ctxPos{pos: uint32(i + 1), uid: u})
	}
	// Positions given earlier shift as later ones go in before them; the
	// client applies them in order (RFC 5267 §4.3.1), so they stand.
	return out
}

// sortInsertPoint finds where m goes in a SORT context's result; ties
// go by UID, which is the order of sequence numbers.
func sortInsertPoint(s *session, c *searchContext, m sortMsg) int {
	i, _ := slices.BinarySearchFunc(c.hits, m, func(u uint32, m sortMsg) int {
		o := s.sortMsg(0, u, c.sort)
		for k, key := range c.sort {
			r := o.keys[k].compare(m.keys[k])
			if key.reverse {
				r = -r
			}
			if r != 0 {
				return r
			}
		}
		return cmp.Compare(u, m.uid)
	})
	return i
}

// ctxSummary is what MIN, MAX and COUNT said last.
type ctxSummary struct {
	min, max uint32
	count    int
}

func (c *searchContext) summary() ctxSummary {
	if len(c.hits) == 0 {
		return ctxSummary{}
	}
	lo, hi := slices.Min(c.hits), slices.Max(c.hits)
	if c.sort != nil {
		lo, hi = c.hits[0], c.hits[len(c.hits)-1]
	}
	return ctxSummary{min: lo, max: hi, count: len(c.hits)}
}

// writeContextUpdate tells the client of a change of a live result:
// ADDTO or REMOVEFROM when it asked for ALL (or nothing by name), and
// the new MIN, MAX and COUNT when it asked for those.
func (s *session) writeContextUpdate(c *searchContext, verb string, ps []ctxPos, before ctxSummary) {
	sel := s.sel
	num := func(u uint32) uint32 {
		if c.uid {
			return u
		}
		i, ok := slices.BinarySearch(sel.view, u)
		if !ok {
			return 0
		}
		return uint32(i + 1)
	}
	if c.ret.retAll {
		s.w.Raw(`* ESEARCH (TAG "` + c.tag + `")`)
		if c.uid {
			s.w.Raw(" UID")
		}
		s.w.Raw(" " + verb + " (")
		if c.sort == nil {
			// One position for the lot: the set is in UID order.
			nums := make([]uint32, 0, len(ps))
			for _, p := range ps {
				if n := num(p.uid); n != 0 {
					nums = append(nums, n)
				}
			}
			slices.Sort(nums)
			s.w.Raw("0 " + uidSetString(nums))
		} else {
			for i, p := range ps {
				if i > 0 {
					s.w.SP()
				}
				s.w.Raw(strconv.FormatUint(uint64(p.pos), 10) + " " + strconv.FormatUint(uint64(num(p.uid)), 10))
			}
		}
		s.w.Raw(")\r\n")
	}
	if !c.ret.retMin && !c.ret.retMax && !c.ret.retCount {
		return
	}
	after := c.summary()
	if after == before {
		return
	}
	s.w.Raw(`* ESEARCH (TAG "` + c.tag + `")`)
	if c.uid {
		s.w.Raw(" UID")
	}
	if after.count > 0 {
		if c.ret.retMin {
			s.w.Raw(" MIN " + strconv.FormatUint(uint64(num(after.min)), 10))
		}
		if c.ret.retMax {
			s.w.Raw(" MAX " + strconv.FormatUint(uint64(num(after.max)), 10))
		}
	}
	if c.ret.retCount {
		s.w.Raw(" COUNT " + strconv.Itoa(after.count))
	}
	s.w.CRLF()
}
