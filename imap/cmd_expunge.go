package imap

import (
	"strconv"

	"courriel/imap/wire"
)

// EXPUNGE and UID EXPUNGE (RFC 4315): the EXPUNGE responses come from the
// change log, like everybody's.
func cmdExpunge(s *session, tag string, uid bool) error {
	var set wire.NumSet
	if uid {
		if err := s.r.SP(); err != nil {
			return err
		}
		var err error
		if set, err = s.r.SeqSet(); err != nil {
			return err
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	sel := s.sel
	if sel.readOnly {
		return errReadOnly
	}
	allowed := make(map[uint32]bool, len(sel.view))
	if uid {
		_, uids := s.resolve(set, true)
		for _, u := range uids {
			allowed[u] = true
		}
	} else {
		for _, u := range sel.view {
			allowed[u] = true
		}
	}
	// RFC 9051: only messages this client knows about.
	if _, err := sel.mb.Expunge(func(u uint32) bool { return allowed[u] }, true); err != nil {
		return s.storeErr("expunge", err, "")
	}
	s.srv.wakeIdlers(sel.mb, s)
	code := ""
	if s.qresync() {
		// The folder's HIGHESTMODSEQ once the VANISHED are sent, as
		// Dovecot 2.3 answers a QRESYNC client (cmd-expunge.c), which
		// keeps it for its next resync (KIMAP's ExpungeJob). Read before
		// ok sends the changes: every change up to it is among them, and
		// never one the client has not heard of (RFC 5162 erratum 1810).
		code = "HIGHESTMODSEQ " + strconv.FormatUint(sel.mb.HighestModSeq(), 10)
	}
	return s.ok(tag, code, "Expunge completed", true)
}
