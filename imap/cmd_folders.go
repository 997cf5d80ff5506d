package imap

import (
	"errors"
	"sort"
	"strings"
	"unicode/utf8"

	"courriel/imap/mailstore"
)

const delim = string(mailstore.Delimiter)

// onlyMailboxArg reads " mailbox" CRLF: the arguments of the commands
// that take a mailbox and nothing else.
func (s *session) onlyMailboxArg() (string, error) {
	if err := s.r.SP(); err != nil {
		return "", err
	}
	name, err := s.mailboxArg()
	if err != nil {
		return "", err
	}
	return name, s.r.CRLF()
}

// mailboxArg reads a mailbox name and decodes it to UTF-8: modified UTF-7
// unless the client enabled UTF8=ACCEPT or IMAP4rev2. INBOX in any case is
// INBOX.
func (s *session) mailboxArg() (string, error) {
	raw, err := s.r.AString()
	if err != nil {
		return "", err
	}
	return s.decodeName(raw)
}

// decodeName refuses a name the client could not get back from LIST as
// it wrote it, with Dovecot's NO (no response code: nothing is wrong
// with the mailbox, only with how it was named).
func (s *session) decodeName(raw string) (string, error) {
	name := raw
	if !s.utf8() {
		n, err := decodeMUTF7(raw)
		if err != nil {
			return "", no("", "Mailbox name is not valid mUTF-7")
		}
		name = n
	} else if !utf8.ValidString(raw) {
		// RFC 6855 §3: UTF-8 after UTF8=ACCEPT; an invalid byte would be
		// stored as U+FFFD.
		return "", no("", "Mailbox name is not valid UTF-8")
	}
	return mailstore.CanonicalName(name), nil
}

// writeMailbox writes a mailbox name in the client's form.
func (s *session) writeMailbox(name string) {
	if s.utf8() {
		s.w.String(name, true)
		return
	}
	s.w.String(encodeMUTF7(name), false)
}

func cmdCreate(s *session, tag string, _ bool) error {
	name, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	// RFC 9051 §6.3.4: a trailing delimiter only says children are coming.
	name = strings.TrimSuffix(name, delim)
	if mailstore.IsInbox(name) {
		return s.storeErr("create", mailstore.ErrFolderExists, "")
	}
	if err := s.store.Create(name); err != nil {
		return s.storeErr("create", err, "")
	}
	s.mailboxChanged(mailboxEvent{name: name}) // notify.go
	return s.ok(tag, "", "Create completed", true)
}

func cmdDelete(s *session, tag string, _ bool) error {
	name, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	if mailstore.IsInbox(name) {
		// RFC 9051 §6.3.5 allows it; Dovecot refuses it so.
		return no("", "INBOX can't be deleted")
	}
	dir, err := mailstore.FolderDir(name)
	if err != nil {
		return s.storeErr("delete", err, "")
	}
	if s.sel != nil && s.sel.name == name {
		// RFC 9051 §6.3.5 allows it; the session leaves the folder first.
		s.unselect()
		s.state = stateAuth
	}
	// The name goes first, at once (the directory renamed into the
	// maildir's trash, as Dovecot does); then the sessions that have the
	// folder open are detached from it, so that none writes into it
	// again, and told; then its files go. Removed in place, they did not
	// while a session in IDLE on it, woken by their removal, made its
	// uidlist lock there: NO [UNAVAILABLE], the folder half deleted.
	if err := s.store.Trash(name); err != nil {
		return s.storeErr("delete", err, "")
	}
	s.srv.reg.Forget(s.store.Path(), dir, false) // children stay
	s.srv.folderGone(s, s.store.Path(), dir, false, "Selected mailbox was deleted, have to disconnect.")
	if err := s.store.RemoveTrash(); err != nil {
		// Deleted for every client all the same: what is left goes at
		// the next DELETE or LIST.
		s.logger.Warn("imap: files of a deleted folder left in the trash", "folder", name, "err", err)
	}
	s.mailboxChanged(mailboxEvent{name: name, deleted: true})
	return s.ok(tag, "", "Delete completed", true)
}

func cmdRename(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	oldName, err := s.mailboxArg()
	if err != nil {
		return err
	}
	newName, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	newName = strings.TrimSuffix(newName, delim)
	// Dovecot's refusals, in its order (cmd_rename, mailbox_rename,
	// maildir_list_rename_mailbox), without their final period.
	if strings.HasPrefix(newName, oldName+delim) {
		return no("", "Can't rename mailbox under its own child")
	}
	if oldName == newName {
		return no("ALREADYEXISTS", "Can't rename mailbox to itself")
	}
	if mailstore.IsInbox(oldName) {
		// RFC 9051 §6.3.6 wants INBOX's messages moved to the new folder;
		// that is not implemented (nor in Dovecot's maildir), so say so
		// rather than do half of it.
		return no("CANNOT", "Renaming INBOX isn't supported")
	}
	if mailstore.IsInbox(newName) {
		// INBOX always exists, as Dovecot's rename(2) onto the maildir
		// finds.
		if !s.store.Exists(oldName) {
			return s.storeErr("rename", mailstore.ErrNoFolder, "")
		}
		return errRenameExists
	}
	oldDir, err := mailstore.FolderDir(oldName)
	if err != nil {
		return s.storeErr("rename", err, "")
	}
	newDir, err := mailstore.NewFolderDir(newName)
	if err != nil {
		return s.storeErr("rename", err, "")
	}
	if err := s.store.Rename(oldName, newName); err != nil {
		if errors.Is(err, mailstore.ErrRenameSplit) {
			// Some folders moved and could not be moved back: the
			// folders open under either name are not what they were.
			s.srv.reg.Forget(s.store.Path(), oldDir, true)
			s.srv.reg.Forget(s.store.Path(), newDir, true)
			s.srv.folderGone(s, s.store.Path(), oldDir, true, "Selected mailbox was renamed, have to disconnect.")
		}
		if errors.Is(err, mailstore.ErrFolderExists) {
			return errRenameExists
		}
		return s.storeErr("rename", err, "")
	}
	s.srv.reg.Forget(s.store.Path(), oldDir, true)
	s.srv.reg.Forget(s.store.Path(), newDir, true)
	s.srv.folderGone(s, s.store.Path(), oldDir, true, "Selected mailbox was renamed, have to disconnect.")
	s.mailboxChanged(mailboxEvent{name: newName, oldName: oldName})
	return s.ok(tag, "", "Rename completed", true)
}

// errRenameExists is Dovecot's refusal of a RENAME onto an existing
// folder (maildir_list_rename_mailbox).
var errRenameExists = no("ALREADYEXISTS", "Target mailbox already exists")

// SUBSCRIBE and UNSUBSCRIBE.
func cmdSubscribe(s *session, tag string, _ bool) error {
	on := s.curName() == "SUBSCRIBE"
	name, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	if on && !s.subscribable(name) {
		// Dovecot's answer (cmd-subscribe.c): a name with no folder and
		// no child folder is refused, so that a typo does not leave a
		// subscription to nothing. UNSUBSCRIBE takes any name.
		return no("", "Mailbox doesn't exist: "+strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, name))
	}
	if err := s.store.SetSubscribed(name, on); err != nil {
		return s.storeErr("subscribe", err, "")
	}
	s.mailboxChanged(mailboxEvent{name: name, subscription: true, subscribed: on})
	if !on {
		return s.ok(tag, "", "Unsubscribe completed", true)
	}
	return s.ok(tag, "", "Subscribe completed", true)
}

// subscribable says whether name is a folder, or the parent of one (a
// Maildir++ parent needs no directory: Dovecot's \Noselect existence).
func (s *session) subscribable(name string) bool {
	if mailstore.IsInbox(name) || s.store.Exists(name) {
		return true
	}
	folders, err := s.store.Folders()
	if err != nil {
		return true // let SetSubscribed report the store's trouble
	}
	for _, f := range folders {
		if strings.HasPrefix(f, name+delim) {
			return true
		}
	}
	return false
}

// listArgs is a parsed LIST or LSUB (RFC 9051 §6.3.9, RFC 5258, RFC 5819,
// RFC 6154).
type listArgs struct {
	lsub bool
	// extended: LIST-EXTENDED syntax (selection options, a pattern
	// list, RETURN options, any of them empty), which asks for
	// RFC 5258's answer rather than RFC 3501's (see cmdList).
	extended                             bool
	ref                                  string
	patterns                             []string
	selSubscribed, selRecursive, selSpec bool
	retSubscribed, retChildren, retSpec  bool
	retStatus                            *statusItems
}

func (s *session) parseList(lsub bool) (*listArgs, error) {
	a := &listArgs{lsub: lsub}
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	extended := false
	if c, err := s.r.Peek(); err != nil {
		return nil, err
	} else if c == '(' && !lsub {
		extended = true
		err := s.r.List(true, func() error {
			o, err := s.r.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(o) {
			case "SUBSCRIBED":
				a.selSubscribed = true
			case "RECURSIVEMATCH":
				a.selRecursive = true
			case "SPECIAL-USE":
				a.selSpec = true
			case "REMOTE":
			default:
				return bad("", "Unknown LIST selection option "+sanitize(o))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if a.selRecursive && !a.selSubscribed && !a.selSpec {
			return nil, bad("", "RECURSIVEMATCH needs another selection option")
		}
		if err := s.r.SP(); err != nil {
			return nil, err
		}
	}
	ref, err := s.r.AString()
	if err != nil {
		return nil, err
	}
	a.ref = ref
	if err := s.r.SP(); err != nil {
		return nil, err
	}
	if c, err := s.r.Peek(); err != nil {
		return nil, err
	} else if c == '(' && !lsub {
		extended = true
		if err := s.r.List(false, func() error {
			p, err := s.r.ListMailbox()
			a.patterns = append(a.patterns, p)
			return err
		}); err != nil {
			return nil, err
		}
	} else {
		p, err := s.r.ListMailbox()
		if err != nil {
			return nil, err
		}
		a.patterns = []string{p}
	}
	if sp, err := s.r.Is(' '); err != nil {
		return nil, err
	} else if sp && !lsub {
		kw, err := s.r.Atom()
		if err != nil {
			return nil, err
		}
		if !strings.EqualFold(kw, "RETURN") {
			return nil, bad("", "Expected RETURN")
		}
		if err := s.r.SP(); err != nil {
			return nil, err
		}
		extended = true
		err = s.r.List(true, func() error {
			o, err := s.r.Atom()
			if err != nil {
				return err
			}
			switch strings.ToUpper(o) {
			case "SUBSCRIBED":
				a.retSubscribed = true
			case "CHILDREN":
				a.retChildren = true
			case "SPECIAL-USE":
				a.retSpec = true
			case "STATUS":
				if err := s.r.SP(); err != nil {
					return err
				}
				items, err := s.parseStatusItems()
				if err != nil {
					return err
				}
				a.retStatus = items
			default:
				return bad("", "Unknown LIST return option "+sanitize(o))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else if sp {
		return nil, bad("", "Unexpected argument")
	}
	a.extended = extended
	return a, s.r.CRLF()
}

type listEntry struct {
	name       string
	exists     bool
	subscribed bool
	children   bool // has existing children
	subChild   bool // has a subscribed descendant
	// subChildUnmatched: a subscribed descendant no pattern matches
	// (RFC 5258 §3.5: then, and only then, CHILDINFO).
	subChildUnmatched bool
}

// LIST and LSUB.
func cmdList(s *session, tag string, _ bool) error {
	lsub := s.curName() == "LSUB"
	a, err := s.parseList(lsub)
	if err != nil {
		return err
	}
	done := "List completed"
	if lsub {
		done = "Lsub completed" // Dovecot's words
	}
	if len(a.patterns) == 1 && a.patterns[0] == "" {
		// RFC 9051 §6.3.9: an empty pattern asks LIST for the delimiter
		// and root. LSUB has no such form: the pattern matches nothing,
		// as in Dovecot.
		if !lsub {
			s.w.Raw("* LIST (\\Noselect) \".\" \"\"\r\n")
		}
		return s.ok(tag, "", done, true)
	}
	ref, err := s.decodeListName(a.ref)
	if err != nil {
		return err
	}
	folders, err := s.store.Folders()
	if err != nil {
		return s.storeErr("list", err, "")
	}
	subs, err := s.store.Subscriptions()
	if err != nil {
		return s.storeErr("list", err, "")
	}
	var pats []string
	for _, p := range a.patterns {
		d, err := s.decodeListName(p)
		if err != nil {
			return err
		}
		pats = append(pats, ref+d)
	}
	entries := map[string]*listEntry{mailstore.InboxName: {name: mailstore.InboxName, exists: true}}
	get := func(n string) *listEntry {
		if mailstore.IsInbox(n) {
			n = mailstore.InboxName
		}
		e := entries[n]
		if e == nil {
			e = &listEntry{name: n}
			entries[n] = e
		}
		return e
	}
	for _, f := range folders {
		get(f).exists = true
		for _, p := range mailstore.ParentNames(f) {
			get(p).children = true
		}
	}
	for _, n := range subs {
		get(n).subscribed = true
		unmatched := !matchAny(pats, n)
		for _, p := range mailstore.ParentNames(n) {
			pe := get(p)
			pe.subChild = true
			pe.subChildUnmatched = pe.subChildUnmatched || unmatched
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		if !matchAny(pats, n) {
			continue
		}
		var attrs []string
		var childInfo bool
		switch {
		case lsub:
			if !e.subscribed {
				if e.subChild && partialMatch(pats, n) {
					s.listLine(a, n, []string{`\Noselect`}, nil)
				}
				continue
			}
			// A subscribed folder that does not exist is not \Noselect
			// here: in LSUB that says a child is subscribed (Dovecot's
			// mailbox_flags2str). Its special use is given, as Dovecot
			// gives it for Outlook 2013.
			if use := specialUseAttr(n); use != "" {
				attrs = append(attrs, use)
			}
		case a.selSubscribed:
			if !e.subscribed {
				if a.selRecursive && e.subChildUnmatched {
					childInfo = true
				} else {
					continue
				}
			}
		case a.selSpec:
			if specialUseAttr(n) == "" || !e.exists {
				continue
			}
		default:
			if !e.exists && !e.children {
				continue
			}
		}
		if !lsub {
			// In Dovecot's order (cmd-list.c, mailbox_flags2str): a
			// name that does not exist is \NonExistent (which
			// implies \Noselect) to a client that speaks
			// LIST-EXTENDED, \Noselect to one that does not; the
			// children are given to a basic LIST, and to an extended
			// one only when it asks (RFC 5258 §4 leaves it to the
			// server), as Dovecot gives them. The special use is
			// given to any (RFC 6154 §2 allows it), where Dovecot
			// gives it to an extended LIST only when asked: clients
			// that ask for \Subscribed alone see it.
			if e.subscribed && (a.selSubscribed || a.retSubscribed) {
				attrs = append(attrs, `\Subscribed`)
			}
			switch {
			case e.exists:
			case a.extended:
				attrs = append(attrs, `\NonExistent`)
			default:
				attrs = append(attrs, `\Noselect`)
			}
			if !a.extended || a.retChildren {
				if e.children {
					attrs = append(attrs, `\HasChildren`)
				} else {
					attrs = append(attrs, `\HasNoChildren`)
				}
			}
			if use := specialUseAttr(n); use != "" && e.exists {
				attrs = append(attrs, use)
			}
		}
		var extra []string
		// A subscribed name with a subscribed descendant gets
		// CHILDINFO whether the pattern matches that one or not, as
		// Dovecot gives it (cmd-list.c, mailbox_childinfo2str).
		if childInfo || (a.selRecursive && e.subChild && e.subscribed) {
			extra = append(extra, `("CHILDINFO" ("SUBSCRIBED"))`)
		}
		s.listLine(a, n, attrs, extra)
		if a.retStatus != nil && e.exists {
			if err := s.writeStatus(n, a.retStatus); err != nil {
				if isConnErr(err) {
					return err
				}
			}
		}
	}
	return s.ok(tag, "", done, true)
}

// listAttrs is what a plain LIST gives an existing folder: the
// children attribute and its special use. RFC 9051 §6.3.2 wants the LIST
// response of a SELECT after ENABLE IMAP4rev2 with accurate attributes,
// as Dovecot sends them (select_send_untagged_list).
func (s *session) listAttrs(name string) string {
	var attrs []string
	if folders, err := s.store.Folders(); err == nil {
		child := `\HasNoChildren`
		for _, f := range folders {
			if strings.HasPrefix(f, name+delim) {
				child = `\HasChildren`
				break
			}
		}
		attrs = append(attrs, child)
	}
	if use := specialUseAttr(name); use != "" {
		attrs = append(attrs, use)
	}
	return strings.Join(attrs, " ")
}

func (s *session) listLine(a *listArgs, name string, attrs, extra []string) {
	if a.lsub {
		s.w.Raw("* LSUB (")
	} else {
		s.w.Raw("* LIST (")
	}
	s.w.Raw(strings.Join(attrs, " "))
	s.w.Raw(`) "." `)
	s.writeMailbox(name)
	for _, x := range extra {
		s.w.SP()
		s.w.Raw(x)
	}
	s.w.CRLF()
}

// decodeListName decodes a reference or pattern; one that is not valid
// modified UTF-7 is used as it is (it then matches no folder), as Dovecot
// does.
func (s *session) decodeListName(raw string) (string, error) {
	if len(raw) > 1024 {
		return "", bad("", "Mailbox pattern too long")
	}
	if s.utf8() {
		return raw, nil
	}
	if d, err := decodeMUTF7(raw); err == nil {
		return d, nil
	}
	return raw, nil
}

// partialMatch: name is the hierarchy level a "%" of some pattern stops at.
func partialMatch(pats []string, name string) bool {
	for _, p := range pats {
		if strings.HasSuffix(p, "%") && matchList(p, name) {
			return true
		}
	}
	return false
}

func matchAny(pats []string, name string) bool {
	for _, p := range pats {
		if matchList(p, name) {
			return true
		}
	}
	return false
}

// matchList matches a LIST pattern ("*" anything, "%" anything but the
// delimiter); INBOX matches case-insensitively, and so does the INBOX
// level of its children ("inbox.*", "i*" list INBOX.Sub), as Dovecot's
// namespace with inbox=yes matches them. Dynamic programming keeps
// hostile patterns linear in their length times the name's.
func matchList(pattern, name string) bool {
	fold := 0 // the name's first bytes compared case-insensitively
	if mailstore.IsInbox(name) || strings.HasPrefix(name, mailstore.InboxName+delim) {
		fold = len(mailstore.InboxName) // spelt "INBOX" (CanonicalName)
	}
	n := len(name)
	prev := make([]bool, n+1)
	cur := make([]bool, n+1)
	prev[0] = true
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch c {
		case '*', '%':
			run := false
			for j := 0; j <= n; j++ {
				if c == '%' && j > 0 && name[j-1] == mailstore.Delimiter {
					run = false
				}
				run = run || prev[j]
				cur[j] = run
			}
		default:
			cur[0] = false
			up := c
			if 'a' <= c && c <= 'z' {
				up = c - 'a' + 'A'
			}
			for j := 1; j <= n; j++ {
				cur[j] = prev[j-1] && (name[j-1] == c || j <= fold && name[j-1] == up)
			}
		}
		prev, cur = cur, prev
	}
	return prev[n]
}
