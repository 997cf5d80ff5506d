package delivery

import (
	"os"
	"sort"
	"strings"
)

// systemFlagLetter is the maildir info letter of an IMAP system flag, in
// lower case (the maildir spec's, as Dovecot writes them).
func systemFlagLetter(flag string) (byte, bool) {
	switch flag {
	case `\draft`:
		return 'D', true
	case `\flagged`:
		return 'F', true
	case `\answered`:
		return 'R', true
	case `\seen`:
		return 'S', true
	case `\deleted`:
		return 'T', true
	}
	return 0, false
}

// infoFlags is the info part (after ":2,") of a copy stored with
// r.Flags: system flag letters, then keyword letters from the folder's
// dovecot-keywords (Options.KeywordLetters), in ASCII order as the maildir
// spec asks. An unknown system flag (\Recent among them) is dropped, and
// so are keywords that cannot be recorded (logged): the copy is stored
// all the same.
func (s *Store) infoFlags(m *Message, md *openMaildir, r *Recipient) string {
	var letters []byte
	var keywords []string
	for _, f := range r.Flags {
		if strings.HasPrefix(f, `\`) {
			if c, ok := systemFlagLetter(strings.ToLower(f)); ok {
				letters = append(letters, c)
			}
			continue
		}
		keywords = append(keywords, f)
	}
	if len(keywords) > 0 && s.keywordLetters != nil {
		uid, gid := -1, -1
		if s.chown {
			uid, gid = r.UID, r.GID
		}
		kl, err := s.keywordLetters(md.root, keywords, uid, gid)
		if err != nil {
			s.log.Warn("keywords not stored", "msg_id", m.ID, "to", r.Address, "error", err)
		}
		for i := 0; i < len(kl); i++ {
			if c := kl[i]; c >= 'a' && c <= 'z' {
				letters = append(letters, c)
			}
		}
	}
	sort.Slice(letters, func(i, j int) bool { return letters[i] < letters[j] })
	out := letters[:0]
	for i, c := range letters {
		if i == 0 || c != letters[i-1] {
			out = append(out, c)
		}
	}
	return string(out)
}

// folderMissing reports whether the folder directory rel (relative to the
// base) does not exist: fileinto without :create must not make it. Only
// an existence check: what is written there is opened confined afterwards.
func (s *Store) folderMissing(rel string) bool {
	_, err := os.Lstat(s.absolute(rel))
	return os.IsNotExist(err)
}
