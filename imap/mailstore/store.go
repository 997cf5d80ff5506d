package mailstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"courriel/imap/uidlist"
)

// Owner says who owns what courriel creates in a maildir.
type Owner struct {
	UID, GID int
	Chown    bool // chown new files and directories (courriel runs as root)
}

func (o Owner) chown(root *os.Root, name string) {
	if o.Chown {
		_ = root.Lchown(name, o.UID, o.GID) // best effort; mode 0600/0700 already protects
	}
}

func (o Owner) ids() (int, int) {
	if o.Chown {
		return o.UID, o.GID
	}
	return -1, -1
}

// ErrNoFolder: the folder does not exist.
var ErrNoFolder = errors.New("mailstore: no such folder")

// ErrNoRoomToOpen refuses to open, for want of room, a folder that has
// messages but no numbering yet: no dovecot-uidlist (no IMAP server has
// opened it: a maildir copied in, a new account's first deliveries), or
// one that no longer parses. Its UIDVALIDITY and UIDs can be shown only
// once written (a number shown and not kept would change at the next
// open under clients that cached it, and Dovecot, working on the folder
// meanwhile, would give its own); without them the folder would show
// empty, which alarms users, while every message is there. The error
// wraps the file system's (ENOSPC, EDQUOT): IMAP answers NO [OVERQUOTA],
// and the client tries again later. Dovecot 2.3 refuses such a folder
// too (SELECT and STATUS: NO, "[SERVERBUG]" for ENOSPC, its answer to any
// write error but EDQUOT); a folder whose uidlist exists opens on a full
// disk as it is (see assignLocked).
var ErrNoRoomToOpen = errors.New("mailstore: no room to number the messages of a folder never numbered")

// ErrFolderExists: CREATE or RENAME onto an existing folder.
var ErrFolderExists = errors.New("mailstore: folder exists")

// SubscriptionsFile is Dovecot's list of subscribed folders, one name per
// line (the format Dovecot 2.0–2.3 reads; its "V\t2" variant is read too).
const SubscriptionsFile = "subscriptions"

// Store is one user's maildir. It is safe for concurrent use.
type Store struct {
	path  string
	root  *os.Root
	owner Owner
	user  string     // the login it belongs to; see SetUser
	mu    sync.Mutex // serialises read-modify-write of the subscriptions file
}

// SetUser names the login the store belongs to, before its first folder
// is opened: Registry.DropUser closes that login's folders kept loaded.
func (s *Store) SetUser(login string) { s.user = login }

// OpenStore opens (creating it with cur/, new/ and tmp/ when missing) the
// maildir at path, which must be absolute. Symbolic links in the existing
// part of path are followed: use OpenStoreUnder where users control part of
// the path. The directories it creates (the maildir and missing parents)
// belong to the user, as those delivery creates.
func OpenStore(path string, owner Owner) (*Store, error) {
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("mailstore: maildir %q is not absolute", path)
	}
	path = filepath.Clean(path)
	// The deepest existing ancestor; the rest is created below it.
	existing, missing := path, ""
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		} else if !errors.Is(err, fs.ErrNotExist) || existing == "/" {
			return nil, fmt.Errorf("mailstore: open maildir: %w", err)
		}
		missing = filepath.Join(filepath.Base(existing), missing)
		existing = filepath.Dir(existing)
	}
	if missing != "" {
		// What is made is made in existing: it must be the owner's to
		// write, as for Dovecot working as the user.
		fd, err := unix.Open(existing, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("mailstore: open maildir: %w", err)
		}
		err = usableBy(fd, owner, true)
		unix.Close(fd)
		if err != nil {
			return nil, fmt.Errorf("mailstore: %s: %w", existing, err)
		}
		return OpenStoreUnder(existing, missing, owner)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	defer unix.Close(fd)
	return openStoreAt(path, fd, owner)
}

// Path is the maildir's absolute path.
func (s *Store) Path() string { return s.path }

// Close releases the root handle.
func (s *Store) Close() error { return s.root.Close() }

func (s *Store) makeMaildir(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		name := dir + "/" + sub
		if err := s.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mailstore: mkdir %s: %w", name, err)
		}
		s.owner.chown(s.root, name)
	}
	return nil
}

// Folders lists the IMAP names of all folders except INBOX, sorted.
func (s *Store) Folders() ([]string, error) {
	f, err := s.root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("mailstore: open maildir: %w", err)
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, fmt.Errorf("mailstore: list maildir: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), ".") {
			continue // symlinks are not followed for listing
		}
		if name, ok := FolderName(e.Name()); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Exists reports whether the folder exists: whether its directory does,
// as Folders and Dovecot see it, cur/, new/ and tmp/ or not (Open makes
// the missing ones).
func (s *Store) Exists(name string) bool {
	dir, err := FolderDir(name)
	if err != nil {
		return false
	}
	if dir == "" {
		return true
	}
	st, err := s.root.Stat(dir)
	return err == nil && st.IsDir()
}

// Create makes a folder (a Maildir++ sub-maildir with its maildirfolder
// marker). Parents need no directory of their own in Maildir++. A
// failure half-way (a full disk: mkdir needs a block) takes back what it
// made: a directory left without cur/ would be a folder for LIST and
// the next CREATE, and none for anything else.
func (s *Store) Create(name string) (err error) {
	dir, err := FolderDir(name)
	if err != nil {
		return err
	}
	if dir == "" {
		return ErrFolderExists
	}
	if err := s.root.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return ErrFolderExists
		}
		return fmt.Errorf("mailstore: create %s: %w", dir, err)
	}
	made := []string{dir}
	defer func() {
		if err == nil {
			return
		}
		// Newest first, each only if still as made: a directory another
		// program put something in meanwhile stays.
		for i := len(made) - 1; i >= 0; i-- {
			_ = s.root.Remove(made[i])
		}
	}()
	s.owner.chown(s.root, dir)
	for _, sub := range []string{"cur", "new", "tmp"} {
		name := dir + "/" + sub
		if err := s.root.Mkdir(name, 0o700); err != nil {
			return fmt.Errorf("mailstore: mkdir %s: %w", name, err)
		}
		made = append(made, name)
		s.owner.chown(s.root, name)
	}
	mf := dir + "/maildirfolder"
	made = append(made, mf)
	if err := s.root.WriteFile(mf, nil, 0o600); err != nil {
		return fmt.Errorf("mailstore: create %s: %w", mf, err)
	}
	s.owner.chown(s.root, mf)
	return nil
}

// completeFolder gives the folder directory dir whichever of cur/, new/
// and tmp/ it lacks, as Dovecot does when it opens a folder: one without
// them (a CREATE cut short by a crash, another program's mkdir) is
// listed, so every command must be able to use it.
func (s *Store) completeFolder(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		name := dir + "/" + sub
		if _, err := s.root.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
			continue // there, or an error the folder's load will meet
		}
		if err := s.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mailstore: mkdir %s: %w", name, err)
		}
		s.owner.chown(s.root, name)
	}
	return nil
}

// Delete removes a folder and its messages. Its children stay (Maildir++
// folders are independent directories).
func (s *Store) Delete(name string) error {
	dir, err := FolderDir(name)
	if err != nil {
		return err
	}
	if dir == "" {
		return fmt.Errorf("%w: INBOX cannot be deleted", ErrBadName)
	}
	if !s.Exists(name) {
		return ErrNoFolder
	}
	if err := s.root.RemoveAll(dir); err != nil {
		return fmt.Errorf("mailstore: delete %s: %w", dir, err)
	}
	return nil
}

// Rename renames a folder and all its children (RFC 9051 §6.3.6).
func (s *Store) Rename(oldName, newName string) error {
	oldDir, err := FolderDir(oldName)
	if err != nil {
		return err
	}
	newDir, err := FolderDir(newName)
	if err != nil {
		return err
	}
	if oldDir == "" || newDir == "" {
		return fmt.Errorf("%w: INBOX cannot be renamed here", ErrBadName)
	}
	if !s.Exists(oldName) {
		return ErrNoFolder
	}
	if s.Exists(newName) {
		return ErrFolderExists
	}
	if strings.HasPrefix(newDir+".", oldDir+".") {
		return fmt.Errorf("%w: cannot rename a folder into itself", ErrBadName)
	}
	all, err := s.Folders()
	if err != nil {
		return err
	}
	type mv struct{ from, to string }
	moves := []mv{{oldDir, newDir}}
	for _, f := range all {
		if strings.HasPrefix(f, oldName+string(Delimiter)) {
			fd, _ := FolderDir(f)
			td, err := FolderDir(newName + f[len(oldName):])
			if err != nil {
				return err
			}
			moves = append(moves, mv{fd, td})
		}
	}
	for _, m := range moves {
		if _, err := s.root.Stat(m.to); err == nil {
			return ErrFolderExists
		}
	}
	for _, m := range moves {
		if err := s.root.Rename(m.from, m.to); err != nil {
			return fmt.Errorf("mailstore: rename %s: %w", m.from, err)
		}
	}
	return nil
}

// Subscriptions returns the subscribed folder names.
func (s *Store) Subscriptions() ([]string, error) {
	data, err := s.root.ReadFile(SubscriptionsFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailstore: read subscriptions: %w", err)
	}
	return parseSubscriptions(data), nil
}

func parseSubscriptions(data []byte) []string {
	lines := strings.Split(string(data), "\n")
	v2 := len(lines) > 0 && lines[0] == "V\t2"
	if v2 {
		lines = lines[1:]
	}
	var out []string
	seen := map[string]bool{}
	for _, l := range lines {
		l = strings.TrimSuffix(l, "\r")
		if l == "" {
			continue
		}
		if v2 {
			l = strings.ReplaceAll(l, "\t", string(Delimiter))
		}
		if d, err := DecodeMUTF7(l); err == nil {
			l = d // Dovecot writes the mUTF-7 form
		}
		if IsInbox(l) {
			l = InboxName
		}
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// SetSubscribed adds or removes name from the subscriptions file, replaced
// atomically under Dovecot's dotlock.
func (s *Store) SetSubscribed(name string, on bool) error {
	if IsInbox(name) {
		name = InboxName
	} else if _, err := FolderDir(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	uid, gid := s.owner.ids()
	lk, err := uidlist.Acquire(s.root, SubscriptionsFile, 10*time.Second, 0o600, uid, gid)
	if err != nil {
		return err
	}
	defer lk.Release()
	cur, err := s.Subscriptions()
	if err != nil {
		return err
	}
	var out []string
	found := false
	for _, c := range cur {
		if c == name {
			found = true
			if !on {
				continue
			}
		}
		out = append(out, c)
	}
	if on && !found {
		out = append(out, name)
	}
	if found == on {
		return nil
	}
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	for _, n := range out {
		w.WriteString(encodeUTF7Name(n))
		w.WriteByte('\n')
	}
	w.Flush()
	return lk.Commit(b.Bytes())
}

func encodeUTF7Name(name string) string {
	parts := strings.Split(name, string(Delimiter))
	for i, p := range parts {
		parts[i] = EncodeMUTF7(p)
	}
	return strings.Join(parts, string(Delimiter))
}
