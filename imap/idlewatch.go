package imap

import (
	"hash/crc32"
	"net/netip"
	"time"

	"courriel/imap/mailstore"
	"courriel/internal/dirwatch"
)

// watchFolder has inotify wake the sessions idling on mb when another
// program (a delivery agent, another server, a script) changes its new/
// or cur/, so that the session need not poll every IdleCheck. It returns
// false where that cannot be: no inotify, a network file system (other
// machines' changes raise no event), or no watch left (the per-user
// limit, fs.inotify.max_user_watches); the session then polls. A true
// return must be paired with unwatchFolder.
func (s *Server) watchFolder(mb *mailstore.Mailbox) bool {
	if s.folders == nil {
		return false
	}
	newDir, curDir := mb.ChangeDirs()
	if !dirwatch.Local(newDir) {
		return false
	}
	if err := s.folders.Add(mb, newDir, curDir); err != nil {
		if !s.warnedWatch.Swap(true) {
			s.log.Warn("imap: cannot watch a folder; sessions in IDLE on such folders poll it", "every", s.opts.IdleCheck, "err", err)
		}
		return false
	}
	return true
}

func (s *Server) unwatchFolder(mb *mailstore.Mailbox) { s.folders.Remove(mb) }

// idleCheck is how long a session in IDLE on mb (nil: none) waits before
// looking for changes itself: long where inotify tells it of them, for mb
// and for every mailbox of its NOTIFY set if it has one.
func (s *Server) idleCheck(se *session, mb *mailstore.Mailbox) time.Duration {
	if n := se.notify.Load(); mb != nil && (n == nil || n.allWatched()) && s.folders != nil && s.folders.Watching(mb) {
		return s.opts.WatchedIdleCheck
	}
	return s.opts.IdleCheck
}

// notifyDelay is how long a session in IDLE, or waiting for a command
// with a NOTIFY set, waits after a change is signalled before it reports
// it, with the changes that came meanwhile:
// 500 ms, Dovecot's NOTIFY_DELAY_MSECS (src/lib-storage/mailbox-watch.c).
// A stream of changes is reported at most this long after the first one
// not yet reported.
func (s *Server) notifyDelay() time.Duration {
	if d := s.opts.notifyDelayAfter; d > 0 {
		return d
	}
	return 500 * time.Millisecond
}

// idleKeepalive is when a session in IDLE since now or its last "* OK
// Still here" says it again (zero: never). As Dovecot's
// imap_keepalive_interval_msecs, the times are those of a fixed phase of
// the interval chosen by the client's address, or by the user where
// the address is a private one (a NAT or a proxy hides many clients
// behind it): a phone with several accounts wakes once for all of them.
func (s *session) idleKeepalive(now time.Time) time.Time {
	iv := s.srv.opts.IdleNotifyInterval
	if iv <= 0 {
		return time.Time{}
	}
	var h uint32
	if ip, err := netip.ParseAddr(s.ip); err == nil && !ip.IsPrivate() && !ip.IsLoopback() {
		h = crc32.ChecksumIEEE(ip.AsSlice())
	} else {
		h = crc32.ChecksumIEEE([]byte(s.user.Login))
	}
	phase := (now.UnixNano() + int64(h)*int64(time.Millisecond)) % int64(iv)
	return now.Add(iv - time.Duration(phase))
}
