package filter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"courriel/imap/uidlist"
)

// keywordsLockWait is how long a delivery waits for the IMAP server or
// Dovecot holding dovecot-keywords' dotlock.
const keywordsLockWait = 5 * time.Second

// KeywordLetters is delivery.Options.KeywordLetters: the maildir letters of
// IMAP keywords in the folder dir, from its dovecot-keywords table, adding
// the missing ones under the same dotlock and in the same format Dovecot
// and courriel's IMAP server use (imap/uidlist). Invalid keywords are
// skipped; past 26 keywords the rest are dropped, as Dovecot's maildir
// cannot name them either.
func KeywordLetters(dir *os.Root, keywords []string, uid, gid int) (string, error) {
	var valid []string
	for _, k := range keywords {
		if uidlist.ValidKeyword(k) {
			valid = append(valid, k)
		}
	}
	if len(valid) == 0 {
		return "", nil
	}
	table, err := readKeywords(dir)
	if err != nil {
		return "", err
	}
	if letters, ok := lettersOf(&table, valid); ok {
		return letters, nil // every keyword known: no lock, no write
	}
	lk, err := uidlist.Acquire(dir, uidlist.KeywordsFileName, keywordsLockWait, 0o600, uid, gid)
	if err != nil {
		return "", err
	}
	defer lk.Release()
	if table, err = readKeywords(dir); err != nil { // another writer may have added some
		return "", err
	}
	changed := false
	for _, k := range valid {
		if _, added := table.Add(k); added {
			changed = true
		}
	}
	if changed {
		if err := lk.Commit(table.Marshal()); err != nil {
			return "", err
		}
	}
	letters, _ := lettersOf(&table, valid)
	return letters, nil
}

// readKeywords reads the folder's table: a regular file only (the maildir
// is the user's: never block on a FIFO), bounded, never through a
// symlink. Dovecot follows one (it reads as the user); courriel reads as
// root and writes what it read back into the table, the user's file: a
// dovecot-keywords linked to a file of the maildir the user may not read
// would hand them its lines.
func readKeywords(dir *os.Root) (uidlist.Keywords, error) {
	f, err := openNoFollow(dir, uidlist.KeywordsFileName, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return uidlist.Keywords{}, nil
	}
	if err != nil {
		return uidlist.Keywords{}, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return uidlist.Keywords{}, fmt.Errorf("%s is not a regular file", uidlist.KeywordsFileName)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeywordsFile))
	if err != nil {
		return uidlist.Keywords{}, err
	}
	return uidlist.ParseKeywords(bytes.NewReader(data))
}

// maxKeywordsFile: 26 keywords of at most 128 bytes each, with room.
const maxKeywordsFile = 16 << 10

// lettersOf gives the letters of the keywords the table knows, and
// whether it knows them all.
func lettersOf(t *uidlist.Keywords, keywords []string) (string, bool) {
	var b []byte
	all := true
	for _, k := range keywords {
		if i := t.Index(k); i >= 0 {
			b = append(b, byte('a'+i))
		} else {
			all = false
		}
	}
	return string(b), all
}
