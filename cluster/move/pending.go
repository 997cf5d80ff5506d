package move

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPendingTTL is how long a pre-copy's staging directory waits for
// its final delta.
const DefaultPendingTTL = time.Hour

// pending is a staging directory a pre-copy left for its move id.
type pending struct {
	token, login, home string
	staging            string // name beside the home
	entries            int
	bytes              int64
	at                 time.Time
}

// lockHome makes the imports of one home run one at a time; false when
// another runs.
func (im *Importer) lockHome(home string) (unlock func(), ok bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.busy[home] {
		return nil, false
	}
	im.busy[home] = true
	return func() {
		im.mu.Lock()
		delete(im.busy, home)
		im.mu.Unlock()
	}, true
}

// takePending returns the staging directory of move token if it is
// login's at home, and forgets it: a delta uses it once (a delta that is
// not final keeps it again when it succeeds). The home is locked.
func (im *Importer) takePending(token, login, home string) *pending {
	im.mu.Lock()
	defer im.mu.Unlock()
	p := im.pending[token]
	if p == nil || p.login != login || p.home != home {
		return nil
	}
	delete(im.pending, token)
	return p
}

func (im *Importer) keepPending(p *pending) {
	im.mu.Lock()
	im.pending[p.token] = p
	im.mu.Unlock()
}

// dropPending removes what earlier moves of the home (locked) left
// beside it: their pending staging directories, and staging directories
// of a process that stopped during an import (.courriel-import-<name>-
// followed by 12 hex digits: none is running, the home is locked).
func (im *Importer) dropPending(parent *os.Root, name, home string) {
	im.mu.Lock()
	for t, p := range im.pending {
		if p.home == home {
			delete(im.pending, t)
		}
	}
	im.mu.Unlock()
	f, err := parent.Open(".")
	if err != nil {
		return
	}
	des, _ := f.ReadDir(-1)
	f.Close()
	prefix := ".courriel-import-" + name + "-"
	for _, de := range des {
		if rest, ok := strings.CutPrefix(de.Name(), prefix); ok && len(rest) == 12 && validHex(rest) && de.IsDir() {
			if err := parent.RemoveAll(de.Name()); err != nil {
				im.o.Logger.Warn("move: remove a staging directory left by an earlier import", "dir", de.Name(), "err", err)
			} else {
				im.o.Logger.Info("move: removed a staging directory left by an earlier import", "dir", de.Name())
			}
		}
	}
}

func validHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// expire removes the staging directories of pre-copies older than
// PendingTTL whose home no import is using.
func (im *Importer) expire() {
	now := im.o.Now()
	var old []*pending
	im.mu.Lock()
	for t, p := range im.pending {
		if now.Sub(p.at) > im.o.PendingTTL && !im.busy[p.home] {
			delete(im.pending, t)
			im.busy[p.home] = true
			old = append(old, p)
		}
	}
	im.mu.Unlock()
	for _, p := range old {
		if parent, _, err := openParent(im.o.Base, p.home); err == nil {
			_ = parent.RemoveAll(p.staging)
			parent.Close()
		}
		im.o.Logger.Info("move: pre-copy expired, staging directory removed", "login", p.login, "home", p.home, "move", p.token)
		im.mu.Lock()
		delete(im.busy, p.home)
		im.mu.Unlock()
	}
}

// maxOpLine bounds one line of the ops: two paths and their separators.
const maxOpLine = 2*maxPathLen + 8

// readOps reads and applies the ops member of a delta: renames of
// message files within their folder, and removals, of what is in the
// staging directory only.
func (w *homeWriter) readOps(ctx context.Context, tr *tar.Reader) error {
	h, err := tr.Next()
	if err != nil {
		return refused("the delta ends before its ops: %v", err)
	}
	if h.Name != opsName || h.Typeflag != tar.TypeReg {
		return refused("the delta does not start with %s", opsName)
	}
	br := bufio.NewReaderSize(io.TeeReader(tr, w.sum.h), maxOpLine)
	ops := 0
	for {
		line, err := br.ReadSlice('\n')
		if err == io.EOF && len(line) == 0 {
			return nil
		}
		if err != nil {
			return refused("ops: a line too long or cut (%v)", err)
		}
		if ops++; ops > w.lim.MaxEntries {
			return refused("more than %d ops", w.lim.MaxEntries)
		}
		if ops%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		f := strings.Split(string(line[:len(line)-1]), "\t")
		switch {
		case len(f) == 3 && f[0] == "R":
			err = w.rename(f[1], f[2])
		case len(f) == 2 && f[0] == "D":
			err = w.remove(f[1])
		default:
			err = refused("ops: bad line %q", clean(string(line)))
		}
		if err != nil {
			return err
		}
	}
}

// rename renames a message file of the staging directory within its
// folder (new/ to cur/, or another flags suffix): same base name, the
// target not there.
func (w *homeWriter) rename(from, to string) error {
	if checkRel(from) != nil || checkRel(to) != nil || !isMessage(from) || !isMessage(to) || messageKey(from) != messageKey(to) {
		return refused("rename %q to %q: not one message of a folder", clean(from), clean(to))
	}
	fi, err := w.root.Lstat(from)
	if err != nil || !fi.Mode().IsRegular() {
		return refused("rename %s: not a file in the staging directory", from)
	}
	fromDir, err := w.root.OpenFile(path.Dir(from), os.O_RDONLY|unix.O_DIRECTORY|noFollow, 0)
	if err != nil {
		return refused("rename %s: %v", from, err)
	}
	defer fromDir.Close()
	toDir, err := w.root.OpenFile(path.Dir(to), os.O_RDONLY|unix.O_DIRECTORY|noFollow, 0)
	if err != nil {
		return refused("rename to %s: %v", to, err)
	}
	defer toDir.Close()
	err = withFd(fromDir, func(ffd int) error {
		return withFd(toDir, func(tfd int) error {
			return unix.Renameat2(ffd, path.Base(from), tfd, path.Base(to), unix.RENAME_NOREPLACE)
		})
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system without RENAME_NOREPLACE: nothing else writes
		// into the staging directory (its home is locked).
		if _, lerr := w.root.Lstat(to); !errors.Is(lerr, fs.ErrNotExist) {
			return refused("rename %s: %s is there already", from, to)
		}
		err = w.root.Rename(from, to)
	}
	if err != nil {
		return refused("rename %s to %s: %v", from, to, err)
	}
	w.renamed++
	return nil
}

// remove removes a file, the Sieve link or a directory tree of the
// staging directory; one that is not there is refused.
func (w *homeWriter) remove(rel string) error {
	if err := checkRel(rel); err != nil {
		return refused("remove: %v", err)
	}
	fi, err := w.root.Lstat(rel)
	if err != nil {
		return refused("remove %s: not in the staging directory", rel)
	}
	if fi.IsDir() {
		err = w.root.RemoveAll(rel)
		w.held--
	} else {
		err = w.root.Remove(rel)
		w.held--
		if fi.Mode().IsRegular() {
			w.heldBytes -= fi.Size()
		}
	}
	if err != nil {
		return fmt.Errorf("remove %s: %w", rel, err)
	}
	w.removed++
	return nil
}

// hasDir says whether rel is a directory of the staging directory: one
// this stream wrote, or (a delta) one already there, not a link.
func (w *homeWriter) hasDir(rel string) bool {
	if w.dirs[rel] {
		return true
	}
	if !w.delta {
		return false
	}
	fi, err := w.root.Lstat(rel)
	if err != nil || !fi.IsDir() {
		return false
	}
	w.dirs[rel] = true
	return true
}
