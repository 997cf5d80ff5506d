package sieve

import (
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// regex: the :regex match type of Pigeonhole (draft-murchison-sieve-regex),
// POSIX extended regular expressions there (glibc's regcomp with
// REG_EXTENDED, REG_ICASE for i;ascii-casemap), Go's RE2 here, parsed in
// its POSIX mode (no \d, no (?i), no lazy quantifiers) and matched leftmost-
// longest as POSIX asks, '.' taking line breaks as glibc's without
// REG_NEWLINE does. Where the two differ:
//   - back-references (\1) are refused here; glibc takes them in ERE as an
//     extension;
//   - collating elements and equivalence classes ([[.a.]], [[=a=]]) are
//     refused here;
//   - an escaped ordinary character (\d, \w, \s) is refused here, glibc
//     reads some as GNU operators (\w) and the others as the character;
//   - case folding is Unicode's here (K matches the Kelvin sign), ASCII's
//     in glibc's C locale;
//   - [[:upper:]] and [[:lower:]] under i;ascii-casemap match both cases
//     here; in Pigeonhole 2.3.19 [[:upper:]] matches "list" as a header
//     value but not as a string test's value;
//   - submatches of repeated groups may differ in rare leftmost-longest
//     corners (glibc's own are known to be inexact there).
// The oracle tests use patterns outside these cases.

// maxRegexLength bounds a pattern: RE2 runs in linear time, but the
// automaton grows with the pattern.
const maxRegexLength = 1024

// maxRegexpsPerRun bounds the patterns a run builds from variables.
const maxRegexpsPerRun = 64

func compileRegex(pattern string, fold bool) (*regexp.Regexp, error) {
	if len(pattern) > maxRegexLength {
		return nil, fmt.Errorf("regular expression longer than %d bytes", maxRegexLength)
	}
	flags := syntax.POSIX | syntax.DotNL
	if fold {
		flags |= syntax.FoldCase
	}
	parsed, err := syntax.Parse(pattern, flags)
	if err != nil {
		return nil, err
	}
	re, err := regexp.Compile(parsed.String())
	if err != nil {
		return nil, err
	}
	re.Longest()
	return re, nil
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

// regexMatch matches value; the match variables are the whole match and
// each group, "" for a group that took no part.
func regexMatch(re *regexp.Regexp, value string) (bool, []string) {
	if re == nil {
		return false, nil
	}
	idx := re.FindStringSubmatchIndex(value)
	if idx == nil {
		return false, nil
	}
	out := make([]string, 0, len(idx)/2)
	for i := 0; i+1 < len(idx); i += 2 {
		if idx[i] < 0 {
			out = append(out, "")
			continue
		}
		out = append(out, value[idx[i]:idx[i+1]])
	}
	return true, out
}
