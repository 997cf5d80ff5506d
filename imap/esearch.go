// RETURN options and the ESEARCH response (RFC 4731) of SEARCH and SORT.

package imap

import (
	"strconv"
	"strings"
)

// parseReturn reads RETURN's option list (RFC 4731; SAVE from RFC 5182
// where allowed) into a; RETURN () means ALL.
func (s *session) parseReturn(a *searchArgs, saveOK bool) error {
	a.esearch = true
	return s.r.List(true, func() error {
		o, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(o) {
		case "MIN":
			a.retMin = true
		case "MAX":
			a.retMax = true
		case "ALL":
			a.retAll = true
		case "COUNT":
			a.retCount = true
		case "UPDATE":
			a.retUpdate = true
		case "PARTIAL":
			return s.parsePartial(a)
		case "SAVE":
			if !saveOK {
				return bad("", "SAVE is not offered here")
			}
			a.retSave = true
		default:
			return bad("", "Unknown return option "+sanitize(o))
		}
		return nil
	})
}

// writeESearch writes the ESEARCH response of SEARCH or SORT RETURN:
// nums in the command's order, ALL written by set.
func (s *session) writeESearch(tag string, uid bool, a *searchArgs, nums []uint32, set func([]uint32) string) {
	s.w.Raw(`* ESEARCH (TAG "` + tag + `")`)
	if uid {
		s.w.Raw(" UID")
	}
	if len(nums) > 0 {
		if a.retMin {
			s.w.Raw(" MIN " + strconv.FormatUint(uint64(nums[0]), 10))
		}
		if a.retMax {
			s.w.Raw(" MAX " + strconv.FormatUint(uint64(nums[len(nums)-1]), 10))
		}
		if a.retAll {
			s.w.Raw(" ALL " + set(nums))
		}
	}
	if a.retCount {
		s.w.Raw(" COUNT " + strconv.Itoa(len(nums)))
	}
	if a.retPartial {
		s.writePartial(a, nums, set)
	}
	if a.modseq != 0 {
		s.w.Raw(" MODSEQ " + strconv.FormatUint(a.modseq, 10))
	}
	s.w.CRLF()
}
