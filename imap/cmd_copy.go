package imap

import (
	"slices"
	"strconv"
	"strings"
)

// COPY and MOVE (RFC 6851) with COPYUID (RFC 4315).
func cmdCopy(s *session, tag string, uid bool) error {
	move := s.curName() == "MOVE"
	if err := s.r.SP(); err != nil {
		return err
	}
	set, err := s.r.SeqSet()
	if err != nil {
		return err
	}
	dest, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	if err := s.checkSeqSet(set, uid); err != nil {
		return err
	}
	sel := s.sel
	if move && sel.readOnly {
		return errReadOnly
	}
	dst, err := s.srv.reg.Open(s.store, dest)
	if err != nil {
		return s.storeErr("copy", err, "TRYCREATE")
	}
	defer dst.Release()
	_, uids := s.resolve(set, uid)
	if len(uids) == 0 {
		if uid {
			// Dovecot's words; no COPYUID: nothing was copied.
			return s.ok(tag, "", "No messages found", true)
		}
		return no("", "No messages copied")
	}
	if _, ok := sel.mb.FlagsOf(uids); slices.Contains(ok, false) {
		// Another session expunged some of them (this one has not
		// seen the EXPUNGE yet): as Dovecot, none is copied or moved.
		return errExpungeIssued
	}
	var src, dstUIDs []uint32
	if move {
		// A rename within the maildir; the moved messages are expunged
		// from the source through its change log.
		src, dstUIDs, err = sel.mb.MoveTo(dst, uids)
	} else {
		var size int64
		for _, u := range uids {
			if n, _, err := sel.mb.Meta(u); err == nil {
				size += n
			}
		}
		if err := s.checkQuota(size, int64(len(uids))); err != nil {
			return err
		}
		src, dstUIDs, err = sel.mb.CopyTo(dst, uids)
	}
	if err != nil {
		return s.storeErr(strings.ToLower(s.curName()), err, "")
	}
	if len(src) == 0 {
		return errExpungeIssued
	}
	code := "COPYUID " + strconv.FormatUint(uint64(dst.UIDValidity()), 10) + " " + uidSetString(src) + " " + uidSetString(dstUIDs)
	s.srv.wakeIdlers(dst, s)
	if !move {
		return s.ok(tag, code, "Copy completed", true)
	}
	s.w.Raw("* OK [" + code + "] Moved\r\n")
	s.srv.wakeIdlers(sel.mb, s)
	return s.ok(tag, "", "Move completed", true)
}

// errExpungeIssued answers a COPY or MOVE of a message another session
// expunged, as Dovecot answers it (RFC 5530), the EXPUNGE before it
// (Dovecot's cmd_sync without MAILBOX_SYNC_FLAG_NO_EXPUNGES, even for a
// COPY by sequence numbers).
var errExpungeIssued = &respErr{kind: "NO", code: "EXPUNGEISSUED", text: "Some of the requested messages no longer exist", expunges: true}

// uidSetString renders UIDs in the given order as a sequence set,
// compressing consecutive runs (COPYUID pairs the two lists by position).
func uidSetString(uids []uint32) string {
	var b strings.Builder
	for i := 0; i < len(uids); {
		j := i
		for j+1 < len(uids) && uids[j+1] == uids[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(uids[i]), 10))
		if j > i {
			b.WriteByte(':')
			b.WriteString(strconv.FormatUint(uint64(uids[j]), 10))
		}
		i = j + 1
	}
	return b.String()
}
