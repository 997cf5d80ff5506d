package sieve

import (
	"regexp"
	"strconv"
	"strings"
)

var relationalOps = map[string]func(c int) bool{
	"gt": func(c int) bool { return c > 0 },
	"ge": func(c int) bool { return c >= 0 },
	"lt": func(c int) bool { return c < 0 },
	"le": func(c int) bool { return c <= 0 },
	"eq": func(c int) bool { return c == 0 },
	"ne": func(c int) bool { return c != 0 },
}

// matcher is a test's comparator and match type.
type matcher struct {
	comparator string // i;octet, i;ascii-casemap, i;ascii-numeric
	typ        string // is, contains, matches, value, count, regex
	rel        func(int) bool
	re         func(key string) *regexp.Regexp // regex: the key compiled, nil when invalid
	work       *budget                         // the run's budget; nil: no limit
}

func newMatcher(n *node) matcher {
	m := matcher{comparator: "i;ascii-casemap", typ: "is"}
	if a, ok := n.tags["comparator"]; ok {
		m.comparator = strings.ToLower(a.Strings[0])
	}
	for _, t := range []string{"contains", "matches", "value", "count", "regex"} {
		if a, ok := n.tags[t]; ok {
			m.typ = t
			if t == "value" || t == "count" {
				m.rel = relationalOps[a.Strings[0]]
			}
		}
	}
	return m
}

func asciiLower(r rune) rune {
	if r >= 'A' && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

func foldString(s string) string {
	return strings.Map(asciiLower, s)
}

// numericValue is i;ascii-numeric's value of s (RFC 4790 §9.1): its leading
// digits, or positive infinity (ok false) when it starts with none.
func numericValue(s string) (digits string, ok bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return "", false
	}
	d := strings.TrimLeft(s[:i], "0")
	return d, true
}

// compare orders a and b by the comparator: -1, 0 or 1.
func (m matcher) compare(a, b string) int {
	switch m.comparator {
	case "i;ascii-numeric":
		da, oka := numericValue(a)
		db, okb := numericValue(b)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		case len(da) != len(db):
			if len(da) < len(db) {
				return -1
			}
			return 1
		}
		return strings.Compare(da, db)
	case "i;ascii-casemap":
		return strings.Compare(foldString(a), foldString(b))
	}
	return strings.Compare(a, b)
}

// match says whether value matches key; for :matches it also returns the
// text of each wildcard, value first (the match variables ${0}…). Its
// work is counted in the run's budget: once it is spent, nothing matches.
func (m matcher) match(value, key string) (bool, []string) {
	cost := len(value) + len(key)
	switch {
	case m.typ == "regex":
		cost = regexCost*len(value) + len(key)
	case m.comparator == "i;ascii-casemap" || m.typ == "matches":
		cost *= decodeCost // both folded, or compared octet by octet
	}
	if !m.work.spend(cost) {
		return false, nil
	}
	switch m.typ {
	case "value":
		return m.rel(m.compare(value, key)), nil
	case "contains":
		if m.comparator == "i;ascii-casemap" {
			return strings.Contains(foldString(value), foldString(key)), nil
		}
		return strings.Contains(value, key), nil
	case "matches":
		return globMatch(value, key, m.comparator == "i;ascii-casemap", m.work)
	case "regex":
		return regexMatch(m.re(key), value)
	}
	if value == "" {
		// Whatever the comparator (i;ascii-numeric has "" as infinity),
		// Pigeonhole's :is matches an empty value to an empty key only.
		return key == "", nil
	}
	return m.compare(value, key) == 0, nil
}

// cachedValue is a value a run may match many times (the body, a part's
// content): its i;ascii-casemap folding is made once, when first needed.
type cachedValue struct {
	s      string
	folded *string
}

func (v *cachedValue) fold() string {
	if v.folded == nil {
		f := foldString(v.s)
		v.folded = &f
	}
	return *v.folded
}

// matchCached is matchValues for cached values, without match variables
// (the body test sets none): :is, :contains and :value under
// i;ascii-casemap compare the folding made once; the others cost no more
// than they did.
func (r *runner) matchCached(n *node, values []*cachedValue, keys []string) bool {
	m := r.newMatcher(n)
	if m.typ == "count" {
		return m.countMatch(len(values), keys)
	}
	folding := m.comparator == "i;ascii-casemap" && (m.typ == "is" || m.typ == "contains" || m.typ == "value")
	for _, k := range keys {
		fk := k
		if folding {
			if !r.budget.spend(decodeCost * len(k)) {
				return false
			}
			fk = foldString(k)
		}
		for _, v := range values {
			if folding {
				cost := len(v.s) + len(k)
				if v.folded == nil {
					cost += decodeCost * len(v.s)
				}
				if !r.budget.spend(cost) {
					return false
				}
			}
			var ok bool
			switch {
			case !folding:
				ok, _ = m.match(v.s, k)
			case m.typ == "contains":
				ok = strings.Contains(v.fold(), fk)
			case m.typ == "value":
				ok = m.rel(strings.Compare(v.fold(), fk))
			case v.s == "":
				// as match: an empty value is only an empty key
				ok = k == ""
			default:
				ok = v.fold() == fk
			}
			if ok {
				return true
			}
		}
	}
	return false
}

// countMatch is :count: the number of values against each key.
func (m matcher) countMatch(count int, keys []string) bool {
	c := strconv.Itoa(count)
	for _, k := range keys {
		if m.rel(m.compare(c, k)) {
			return true
		}
	}
	return false
}

type patTok struct {
	c    byte
	kind byte // 'c' an octet, '?' or '*'
	w    int  // wildcard index, for ? and *
}

func compilePattern(p string) ([]patTok, int) {
	var toks []patTok
	w := 0
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			// A trailing lone backslash stands for itself (Pigeonhole
			// 2.3.19's sieve-test aborts on it).
			if i+1 < len(p) {
				i++
				c = p[i]
			}
			toks = append(toks, patTok{c: c, kind: 'c'})
		case '*', '?':
			toks = append(toks, patTok{kind: c, w: w})
			w++
		default:
			toks = append(toks, patTok{c: c, kind: 'c'})
		}
	}
	return toks, w
}

// globMatch matches Sieve's * and ? (with \ escaping) on octets, as
// i;octet and i;ascii-casemap define characters and Pigeonhole does: ?
// takes one octet, even of a UTF-8 sequence. Each * takes as little as
// possible from left to right, as RFC 5229 §3.2 asks of match variables.
// A star taking one more octet makes the search go again over the
// pattern after it: each such step is a unit of work (nil: no limit).
func globMatch(value, pattern string, fold bool, work *budget) (bool, []string) {
	toks, nw := compilePattern(pattern)
	eq := func(a, b byte) bool { return a == b }
	if fold {
		eq = func(a, b byte) bool { return asciiLowerByte(a) == asciiLowerByte(b) }
	}
	type span struct{ from, to int }
	caps := make([]span, nw)
	i, j := 0, 0
	starJ, starI := -1, 0
	redone := 0 // steps gone over again since the last spend
	for i < len(value) {
		if j < len(toks) {
			t := toks[j]
			switch {
			case t.kind == '*':
				caps[t.w] = span{i, i}
				starJ, starI = j, i
				j++
				continue
			case t.kind == '?':
				caps[t.w] = span{i, i + 1}
				i++
				j++
				continue
			case eq(value[i], t.c):
				i++
				j++
				continue
			}
		}
		if starJ < 0 {
			return false, nil
		}
		if redone += j - starJ; redone >= 4096 {
			if !work.spend(decodeCost * redone) {
				return false, nil
			}
			redone = 0
		}
		starI++
		caps[toks[starJ].w].to = starI
		i = starI
		j = starJ + 1
	}
	for ; j < len(toks); j++ {
		if toks[j].kind != '*' {
			return false, nil
		}
		caps[toks[j].w] = span{i, i}
	}
	out := make([]string, 0, nw+1)
	out = append(out, value)
	for _, c := range caps {
		out = append(out, value[c.from:c.to])
	}
	return true, out
}

func asciiLowerByte(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// checkMatch checks the comparator and match type of a test or of
// deleteheader, and compiles constant :regex keys.
func (s *Script) checkMatch(n *node) *Error {
	if a, ok := n.tags["comparator"]; ok {
		c := strings.ToLower(a.Strings[0])
		switch c {
		case "i;octet", "i;ascii-casemap":
		case "i;ascii-numeric":
			if !s.required["comparator-i;ascii-numeric"] {
				return errAt(a.Pos, "comparator i;ascii-numeric needs require \"comparator-i;ascii-numeric\"")
			}
			for _, mt := range []string{"contains", "matches"} {
				if _, ok := n.tags[mt]; ok {
					return errAt(a.Pos, "comparator i;ascii-numeric does not support :%s", mt)
				}
			}
		default:
			return errAt(a.Pos, "unknown comparator \"%s\"", c)
		}
	}
	for _, rel := range []string{"value", "count"} {
		if a, ok := n.tags[rel]; ok {
			// Lower case only: Pigeonhole refuses "GE", so a script
			// passing here passes there.
			if _, ok := relationalOps[a.Strings[0]]; !ok {
				return errAt(a.Pos, "invalid relational operator \"%s\" (gt, ge, lt, le, eq or ne)", a.Strings[0])
			}
		}
	}
	return s.checkRegex(n)
}
