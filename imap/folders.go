package imap

import (
	"sort"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"courriel/imap/mailstore"
)

const delim = string(mailstore.Delimiter)

func (s *session) Create(name string, _ *goimap.CreateOptions) error {
	// RFC 9051 §6.3.4: a trailing delimiter only says children are coming.
	name = strings.TrimSuffix(name, delim)
	if mailstore.IsInbox(name) {
		return s.imapError("create", mailstore.ErrFolderExists, "")
	}
	return s.imapError("create", s.store.Create(name), "")
}

func (s *session) Delete(name string) error {
	dir, err := mailstore.FolderDir(name)
	if err != nil {
		return s.imapError("delete", err, "")
	}
	if err := s.store.Delete(name); err != nil {
		return s.imapError("delete", err, "")
	}
	s.srv.reg.Forget(s.store.Path(), dir)
	return nil
}

func (s *session) Rename(oldName, newName string, _ *goimap.RenameOptions) error {
	newName = strings.TrimSuffix(newName, delim)
	if mailstore.IsInbox(oldName) {
		// RFC 9051 §6.3.6 wants INBOX's messages moved to the new folder;
		// that is not implemented, so say so rather than do half of it.
		return &goimap.Error{Type: goimap.StatusResponseTypeNo, Code: goimap.ResponseCodeCannot, Text: "Renaming INBOX is not supported"}
	}
	oldDir, err := mailstore.FolderDir(oldName)
	if err != nil {
		return s.imapError("rename", err, "")
	}
	newDir, err := mailstore.FolderDir(newName)
	if err != nil {
		return s.imapError("rename", err, "")
	}
	if err := s.store.Rename(oldName, newName); err != nil {
		return s.imapError("rename", err, "")
	}
	s.srv.reg.Forget(s.store.Path(), oldDir)
	s.srv.reg.Forget(s.store.Path(), newDir)
	return nil
}

func (s *session) Subscribe(name string) error {
	return s.imapError("subscribe", s.store.SetSubscribed(name, true), "")
}

func (s *session) Unsubscribe(name string) error {
	return s.imapError("unsubscribe", s.store.SetSubscribed(name, false), "")
}

type listEntry struct {
	name       string
	exists     bool
	subscribed bool
	children   bool
}

// List answers LIST, LSUB and their RFC 5258/6154/5819 extensions.
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions) error {
	if len(patterns) == 0 {
		// RFC 9051 §6.3.9: an empty pattern asks for the delimiter.
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: mailstore.Delimiter})
	}
	folders, err := s.store.Folders()
	if err != nil {
		return s.imapError("list", err, "")
	}
	subs, err := s.store.Subscriptions()
	if err != nil {
		return s.imapError("list", err, "")
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
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := entries[n]
		if !e.exists && !e.children && !e.subscribed {
			continue
		}
		match := false
		for _, p := range patterns {
			if imapserver.MatchList(n, mailstore.Delimiter, ref, p) {
				match = true
				break
			}
		}
		if !match {
			continue
		}
		if options.SelectSubscribed && !e.subscribed {
			continue
		}
		if !e.exists && !options.SelectSubscribed && !e.children {
			continue
		}
		use := specialUseAttr(n)
		if options.SelectSpecialUse && use == "" {
			continue
		}
		data := &goimap.ListData{Mailbox: n, Delim: mailstore.Delimiter}
		switch {
		case !e.exists && options.SelectSubscribed:
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNonExistent)
		case !e.exists:
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
		}
		if e.children {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasNoChildren)
		}
		if e.subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		}
		if use != "" {
			data.Attrs = append(data.Attrs, use)
		}
		if options.ReturnStatus != nil && e.exists {
			st, err := s.status(n, options.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	st, err := s.status(name, options)
	if err != nil {
		return nil, s.imapError("status", err, "")
	}
	return st, nil
}

func (s *session) status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	mb, err := s.srv.reg.Open(s.store, name)
	if err != nil {
		return nil, err
	}
	defer mb.Release()
	if err := mb.Sync(false); err != nil {
		return nil, err
	}
	sum := mb.Status()
	data := &goimap.StatusData{Mailbox: name}
	if mailstore.IsInbox(name) {
		data.Mailbox = mailstore.InboxName
	}
	if options.NumMessages {
		n := sum.Messages
		data.NumMessages = &n
	}
	if options.UIDNext {
		data.UIDNext = goimap.UID(sum.UIDNext)
	}
	if options.UIDValidity {
		data.UIDValidity = sum.UIDValidity
	}
	if options.NumUnseen {
		n := sum.Unseen
		data.NumUnseen = &n
	}
	if options.NumDeleted {
		n := sum.Deleted
		data.NumDeleted = &n
	}
	if options.NumRecent {
		var n uint32 // \Recent is not tracked (dropped by IMAP4rev2)
		data.NumRecent = &n
	}
	if options.Size {
		var total int64
		for _, uid := range mb.UIDs() {
			if sz, _, err := mb.Meta(uid); err == nil {
				total += sz
			}
		}
		data.Size = &total
	}
	return data, nil
}
