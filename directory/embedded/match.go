package embedded

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// foldValue prepares a value for caseIgnoreMatch (RFC 4517 §4.2.11, with
// RFC 4518 §2.6.1 insignificant space handling): leading and trailing
// spaces dropped, inner runs of spaces collapsed, letters lower-cased.
// Invalid UTF-8 bytes are kept as they are rather than turned into U+FFFD,
// so two different invalid values never fold to the same string.
func foldValue(s string) string {
	return fold(s, true)
}

// foldComponent prepares a substring assertion component: case and space
// runs are folded, but edge spaces are significant inside a substring.
func foldComponent(s string) string {
	return fold(s, false)
}

func fold(s string, trim bool) string {
	var b strings.Builder
	b.Grow(len(s))
	pending := false // a space run waits to be written
	started := !trim
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == ' ' {
			if started {
				pending = true
			}
			i += size
			continue
		}
		if pending {
			b.WriteByte(' ')
			pending = false
		}
		started = true
		if r == utf8.RuneError && size == 1 {
			b.WriteByte(s[i])
		} else {
			b.WriteRune(unicode.ToLower(r))
		}
		i += size
	}
	if pending && !trim {
		b.WriteByte(' ')
	}
	return b.String()
}

// compareOrdered compares two folded values for >= and <=: numerically when
// both are integers (integerOrderingMatch, uidNumber), else as folded
// strings (caseIgnoreOrderingMatch).
func compareOrdered(a, b string) int {
	ai, aerr := strconv.ParseInt(a, 10, 64)
	bi, berr := strconv.ParseInt(b, 10, 64)
	if aerr == nil && berr == nil {
		switch {
		case ai < bi:
			return -1
		case ai > bi:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

// matchSubstrings reports whether the folded value v matches
// initial*any*...*final (RFC 4517 §4.2.13 caseIgnoreSubstringsMatch): the
// pieces must appear in order and must not overlap.
func matchSubstrings(v, initial string, any []string, final string) bool {
	if !strings.HasPrefix(v, initial) {
		return false
	}
	v = v[len(initial):]
	for _, a := range any {
		i := strings.Index(v, a)
		if i < 0 {
			return false
		}
		v = v[i+len(a):]
	}
	return strings.HasSuffix(v, final)
}
