package imap

import (
	"slices"
	"strconv"
)

func cmdSearch(s *session, tag string, uid bool) error {
	s.searchCS = ""
	a, err := s.parseSearch()
	if err != nil {
		return err
	}
	if !a.esearch && s.rev2() {
		// RFC 9051 §6.4.4: after ENABLE IMAP4rev2, SEARCH without
		// RETURN is SEARCH RETURN (ALL), answered by ESEARCH (§7.3.4).
		a.esearch, a.retAll = true, true
	}
	hitSeqs, hitUIDs, err := s.searchHits(a.root)
	if err != nil {
		return err
	}
	if usesModSeq(a.root) {
		s.enableCondstore()
		a.modseq = s.searchModSeq(a, hitUIDs)
	}
	nums := hitSeqs
	if uid {
		nums = hitUIDs
	}
	if a.retSave {
		switch {
		case a.retMin && !a.retMax && len(hitUIDs) > 0:
			s.searchRes = hitUIDs[:1:1]
		case a.retMax && !a.retMin && len(hitUIDs) > 0:
			s.searchRes = hitUIDs[len(hitUIDs)-1:]
		case a.retMin && a.retMax && len(hitUIDs) > 0:
			s.searchRes = []uint32{hitUIDs[0], hitUIDs[len(hitUIDs)-1]}
		default:
			s.searchRes = slices.Clone(hitUIDs)
		}
	}
	if !a.esearch {
		s.w.Raw("* SEARCH")
		for _, n := range nums {
			s.w.SP()
			s.w.Number(uint64(n))
		}
		if a.modseq != 0 {
			s.w.Raw(" (MODSEQ " + strconv.FormatUint(a.modseq, 10) + ")")
		}
		s.w.CRLF()
		return s.ok(tag, "", "Search completed", uid)
	}
	if a.retSave && !a.retMin && !a.retMax && !a.retCount && !a.retAll && !a.retPartial {
		return s.ok(tag, "", "Search completed", uid)
	}
	s.writeESearch(tag, uid, a, nums, uidSetString)
	s.saveContext(tag, uid, a, a.root, nil, hitUIDs)
	return s.ok(tag, "", "Search completed", uid)
}
