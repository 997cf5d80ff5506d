package delivery

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
)

// keyedCopyStored reports whether the copy named name (a keyedName) is
// already in the maildir: in new/ under that name, or in cur/ under it with
// an info part (":2,<flags>") once an IMAP client has seen it. A copy the
// user has since expunged is not found, and is stored again: the maildir
// keeps no tombstones, and a retry happens only when an attempt's outcome
// was lost, which is rare enough that one such repeat beats a lost copy.
func keyedCopyStored(md *openMaildir, name string) (bool, error) {
	switch _, err := md.root.Lstat("new/" + name); {
	case err == nil:
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, err
	}
	cur, err := md.root.OpenFile("cur", os.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		return false, err
	}
	defer cur.Close()
	prefix := name + ":"
	for {
		names, err := cur.Readdirnames(4096)
		for _, n := range names {
			if n == name || strings.HasPrefix(n, prefix) {
				return true, nil
			}
		}
		if err == io.EOF || len(names) == 0 {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// Stored reports whether r's keyed copy of m (Recipient.CopyKey) is already
// in its maildir: what an earlier attempt stored. Sieve delivery asks it
// before queueing a script's redirects and replies again on a retry, since
// it queues them before the stores: a stored first copy means they are
// queued. False without a key or when the maildir does not exist.
func (s *Store) Stored(m *Message, r Recipient) (bool, error) {
	if r.CopyKey == "" || !validCopyKey(r.CopyKey) || m.Arrived.IsZero() {
		return false, nil
	}
	if err := validAddress(r.Address); err != nil {
		return false, nil
	}
	header := m.Header
	if n := len(header); n > 0 && header[n-1] != '\n' {
		header = append(header[:n:n], '\r', '\n')
	}
	body := m.Body
	if body == nil {
		body = bytes.NewReader(nil)
	}
	stats, err := scanBody(body)
	if err != nil {
		return false, err
	}
	parts := copyParts{header: header, body: body, stats: stats, prefix: buildPrefix(m.From, r.Address)}
	size, wsize := parts.sizes()
	rel, e := s.maildirRel(r.Maildir)
	if e != nil {
		return false, e
	}
	if r.Folder != "" {
		if !validFolder(r.Folder) {
			return false, nil
		}
		rel += "/." + r.Folder
	}
	root, err := os.OpenRoot(s.absolute(rel))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer root.Close()
	return keyedCopyStored(&openMaildir{root: root}, keyedName(m.Arrived, r.CopyKey, s.host, size, wsize))
}
