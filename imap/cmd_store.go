package imap

import (
	"math"
	"slices"
	"strings"

	"courriel/imap/mailstore"
	"courriel/imap/wire"
)

type storeArgs struct {
	set wire.NumSet
	// UNCHANGEDSINCE (RFC 7162 §3.1.3)
	unchangedSince uint64
	conditional    bool
	op             mailstore.StoreOp
	silent         bool
	flags          []string
}

func cmdStore(s *session, tag string, uid bool) error {
	var a storeArgs
	err := s.r.SP()
	if err == nil {
		a.set, err = s.r.SeqSet()
	}
	if err == nil {
		err = s.r.SP()
	}
	if err == nil {
		a.unchangedSince, a.conditional, err = s.parseUnchangedSince()
	}
	var item string
	if err == nil {
		item, err = s.r.Token(func(c byte) bool { return wire.IsAtomChar(c) }, "STORE item")
	}
	if err != nil {
		return err
	}
	item = strings.ToUpper(item)
	a.op = mailstore.StoreReplace
	switch {
	case strings.HasPrefix(item, "+"):
		a.op, item = mailstore.StoreAdd, item[1:]
	case strings.HasPrefix(item, "-"):
		a.op, item = mailstore.StoreRemove, item[1:]
	}
	switch item {
	case "FLAGS":
	case "FLAGS.SILENT":
		a.silent = true
	default:
		return bad("", "Unknown STORE item")
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	if c, err := s.r.Peek(); err != nil {
		return err
	} else if c == '(' {
		if a.flags, err = s.parseFlagList(); err != nil {
			return err
		}
	} else {
		for {
			f, err := s.parseFlag()
			if err != nil {
				return err
			}
			a.flags = append(a.flags, f)
			if sp, err := s.r.Is(' '); err != nil {
				return err
			} else if !sp {
				break
			}
		}
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if err := storableFlags(a.flags); err != nil {
		return err
	}
	if err := s.checkSeqSet(a.set, uid); err != nil {
		return err
	}
	sel := s.sel
	if err := checkKeywords(a.flags, sel.mb); err != nil {
		return err
	}
	if sel.readOnly {
		return errReadOnly
	}
	seqs, uids := s.resolve(a.set, uid)
	if a.conditional {
		s.enableCondstore()
	}
	var modified []uint32
	// In pieces, each one's FETCH responses written out before the next
	// one's files are renamed, as Dovecot streams them: the client reads
	// (and parses) them while the server works, rather than all 100,000
	// after the last rename. Every file has its new name before the
	// tagged OK. The wait for another process's uidlist lock is the
	// command's, spent once over the pieces (see mailstore.FlagWait);
	// renames its pieces deferred are recorded once, before the tagged
	// response (fw.Done).
	var fw mailstore.FlagWait
	for lo := 0; lo < len(uids); lo += storeChunk {
		hi := min(lo+storeChunk, len(uids))
		mod, err := s.storeChunk(&a, &fw, uid, seqs[lo:hi], uids[lo:hi])
		if err != nil {
			fw.Done()
			return err
		}
		modified = append(modified, mod...)
		if hi < len(uids) {
			_ = s.flush() // a write error ends the session at the next read
		}
	}
	fw.Done()
	if len(modified) > 0 {
		return s.ok(tag, "MODIFIED "+uidSetString(modified), "Conditional store failed", uid)
	}
	return s.ok(tag, "", "Store completed", uid)
}

// storeChunk is how many messages a STORE changes before it writes their
// FETCH responses out (see cmdStore): some 40 ms of renames.
const storeChunk = 4096

// storeChunk runs a STORE on some of its messages (seqs and uids, in the
// view's order) and writes their FETCH responses. It returns the messages
// UNCHANGEDSINCE left alone, as sequence numbers or UIDs as the command
// was given.
func (s *session) storeChunk(a *storeArgs, fw *mailstore.FlagWait, uid bool, seqs, uids []uint32) (modified []uint32, err error) {
	sel := s.sel
	// As Dovecot: no FETCH for a message whose flags did not change
	// (the client knows them already); a 20,000-message +FLAGS \Seen
	// on a read folder answers at once.
	oldFlags, _ := sel.mb.FlagsOf(uids)
	var newFlags []mailstore.Flags
	var ok []bool
	var modseqs []uint64
	if a.conditional || s.condstore() {
		// The modseqs come from the same lock as the change: a
		// message expunged meanwhile by another session has none.
		since := uint64(math.MaxUint64)
		if a.conditional {
			since = a.unchangedSince
		}
		var modUIDs []uint32
		newFlags, modseqs, ok, modUIDs, err = sel.mb.StoreFlagsUnchangedSincePiece(fw, uids, a.op, toFlags(a.flags), sel.w, since)
		if uid {
			modified = modUIDs
		} else {
			for _, u := range modUIDs {
				if i, found := slices.BinarySearch(sel.view, u); found {
					modified = append(modified, uint32(i+1))
				}
			}
		}
	} else {
		newFlags, ok, err = sel.mb.StoreFlagsPiece(fw, uids, a.op, toFlags(a.flags), sel.w)
	}
	if err != nil {
		return nil, s.storeErr("store", err, "")
	}
	s.srv.wakeIdlers(sel.mb, s)
	s.announceFlags(false)
	for i := range uids {
		if !ok[i] || newFlags[i] == oldFlags[i] || (a.silent && modseqs == nil) || (modseqs != nil && modseqs[i] == 0) {
			continue
		}
		// .SILENT still reports the new modseq (RFC 7162 §3.1.3).
		s.w.Raw("* ")
		s.w.Number(uint64(seqs[i]))
		s.w.Raw(" FETCH (")
		sep := "" // between items only: "(FLAGS (\\Seen) )" breaks strict parsers
		if !a.silent {
			s.w.Raw("FLAGS (")
			s.writeFlags(uids[i], newFlags[i])
			s.w.Raw(")")
			sep = " "
		}
		// With CONDSTORE on, UID and MODSEQ in every FETCH a STORE
		// causes (RFC 7162 §3.1, errata 1807 of RFC 5162).
		if uid || modseqs != nil {
			s.w.Raw(sep + "UID ")
			s.w.Number(uint64(uids[i]))
			sep = " "
		}
		if modseqs != nil {
			s.w.Raw(sep + modSeqItem(modseqs[i]))
		}
		s.w.Raw(")\r\n")
	}
	return modified, nil
}
