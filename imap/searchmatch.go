// Evaluating a SEARCH program on each message of the selected mailbox.

package imap

import (
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

// searchHits runs a SEARCH program over the selected mailbox: the
// sequence numbers and UIDs of the messages it matches, ascending.
func (s *session) searchHits(root *searchKey) (hitSeqs, hitUIDs []uint32, err error) {
	sel := s.sel
	uids := sel.view
	fl, ok := sel.mb.FlagsOf(uids)
	defer s.trimBuffers()
	for i, u := range uids {
		if !ok[i] {
			continue
		}
		m := &searchMsg{s: s, seq: uint32(i + 1), uid: u, flags: fl[i]}
		hit := m.match(root)
		if m.err != nil {
			return nil, nil, m.err
		}
		if hit {
			hitSeqs = append(hitSeqs, uint32(i+1))
			hitUIDs = append(hitUIDs, u)
		}
	}
	return hitSeqs, hitUIDs, nil
}

// searchMsg evaluates keys on one message, reading what it needs once:
// flags and UIDs are in memory, sizes and dates in the cache, the header
// only for header keys, the body only for BODY and TEXT.
type searchMsg struct {
	s     *session
	seq   uint32
	uid   uint32
	flags mailstore.Flags

	env    *mailstore.Envelope
	header *textproto.Header
	raw    []byte
	root   *mpart // raw's MIME structure, for BODY and TEXT
	// scanned is the structure of a large message, found in its file
	// and searched from it (raw stays nil): BODY and TEXT.
	scanned *mpart
	failed  bool
	// prog is the program evaluated (match's root); found, what the
	// message holds of its BODY and TEXT strings, once searched
	// (searchtext.go).
	prog  *searchKey
	found []uint8
	// err is a failure the command answers (no memory for a large
	// message in time), where a message that cannot be read is only
	// not matched.
	err error
}

// match evaluates the program root on the message.
func (m *searchMsg) match(root *searchKey) bool {
	if m.prog == nil {
		m.prog = root
	}
	return m.eval(root)
}

func (m *searchMsg) eval(k *searchKey) bool {
	sel := m.s.sel
	switch k.op {
	case "AND":
		for _, c := range k.kids {
			if !m.eval(c) {
				return false
			}
		}
		return true
	case "OR":
		return m.eval(k.kids[0]) || m.eval(k.kids[1])
	case "NOT":
		return !m.eval(k.kids[0])
	case "ALL":
		return true
	case "SEQ":
		if k.set.Saved {
			return slices.Contains(m.s.searchRes, m.uid)
		}
		return inSet(k.set, m.seq, uint32(len(sel.view)))
	case "UID":
		if k.set.Saved {
			return slices.Contains(m.s.searchRes, m.uid)
		}
		return inSet(k.set, m.uid, sel.view[len(sel.view)-1])
	case "ANSWERED":
		return m.flags&mailstore.FlagAnswered != 0
	case "DELETED":
		return m.flags&mailstore.FlagDeleted != 0
	case "DRAFT":
		return m.flags&mailstore.FlagDraft != 0
	case "FLAGGED":
		return m.flags&mailstore.FlagFlagged != 0
	case "SEEN":
		return m.flags&mailstore.FlagSeen != 0
	case "UNANSWERED":
		return m.flags&mailstore.FlagAnswered == 0
	case "UNDELETED":
		return m.flags&mailstore.FlagDeleted == 0
	case "UNDRAFT":
		return m.flags&mailstore.FlagDraft == 0
	case "UNFLAGGED":
		return m.flags&mailstore.FlagFlagged == 0
	case "UNSEEN":
		return m.flags&mailstore.FlagSeen == 0
	case "MODSEQ":
		return sel.mb.ModSeq(m.uid) >= k.mod
	case "RECENT":
		return m.s.isRecent(m.uid)
	case "OLD":
		return !m.s.isRecent(m.uid)
	case "NEW":
		return m.s.isRecent(m.uid) && m.flags&mailstore.FlagSeen == 0
	case "KEYWORD", "UNKEYWORD":
		has := false
		if k.flag == `\Recent` {
			has = m.s.isRecent(m.uid)
		} else {
			for _, n := range sel.mb.FlagNamesOf(m.uid, m.flags) {
				if strings.EqualFold(n, k.flag) {
					has = true
				}
			}
		}
		return has == (k.op == "KEYWORD")
	case "LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "OLDER", "YOUNGER":
		size, date, err := sel.mb.Meta(m.uid)
		if err != nil {
			return false
		}
		switch k.op {
		case "LARGER":
			return size > k.n
		case "SMALLER":
			return size < k.n
		case "OLDER": // to the second, not the day (RFC 5032 §2)
			return !date.After(k.date)
		case "YOUNGER":
			return !date.Before(k.date)
		}
		return matchDate(date, k.op, k.date)
	case "SENTBEFORE", "SENTON", "SENTSINCE":
		env := m.envelope()
		if env == nil || env.Date.IsZero() {
			// RFC 9051: no usable Date: the internal date stands in.
			_, date, err := sel.mb.Meta(m.uid)
			if err != nil {
				return false
			}
			return matchDate(date, k.op[4:], k.date)
		}
		return matchDate(env.Date, k.op[4:], k.date)
	case "FROM", "TO", "CC", "BCC":
		return m.matchAddress(k.op, k.value)
	case "SUBJECT":
		return m.matchHeader("Subject", k.value)
	case "HEADER":
		return m.matchHeader(k.field, k.value)
	case "BODY":
		return m.matchText(k) // searchtext.go
	case "TEXT":
		return m.matchText(k)
	}
	return false
}

func inSet(set wire.NumSet, n, last uint32) bool {
	if last == 0 {
		return false
	}
	for _, r := range set.Ranges {
		lo, hi := rangeBounds(r.Lo, r.Hi, last)
		if n >= lo && n <= hi {
			return true
		}
	}
	return false
}

// matchDate compares dates only, ignoring time and zone (RFC 9051 §6.4.4).
func matchDate(t time.Time, op string, d time.Time) bool {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	ref := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC)
	switch op {
	case "BEFORE":
		return day.Before(ref)
	case "ON":
		return day.Equal(ref)
	case "SINCE":
		return !day.Before(ref)
	}
	return false
}

func (m *searchMsg) envelope() *mailstore.Envelope {
	if m.env == nil && !m.failed {
		env, err := m.s.envelope(m.uid)
		if err != nil {
			m.failed = true
			return nil
		}
		m.env = env
	}
	return m.env
}
