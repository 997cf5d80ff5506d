package imap

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"courriel/imap/wire"
)

// CONDSTORE and QRESYNC (RFC 7162). The modseqs themselves are the
// mailstore's (modseq.go there): every folder has them, so NOMODSEQ is
// never sent. This file holds what the commands add: the SELECT/EXAMINE
// parameters, FETCH and STORE modifiers, SEARCH MODSEQ, VANISHED.

// fModSeq is the MODSEQ fetch item.
const fModSeq fetchKind = 100

func (s *session) condstore() bool { return s.enabled&extCondstore != 0 }
func (s *session) qresync() bool   { return s.enabled&extQresync != 0 }

// enableCondstore is what a CONDSTORE-enabling command does the first
// time (RFC 7162 §3.1): with a mailbox selected, the client hears its
// HIGHESTMODSEQ.
func (s *session) enableCondstore() {
	if s.condstore() {
		return
	}
	s.enabled |= extCondstore
	if s.sel != nil {
		s.writeHighestModSeq(s.sel.mb.HighestModSeq())
	}
}

func (s *session) writeHighestModSeq(n uint64) {
	s.w.Raw("* OK [HIGHESTMODSEQ ")
	s.w.Number(n)
	s.w.Raw("] Highest\r\n")
}

// selectParams are SELECT/EXAMINE's parameters (RFC 7162 §3.1.8, §3.2.5).
type selectParams struct {
	condstore bool
	qresync   bool

	uidValidity uint32
	modseq      uint64
	known       *wire.NumSet // known-uids; nil: all
	matchSeqs   *wire.NumSet // seq-match-data
	matchUIDs   *wire.NumSet
}

// parseSelectParams reads the optional " (param ...)" after the mailbox
// name.
func (s *session) parseSelectParams() (*selectParams, error) {
	p := &selectParams{}
	if sp, err := s.r.Is(' '); err != nil || !sp {
		return p, err
	}
	err := s.r.List(false, func() error {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "CONDSTORE":
			p.condstore = true
			return nil
		case "QRESYNC":
			if !s.qresync() {
				return bad("", "QRESYNC is not enabled")
			}
			p.qresync = true
			if err := s.r.SP(); err != nil {
				return err
			}
			return s.parseQresyncParam(p)
		}
		return bad("", "Unknown SELECT parameter "+sanitize(a))
	})
	return p, err
}

// parseQresyncParam reads "(uidvalidity modseq [known-uids [seq-match]])".
func (s *session) parseQresyncParam(p *selectParams) error {
	if err := s.r.Expect('(', "("); err != nil {
		return err
	}
	v, err := s.r.Number()
	if err != nil {
		return err
	}
	if v == 0 {
		return bad("", "Invalid UIDVALIDITY")
	}
	p.uidValidity = v
	if err := s.r.SP(); err != nil {
		return err
	}
	if p.modseq, err = s.r.Number64(); err != nil {
		return err
	}
	if p.modseq == 0 {
		return bad("", "Invalid modseq")
	}
	if sp, err := s.r.Is(' '); err != nil {
		return err
	} else if sp {
		if c, err := s.r.Peek(); err != nil {
			return err
		} else if c != '(' {
			set, err := s.r.SeqSet()
			if err != nil {
				return err
			}
			if set.Saved || setSize(set) < 0 {
				return bad("", "Invalid known-uids") // uid-set: no "*" (RFC 7162 §7)
			}
			p.known = &set
			if sp, err = s.r.Is(' '); err != nil {
				return err
			}
		}
		if sp {
			if err := s.r.Expect('(', "("); err != nil {
				return err
			}
			seqs, err := s.r.SeqSet()
			if err != nil {
				return err
			}
			if err := s.r.SP(); err != nil {
				return err
			}
			uids, err := s.r.SeqSet()
			if err != nil {
				return err
			}
			if err := s.r.Expect(')', ")"); err != nil {
				return err
			}
			// Expanded below: bounded, as it is meant to be small.
			if n := setSize(seqs); seqs.Saved || uids.Saved || n < 0 || n > 1<<16 || n != setSize(uids) {
				return bad("", "Invalid sequence match data")
			}
			p.matchSeqs, p.matchUIDs = &seqs, &uids
		}
	}
	return s.r.Expect(')', ")")
}

// setSize counts the numbers of a set without "*"; -1 when it has one.
func setSize(set wire.NumSet) int {
	n := 0
	for _, r := range set.Ranges {
		if r.Lo == 0 || r.Hi == 0 {
			return -1
		}
		n += int(max(r.Lo, r.Hi)-min(r.Lo, r.Hi)) + 1
	}
	return n
}

func expandSet(set wire.NumSet) []uint32 {
	var out []uint32
	for _, r := range set.Ranges {
		for u := min(r.Lo, r.Hi); ; u++ {
			out = append(out, u)
			if u == max(r.Lo, r.Hi) {
				break
			}
		}
	}
	return out
}

// qresyncSelect writes what a client resynchronising with SELECT
// (QRESYNC ...) missed (RFC 7162 §3.2.5.2): the UIDs expunged since its
// modseq (VANISHED (EARLIER)) and the flags of messages changed since.
// Nothing when its UIDVALIDITY is not the folder's: it starts over.
func (s *session) qresyncSelect(p *selectParams, uidValidity, uidNext uint32) {
	if !p.qresync || p.uidValidity != uidValidity {
		return
	}
	sel := s.sel
	known := p.known
	if known == nil {
		known = &wire.NumSet{Ranges: []wire.NumRange{{Lo: 1, Hi: 0}}}
	}
	last := max(uidNext, 1) - 1
	if n := len(sel.view); n > 0 {
		last = max(last, sel.view[n-1])
	}
	floor := uint32(0) // no UID at or below it vanished (seq-match data)
	if p.matchSeqs != nil {
		seqs, uids := expandSet(*p.matchSeqs), expandSet(*p.matchUIDs)
		for i := range seqs {
			if seqs[i] >= 1 && int(seqs[i]) <= len(sel.view) && sel.view[seqs[i]-1] == uids[i] {
				floor = max(floor, uids[i])
			}
		}
	}
	s.writeVanishedEarlier(p.modseq, *known, last, floor)
	var changed []int
	for _, i := range sel.mb.ChangedSince(sel.view, p.modseq) {
		if inSet(*known, sel.view[i], last) {
			changed = append(changed, i)
		}
	}
	if len(changed) == 0 {
		return
	}
	uids := make([]uint32, len(changed))
	for k, i := range changed {
		uids[k] = sel.view[i]
	}
	fl, ok := sel.mb.FlagsOf(uids)
	ms := sel.mb.ModSeqsOf(uids)
	for k, i := range changed {
		if !ok[k] || ms[k] == 0 {
			continue // expunged meanwhile
		}
		s.w.Raw("* ")
		s.w.Number(uint64(i + 1))
		s.w.Raw(" FETCH (UID ")
		s.w.Number(uint64(uids[k]))
		s.w.Raw(" FLAGS (")
		s.writeFlags(uids[k], fl[k])
		s.w.Raw(") MODSEQ (")
		s.w.Number(ms[k])
		s.w.Raw("))\r\n")
	}
}

// writeVanishedEarlier writes "* VANISHED (EARLIER) uids" for the UIDs of
// set (with "*" = last) expunged since modseq and above floor; when the
// folder forgot expunges that old, every UID of the set not in the folder
// (RFC 7162 §3.2.5.2 allows it).
func (s *session) writeVanishedEarlier(since uint64, set wire.NumSet, last, floor uint32) {
	gone, complete := s.sel.mb.VanishedSince(since)
	var rs []uidRange
	if complete {
		var uids []uint32
		for _, u := range gone {
			if u > floor && inSet(set, u, last) {
				uids = append(uids, u)
			}
		}
		rs = toRanges(uids)
	} else {
		rs = s.absentIn(set, last, floor)
	}
	if len(rs) == 0 {
		return
	}
	s.w.Raw("* VANISHED (EARLIER) ")
	writeRanges(s, rs)
	s.w.CRLF()
}

type uidRange struct{ lo, hi uint32 }

func toRanges(uids []uint32) []uidRange {
	var rs []uidRange
	for _, u := range uids {
		if n := len(rs); n > 0 && rs[n-1].hi+1 == u {
			rs[n-1].hi = u
			continue
		}
		rs = append(rs, uidRange{u, u})
	}
	return rs
}

func writeRanges(s *session, rs []uidRange) {
	for i, r := range rs {
		if i > 0 {
			s.w.Byte(',')
		}
		s.w.Number(uint64(r.lo))
		if r.hi != r.lo {
			s.w.Byte(':')
			s.w.Number(uint64(r.hi))
		}
	}
}

// absentIn is the UIDs of set (up to last, above floor) that are not in
// the view, as ranges: computed range by range, never UID by UID, so a
// client's 1:4294967295 costs what the view costs.
func (s *session) absentIn(set wire.NumSet, last, floor uint32) []uidRange {
	view := s.sel.view
	var in []uidRange
	for _, r := range set.Ranges {
		lo, hi := rangeBounds(r.Lo, r.Hi, last)
		lo = max(lo, floor+1)
		hi = min(hi, last)
		if lo <= hi {
			in = append(in, uidRange{lo, hi})
		}
	}
	sort.Slice(in, func(i, j int) bool { return in[i].lo < in[j].lo })
	var merged []uidRange
	for _, r := range in {
		if n := len(merged); n > 0 && r.lo <= merged[n-1].hi+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	var out []uidRange
	add := func(lo, hi uint32) {
		if lo > hi {
			return
		}
		if n := len(out); n > 0 && out[n-1].hi+1 == lo {
			out[n-1].hi = hi
			return
		}
		out = append(out, uidRange{lo, hi})
	}
	for _, r := range merged {
		i := sort.Search(len(view), func(i int) bool { return view[i] >= r.lo })
		next := r.lo
		for ; i < len(view) && view[i] <= r.hi; i++ {
			add(next, view[i]-1)
			next = view[i] + 1
		}
		add(next, r.hi)
	}
	return out
}

// fetchModifiers are FETCH's (CHANGEDSINCE n [VANISHED]) (RFC 7162
// §3.1.4, §3.2.6).
type fetchModifiers struct {
	changedSince uint64
	hasChanged   bool
	vanished     bool
}

func (s *session) parseFetchModifiers(uid bool) (fetchModifiers, error) {
	var m fetchModifiers
	if sp, err := s.r.Is(' '); err != nil || !sp {
		return m, err
	}
	err := s.r.List(false, func() error {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "CHANGEDSINCE":
			if err := s.r.SP(); err != nil {
				return err
			}
			m.changedSince, err = s.r.Number64()
			m.hasChanged = true
			return err
		case "VANISHED":
			if !uid || !s.qresync() {
				return bad("", "VANISHED needs UID FETCH and QRESYNC")
			}
			m.vanished = true
			return nil
		}
		return bad("", "Unknown FETCH modifier "+sanitize(a))
	})
	if err == nil && m.vanished && !m.hasChanged {
		err = bad("", "VANISHED needs CHANGEDSINCE")
	}
	return m, err
}

// applyFetchModifiers turns on CONDSTORE when the command asks for
// modseqs, adds the MODSEQ item where RFC 7162 wants it (CHANGEDSINCE;
// FLAGS once CONDSTORE is on, as Dovecot does), writes VANISHED (EARLIER)
// and keeps the messages changed since the given modseq.
func (s *session) applyFetchModifiers(m fetchModifiers, set wire.NumSet, items []fetchItem, seqs, uids []uint32) ([]fetchItem, []uint32, []uint32) {
	hasModSeq, hasFlags := false, false
	for _, it := range items {
		hasModSeq = hasModSeq || it.kind == fModSeq
		// FLAGS, or a body item that sets \Seen and so sends FLAGS.
		hasFlags = hasFlags || it.kind == fFlags ||
			(!s.sel.readOnly && !it.peek && (it.kind == fSection || it.kind == fBinary || it.kind == fRFC822 || it.kind == fRFC822Text))
	}
	if hasModSeq || m.hasChanged {
		s.enableCondstore()
	}
	if !hasModSeq && (m.hasChanged || (s.condstore() && hasFlags)) {
		items = append(items, fetchItem{kind: fModSeq})
	}
	if m.vanished {
		last := uint32(0)
		if n := len(s.sel.view); n > 0 {
			last = s.sel.view[n-1]
		}
		last = max(last, max(s.sel.mb.Status().UIDNext, 1)-1)
		s.writeVanishedEarlier(m.changedSince, set, last, 0)
	}
	if !m.hasChanged {
		return items, seqs, uids
	}
	changed := s.sel.mb.ChangedSince(uids, m.changedSince)
	ks, ku := make([]uint32, len(changed)), make([]uint32, len(changed))
	for k, i := range changed {
		ks[k], ku[k] = seqs[i], uids[i]
	}
	return items, ks, ku
}

// parseUnchangedSince reads STORE's "(UNCHANGEDSINCE n) " when present.
func (s *session) parseUnchangedSince() (since uint64, has bool, err error) {
	if c, err := s.r.Peek(); err != nil || c != '(' {
		return 0, false, err
	}
	err = s.r.List(false, func() error {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(a, "UNCHANGEDSINCE") {
			return bad("", "Unknown STORE modifier "+sanitize(a))
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		since, err = s.r.Number64()
		has = true
		return err
	})
	if err == nil {
		err = s.r.SP()
	}
	return since, has, err
}

// parseSearchModSeq reads the arguments of SEARCH MODSEQ: an optional
// entry name and type (RFC 7162 §3.1.5; courriel keeps one modseq per
// message, which stands for every entry) and the modseq.
func (s *session) parseSearchModSeq(k *searchKey) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == '"' || c == '{' || c == '~' {
		if _, err := s.r.String(); err != nil {
			return err
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		t, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToLower(t) {
		case "priv", "shared", "all":
		default:
			return bad("", "Invalid entry type "+sanitize(t))
		}
		if err := s.r.SP(); err != nil {
			return err
		}
	}
	n, err := s.r.Number64()
	k.mod = n
	return err
}

// usesModSeq reports whether a SEARCH program has a MODSEQ key.
func usesModSeq(k *searchKey) bool {
	if k.op == "MODSEQ" {
		return true
	}
	return slices.ContainsFunc(k.kids, usesModSeq)
}

// searchModSeq is the MODSEQ of a SEARCH or ESEARCH response (RFC 7162
// §3.1.5): the highest modseq of the messages returned (with MIN or MAX
// alone, of those only).
func (s *session) searchModSeq(a *searchArgs, hitUIDs []uint32) uint64 {
	if len(hitUIDs) == 0 {
		return 0
	}
	pick := hitUIDs
	if a.esearch && !a.retAll && !a.retCount {
		pick = nil
		if a.retMin {
			pick = append(pick, hitUIDs[0])
		}
		if a.retMax {
			pick = append(pick, hitUIDs[len(hitUIDs)-1])
		}
		if len(pick) == 0 {
			pick = hitUIDs
		}
	}
	var top uint64
	for _, m := range s.sel.mb.ModSeqsOf(pick) {
		top = max(top, m)
	}
	return top
}

// writeVanished reports expunged UIDs the QRESYNC way (RFC 7162 §3.2.10).
func (s *session) writeVanished(uids []uint32) {
	if len(uids) == 0 {
		return
	}
	slices.Sort(uids)
	s.w.Raw("* VANISHED ")
	writeRanges(s, toRanges(uids))
	s.w.CRLF()
}

func modSeqItem(n uint64) string {
	return "MODSEQ (" + strconv.FormatUint(n, 10) + ")"
}
