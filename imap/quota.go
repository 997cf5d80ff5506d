package imap

import (
	"errors"
	"strconv"

	"courriel/delivery/maildirsize"
	"courriel/imap/mailstore"
)

// QUOTA (RFC 9208) over the user's maildir: one quota root per user,
// named as Dovecot names it, with the limits the directory gives
// (directory.User.Quota*) and the usage of Maildir++'s maildirsize, the
// file delivery and Dovecot keep too. The limits are set in the directory,
// never by SETQUOTA.

// quotaRoot is the name of the user's quota root.
const quotaRoot = "User quota"

func (s *session) quotaLimits() maildirsize.Limits {
	return maildirsize.Limits{Bytes: s.user.QuotaBytes, Messages: s.user.QuotaMessages}
}

// checkQuota refuses adding messages of size octets in all (count of
// them) when that would take the user past the quota (RFC 9208 §4.3:
// NO [OVERQUOTA]), before anything is written.
func (s *session) checkQuota(size, count int64) error {
	lim := s.quotaLimits()
	if !lim.Set() || count == 0 {
		return nil
	}
	u, err := s.store.QuotaUsage(lim)
	if err != nil {
		return s.storeErr("quota", err, "")
	}
	if (lim.Bytes > 0 && u.Bytes+size > lim.Bytes) || (lim.Messages > 0 && u.Messages+count > lim.Messages) {
		return no("OVERQUOTA", "Quota exceeded (mailbox is full)")
	}
	return nil
}

// writeQuota writes "* QUOTA" for the user's root.
func (s *session) writeQuota(lim maildirsize.Limits) error {
	u, err := s.store.QuotaUsage(lim)
	if err != nil {
		return s.storeErr("quota", err, "")
	}
	s.w.Raw("* QUOTA ")
	s.w.String(quotaRoot, false)
	s.w.Raw(" (")
	sep := ""
	if lim.Bytes > 0 {
		// RFC 9208 §5.1: STORAGE in units of 1024 octets, rounded up as
		// Dovecot's quota plugin does (a 1-byte message uses 1).
		kib := func(n int64) string { return strconv.FormatInt((n+1023)/1024, 10) }
		s.w.Raw("STORAGE " + kib(u.Bytes) + " " + kib(lim.Bytes))
		sep = " "
	}
	if lim.Messages > 0 {
		s.w.Raw(sep + "MESSAGE " + strconv.FormatInt(u.Messages, 10) + " " + strconv.FormatInt(lim.Messages, 10))
	}
	s.w.Raw(")\r\n")
	return nil
}

func cmdGetQuotaRoot(s *session, tag string, _ bool) error {
	name, err := s.onlyMailboxArg()
	if err != nil {
		return err
	}
	mb, err := s.srv.reg.Open(s.store, name)
	switch {
	case errors.Is(err, mailstore.ErrNoRoomToOpen):
		// The folder exists; its quota is what a user on a full disk
		// wants to see.
	case err != nil:
		return s.storeErr("getquotaroot", err, "")
	default:
		mb.Release()
	}
	lim := s.quotaLimits()
	s.w.Raw("* QUOTAROOT ")
	s.writeMailbox(name)
	if lim.Set() {
		s.w.Raw(" ")
		s.w.String(quotaRoot, false)
	}
	s.w.Raw("\r\n")
	if !lim.Set() {
		// A user without limits has no quota root: RFC 9208 §4.3.3's
		// QUOTAROOT lists none (a root needs a resource with a limit:
		// quota_resource has no "unlimited"), and GETQUOTA of any
		// root is NO [NONEXISTENT]. Dovecot's quota plugin, its root
		// without limits, says "OK No quota." and leaves out the
		// QUOTAROOT the RFC requires; its text is kept.
		return s.ok(tag, "", "No quota", true)
	}
	if err := s.writeQuota(lim); err != nil {
		return err
	}
	return s.ok(tag, "", "Getquotaroot completed", true)
}

func cmdGetQuota(s *session, tag string, _ bool) error {
	if err := s.r.SP(); err != nil {
		return err
	}
	root, err := s.r.AString()
	if err != nil {
		return err
	}
	if err := s.r.CRLF(); err != nil {
		return err
	}
	lim := s.quotaLimits()
	if root != quotaRoot || !lim.Set() {
		return no("NONEXISTENT", "Quota root doesn't exist") // Dovecot's text
	}
	if err := s.writeQuota(lim); err != nil {
		return err
	}
	return s.ok(tag, "", "Getquota completed", true)
}

func cmdSetQuota(s *session, tag string, _ bool) error {
	if err := s.r.Discard(); err != nil {
		return err
	}
	return no("NOPERM", "Quotas are set in the directory")
}
