package mailstore

import (
	"time"

	"courriel/delivery/maildirsize"
)

// QuotaUsage is what the maildir holds under limits, from its Maildir++
// maildirsize (counted afresh when the file is missing or stale, as
// delivery and Dovecot do).
func (s *Store) QuotaUsage(limits maildirsize.Limits) (maildirsize.Usage, error) {
	uid, gid := s.owner.ids()
	return maildirsize.Read(s.root, limits, maildirsize.Owner{UID: uid, GID: gid}, time.Now())
}
