package filter

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"courriel/sieve"
)

// ActiveScriptName is Pigeonhole's default active script, relative to the
// home: sieve = file:~/sieve;active=~/.dovecot.sieve.
const ActiveScriptName = ".dovecot.sieve"

// ScriptDir is where Pigeonhole (and ManageSieve) keep a user's scripts.
const ScriptDir = "sieve"

// errNotScript: what ~/.dovecot.sieve is cannot be a script (a FIFO, a
// directory, a symlink out of ~/sieve/); the user is told in the log.
var errNotScript = errors.New("not a usable script file")

// fileID identifies one version of a script file: the cache key.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64 // ns
}

func idOf(fi fs.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino), size: fi.Size(), mtime: fi.ModTime().UnixNano()}, true
}

// compiled is a script file's compiled form, or why it has none.
// maxCompileErrors is dovecot-lda's LDA_SIEVE_MAX_USER_ERRORS: the
// errors of a user's script that does not compile that are logged at
// most.
const maxCompileErrors = 30

type compiled struct {
	name   string // for logs: "~/sieve/x.sieve" or the admin's path
	script *sieve.Script
	err    error // compile or read error: the copy keeps to the INBOX
	// more are the compile's errors after err, which is the first, up
	// to maxCompileErrors in all (Pigeonhole reports each)
	more []*sieve.Error
	// id is the file's identity (hasID): which version of the script
	// the cumulative usage records (usage.go) are of
	id    fileID
	hasID bool
	// deps are the scripts its includes read, or looked for and did not
	// find: the cached form stands only while each is as it was
	deps []includeDep
	// global: compiled as the admin's script, which may require the
	// global extensions; a user's script that is the same file is
	// compiled again as a personal one
	global bool
}

// includeDep is one script an include named, and what was there when
// the script was compiled: a file (its identity), none, or something
// that could not be told (never taken as unchanged).
type includeDep struct {
	global bool
	name   string
	state  depState
	id     fileID
}

type depState uint8

const (
	depFile    depState = iota // id is the file's identity
	depMissing                 // no such file
	depUnknown                 // could not be told: compile again
)

// scriptCache holds compiled scripts by file identity: a script changed
// in place (size or mtime), replaced (inode) or another user's identical
// one is compiled afresh, and so is one whose included scripts changed,
// appeared or went (load); an unchanged one costs an lstat, and one
// more per include.
type scriptCache struct {
	limits  sieve.Limits
	exts    sieve.Extensions       // those scripts may require, the same for every script
	gexts   sieve.GlobalExtensions // those only the admin's scripts may require
	maxSize int64
	global  string // include :global's directory, or ""
	max     int
	// beforeOpen, when set (tests), is called with the home just before
	// the active script is opened: the moment a user could swap it.
	beforeOpen func(home string)

	mu sync.Mutex
	m  map[fileID]*compiled // guarded by mu
}

func newScriptCache(limits sieve.Limits, exts sieve.Extensions, maxSize int64, global string, max int) *scriptCache {
	return &scriptCache{limits: limits, exts: exts, maxSize: maxSize, global: global, max: max, m: map[fileID]*compiled{}}
}

func (c *scriptCache) get(id fileID) *compiled {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func (c *scriptCache) put(id fileID, s *compiled) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m) // a user changing scripts in a loop cannot grow memory
	}
	c.m[id] = s
}

// userScript finds and compiles the active script of home; nil when the
// user has none (the common case: one lstat). A script that exists but
// cannot be read or compiled is returned with err set.
//
// The home is the user's: ~/.dovecot.sieve must be a regular file, or a
// symlink whose target is one file directly in ~/sieve/ (what Pigeonhole
// and ManageSieve write: "sieve/NAME.sieve"), itself a regular file; no
// other symlink is followed, FIFOs and devices are never opened, and
// the size is bounded. Compiled .svbin files are never read.
func (c *scriptCache) userScript(home string) (*compiled, error) {
	// That lstat first, by path: the kernel resolves home + "/" + name as
	// OpenRoot(home) then Lstat(name) below do (symlinks followed up to
	// the home, the name itself not), so "no such file" means the same
	// here, without opening, checking and closing the home for each
	// message (four system calls) when there is nothing to read.
	if _, err := os.Lstat(home + string(os.PathSeparator) + ActiveScriptName); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	root, err := os.OpenRoot(home)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening the home: %w", err)
	}
	defer root.Close()
	fi, err := root.Lstat(ActiveScriptName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ActiveScriptName, err)
	}
	rel, display := ActiveScriptName, "~/"+ActiveScriptName
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := root.Readlink(ActiveScriptName)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ActiveScriptName, err)
		}
		name, ok := scriptLinkTarget(home, target)
		if !ok {
			return &compiled{name: display, err: fmt.Errorf("%w: the symlink leads outside ~/%s/", errNotScript, ScriptDir)}, nil
		}
		dfi, err := root.Lstat(ScriptDir)
		if err != nil || !dfi.IsDir() {
			return &compiled{name: display, err: fmt.Errorf("%w: ~/%s is not a directory", errNotScript, ScriptDir)}, nil
		}
		rel, display = ScriptDir+"/"+name, "~/"+ScriptDir+"/"+name
		if fi, err = root.Lstat(rel); errors.Is(err, fs.ErrNotExist) {
			return nil, nil // a dangling link: Pigeonhole has no active script either
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", display, err)
		}
	}
	return c.load(display, fi, func() (*os.File, error) {
		if c.beforeOpen != nil {
			c.beforeOpen(home)
		}
		// The lstats above are only a first look: the user may swap
		// the file for a symlink since, which os.Root would follow.
		return openNoFollow(root, rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	}, &includeLoader{c: c, home: root}, false), nil
}

// adminScript compiles a sieve_before/sieve_after script (a path the
// administrator configured: trusted, still bounded).
func (c *scriptCache) adminScript(p string) *compiled {
	fi, err := os.Stat(p)
	if err != nil {
		return &compiled{name: p, err: err}
	}
	// An admin script is shared by every user: no :personal includes.
	return c.load(p, fi, func() (*os.File, error) { return os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0) }, &includeLoader{c: c}, true)
}

// scriptLinkTarget accepts the targets Pigeonhole writes for the active
// link, "sieve/NAME" (relative to the home) or home + "/sieve/NAME", and
// returns NAME: one component, never ".." nor a .svbin.
func scriptLinkTarget(home, target string) (string, bool) {
	t := path.Clean(target)
	if path.IsAbs(t) {
		rel, ok := strings.CutPrefix(t, strings.TrimSuffix(home, "/")+"/")
		if !ok {
			return "", false
		}
		t = rel
	}
	name, ok := strings.CutPrefix(t, ScriptDir+"/")
	if !ok || name == "" || name == "." || name == ".." || strings.Contains(name, "/") || strings.HasSuffix(name, ".svbin") {
		return "", false
	}
	return name, true
}

// load returns the compiled script of the file fi describes, from the
// cache or by opening, checking and compiling it.
//
// A cached script stands while its file and each script its includes
// read are as they were, and those it did not find are still missing:
// one stat each (the compiler bounds their number). Pigeonhole checks
// its binary the same way (ext_include_binary_up_to_date): an included
// script edited through ManageSieve, or uploaded after the main one
// failed for want of it, is compiled again at the next delivery.
//
// global compiles the administrator's script (Pigeonhole's sieve_before,
// sieve_after), which may require the global extensions; the user's
// script may not (dovecot-lda's SIEVE_COMPILE_FLAG_NOGLOBAL).
func (c *scriptCache) load(display string, fi fs.FileInfo, open func() (*os.File, error), inc *includeLoader, global bool) *compiled {
	if !fi.Mode().IsRegular() {
		return &compiled{name: display, err: fmt.Errorf("%w: not a regular file", errNotScript)}
	}
	if fi.Size() > c.maxSize {
		return &compiled{name: display, err: fmt.Errorf("%w: %d bytes, more than %d", errNotScript, fi.Size(), c.maxSize)}
	}
	id, ok := idOf(fi)
	if ok {
		if s := c.get(id); s != nil && s.global == global && inc.unchanged(s.deps) {
			return s
		}
	}
	f, err := open()
	if err != nil {
		return &compiled{name: display, err: err}
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil {
		return &compiled{name: display, err: err}
	}
	if !ofi.Mode().IsRegular() { // swapped since the lstat
		return &compiled{name: display, err: fmt.Errorf("%w: not a regular file", errNotScript)}
	}
	src, err := io.ReadAll(io.LimitReader(f, c.maxSize+1))
	if err != nil {
		return &compiled{name: display, err: err}
	}
	if int64(len(src)) > c.maxSize {
		return &compiled{name: display, err: fmt.Errorf("%w: more than %d bytes", errNotScript, c.maxSize)}
	}
	s := &compiled{name: display, global: global}
	inc.deps = nil
	var errs []*sieve.Error
	max := maxCompileErrors
	if global {
		max = 0 // the administrator's: Pigeonhole's master log, unbounded
	}
	s.script, s.err = sieve.CompileWith(src, sieve.CompileOptions{Limits: c.limits, Extensions: c.exts,
		GlobalExtensions: c.gexts, Global: global, Include: inc,
		Errors: func(e *sieve.Error) { errs = append(errs, e) }, MaxErrors: max})
	if s.err != nil && len(errs) > 1 {
		s.more = errs[1:]
	}
	s.deps, inc.deps = inc.deps, nil
	if oid, ok := idOf(ofi); ok {
		s.id, s.hasID = oid, true
		c.put(oid, s)
	}
	return s
}

// includeLoader reads the scripts `include` names: :personal ones in
// ~/sieve/ through the home's os.Root (a hostile home cannot lead out of
// it), :global ones in the configured directory; regular files only,
// bounded like the main script.
//
// It records what each include found (deps), for the cache to tell
// whether a compiled script still stands (unchanged).
type includeLoader struct {
	c    *scriptCache
	home *os.Root // nil for the administrator's scripts
	deps []includeDep
}

// stat is what is at an include's file now: the :global one through
// symlinks (the administrator's directory, opened so), a :personal one
// not (openNoFollow: neither ~/sieve nor the file may be a symlink;
// Pigeonhole, reading as the user, follows them, but courriel reads as
// root and a script that does not compile is quoted in the user's log). ok is false when there is no such file
// to look for (no global directory, no home).
func (l *includeLoader) stat(global bool, name string) (fi fs.FileInfo, err error, ok bool) {
	switch {
	case global && l.c.global != "":
		fi, err = os.Stat(filepath.Join(l.c.global, name+".sieve"))
	case !global && l.home != nil:
		fi, err = l.home.Lstat(ScriptDir + "/" + name + ".sieve")
	default:
		return nil, nil, false
	}
	return fi, err, true
}

// note records what an include found: fi (its identity), nothing
// (missing), or neither.
func (l *includeLoader) note(global bool, name string, fi fs.FileInfo, missing bool) {
	d := includeDep{global: global, name: name, state: depUnknown}
	if missing {
		d.state = depMissing
	} else if fi != nil {
		if id, ok := idOf(fi); ok {
			d.state, d.id = depFile, id
		}
	}
	l.deps = append(l.deps, d)
}

// unchanged says whether each of deps is as it was recorded.
func (l *includeLoader) unchanged(deps []includeDep) bool {
	for _, d := range deps {
		fi, err, _ := l.stat(d.global, d.name)
		switch d.state {
		case depMissing:
			if !errors.Is(err, fs.ErrNotExist) {
				return false
			}
		case depFile:
			if err != nil {
				return false
			}
			if id, ok := idOf(fi); !ok || id != d.id {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (l *includeLoader) Load(global bool, name string) ([]byte, error) {
	if !sieve.ValidScriptName(name) {
		return nil, fmt.Errorf("%w: invalid script name", sieve.ErrNoScript)
	}
	var f *os.File
	var err error
	switch {
	case global && l.c.global != "":
		f, err = os.OpenFile(filepath.Join(l.c.global, name+".sieve"), os.O_RDONLY|syscall.O_NONBLOCK, 0)
	case !global && l.home != nil:
		f, err = openNoFollow(l.home, ScriptDir+"/"+name+".sieve", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	default:
		return nil, sieve.ErrNoScript
	}
	if errors.Is(err, fs.ErrNotExist) {
		l.note(global, name, nil, true)
		return nil, fmt.Errorf("%w: %s", sieve.ErrNoScript, name)
	}
	if err != nil {
		// a symlink (O_NOFOLLOW), a directory, no permission: what is
		// there, by its identity, for a change to compile again
		fi, serr, _ := l.stat(global, name)
		if serr != nil {
			fi = nil
		}
		l.note(global, name, fi, false)
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		l.note(global, name, nil, false)
		return nil, fmt.Errorf("%w: %s is not a regular file", errNotScript, name)
	}
	l.note(global, name, fi, false)
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", errNotScript, name)
	}
	src, err := io.ReadAll(io.LimitReader(f, l.c.maxSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(src)) > l.c.maxSize {
		return nil, fmt.Errorf("%w: %s: more than %d bytes", errNotScript, name, l.c.maxSize)
	}
	return src, nil
}
