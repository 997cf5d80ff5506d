package sieve

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxVariableSize bounds one variable's value, as Pigeonhole's
// sieve_variables_max_variable_size (4096) does.
const maxVariableSize = 4096

// expand replaces ${name} and ${digits} (RFC 5229 §3) when the script
// requires variables; an unknown variable is empty, and text that is not a
// well-formed reference stays as it is.
func (r *runner) expand(s string) string {
	if !r.s.required["variables"] || !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	for b.Len() <= r.s.limits.MaxStringLength {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			b.WriteString(s[i:])
			break
		}
		name := s[i+2 : i+2+end]
		if !validReference(name) {
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(r.getVar(name))
		s = s[i+3+end:]
	}
	r.budget.spend(b.Len())
	if b.Len() > r.s.limits.MaxStringLength {
		// A string of many references to long variables: bounded like any
		// string of the script.
		return truncateUTF8(b.String(), r.s.limits.MaxStringLength)
	}
	return b.String()
}

func validReference(name string) bool {
	if name == "" {
		return false
	}
	if name[0] >= '0' && name[0] <= '9' {
		for i := 0; i < len(name); i++ {
			if name[i] < '0' || name[i] > '9' {
				return false
			}
		}
		return true
	}
	for _, part := range strings.Split(name, ".") {
		if !validIdentifier(part) {
			return false
		}
	}
	return true
}

func (r *runner) getVar(name string) string {
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		n, err := strconv.Atoi(name)
		if err != nil || n >= len(r.match) {
			return ""
		}
		return r.match[n]
	}
	if g, ok := r.globalName(name); ok {
		return r.globals[g]
	}
	return r.vars[strings.ToLower(name)]
}

// globalName is the name of a variable in include's global scope: one the
// script declared global, or one of the "global." namespace (RFC 6609 §3.5).
func (r *runner) globalName(name string) (string, bool) {
	l := strings.ToLower(name)
	if strings.HasPrefix(l, "global.") && r.s.required["include"] {
		return l[len("global."):], true
	}
	if r.s.globals[l] {
		return l, true
	}
	return "", false
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func (r *runner) setVar(name, value string) {
	value = truncateUTF8(value, maxVariableSize)
	if g, ok := r.globalName(name); ok {
		r.globals[g] = value
		return
	}
	r.vars[strings.ToLower(name)] = value
}

// set applies the modifiers by their precedence (RFC 5229 §4.1): case of
// the whole value, then of the first character, then :quotewildcard, then
// :length.
func (r *runner) set(n *node) {
	r.setVar(n.pos[0].Strings[0], modify(n, r.expand(n.pos[1].Strings[0])))
}

// modify applies the modifier tags of set (or extracttext) to a value.
func modify(n *node, v string) string {
	// Case changes are ASCII only, as in Pigeonhole: "élan" keeps its é.
	if _, ok := n.tags["lower"]; ok {
		v = strings.Map(asciiLower, v)
	}
	if _, ok := n.tags["upper"]; ok {
		v = strings.Map(asciiUpper, v)
	}
	if _, ok := n.tags["lowerfirst"]; ok {
		v = mapFirst(v, asciiLower)
	}
	if _, ok := n.tags["upperfirst"]; ok {
		v = mapFirst(v, asciiUpper)
	}
	if _, ok := n.tags["quotewildcard"]; ok {
		v = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`).Replace(v)
	}
	if _, ok := n.tags["encodeurl"]; ok {
		// enotify's modifier (RFC 5435 §4.1), after :quotewildcard as in
		// Pigeonhole
		v = encodeURL(v)
	}
	if _, ok := n.tags["length"]; ok {
		v = strconv.Itoa(utf8.RuneCountInString(v))
	}
	return v
}

func asciiUpper(r rune) rune {
	if r >= 'a' && r <= 'z' {
		return r - ('a' - 'A')
	}
	return r
}

func mapFirst(s string, f func(rune) rune) string {
	if s == "" {
		return s
	}
	c, size := utf8.DecodeRuneInString(s)
	return string(f(c)) + s[size:]
}

// validFlag is an IMAP system flag or keyword (RFC 3501 flag); Pigeonhole
// drops any other.
func validFlag(f string) bool {
	if f == "" {
		return false
	}
	if f[0] == '\\' {
		switch strings.ToLower(f) {
		case `\answered`, `\flagged`, `\deleted`, `\seen`, `\draft`:
			return true
		}
		return false
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// flagList splits flag strings at spaces, drops invalid flags and repeats,
// which IMAP compares without case.
func flagList(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		for _, s := range l {
		next:
			for _, f := range strings.Fields(s) {
				if !validFlag(f) {
					continue
				}
				for _, g := range out {
					if strings.EqualFold(f, g) {
						continue next
					}
				}
				out = append(out, f)
			}
		}
	}
	return out
}

// flagArg is the flags a keep or fileinto stores with: its :flags, or the
// internal variable (RFC 5232 §5).
func (r *runner) flagArg(n *node) []string {
	if a, ok := n.tags["flags"]; ok {
		return flagList(r.strs(a))
	}
	return r.flags
}

// flagCommand runs setflag, addflag or removeflag on the internal variable
// or, with a first argument, on a variable.
func (r *runner) flagCommand(name string, n *node) {
	cur := r.flags
	named := n.pos[0].Kind != ArgTag
	var varName string
	if named {
		varName = n.pos[0].Strings[0]
		cur = strings.Fields(r.getVar(varName))
	}
	given := flagList(r.strs(n.pos[1]))
	var out []string
	switch name {
	case "setflag":
		out = given
	case "addflag":
		out = flagList(cur, given)
	case "removeflag":
	keep:
		for _, f := range cur {
			for _, g := range given {
				if strings.EqualFold(f, g) {
					continue keep
				}
			}
			out = append(out, f)
		}
	}
	if named {
		r.setVar(varName, strings.Join(out, " "))
	} else {
		r.flags = out
	}
}
