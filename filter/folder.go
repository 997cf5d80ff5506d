package filter

import (
	"errors"
	"strings"
	"unicode/utf8"

	"courriel/internal/mutf7"
)

// maxFolderName bounds a fileinto name as the script wrote it, and
// maxFolderDir the Maildir++ directory name it becomes (with its leading
// dot, a file name: 255 bytes).
const (
	maxFolderName = 200
	maxFolderDir  = 250
)

var errBadFolder = errors.New("invalid folder name")

// maildirFolder maps a fileinto name to the Maildir++ folder delivery
// stores into (delivery.Recipient.Folder: the directory's name without its
// leading dot), as Dovecot's maildir layout names it: '.' separates the
// hierarchy, each level in IMAP's modified UTF-7. "" means the INBOX
// ("INBOX" in any case, or ""). Names with '/', an empty level (so "..",
// a leading or trailing dot), control characters, invalid UTF-8 or beyond
// the length are refused: the copy then keeps to the INBOX, as Pigeonhole
// does when a fileinto fails.
func maildirFolder(name string) (string, error) {
	if name == "" || strings.EqualFold(name, "INBOX") {
		return "", nil
	}
	if len(name) > maxFolderName || !utf8.ValidString(name) {
		return "", errBadFolder
	}
	levels := strings.Split(name, ".")
	if strings.EqualFold(levels[0], "INBOX") {
		levels[0] = "INBOX" // "Inbox.Sub" is Dovecot's .INBOX.Sub, as in IMAP
	}
	for i, l := range levels {
		if l == "" || strings.TrimSpace(l) != l {
			return "", errBadFolder
		}
		for _, r := range l {
			if r < 0x20 || (r >= 0x7f && r < 0xa0) || r == '/' || r == '\\' || r == '*' || r == '%' || r == utf8.RuneError {
				return "", errBadFolder
			}
		}
		levels[i] = mutf7.Encode(l)
	}
	dir := strings.Join(levels, ".")
	if len(dir) > maxFolderDir {
		return "", errBadFolder
	}
	return dir, nil
}
