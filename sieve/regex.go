package sieve

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// regex: the :regex match type of Pigeonhole (draft-murchison-sieve-regex),
// glibc's regcomp there, with REG_EXTENDED, and REG_ICASE for
// i;ascii-casemap, in the C locale Dovecot runs in: POSIX extended regular
// expressions with GNU's extensions, over octets. Here a pattern is read
// as glibc reads it and written as a Go regexp over the value's octets,
// each octet the rune of its value (latin1), so that
//   - '.' and a bracket expression take one octet: "caf..\s" matches the
//     two octets of "é" and a space, "[é]" is either octet of é;
//   - character classes, \w (alnum and '_'), \s (space, \t\n\v\f\r), \b,
//     \B and ranges are the C locale's, ASCII only: no octet of "é" is a
//     letter;
//   - i;ascii-casemap folds ASCII letters only, as glibc's translate
//     table: the pattern's letters (but \W, \S, \B and class names) and
//     the value's; [[:upper:]] and [[:lower:]] are [[:alpha:]] then;
//   - \` and \' are the value's start and end, as ^ and $ anywhere
//     (they never match in the middle: "a^b" matches nothing); ^*, a
//     leading * + ? or {, and \<* are refused, as glibc refuses them;
//   - an escaped ordinary character is the character: \d is 'd', \n 'n';
//     a backslash in a bracket expression is itself;
//   - [[=c=]] and [[.c.]] are the octet c; a name of more than one octet
//     ([[.hyphen.]], [[=é=]]) is refused, as glibc's C locale refuses it;
//   - a{n,m}, a{,m} as a{0,m}, up to 32767 (RE_DUP_MAX) in glibc;
//     stacked operators (a**, a+?) apply in turn, a+? is not lazy;
//   - an unmatched ')' is the character; "" and empty alternatives match.
// \< and \> (a word's start and end) have no Go equivalent (no
// lookaround): each is written \b where the pattern decides what octet is
// on one side of it, through groups and alternatives (\<raw, (\<)raw,
// (foo|bar)\>, x\> y, ^\<, \>$: \< is \b before a word octet, \> \b
// after one), and as nothing matching where the pattern makes it
// impossible (\<é). Refused, with a compile error saying "not supported
// here" rather than a silent difference:
//   - \< and \> where the octets beside them are not decided by the
//     pattern: \<.*, (a|-)\>, (a|b)*\> (the repetition may be empty),
//     one beside another assertion only (\<\>, \B\<), "\<" alone;
//   - back-references (\1 to \9), which glibc takes in ERE and RE2 cannot
//     run in linear time;
//   - bounds above 1000, Go's limit (glibc: 32767), and repetitions RE2
//     finds too large.
// Matching is leftmost-longest, as POSIX asks; submatches of repeated
// groups may still differ in rare corners (glibc's own are inexact).
// In Pigeonhole 2.3.19 [[:upper:]] under i;ascii-casemap matches "list" as
// a header value but not as a string test's value; here it matches both.

// maxRegexLength bounds a pattern: RE2 runs in linear time, but the
// automaton grows with the pattern.
const maxRegexLength = 1024

// maxRegexpsPerRun bounds the patterns a run builds from variables.
const maxRegexpsPerRun = 64

// glibcDupMax is glibc's RE_DUP_MAX; goDupMax is Go's bound.
const (
	glibcDupMax = 0x7fff
	goDupMax    = 1000
)

func compileRegex(pattern string, fold bool) (*regexp.Regexp, error) {
	if len(pattern) > maxRegexLength {
		return nil, fmt.Errorf("regular expression longer than %d bytes", maxRegexLength)
	}
	src, err := translateERE(pattern, fold)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, fmt.Errorf("not supported here: %v", err)
	}
	re.Longest()
	return re, nil
}

// octetSet is a set of octets.
type octetSet [4]uint64

func (s *octetSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *octetSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *octetSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}
func (s *octetSet) not() {
	for i := range s {
		s[i] = ^s[i]
	}
}
func (s *octetSet) union(o octetSet) {
	for i := range s {
		s[i] |= o[i]
	}
}
func (s octetSet) within(o octetSet) bool {
	for i := range s {
		if s[i]&^o[i] != 0 {
			return false
		}
	}
	return true
}
func (s octetSet) disjoint(o octetSet) bool {
	for i := range s {
		if s[i]&o[i] != 0 {
			return false
		}
	}
	return true
}

// classSet is a C locale character class.
func classSet(name string) (octetSet, bool) {
	var s octetSet
	for c := 0; c < 256; c++ {
		b := byte(c)
		var in bool
		isUpper, isLower, isDigit := 'A' <= b && b <= 'Z', 'a' <= b && b <= 'z', '0' <= b && b <= '9'
		switch name {
		case "alpha":
			in = isUpper || isLower
		case "upper":
			in = isUpper
		case "lower":
			in = isLower
		case "digit":
			in = isDigit
		case "alnum":
			in = isUpper || isLower || isDigit
		case "xdigit":
			in = isDigit || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
		case "space":
			in = b == ' ' || '\t' <= b && b <= '\r'
		case "blank":
			in = b == ' ' || b == '\t'
		case "punct":
			in = b > ' ' && b < 0x7f && !isUpper && !isLower && !isDigit
		case "print":
			in = b >= ' ' && b < 0x7f
		case "graph":
			in = b > ' ' && b < 0x7f
		case "cntrl":
			in = b < ' ' || b == 0x7f
		default:
			return s, false
		}
		if in {
			s.add(b)
		}
	}
	return s, true
}

var wordSet, _ = func() (octetSet, bool) {
	s, _ := classSet("alnum")
	s.add('_')
	return s, true
}()

func lowerOctet(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// reNode is a glibc ERE, parsed.
type reNode struct {
	op       reOp
	set      octetSet  // reSet
	subs     []*reNode // reConcat, reAlt, reGroup, reRepeat
	min, max int       // reRepeat; max -1: no bound
	assert   byte      // reAssert: ^ $ ` ' b B < >
}

type reOp int

const (
	reSet reOp = iota
	reConcat
	reAlt
	reGroup
	reRepeat
	reAssert
)

type ereParser struct {
	p     string
	i     int
	fold  bool
	depth int
}

// translateERE reads pattern as glibc's regcomp with REG_EXTENDED (and
// REG_ICASE when fold) in the C locale and writes it as a Go regexp over
// octets-as-runes.
func translateERE(pattern string, fold bool) (string, error) {
	ps := &ereParser{p: pattern, fold: fold}
	n, err := ps.alt()
	if err != nil {
		return "", err
	}
	if ps.i < len(ps.p) {
		return "", fmt.Errorf("unexpected %q", ps.p[ps.i])
	}
	var b strings.Builder
	if err := emitRE(&b, n, fold, openContext); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (ps *ereParser) alt() (*reNode, error) {
	var branches []*reNode
	for {
		c, err := ps.concat()
		if err != nil {
			return nil, err
		}
		branches = append(branches, c)
		if ps.i < len(ps.p) && ps.p[ps.i] == '|' {
			ps.i++
			continue
		}
		break
	}
	if len(branches) == 1 {
		return branches[0], nil
	}
	return &reNode{op: reAlt, subs: branches}, nil
}

var errPreceding = fmt.Errorf("invalid preceding regular expression")

func (ps *ereParser) concat() (*reNode, error) {
	n := &reNode{op: reConcat}
	for ps.i < len(ps.p) {
		c := ps.p[ps.i]
		if c == '|' || c == ')' && ps.depth > 0 {
			break
		}
		switch c {
		case '*', '+', '?', '{':
			if len(n.subs) == 0 || n.subs[len(n.subs)-1].op == reAssert {
				return nil, errPreceding
			}
			last := n.subs[len(n.subs)-1]
			rep, err := ps.repeat(last)
			if err != nil {
				return nil, err
			}
			n.subs[len(n.subs)-1] = rep
			continue
		}
		a, err := ps.atom()
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, a)
	}
	return n, nil
}

// repeat reads the operator after sub.
func (ps *ereParser) repeat(sub *reNode) (*reNode, error) {
	c := ps.p[ps.i]
	ps.i++
	r := &reNode{op: reRepeat, subs: []*reNode{sub}}
	switch c {
	case '*':
		r.min, r.max = 0, -1
	case '+':
		r.min, r.max = 1, -1
	case '?':
		r.min, r.max = 0, 1
	case '{':
		end := strings.IndexByte(ps.p[ps.i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unmatched \\{")
		}
		body := ps.p[ps.i : ps.i+end]
		ps.i += end + 1
		num := func(s string, dflt int) (int, bool) {
			if s == "" {
				return dflt, true
			}
			v := 0
			for _, d := range []byte(s) {
				if d < '0' || d > '9' {
					return 0, false
				}
				if v = v*10 + int(d-'0'); v > glibcDupMax {
					v = glibcDupMax + 1
				}
			}
			return v, true
		}
		lo, hi, comma := body, body, false
		if k := strings.IndexByte(body, ','); k >= 0 {
			lo, hi, comma = body[:k], body[k+1:], true
		}
		var ok1, ok2 bool
		r.min, ok1 = num(lo, 0)
		if comma {
			r.max, ok2 = num(hi, -1)
		} else {
			r.max, ok2 = r.min, lo != ""
		}
		if !ok1 || !ok2 || r.max >= 0 && r.max < r.min {
			return nil, fmt.Errorf("invalid content of \\{\\}")
		}
		if r.min > glibcDupMax || r.max > glibcDupMax {
			return nil, fmt.Errorf("regular expression too big")
		}
		if r.min > goDupMax || r.max > goDupMax {
			return nil, fmt.Errorf("a bound above %d is not supported here (glibc takes up to %d)", goDupMax, glibcDupMax)
		}
	}
	return r, nil
}

// literal is the set of one octet, folded as glibc's translate table.
func (ps *ereParser) literal(b byte) *reNode {
	n := &reNode{op: reSet}
	if ps.fold {
		b = lowerOctet(b)
	}
	n.set.add(b)
	return n
}

func (ps *ereParser) atom() (*reNode, error) {
	c := ps.p[ps.i]
	ps.i++
	switch c {
	case '(':
		ps.depth++
		sub, err := ps.alt()
		ps.depth--
		if err != nil {
			return nil, err
		}
		if ps.i >= len(ps.p) || ps.p[ps.i] != ')' {
			return nil, fmt.Errorf("unmatched ( or \\(")
		}
		ps.i++
		return &reNode{op: reGroup, subs: []*reNode{sub}}, nil
	case '[':
		return ps.bracket()
	case '.':
		n := &reNode{op: reSet}
		n.set.addRange(1, 255)
		return n, nil
	case '^', '$':
		return &reNode{op: reAssert, assert: c}, nil
	case '\\':
		if ps.i >= len(ps.p) {
			return nil, fmt.Errorf("trailing backslash")
		}
		e := ps.p[ps.i]
		ps.i++
		switch e {
		case 'w', 'W', 's', 'S':
			n := &reNode{op: reSet}
			if e == 'w' || e == 'W' {
				n.set = wordSet
			} else {
				n.set, _ = classSet("space")
			}
			if e == 'W' || e == 'S' {
				n.set.not()
			}
			return n, nil
		case 'b', 'B', '<', '>', '`', '\'':
			return &reNode{op: reAssert, assert: e}, nil
		case '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return nil, fmt.Errorf("back-references (\\%c) are not supported here", e)
		}
		return ps.literal(e), nil
	}
	return ps.literal(c), nil
}

// bracket reads a bracket expression, its '[' read.
func (ps *ereParser) bracket() (*reNode, error) {
	errUnmatched := fmt.Errorf("unmatched [, [^, [:, [., or [=")
	n := &reNode{op: reSet}
	negate := false
	if ps.i < len(ps.p) && ps.p[ps.i] == '^' {
		negate = true
		ps.i++
	}
	// element reads one element: an octet (single), or a class
	element := func() (b byte, single bool, class *octetSet, err error) {
		if ps.i >= len(ps.p) {
			return 0, false, nil, errUnmatched
		}
		c := ps.p[ps.i]
		if c == '[' && ps.i+1 < len(ps.p) && strings.IndexByte(":.=", ps.p[ps.i+1]) >= 0 {
			kind := ps.p[ps.i+1]
			end := strings.Index(ps.p[ps.i+2:], string(kind)+"]")
			if end < 0 {
				return 0, false, nil, errUnmatched
			}
			name := ps.p[ps.i+2 : ps.i+2+end]
			ps.i += 2 + end + 2
			if kind == ':' {
				if ps.fold && (name == "upper" || name == "lower") {
					name = "alpha"
				}
				s, ok := classSet(name)
				if !ok {
					return 0, false, nil, fmt.Errorf("invalid character class name")
				}
				return 0, false, &s, nil
			}
			if len(name) != 1 {
				return 0, false, nil, fmt.Errorf("invalid collation character")
			}
			return name[0], true, nil, nil
		}
		ps.i++
		return c, true, nil, nil
	}
	first := true
	for {
		if ps.i >= len(ps.p) {
			return nil, errUnmatched
		}
		if ps.p[ps.i] == ']' && !first {
			ps.i++
			break
		}
		b, _, class, err := element()
		if err != nil {
			return nil, err
		}
		first = false
		if class != nil {
			n.set.union(*class)
			if ps.i+1 < len(ps.p) && ps.p[ps.i] == '-' && ps.p[ps.i+1] != ']' {
				return nil, fmt.Errorf("invalid range end")
			}
			continue
		}
		if ps.i+1 < len(ps.p) && ps.p[ps.i] == '-' && ps.p[ps.i+1] != ']' {
			ps.i++
			hi, single, _, err := element()
			if err != nil {
				return nil, err
			}
			if !single {
				return nil, fmt.Errorf("invalid range end")
			}
			lo := b
			if ps.fold {
				lo, hi = lowerOctet(lo), lowerOctet(hi)
			}
			if lo > hi {
				return nil, fmt.Errorf("invalid range end")
			}
			n.set.addRange(lo, hi)
			if ps.i+1 < len(ps.p) && ps.p[ps.i] == '-' && ps.p[ps.i+1] != ']' {
				return nil, fmt.Errorf("invalid range end")
			}
			continue
		}
		if ps.fold {
			b = lowerOctet(b)
		}
		n.set.add(b)
	}
	if negate {
		n.set.not()
	}
	return n, nil
}

// edges gives the octets a node's match may start with (last: end with),
// and whether it may match the empty string.
func edges(n *reNode, last bool) (octetSet, bool) {
	switch n.op {
	case reSet:
		return n.set, false
	case reAssert:
		return octetSet{}, true
	case reGroup:
		return edges(n.subs[0], last)
	case reRepeat:
		if n.max == 0 {
			return octetSet{}, true
		}
		s, null := edges(n.subs[0], last)
		return s, null || n.min == 0
	case reAlt:
		var s octetSet
		null := false
		for _, sub := range n.subs {
			ss, nn := edges(sub, last)
			s.union(ss)
			null = null || nn
		}
		return s, null
	case reConcat:
		return seqEdges(n.subs, last)
	}
	return octetSet{}, true
}

func seqEdges(subs []*reNode, last bool) (octetSet, bool) {
	var s octetSet
	for i := range subs {
		sub := subs[i]
		if last {
			sub = subs[len(subs)-1-i]
		}
		ss, null := edges(sub, last)
		s.union(ss)
		if !null {
			return s, false
		}
	}
	return s, true
}

const reNever = `[^\x00-\x{10FFFF}]`

// side is what the pattern says of the octet beside a point: one of set
// (0, a NUL, for the value's edge: regexec reads a C string), or anything
// when open.
type side struct {
	set  octetSet
	open bool
}

// reContext is what lies beside a node: before and after it.
type reContext struct{ before, after side }

var openContext = reContext{side{open: true}, side{open: true}}

// seqSide is the side of the point before subs (after: its first octet)
// or after them (!after: reading them backwards), outer beyond them.
func seqSide(subs []*reNode, after bool, outer side) side {
	var s octetSet
	for k := range subs {
		sub := subs[k]
		if !after {
			sub = subs[len(subs)-1-k]
		}
		if sub.op == reAssert && (after && (sub.assert == '$' || sub.assert == '\'') || !after && (sub.assert == '^' || sub.assert == '`')) {
			s.add(0)
			return side{set: s}
		}
		ss, null := edges(sub, !after)
		s.union(ss)
		if !null {
			return side{set: s}
		}
	}
	s.union(outer.set)
	return side{set: s, open: outer.open}
}

// wordEdge writes \< (start) or \> as \b or as nothing matching, where the
// octets beside it decide it: \< is \b before a word octet, \> \b after
// one.
func wordEdge(ctx reContext, start bool) (string, error) {
	// decide: the next octet is a word octet (true) or not
	decide := func(nextIsWord bool) string {
		if nextIsWord == start {
			return `\b`
		}
		return reNever
	}
	if a := ctx.after; !a.open {
		if a.set.within(wordSet) {
			return decide(true), nil
		}
		if a.set.disjoint(wordSet) {
			return decide(false), nil
		}
	}
	if b := ctx.before; !b.open {
		// the previous octet a word octet: \b says the next is not
		if b.set.within(wordSet) {
			return decide(false), nil
		}
		if b.set.disjoint(wordSet) {
			return decide(true), nil
		}
	}
	name := `\>`
	if start {
		name = `\<`
	}
	return "", fmt.Errorf("%s is not supported here where the pattern does not tell a word octet beside it", name)
}

func emitRE(b *strings.Builder, n *reNode, fold bool, ctx reContext) error {
	switch n.op {
	case reSet:
		s := n.set
		if fold {
			var f octetSet
			for c := 0; c < 256; c++ {
				if s.has(lowerOctet(byte(c))) {
					f.add(byte(c))
				}
			}
			s = f
		}
		empty := true
		b.WriteByte('[')
		for c := 0; c < 256; {
			if !s.has(byte(c)) {
				c++
				continue
			}
			e := c
			for e+1 < 256 && s.has(byte(e+1)) {
				e++
			}
			fmt.Fprintf(b, `\x{%x}`, c)
			if e > c {
				fmt.Fprintf(b, `-\x{%x}`, e)
			}
			empty = false
			c = e + 1
		}
		b.WriteByte(']')
		if empty {
			str := b.String()
			b.Reset()
			b.WriteString(str[:len(str)-2] + reNever)
		}
	case reConcat:
		b.WriteString("(?:")
		for i, sub := range n.subs {
			subCtx := reContext{seqSide(n.subs[:i], false, ctx.before), seqSide(n.subs[i+1:], true, ctx.after)}
			if sub.op == reAssert && (sub.assert == '<' || sub.assert == '>') {
				s, err := wordEdge(subCtx, sub.assert == '<')
				if err != nil {
					return err
				}
				b.WriteString(s)
				continue
			}
			if err := emitRE(b, sub, fold, subCtx); err != nil {
				return err
			}
		}
		b.WriteString(")")
	case reAlt:
		b.WriteString("(?:")
		for i, sub := range n.subs {
			if i > 0 {
				b.WriteByte('|')
			}
			if err := emitRE(b, sub, fold, ctx); err != nil {
				return err
			}
		}
		b.WriteString(")")
	case reGroup:
		b.WriteByte('(')
		if err := emitRE(b, n.subs[0], fold, ctx); err != nil {
			return err
		}
		b.WriteByte(')')
	case reRepeat:
		b.WriteString("(?:")
		// beside a repeated node, the pattern may be itself again
		if err := emitRE(b, n.subs[0], fold, openContext); err != nil {
			return err
		}
		b.WriteString(")")
		switch {
		case n.max < 0:
			fmt.Fprintf(b, "{%d,}", n.min)
		default:
			fmt.Fprintf(b, "{%d,%d}", n.min, n.max)
		}
	case reAssert:
		switch n.assert {
		case '^', '`':
			b.WriteString(`\A`)
		case '$', '\'':
			b.WriteString(`\z`)
		case 'b':
			b.WriteString(`\b`)
		case 'B':
			b.WriteString(`\B`)
		default: // \< or \> alone in its sequence: not decided
			return fmt.Errorf("\\%c is not supported here where the pattern does not tell a word octet beside it", n.assert)
		}
	}
	return nil
}

// checkRegex checks and compiles, once, the :regex keys written without
// variables.
func (s *Script) checkRegex(n *node) *Error {
	if _, ok := n.tags["regex"]; !ok {
		return nil
	}
	fold := true
	if a, ok := n.tags["comparator"]; ok {
		switch c := strings.ToLower(a.Strings[0]); c {
		case "i;octet":
			fold = false
		case "i;ascii-casemap":
		default:
			return errAt(a.Pos, "the regex match type only supports the i;octet and i;ascii-casemap comparators")
		}
	}
	keys := n.pos[len(n.pos)-1]
	if keys.Kind != ArgStrings {
		return nil
	}
	n.regexps = map[string]*regexp.Regexp{}
	for _, k := range keys.Strings {
		if s.hasVariables(k) {
			continue
		}
		re, err := compileRegex(k, fold)
		if err != nil {
			return errAt(keys.Pos, "invalid regular expression \"%s\" for regex match: %v", k, err)
		}
		n.regexps[k] = re
	}
	return nil
}

// newMatcher is the node's matcher, :regex keys resolved.
func (r *runner) newMatcher(n *node) matcher {
	m := newMatcher(n)
	m.work = &r.budget
	if m.typ == "regex" {
		fold := m.comparator != "i;octet"
		m.re = func(key string) *regexp.Regexp {
			if re, ok := n.regexps[key]; ok {
				return re
			}
			cacheKey := fmt.Sprintf("%t/%s", fold, key)
			if re, ok := r.regexps[cacheKey]; ok {
				return re
			}
			re, err := compileRegex(key, fold)
			if err != nil {
				// Pigeonhole: a pattern made invalid by a variable
				// matches nothing.
				re = nil
			}
			if r.regexps == nil {
				r.regexps = map[string]*regexp.Regexp{}
			}
			if len(r.regexps) < maxRegexpsPerRun {
				r.regexps[cacheKey] = re
			}
			return re
		}
	}
	return m
}

// regexMatch matches value, octet by octet as glibc in the C locale; the
// match variables are the whole match and each group, "" for a group that
// took no part.
func regexMatch(re *regexp.Regexp, value string) (bool, []string) {
	if re == nil {
		return false, nil
	}
	// regexec reads a C string: the value ends at a NUL
	if k := strings.IndexByte(value, 0); k >= 0 {
		value = value[:k]
	}
	octets := latin1(value)
	idx := re.FindStringSubmatchIndex(octets)
	if idx == nil {
		return false, nil
	}
	out := make([]string, 0, len(idx)/2)
	for i := 0; i+1 < len(idx); i += 2 {
		if idx[i] < 0 {
			out = append(out, "")
			continue
		}
		out = append(out, unlatin1(octets[idx[i]:idx[i+1]]))
	}
	return true, out
}

// latin1 writes each octet of s as the rune of its value.
func latin1(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s
	}
	b := make([]byte, 0, len(s)+len(s)/2)
	for i := 0; i < len(s); i++ {
		b = utf8.AppendRune(b, rune(s[i]))
	}
	return string(b)
}

// unlatin1 undoes latin1.
func unlatin1(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}
