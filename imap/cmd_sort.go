package imap

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"courriel/imap/mailstore"
)

// SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): the messages a SEARCH
// program matches, ordered by keys read from the cached envelope and the
// message's size and internal date; ties go to the lower sequence number.

// sortKey is one sort criterion.
type sortKey struct {
	name    string // ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, DISPLAYFROM, DISPLAYTO
	reverse bool
}

func cmdSort(s *session, tag string, uid bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	// ESORT (RFC 5267): RETURN (MIN MAX ALL COUNT) before the criteria.
	var ret *searchArgs
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == 'R' || c == 'r' {
		w, err := s.r.Atom()
		if err != nil {
			return err
		}
		if !strings.EqualFold(w, "RETURN") {
			return bad("", "Expected RETURN or sort criteria")
		}
		if err := s.r.SP(); err != nil {
			return err
		}
		ret = &searchArgs{}
		if err := s.parseReturn(ret, false); err != nil {
			return err
		}
		if ret.impliesAll() {
			ret.retAll = true // RFC 4731: RETURN () means ALL
		}
		if err := ret.checkUpdate(); err != nil {
			return err
		}
		if err := s.r.SP(); err != nil {
			return err
		}
	}
	keys, err := s.parseSortKeys()
	if err != nil {
		return err
	}
	root, err := s.charsetSearch()
	if err != nil {
		return err
	}
	seqs, uids, err := s.searchHits(root)
	if err != nil {
		return err
	}
	ms, ranked := s.rankedSortMsgs(seqs, uids, keys)
	if !ranked {
		ms = make([]sortMsg, len(seqs))
		values := make([]sortValue, len(seqs)*len(keys)) // one allocation, adjacent keys
		arena := &keyArena{}
		for i := range seqs {
			ms[i] = s.sortMsgInto(seqs[i], uids[i], keys, values[i*len(keys):(i+1)*len(keys):(i+1)*len(keys)], arena)
		}
		arena.finish()
		for i := range ms {
			ms[i].first = ms[i].keys[0]
		}
		rev0 := keys[0].reverse
		slices.SortFunc(ms, func(x, y sortMsg) int {
			// The first key is in the element itself: most comparisons
			// end there without following keys into a scattered array.
			c := x.first.compare(y.first)
			if rev0 {
				c = -c
			}
			if c != 0 {
				return c
			}
			for i, k := range keys[1:] {
				c := x.keys[i+1].compare(y.keys[i+1])
				if k.reverse {
					c = -c
				}
				if c != 0 {
					return c
				}
			}
			return cmp.Compare(x.seq, y.seq)
		})
		s.keepRanks(ms, keys)
	}
	s.trimBuffers()
	var modseq uint64 // RFC 7162 §3.1.5: SORT answers MODSEQ as SEARCH does
	if usesModSeq(root) {
		s.enableCondstore()
		sorted := make([]uint32, len(ms))
		for i, m := range ms {
			sorted[i] = m.uid
		}
		modseq = s.searchModSeq(&searchArgs{}, sorted)
		if ret != nil {
			ret.modseq = s.searchModSeq(ret, sorted)
		}
	}
	if ret != nil {
		nums := make([]uint32, len(ms))
		for i, m := range ms {
			nums[i] = m.seq
			if uid {
				nums[i] = m.uid
			}
		}
		s.writeESearch(tag, uid, ret, nums, orderedSet)
		sorted := make([]uint32, len(ms))
		for i, m := range ms {
			sorted[i] = m.uid
		}
		s.saveContext(tag, uid, ret, root, keys, sorted)
		return s.ok(tag, "", "Sort completed", uid)
	}
	s.w.Raw("* SORT")
	for _, m := range ms {
		s.w.SP()
		if uid {
			s.w.Number(uint64(m.uid))
		} else {
			s.w.Number(uint64(m.seq))
		}
	}
	if modseq != 0 {
		s.w.Raw(" (MODSEQ " + strconv.FormatUint(modseq, 10) + ")")
	}
	s.w.CRLF()
	return s.ok(tag, "", "Sort completed", uid)
}

// sortCriteria are the keys of RFC 5256 and RFC 5957 (SORT=DISPLAY).
var sortCriteria = [...]string{"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}

// parseSortKeys reads the sort criteria, each kept once: a key repeated
// cannot change the order the first one gave (ties left by the first are
// ties of the repeat too), so its first occurrence decides, REVERSE or
// not, as in Dovecot. A SORT has no more keys than there are criteria,
// however long its list: keys were computed and stored once per message
// and occurrence (QA: 7,000 SUBJECTs over 60 messages of 1 KB subjects
// held 1.6 GB).
func (s *session) parseSortKeys() ([]sortKey, error) {
	var keys []sortKey
	var seen [len(sortCriteria)]bool
	reverse := false
	if err := s.r.List(false, func() error {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		a = strings.ToUpper(a)
		if a == "REVERSE" {
			if reverse {
				return bad("", "REVERSE twice")
			}
			reverse = true
			return nil
		}
		i := slices.Index(sortCriteria[:], a)
		if i < 0 {
			return bad("", "Unknown sort criterion "+sanitize(a))
		}
		if !seen[i] {
			seen[i] = true
			keys = append(keys, sortKey{a, reverse})
		}
		reverse = false
		return nil
	}); err != nil {
		return nil, err
	}
	if len(keys) == 0 || reverse {
		return nil, bad("", "Missing sort criterion")
	}
	return keys, nil
}

// sortRanks are the messages' places in one criterion's order, as the
// last SORT by that criterion alone computed them: a message's keys never
// change (its envelope, size and dates are fixed), so two ranks compare as
// the keys would for as long as the messages exist; only a message
// without a rank (new since) makes SORT compute keys again. The same idea
// as Dovecot's sort ids, kept in memory for the selected folder only.
type sortRanks struct {
	base uint32   // UID of rank[0]
	rank []uint32 // by UID-base, ascending with the key; 0 = no rank
}

// maxRankSpread bounds a ranks table to a few times the messages it
// ranks (UIDs with large gaps are not worth a table).
const maxRankSpread = 4

// rankedSortMsgs gives the messages in order when the SORT has one
// criterion and every message has a rank: rank and sequence number packed
// in one integer, sorted without comparing keys.
func (s *session) rankedSortMsgs(seqs, uids []uint32, keys []sortKey) ([]sortMsg, bool) {
	r := s.sel.ranks[keys[0].name]
	if len(keys) != 1 || r == nil {
		return nil, false
	}
	packed := make([]uint64, len(seqs))
	for i, u := range uids {
		if u < r.base || u-r.base >= uint32(len(r.rank)) || r.rank[u-r.base] == 0 {
			return nil, false
		}
		rank := r.rank[u-r.base]
		if keys[0].reverse {
			rank = ^rank // descending ranks, ties still by ascending sequence
		}
		packed[i] = uint64(rank)<<32 | uint64(i) // i: the position in seqs, ascending as they are
	}
	slices.Sort(packed)
	ms := make([]sortMsg, len(packed))
	for j, p := range packed {
		i := uint32(p)
		ms[j] = sortMsg{seq: seqs[i], uid: uids[i]}
	}
	return ms, true
}

// keepRanks records the ranks of a one-criterion SORT's result (ms in
// its order).
func (s *session) keepRanks(ms []sortMsg, keys []sortKey) {
	if len(keys) != 1 || len(ms) < 2 {
		return
	}
	lo, hi := ms[0].uid, ms[0].uid
	for _, m := range ms {
		lo, hi = min(lo, m.uid), max(hi, m.uid)
	}
	if int(hi-lo) >= maxRankSpread*len(ms)+1024 {
		return
	}
	r := &sortRanks{base: lo, rank: make([]uint32, hi-lo+1)}
	n := uint32(1)
	for i, m := range ms {
		if i > 0 && m.first.compare(ms[i-1].first) != 0 {
			n++
		}
		r.rank[m.uid-lo] = n
	}
	if keys[0].reverse { // ms is descending: ranks ascend with the key
		for i, v := range r.rank {
			if v != 0 {
				r.rank[i] = n + 1 - v
			}
		}
	}
	if s.sel.ranks == nil {
		s.sel.ranks = map[string]*sortRanks{}
	}
	s.sel.ranks[keys[0].name] = r
}

// orderedSet writes numbers in their order (ESORT's ALL: the sort order
// matters), runs of consecutive ascending numbers as ranges.
func orderedSet(nums []uint32) string {
	var b strings.Builder
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(nums[i]), 10))
		if j > i {
			b.WriteString(":" + strconv.FormatUint(uint64(nums[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}

// sortMsg is a message with its sort keys, in the order of the criteria.
type sortMsg struct {
	seq, uid uint32
	first    sortValue // keys[0]
	keys     []sortValue
}

// sortValue is one key: a number or a string.
type sortValue struct {
	n int64
	s string
}

func (a sortValue) compare(b sortValue) int {
	if c := cmp.Compare(a.n, b.n); c != 0 {
		return c
	}
	return strings.Compare(a.s, b.s)
}

func (s *session) sortMsg(seq, uid uint32, keys []sortKey) sortMsg {
	return s.sortMsgInto(seq, uid, keys, make([]sortValue, len(keys)), nil)
}

// keyArena holds the upper-cased string keys of one SORT in a single
// string: no allocation per message, and comparisons read adjacent
// memory rather than each message's scattered envelope.
type keyArena struct {
	buf  []byte
	refs []arenaRef
}

type arenaRef struct {
	v    *sortValue
	a, b int
}

// upper sets v.s to strings.ToUpper(s): at once without an arena, else
// at finish.
func (k *keyArena) upper(v *sortValue, s string) {
	if k == nil {
		v.s = strings.ToUpper(s)
		return
	}
	a := len(k.buf)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 { // not ASCII: as strings.ToUpper has it
			k.buf = append(k.buf[:a], strings.ToUpper(s)...)
			break
		}
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		k.buf = append(k.buf, c)
	}
	k.refs = append(k.refs, arenaRef{v, a, len(k.buf)})
}

func (k *keyArena) finish() {
	all := string(k.buf)
	for _, r := range k.refs {
		r.v.s = all[r.a:r.b]
	}
	k.buf, k.refs = nil, nil
}

// sortMsgInto computes a message's keys into values (len(keys) long) from
// the index: one cache look-up when everything is there, the size and
// internal date only for the keys that need them.
func (s *session) sortMsgInto(seq, uid uint32, keys []sortKey, values []sortValue, arena *keyArena) sortMsg {
	m := sortMsg{seq: seq, uid: uid, keys: values}
	mb := s.sel.mb
	c := mb.Cached(uid)
	env := c.Envelope
	envelope := func() *mailstore.Envelope {
		if env == nil {
			if e, err := s.envelope(uid); err == nil && e != nil {
				env = e
			} else {
				env = &mailstore.Envelope{}
			}
		}
		return env
	}
	var size int64
	var internal time.Time
	haveMeta := false
	meta := func() {
		if haveMeta {
			return
		}
		haveMeta = true
		if c.Size != 0 && c.Date != 0 {
			size, internal = max(c.Size, 0), time.Unix(0, c.Date) // as Meta reads them
		} else {
			size, internal, _ = mb.Meta(uid)
		}
	}
	for i, k := range keys {
		v := &m.keys[i]
		*v = sortValue{}
		switch k.name {
		case "ARRIVAL":
			// RFC 5256 §3: the internal date, which a client sees to the
			// second; ties go to the lower sequence number, as in Dovecot
			// (nanoseconds ordered messages of the same second by a
			// precision no client can see).
			meta()
			v.n = internal.Unix()
		case "SIZE":
			meta()
			v.n = size
		case "DATE":
			// RFC 5256 §3: the sent date in UTC, the internal date when
			// the Date field is missing or cannot be parsed.
			// Seconds, as ARRIVAL.
			d := envelope().Date
			if d.IsZero() {
				meta()
				d = internal
			}
			v.n = d.Unix()
		case "FROM":
			arena.upper(v, firstMailbox(envelope().From))
		case "TO":
			arena.upper(v, firstMailbox(envelope().To))
		case "CC":
			arena.upper(v, firstMailbox(envelope().Cc))
		case "SUBJECT":
			arena.upper(v, baseSubject(decodeWords(envelope().Subject)))
		case "DISPLAYFROM":
			arena.upper(v, displayName(envelope().From))
		case "DISPLAYTO":
			arena.upper(v, displayName(envelope().To))
		}
	}
	if len(keys) > 0 {
		m.first = m.keys[0]
	}
	return m
}

// firstAddress is the first element of an address list; for a group, its
// start, whose Mailbox is the group's name (as Dovecot sorts it).
func firstAddress(l []mailstore.Address) (mailstore.Address, bool) {
	if len(l) == 0 {
		return mailstore.Address{}, false
	}
	return l[0], true
}

// firstMailbox is RFC 5256's key of FROM, TO and CC: the local part of the
// first address, compared without case (the caller upper-cases it:
// i;ascii-casemap maps a-z to A-Z, so "_" and "[" sort after the letters).
func firstMailbox(l []mailstore.Address) string {
	if len(l) == 0 {
		return ""
	}
	return l[0].Mailbox
}

// displayName is RFC 5957's key: the first address's display name when it
// has one, else its addr-spec.
func displayName(l []mailstore.Address) string {
	a, ok := firstAddress(l)
	if !ok {
		return ""
	}
	if n := decodeWords(a.Name); n != "" {
		return n
	}
	if a.Host == "" {
		return a.Mailbox
	}
	return a.Mailbox + "@" + a.Host
}

// baseSubject extracts the base subject (RFC 5256 §2.1): whitespace
// collapsed, "(fwd)" trailers, "Re:"/"Fw:"/"Fwd:" leaders with their
// "[blob]"s, a leading "[blob]" when something is left after it, and a
// "[fwd: ...]" wrapper removed, until none is left.
func baseSubject(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	for {
		// (2) trailers.
		for {
			t := strings.TrimRight(s, " ")
			if len(t) >= 5 && strings.EqualFold(t[len(t)-5:], "(fwd)") {
				s = t[:len(t)-5]
				continue
			}
			s = t
			break
		}
		// (3), (4) and (5): leaders and blobs until none is left.
		for {
			if t := strings.TrimLeft(s, " "); t != s {
				s = t
				continue
			}
			if rest, ok := cutLeader(s); ok {
				s = rest
				continue
			}
			if rest, ok := cutBlob(s); ok && strings.TrimSpace(rest) != "" {
				s = rest
				continue
			}
			break
		}
		// (6) a "[fwd: ...]" wrapper.
		if len(s) >= 6 && strings.EqualFold(s[:5], "[fwd:") && s[len(s)-1] == ']' {
			s = s[5 : len(s)-1]
			continue
		}
		return s
	}
}

// cutBlob removes one subj-blob: "[" *BLOBCHAR "]" *WSP.
func cutBlob(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	end := strings.IndexAny(s[1:], "[]")
	if end < 0 || s[1+end] != ']' {
		return s, false
	}
	return strings.TrimLeft(s[end+2:], " "), true
}

// cutLeader removes *subj-blob subj-refwd, where subj-refwd is
// ("re" / ("fw" ["d"])) *WSP [subj-blob] ":".
func cutLeader(s string) (string, bool) {
	t := s
	for {
		r, ok := cutBlob(t)
		if !ok {
			break
		}
		t = r
	}
	l := strings.ToLower(t)
	switch {
	case strings.HasPrefix(l, "re"):
		t = t[2:]
	case strings.HasPrefix(l, "fwd"):
		t = t[3:]
	case strings.HasPrefix(l, "fw"):
		t = t[2:]
	default:
		return s, false
	}
	t = strings.TrimLeft(t, " ")
	if r, ok := cutBlob(t); ok {
		t = r
	}
	if !strings.HasPrefix(t, ":") {
		return s, false
	}
	return t[1:], true
}
