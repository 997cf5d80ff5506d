package mailstore

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrRenameSplit: a RENAME failed half-way and could not be undone
// either: some of the folders have their new names, the others their old
// ones. The caller must take both names for changed (Registry.Forget).
var ErrRenameSplit = errors.New("mailstore: rename failed half-way and could not be undone")

// Rename renames a folder and all its children (RFC 9051 §6.3.6), or the
// children alone of a name that is only their parent. In
// Maildir++ each is a directory of its own beside the others (".A",
// ".A.B"), renamed one after the other: no single rename moves them all.
// Dovecot 2.3 (maildir_rename_children) renames the parent, then each
// child, and stops at the first child that fails, leaving the hierarchy
// split between the two names. Here a failure undoes the renames already
// made, last first, so that RENAME either moves the whole hierarchy or
// leaves it as it was; only an undo that fails too (ErrRenameSplit)
// leaves it split. A child deleted meanwhile (by another process) is
// left out, as Dovecot leaves it.
//
// Each rename refuses to replace what is at the new name
// (RENAME_NOREPLACE): rename(2) of a directory replaces an empty one, so
// a folder another process created there since the check would be lost.
func (s *Store) Rename(oldName, newName string) error {
	oldDir, err := FolderDir(oldName)
	if err != nil {
		return err
	}
	newDir, err := NewFolderDir(newName)
	if err != nil {
		return err
	}
	if oldDir == "" || newDir == "" {
		return fmt.Errorf("%w: INBOX cannot be renamed here", ErrBadName)
	}
	all, err := s.Folders()
	if err != nil {
		return err
	}
	// A parent that is no folder of its own (Maildir++ needs none: Dovecot
	// makes ".A.B" alone, and clients show "A" all the same) is renamed
	// with its children, as Dovecot renames it.
	parent := s.Exists(oldName)
	if !parent && !slices.ContainsFunc(all, func(f string) bool { return strings.HasPrefix(f, oldName+string(Delimiter)) }) {
		return ErrNoFolder
	}
	if s.Exists(newName) {
		return ErrFolderExists
	}
	if strings.HasPrefix(newDir+".", oldDir+".") {
		return fmt.Errorf("%w: cannot rename a folder into itself", ErrBadName)
	}
	type mv struct{ from, to string }
	var moves []mv
	if parent {
		moves = append(moves, mv{oldDir, newDir})
	}
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
		if _, err := s.root.Lstat(m.to); err == nil {
			return ErrFolderExists
		}
	}
	done := make([]mv, 0, len(moves))
	for i, m := range moves {
		err := s.renameDir(m.from, m.to)
		if (i > 0 || !parent) && errors.Is(err, fs.ErrNotExist) {
			continue // a child deleted meanwhile
		}
		if err == nil {
			done = append(done, m)
			continue
		}
		switch {
		case i == 0 && errors.Is(err, fs.ErrNotExist):
			err = ErrNoFolder // deleted meanwhile
		case errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY):
			err = ErrFolderExists // made meanwhile
		default:
			err = fmt.Errorf("mailstore: rename %s: %w", m.from, err)
		}
		var undoErr error
		for j := len(done) - 1; j >= 0; j-- {
			if uerr := s.renameDir(done[j].to, done[j].from); uerr != nil {
				undoErr = errors.Join(undoErr, fmt.Errorf("rename %s back: %w", done[j].to, uerr))
			}
		}
		if undoErr != nil {
			return fmt.Errorf("%w: %w; %w", ErrRenameSplit, err, undoErr)
		}
		return err
	}
	return nil
}

// renameDir renames the folder directory from to to, both names in the
// maildir, refusing to replace anything at to.
func (s *Store) renameDir(from, to string) error {
	if s.renameHook != nil {
		if err := s.renameHook(from, to); err != nil {
			return err
		}
	}
	dir, err := s.root.Open(".")
	if err != nil {
		return err
	}
	defer dir.Close()
	fd := int(dir.Fd())
	err = ignoringEINTR(func() error { return unix.Renameat2(fd, from, fd, to, unix.RENAME_NOREPLACE) })
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system or kernel without RENAME_NOREPLACE: checked
		// just before (Dovecot calls rename(2) without any check).
		if _, lerr := s.root.Lstat(to); !errors.Is(lerr, fs.ErrNotExist) {
			return &fs.PathError{Op: "rename", Path: to, Err: fs.ErrExist}
		}
		return s.root.Rename(from, to)
	}
	if err != nil {
		return &fs.PathError{Op: "rename", Path: from, Err: err}
	}
	return nil
}
