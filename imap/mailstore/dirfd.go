package mailstore

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The hot paths — a STORE renaming thousands of files, a cold FETCH reading
// thousands — go through file descriptors of cur/ and new/ kept open with
// the folder: one renameat or openat per message. os.Root resolves each
// path afresh (an open of the directory, an lstat, a close around every
// call), which cost four to five times the system calls. Names are single
// path components from readdir or made here, so a directory descriptor
// confines them as the Root does; O_NOFOLLOW refuses a symlink planted
// in place of a message.

// dirFDLocked returns the descriptor of sub ("cur", "new", or "." for the
// folder itself), opening it through the folder's Root on first use.
func (mb *Mailbox) dirFDLocked(sub string) (int, error) {
	p := &mb.curDir
	switch sub {
	case "new":
		p = &mb.newDir
	case ".":
		p = &mb.folderDir
	}
	if *p == nil {
		f, err := mb.root.Open(sub)
		if err != nil {
			return -1, err
		}
		*p = f
	}
	return int((*p).Fd()), nil
}

func (mb *Mailbox) closeDirsLocked() {
	for _, p := range []**os.File{&mb.curDir, &mb.newDir, &mb.folderDir} {
		if *p != nil {
			(*p).Close()
			*p = nil
		}
	}
}

// splitRel splits "cur/name" or "new/name".
func splitRel(rel string) (sub, name string, ok bool) {
	sub, name, ok = strings.Cut(rel, "/")
	if !ok || (sub != "cur" && sub != "new") || name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return "", "", false
	}
	return sub, name, true
}

// renameLocked renames a message file between cur/ and new/ paths.
func (mb *Mailbox) renameLocked(from, to string) error {
	fsub, fname, ok1 := splitRel(from)
	tsub, tname, ok2 := splitRel(to)
	if !ok1 || !ok2 {
		return mb.root.Rename(from, to)
	}
	ffd, err := mb.dirFDLocked(fsub)
	if err != nil {
		return err
	}
	tfd, err := mb.dirFDLocked(tsub)
	if err != nil {
		return err
	}
	// Never over another file: two names of one base (a backup restored
	// beside the messages, a sync tool that crashed) are two files, and
	// giving one the other's name would lose it.
	for {
		err = unix.Renameat2(ffd, fname, tfd, tname, unix.RENAME_NOREPLACE)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.EINVAL || err == unix.ENOSYS {
		// A file system (or kernel) without RENAME_NOREPLACE: the check
		// and the rename are two steps there.
		var st unix.Stat_t
		if unix.Fstatat(tfd, tname, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			err = unix.EEXIST
		} else {
			err = unix.Renameat(ffd, fname, tfd, tname)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "renameat", Old: from, New: to, Err: err}
	}
	return nil
}

// renameFlagsLocked renames the file of m (in cur/ or new/, as pathLocked
// says) to its cur/ name with flags nf. It is renameLocked without the
// strings: both names are written NUL-terminated into one reused buffer
// and passed to renameat2 as they are, where renameLocked builds and
// copies four strings per file (a STORE over a 100,000-message folder
// renames 100,000 files).
func (mb *Mailbox) renameFlagsLocked(m *Msg, nf Flags) error {
	if rel := mb.oddPathLocked(m.Base); rel != "" {
		// A name found as another program gave it (see odd): its flags
		// changed as Dovecot changes them, the rest of its info kept;
		// the usual name when it has nothing more.
		to := "cur/" + withFlags(path.Base(rel), nf)
		err := mb.renameLocked(rel, to)
		if err == nil {
			mb.noteOddRenamedLocked(m.Base, to, nf)
		}
		return err
	}
	if m.Base == "" || m.Base == "." || m.Base == ".." || strings.IndexByte(m.Base, '/') >= 0 || strings.IndexByte(m.Base, 0) >= 0 {
		return mb.renameLocked(mb.pathLocked(m), "cur/"+FileName(m.Base, nf)) // refused by splitRel: the Root decides
	}
	fsub := "cur"
	if m.New {
		fsub = "new"
	}
	ffd, err := mb.dirFDLocked(fsub)
	if err != nil {
		return err
	}
	tfd, err := mb.dirFDLocked("cur")
	if err != nil {
		return err
	}
	bare := !m.New && mb.isBareLocked(m)
	b := append(mb.nameBuf[:0], m.Base...)
	if !m.New && !bare {
		b = mb.diskFlagsLocked(m).appendLetters(append(b, ":2,"...))
	}
	b = append(b, 0)
	to := len(b)
	b = nf.appendLetters(append(append(b, m.Base...), ":2,"...))
	b = append(b, 0)
	mb.nameBuf = b
	for {
		_, _, errno := unix.Syscall6(unix.SYS_RENAMEAT2, uintptr(ffd), uintptr(unsafe.Pointer(&b[0])),
			uintptr(tfd), uintptr(unsafe.Pointer(&b[to])), 0, 0)
		switch errno {
		case 0:
			if bare {
				mb.noteBareLocked(m.Base, false)
			}
			return nil
		case unix.EINTR:
			continue
		case unix.ENOSYS: // a kernel before 3.15
			err := mb.renameLocked(mb.pathLocked(m), "cur/"+FileName(m.Base, nf))
			if err == nil && bare {
				mb.noteBareLocked(m.Base, false)
			}
			return err
		}
		return &os.LinkError{Op: "renameat", Old: mb.pathLocked(m), New: "cur/" + FileName(m.Base, nf), Err: errno}
	}
}

// openMsgLocked opens the file of message uid, finding it by its base name
// when another program renamed it (changed its flags) since the last sync.
func (mb *Mailbox) openMsgLocked(uid uint32) (fd int, rel string, err error) {
	for try := 0; ; try++ {
		m := mb.findLocked(uid)
		if m == nil {
			return -1, "", fs.ErrNotExist
		}
		rel = mb.pathLocked(m)
		sub, name, ok := splitRel(rel)
		if !ok {
			return -1, rel, fmt.Errorf("mailstore: bad message name %q", rel)
		}
		dfd, err := mb.dirFDLocked(sub)
		if err != nil {
			return -1, rel, err
		}
		err = ignoringEINTR(func() (err error) {
			fd, err = unix.Openat(dfd, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
			return err
		})
		if err == nil {
			return fd, rel, nil
		}
		if err != unix.ENOENT || try > 0 {
			return -1, rel, &fs.PathError{Op: "openat", Path: rel, Err: err}
		}
		if found, lerr := mb.locateLocked(map[string]bool{m.Base: true}); lerr != nil || !found[m.Base] {
			return -1, rel, &fs.PathError{Op: "openat", Path: rel, Err: err}
		}
	}
}

// maxMessageRead bounds what ReadMessage reads (and so allocates).
const maxMessageRead = 1 << 30

// ReadMessage reads the file of message uid into buf (reused when large
// enough): at most limit bytes when limit > 0, else the whole file. It
// returns the bytes and the file's size.
func (mb *Mailbox) ReadMessage(uid uint32, buf []byte, limit int) ([]byte, int64, error) {
	mb.mu.Lock()
	fd, rel, err := mb.openMsgLocked(uid)
	mb.mu.Unlock()
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, 0, &fs.PathError{Op: "fstat", Path: rel, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, 0, fmt.Errorf("mailstore: %s is not a regular file", rel)
	}
	if st.Size > maxMessageRead {
		return nil, st.Size, fmt.Errorf("mailstore: message %d too large (%d bytes)", uid, st.Size)
	}
	want := int(st.Size)
	if limit > 0 && want > limit {
		want = limit
	}
	if cap(buf) < want {
		buf = make([]byte, 0, want+want/32+64)
	}
	buf = buf[:want]
	n := 0
	for n < want {
		k, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, st.Size, &fs.PathError{Op: "read", Path: rel, Err: err}
		}
		if k == 0 {
			break // shrunk meanwhile
		}
		n += k
	}
	return buf[:n], st.Size, nil
}
