package mailstore

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"courriel/delivery/maildirsize"
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
	// trashAge, tests: trashLeftAfter when not 0 (the trash's age
	// is its ctime, which a test cannot set back).
	trashAge time.Duration
	// renameHook, tests: called before each directory rename of a
	// RENAME (its undoing included); an error is taken as the rename's.
	renameHook func(from, to string) error
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

// Folders lists the IMAP names of all folders except INBOX, sorted. The
// trash (TrashDir) is not one; left alone for a while, it is what a
// deletion cut short left behind, and goes (removeTrashLeft).
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
		if e.Name() == TrashDir {
			s.removeTrashLeft()
			continue
		}
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
	dir, err := NewFolderDir(name)
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

// TrashDir is where Trash sets a deleted folder aside before its files
// are removed: Dovecot's trash directory for Maildir++, "..DOVECOT-TRASHED"
// in the maildir (mailbox-list-maildir.c), shared with it. No folder name
// maps to it (a hierarchy level is never empty) and FolderName reads
// none from it: it is never listed, opened or created as a folder.
const TrashDir = "..DOVECOT-TRASHED"

// trashLeftAfter is how long the trash must have been left alone (its
// ctime: a rename into it, a file made in it) before a listing of the
// maildir removes it as the leftover of a deletion cut short (a crash):
// a deletion under way is left to its own removal. Dovecot waits an hour
// (its maildir_delete_trash_dir, for NFS's .nfs files); here nothing but a
// crash leaves anything for more than a few retries.
const trashLeftAfter = time.Minute

// How often, and how long apart at most, RemoveTrash tries again.
const (
	trashTries    = 10
	trashMaxPause = 20 * time.Millisecond
)

// Delete removes a folder and its messages: Trash, then RemoveTrash. Its
// children stay (Maildir++ folders are independent directories). Once
// the name is gone the folder is deleted: files RemoveTrash could not
// remove are left to the next deletion or listing, and Delete succeeds.
func (s *Store) Delete(name string) error {
	if err := s.Trash(name); err != nil {
		return err
	}
	_ = s.RemoveTrash()
	return nil
}

// Trash deletes a folder's name, atomically: its directory is renamed into
// TrashDir, as Dovecot's DELETE does (mailbox_list_delete_maildir_via_trash),
// to TrashDir itself or, when that is there already (a deletion under
// way, or one a crash cut short), to a name of its own inside it. From
// then on nobody finds the folder by its name (LIST, SELECT, STATUS, a
// delivery), a CREATE of the name makes a new, empty folder, and whoever
// still has the old directory open (a session in IDLE on it, through its
// folder's os.Root) works in the trashed one, where nothing it makes can
// bring the name back. RemoveTrash removes the files. Children stay.
//
// Removing the files in place, as Delete did, failed while a session had
// the folder selected: woken by the removal of its messages, it synced
// and made its uidlist lock (or wrote courriel-modseq) in the folder,
// and the final rmdir found it not empty. The folder stayed half
// deleted, its messages gone, its directory listed.
func (s *Store) Trash(name string) error {
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
	dest := TrashDir
	for try := 0; ; try++ {
		err := s.root.Rename(dir, dest)
		switch {
		case err == nil:
			s.quotaFreed(dest)
			return nil
		case errors.Is(err, fs.ErrNotExist):
			if dest != TrashDir && try < trashTries {
				dest = TrashDir // the trash was removed meanwhile
				continue
			}
			return ErrNoFolder // deleted meanwhile
		case errors.Is(err, fs.ErrExist) && try < trashTries:
			// Rename onto a directory is refused even when it is empty
			// (os.Root: EEXIST): the trash is there, ours goes inside.
			dest = TrashDir + "/" + trashName()
		default:
			return fmt.Errorf("mailstore: delete %s: %w", dir, err)
		}
	}
}

// quotaFreed takes a trashed folder's messages off the maildir's
// Maildir++ maildirsize (when it keeps one), as Dovecot's quota plugin
// frees a deleted mailbox's messages: otherwise they counted against the
// quota until the file was next recomputed, and mail was refused for
// room the user had made. Best effort, as every quota line: a count that
// fails leaves the file to its next recomputation.
func (s *Store) quotaFreed(trashed string) {
	if u, err := maildirsize.FolderUsage(s.root, trashed); err == nil && u.Messages > 0 {
		_ = maildirsize.Add(s.root, -u.Bytes, -u.Messages)
	}
}

// trashName is a name of its own for a folder in the trash, as Dovecot's
// unique_fname (host, pid, random).
func trashName() string {
	h, _ := os.Hostname()
	h = strings.NewReplacer("/", "_", ".", "_").Replace(h)
	return fmt.Sprintf("%s.%d.%016x", h, os.Getpid(), rand.Uint64())
}

// RemoveTrash removes TrashDir and everything in it: what Trash set
// aside, and whatever another deletion or a crash left there (a removal
// under way elsewhere loses nothing: the trash holds nothing else). A
// program that still had a trashed folder open may make a file in it
// while it goes (Dovecot; a courriel session before Registry.Forget
// detached its folder), and the directory then is not empty: the removal
// is tried again, a few times. An error says what is left; it goes at
// the next deletion, or listing (Folders).
func (s *Store) RemoveTrash() error {
	var err error
	for try := range trashTries {
		if try > 0 {
			time.Sleep(min(time.Duration(try)*time.Millisecond, trashMaxPause))
		}
		if err = s.root.RemoveAll(TrashDir); err == nil {
			return nil
		}
	}
	return fmt.Errorf("mailstore: remove %s: %w", TrashDir, err)
}

// removeTrashLeft removes the trash when it was left alone for
// trashLeftAfter (see Folders).
func (s *Store) removeTrashLeft() {
	fi, err := s.root.Lstat(TrashDir)
	if err != nil {
		return
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if time.Since(time.Unix(st.Ctim.Unix())) < s.trashLeftAfter() {
			return
		}
	}
	_ = s.root.RemoveAll(TrashDir)
}

func (s *Store) trashLeftAfter() time.Duration {
	if s.trashAge != 0 {
		return s.trashAge
	}
	return trashLeftAfter
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
