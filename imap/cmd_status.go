package imap

import (
	"strings"

	"courriel/imap/mailstore"
)

type statusItems struct {
	messages, uidNext, uidValidity, unseen, deleted, recent, size bool
	highestModSeq                                                 bool
	appendLimit, deletedStorage                                   bool
}

func (s *session) parseStatusItems() (*statusItems, error) {
	it := &statusItems{}
	err := s.r.List(false, func() error {
		a, err := s.r.Atom()
		if err != nil {
			return err
		}
		switch strings.ToUpper(a) {
		case "MESSAGES":
			it.messages = true
		case "UIDNEXT":
			it.uidNext = true
		case "UIDVALIDITY":
			it.uidValidity = true
		case "UNSEEN":
			it.unseen = true
		case "DELETED":
			it.deleted = true
		case "RECENT":
			it.recent = true
		case "SIZE":
			it.size = true
		case "HIGHESTMODSEQ":
			it.highestModSeq = true
		case "APPENDLIMIT":
			// RFC 7889 §3: the limit APPEND takes into this mailbox
			// (the one of the capability here), or NIL.
			it.appendLimit = true
		case "DELETED-STORAGE":
			// RFC 9208 §4.2: what EXPUNGE would free, required with
			// QUOTA=RES-STORAGE (as DELETED is with RES-MESSAGE).
			it.deletedStorage = true
		default:
			return bad("", "Unknown STATUS item "+sanitize(a))
		}
		return nil
	})
	return it, err
}

func cmdStatus(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	name, err := s.mailboxArg()
	if err != nil {
		return err
	}
	if err := s.r.SP(); err != nil {
		return err
	}
	items, err := s.parseStatusItems()
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	if items.highestModSeq {
		s.enableCondstore()
	}
	if err := s.writeStatus(name, items); err != nil {
		return err
	}
	return s.ok(tag, "", "Status completed", true)
}

// writeStatus writes the STATUS response of a folder.
func (s *session) writeStatus(name string, it *statusItems) error {
	mb, err := s.srv.reg.Open(s.store, name)
	if err != nil {
		return s.storeErr("status", err, "")
	}
	defer mb.Release()
	if err := mb.Sync(false); err != nil {
		return s.storeErr("status", err, "")
	}
	sum := mb.Status()
	s.w.Raw("* STATUS ")
	s.writeMailbox(name)
	s.w.Raw(" (")
	sep := ""
	item := func(k string, v uint64) {
		s.w.Raw(sep + k + " ")
		s.w.Number(v)
		sep = " "
	}
	if it.messages {
		item("MESSAGES", uint64(sum.Messages))
	}
	if it.recent {
		item("RECENT", uint64(s.recentCount(mb, name, sum)))
	}
	if it.uidNext {
		item("UIDNEXT", uint64(sum.UIDNext))
	}
	if it.uidValidity {
		item("UIDVALIDITY", uint64(sum.UIDValidity))
	}
	if it.unseen {
		item("UNSEEN", uint64(sum.Unseen))
	}
	if it.deleted {
		item("DELETED", uint64(sum.Deleted))
	}
	if it.size || it.deletedStorage {
		// DELETED-STORAGE in octets, the RFC822.SIZEs of the messages
		// flagged \Deleted (RFC 9208 §4.2 allows that sum; in a maildir
		// it is what EXPUNGE frees), as Cyrus counts it.
		var total, deleted int64
		for _, uid := range mb.UIDs() {
			if sz, _, err := mb.Meta(uid); err == nil {
				total += sz
				if m, ok := mb.Get(uid); ok && m.Flags&mailstore.FlagDeleted != 0 {
					deleted += sz
				}
			}
		}
		if it.size {
			item("SIZE", uint64(total))
		}
		if it.deletedStorage {
			item("DELETED-STORAGE", uint64(deleted))
		}
	}
	if it.highestModSeq {
		item("HIGHESTMODSEQ", sum.HighestModSeq)
	}
	if it.appendLimit {
		item("APPENDLIMIT", uint64(s.srv.opts.AppendLimit))
	}
	s.w.Raw(")\r\n")
	return nil
}

// recentCount is the number of messages no session has claimed as
// \Recent yet (what a SELECT now would see as recent), plus those this
// session holds when the folder is its selected one (the unclaimed ones
// are its own at its next update: STATUS counts them already, as MESSAGES
// does, rather than say RECENT 0 just before "* 1 RECENT").
func (s *session) recentCount(mb *mailstore.Mailbox, name string, sum mailstore.Status) uint32 {
	var n uint32
	if s.sel != nil && s.sel.mb == mb {
		n = uint32(len(s.sel.recent))
	}
	first := mb.RecentFrom()
	for _, u := range mb.UIDs() {
		if u >= first {
			n++
		}
	}
	return n
}
