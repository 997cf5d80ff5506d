package sieve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// include (RFC 6609): a script runs others, personal (the user's) or
// global (the administrator's), resolved when it is compiled; return ends
// an included script; global shares variables between them.

var includeCommands = map[string]spec{
	"include": {ext: "include", pos: []valueKind{vString}, tags: map[string]tagSpec{
		"personal": {group: "location"}, "global": {group: "location"}, "once": {again: true}, "optional": {again: true}}},
	"return": {ext: "include"},
	"global": {ext: "include", pos: []valueKind{vStrings}},
}

// Pigeonhole's sieve_include_max_nesting_depth and sieve_include_max_includes.
const (
	maxIncludeDepth = 10
	maxIncludes     = 255
)

// ErrNoScript is what an IncludeLoader returns for a script that does not
// exist: an :optional include then does nothing.
var ErrNoScript = errors.New("sieve: no such script")

// IncludeLoader finds the scripts include names.
type IncludeLoader interface {
	// Load returns the source of the personal (global false) or global
	// script of that name (checked by ValidScriptName), or an error
	// wrapping ErrNoScript.
	Load(global bool, name string) ([]byte, error)
}

// DirLoader loads personal scripts from Personal and global ones from
// Global, as "<name>.sieve" (Pigeonhole's file layout); an empty directory
// has no scripts. Files larger than MaxSize (default 1 MiB) are refused.
type DirLoader struct {
	Personal, Global string
	MaxSize          int64
}

// Load implements IncludeLoader.
func (d DirLoader) Load(global bool, name string) ([]byte, error) {
	dir := d.Personal
	if global {
		dir = d.Global
	}
	if dir == "" || !ValidScriptName(name) {
		return nil, ErrNoScript
	}
	limit := d.MaxSize
	if limit <= 0 {
		limit = 1 << 20
	}
	f, err := os.Open(filepath.Join(dir, name+".sieve"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoScript, name)
		}
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("script %s is not a regular file", name)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("script %s is larger than %d bytes", name, limit)
	}
	buf := make([]byte, st.Size())
	n, err := f.ReadAt(buf, 0)
	if err != nil && n != len(buf) {
		return nil, err
	}
	return buf[:n], nil
}

// ValidScriptName is a script name Pigeonhole accepts: UTF-8, no "/", no
// control characters, not "." or "..", at most 256 characters.
func ValidScriptName(name string) bool {
	if name == "" || name == "." || name == ".." || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 256 {
		return false
	}
	for _, c := range name {
		if c == '/' || c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) || c == 0x2028 || c == 0x2029 {
			return false
		}
	}
	return true
}

// includeKey names a script within a compilation.
type includeKey struct {
	global bool
	name   string
}

func (k includeKey) String() string {
	if k.global {
		return ":global \"" + k.name + "\""
	}
	return "\"" + k.name + "\""
}

// compilation is the state of one CompileWith: the scripts being compiled
// (to refuse recursion), those compiled, and the limits.
type compilation struct {
	opts   CompileOptions
	limits Limits
	stack  []includeKey
	done   map[includeKey]*Script
}

func (s *Script) checkInclude(c *Command, n *node) *Error {
	switch c.Name {
	case "global":
		if !s.required["variables"] {
			return errAt(c.Pos, "global needs require \"variables\"")
		}
		for _, name := range n.pos[0].Strings {
			if !validIdentifier(name) {
				return errAt(n.pos[0].Pos, "global: invalid variable name \"%s\"", name)
			}
			if s.locals[strings.ToLower(name)] && !s.globals[strings.ToLower(name)] {
				return errAt(n.pos[0].Pos, "global: variable \"%s\" was used as a local one before", name)
			}
			if s.globals == nil {
				s.globals = map[string]bool{}
			}
			s.globals[strings.ToLower(name)] = true
		}
		return nil
	case "return":
		return nil
	}
	name := n.pos[0].Strings[0]
	if s.required["variables"] && strings.Contains(name, "${") {
		return errAt(n.pos[0].Pos, "include: the script name must be a constant string")
	}
	if !ValidScriptName(name) {
		return errAt(n.pos[0].Pos, "include: invalid script name \"%s\"", name)
	}
	_, global := n.tags["global"]
	_, optional := n.tags["optional"]
	key := includeKey{global: global, name: name}
	comp := s.comp
	for _, k := range append(comp.stack, s.name) {
		if k == key {
			return errAt(c.Pos, "include: circular inclusion of %s", key)
		}
	}
	if done, ok := comp.done[key]; ok {
		n.include = done
		return nil
	}
	if s.depth+1 > maxIncludeDepth {
		return errAt(c.Pos, "include: more than %d levels of nested includes", maxIncludeDepth)
	}
	if len(comp.done) >= maxIncludes {
		return errAt(c.Pos, "include: more than %d included scripts", maxIncludes)
	}
	var src []byte
	err := ErrNoScript
	if comp.opts.Include != nil {
		src, err = comp.opts.Include.Load(global, name)
	}
	if err != nil {
		if errors.Is(err, ErrNoScript) {
			if optional {
				return nil
			}
			// Pigeonhole's words, at the name
			where := "personal"
			if global {
				where = "global"
			}
			if comp.opts.Uploaded {
				s.warn(n.pos[0].Pos, "included %s script '%s' does not exist (ignored during upload)", where, sanitize(name, 80))
				return nil
			}
			return errAt(n.pos[0].Pos, "included %s script '%s' does not exist", where, sanitize(name, 80))
		}
		return errAt(c.Pos, "include: loading script %s: %v", key, err)
	}
	comp.stack = append(comp.stack, s.name)
	inc, warnings, cerr := comp.compile(src, key, key.global, s.depth+1)
	for _, w := range warnings {
		if w.err == nil { // its errors are this include's one error
			s.incWarnings = append(s.incWarnings, w)
		}
	}
	comp.stack = comp.stack[:len(comp.stack)-1]
	if cerr != nil {
		reason := cerr.Error()
		var e *Error
		if errors.As(cerr, &e) {
			reason = e.Error()
		}
		return errAt(c.Pos, "include: in script %s: %s", key, reason)
	}
	if comp.done == nil {
		comp.done = map[includeKey]*Script{}
	}
	comp.done[key] = inc
	inc.comp = nil
	n.include = inc
	return nil
}

// noteLocal records a variable used as a local one: declaring it global
// afterwards is an error, as in Pigeonhole.
func (s *Script) noteLocal(name string) {
	l := strings.ToLower(name)
	if s.globals[l] {
		return
	}
	if s.locals == nil {
		s.locals = map[string]bool{}
	}
	s.locals[l] = true
}

// noteLocalUses records the variables a string refers to.
func (s *Script) noteLocalUses(str string) {
	for {
		i := strings.Index(str, "${")
		if i < 0 {
			return
		}
		str = str[i+2:]
		end := strings.IndexByte(str, '}')
		if end < 0 {
			return
		}
		if name := str[:end]; validIdentifier(name) {
			s.noteLocal(name)
		}
	}
}

// include runs an included script with variables of its own.
func (r *runner) include(n *node) error {
	inc := n.include
	if inc == nil {
		return nil // :optional and missing
	}
	if _, once := n.tags["once"]; once && r.once[inc] {
		return nil
	}
	if r.once == nil {
		r.once = map[*Script]bool{}
	}
	r.once[inc] = true
	sub := &runner{runState: r.runState, s: inc, vars: map[string]string{}}
	err := sub.block(inc.cmds)
	if err == errReturn {
		return nil
	}
	return err
}
