package embedded

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Filter limits. RFC 4511 sets none; OpenLDAP bounds a filter only by the
// message size. These are far above anything a mail server sends (the seed's
// deepest filter is (&(objectClass=posixAccount)(uid=%u)), depth 2) and keep
// a hostile filter from costing more than a small, fixed amount per entry.
const (
	maxFilterDepth = 16
	maxFilterNodes = 256
	maxSubstrAny   = 32
)

// errFilterLimit: the filter is well-formed but too large (adminLimitExceeded).
var errFilterLimit = errors.New("filter exceeds server limits")

type filterOp int

const (
	opAnd filterOp = iota
	opOr
	opNot
	opEqual
	opSubstrings
	opGreaterOrEqual
	opLessOrEqual
	opPresent
	opApprox
	opExtensible
)

// filter is a compiled RFC 4511 §4.5.1.7 Filter. Immutable after compile.
type filter struct {
	op       filterOp
	attr     string    // lower-case attribute description; "" for and/or/not
	value    string    // folded assertion value
	raw      string    // assertion value as sent (octetStringMatch)
	badValue bool      // the assertion value is not valid UTF-8: Undefined
	initial  string    // substrings, folded
	any      []string  // substrings, folded
	final    string    // substrings, folded
	rule     string    // extensible: matching rule, lower-case
	dnAttrs  bool      // extensible: also match the entry's DN components
	children []*filter // and, or, not
}

// tri is the three-valued result of RFC 4511 §4.5.1.7.
type tri int8

const (
	triFalse tri = iota
	triTrue
	triUndefined
)

// compileFilterString parses an RFC 4515 string filter (used by tests and
// the fuzzer; the server receives the BER form).
func compileFilterString(s string) (*filter, error) {
	p, err := ldap.CompileFilter(s)
	if err != nil {
		return nil, err
	}
	return compileFilter(p)
}

// compileFilter validates and compiles a BER Filter.
func compileFilter(p *ber.Packet) (*filter, error) {
	nodes := 0
	return compileNode(p, 1, &nodes)
}

func compileNode(p *ber.Packet, depth int, nodes *int) (*filter, error) {
	if p == nil {
		return nil, errors.New("missing filter")
	}
	*nodes++
	if depth > maxFilterDepth || *nodes > maxFilterNodes {
		return nil, fmt.Errorf("%w: depth %d, %d items (max %d, %d)", errFilterLimit, depth, *nodes, maxFilterDepth, maxFilterNodes)
	}
	if p.ClassType != ber.ClassContext {
		return nil, fmt.Errorf("filter choice has class %d, want context", p.ClassType)
	}
	op := filterOp(p.Tag)
	switch op {
	case opAnd, opOr, opNot:
		if p.TagType != ber.TypeConstructed {
			return nil, fmt.Errorf("filter %s must be constructed", ldap.FilterMap[uint64(p.Tag)])
		}
		if op == opNot && len(p.Children) != 1 {
			return nil, fmt.Errorf("not filter has %d children, want 1", len(p.Children))
		}
		f := &filter{op: op, children: make([]*filter, 0, len(p.Children))}
		for _, c := range p.Children {
			cf, err := compileNode(c, depth+1, nodes)
			if err != nil {
				return nil, err
			}
			f.children = append(f.children, cf)
		}
		return f, nil
	case opEqual, opGreaterOrEqual, opLessOrEqual, opApprox:
		attr, val, err := assertion(p)
		if err != nil {
			return nil, err
		}
		return &filter{op: op, attr: attr, value: foldValue(val), raw: val, badValue: !utf8.ValidString(val)}, nil
	case opPresent:
		if p.TagType != ber.TypePrimitive {
			return nil, errors.New("present filter must be primitive")
		}
		return &filter{op: op, attr: strings.ToLower(octets(p))}, nil
	case opSubstrings:
		return compileSubstrings(p)
	case opExtensible:
		return compileExtensible(p)
	}
	return nil, fmt.Errorf("unknown filter choice %d", p.Tag)
}

// octets returns a primitive packet's contents.
func octets(p *ber.Packet) string {
	if p == nil || p.Data == nil {
		return ""
	}
	return string(p.Data.Bytes())
}

func isOctetString(p *ber.Packet) bool {
	return p != nil && p.ClassType == ber.ClassUniversal && p.TagType == ber.TypePrimitive && p.Tag == ber.TagOctetString
}

// assertion reads an AttributeValueAssertion (RFC 4511 §4.1.8).
func assertion(p *ber.Packet) (attr, value string, err error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 ||
		!isOctetString(p.Children[0]) || !isOctetString(p.Children[1]) {
		return "", "", fmt.Errorf("malformed %s assertion", ldap.FilterMap[uint64(p.Tag)])
	}
	return strings.ToLower(octets(p.Children[0])), octets(p.Children[1]), nil
}

func compileSubstrings(p *ber.Packet) (*filter, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 || !isOctetString(p.Children[0]) {
		return nil, errors.New("malformed substrings filter")
	}
	f := &filter{op: opSubstrings, attr: strings.ToLower(octets(p.Children[0]))}
	subs := p.Children[1]
	if subs.TagType != ber.TypeConstructed || len(subs.Children) == 0 {
		return nil, errors.New("substrings filter without substrings")
	}
	if len(subs.Children) > maxSubstrAny+2 {
		return nil, fmt.Errorf("%w: %d substrings", errFilterLimit, len(subs.Children))
	}
	for i, c := range subs.Children {
		if c.ClassType != ber.ClassContext || c.TagType != ber.TypePrimitive {
			return nil, errors.New("malformed substring")
		}
		v := octets(c)
		if !utf8.ValidString(v) {
			f.badValue = true
		}
		// RFC 4511 §4.5.1.7.2: initial at most once and first, final at
		// most once and last.
		switch c.Tag {
		case ldap.FilterSubstringsInitial:
			if i != 0 {
				return nil, errors.New("substring initial is not first")
			}
			f.initial = foldComponent(v)
		case ldap.FilterSubstringsAny:
			f.any = append(f.any, foldComponent(v))
		case ldap.FilterSubstringsFinal:
			if i != len(subs.Children)-1 {
				return nil, errors.New("substring final is not last")
			}
			f.final = foldComponent(v)
		default:
			return nil, fmt.Errorf("unknown substring choice %d", c.Tag)
		}
	}
	return f, nil
}

// extensibleRule says whether the extensible filter understands a
// matching rule (any other is Undefined), and whether it ignores case.
func extensibleRule(rule string) (ignoreCase, known bool) {
	switch rule {
	case "", // the attribute's equality rule
		"caseignorematch", "2.5.13.2",
		"caseignoreia5match", "1.3.6.1.4.1.1466.109.114.2":
		return true, true
	case "caseexactmatch", "2.5.13.5",
		"caseexactia5match", "1.3.6.1.4.1.1466.109.114.1",
		"octetstringmatch", "2.5.13.17":
		return false, true
	}
	return false, false
}

func compileExtensible(p *ber.Packet) (*filter, error) {
	if p.TagType != ber.TypeConstructed {
		return nil, errors.New("malformed extensible filter")
	}
	f := &filter{op: opExtensible}
	hasValue := false
	for _, c := range p.Children {
		if c.ClassType != ber.ClassContext {
			return nil, errors.New("malformed extensible filter")
		}
		switch c.Tag {
		case ldap.MatchingRuleAssertionMatchingRule:
			f.rule = strings.ToLower(octets(c))
		case ldap.MatchingRuleAssertionType:
			f.attr = strings.ToLower(octets(c))
		case ldap.MatchingRuleAssertionMatchValue:
			f.raw = octets(c)
			f.value = foldValue(f.raw)
			f.badValue = !utf8.ValidString(f.raw)
			hasValue = true
		case ldap.MatchingRuleAssertionDNAttributes:
			b := c.Data.Bytes()
			f.dnAttrs = len(b) == 1 && b[0] != 0
		default:
			return nil, fmt.Errorf("unknown extensible filter field %d", c.Tag)
		}
	}
	// RFC 4511 §4.5.1.7.7: a matchValue, and a rule or a type.
	if !hasValue || (f.rule == "" && f.attr == "") {
		return nil, errors.New("extensible filter needs a value and a rule or a type")
	}
	return f, nil
}

// eval evaluates the filter against e.
func (f *filter) eval(e *storedEntry) tri {
	switch f.op {
	case opAnd:
		res := triTrue
		for _, c := range f.children {
			switch c.eval(e) {
			case triFalse:
				return triFalse
			case triUndefined:
				res = triUndefined
			}
		}
		return res
	case opOr:
		res := triFalse
		for _, c := range f.children {
			switch c.eval(e) {
			case triTrue:
				return triTrue
			case triUndefined:
				res = triUndefined
			}
		}
		return res
	case opNot:
		switch f.children[0].eval(e) {
		case triTrue:
			return triFalse
		case triFalse:
			return triTrue
		}
		return triUndefined
	case opPresent:
		if e.attr(f.attr) != nil {
			return triTrue
		}
		return triFalse
	case opExtensible:
		return f.evalExtensible(e)
	}
	if f.badValue {
		return triUndefined
	}
	a := e.attr(f.attr)
	if a == nil {
		return triFalse
	}
	for i, v := range a.folded {
		if !a.valid[i] {
			continue
		}
		if f.matchValue(v) {
			return triTrue
		}
	}
	return triFalse
}

func (f *filter) matchValue(v string) bool {
	switch f.op {
	case opEqual, opApprox: // approx as equality: we have no phonetic rule
		return v == f.value
	case opGreaterOrEqual:
		return compareOrdered(v, f.value) >= 0
	case opLessOrEqual:
		return compareOrdered(v, f.value) <= 0
	case opSubstrings:
		return matchSubstrings(v, f.initial, f.any, f.final)
	}
	return false
}

func (f *filter) evalExtensible(e *storedEntry) tri {
	ignoreCase, known := extensibleRule(f.rule)
	if !known || f.badValue {
		return triUndefined
	}
	want := f.raw
	if ignoreCase {
		want = f.value
	}
	match := func(raw, folded string) bool {
		if ignoreCase {
			return folded == want
		}
		return raw == want
	}
	for _, a := range e.attrs {
		if f.attr != "" && a.lname != f.attr {
			continue
		}
		for i := range a.values {
			if a.valid[i] && match(a.values[i], a.folded[i]) {
				return triTrue
			}
		}
	}
	if f.dnAttrs {
		for _, ava := range e.dnAVAs {
			if (f.attr == "" || ava.typ == f.attr) && match(ava.raw, ava.folded) {
				return triTrue
			}
		}
	}
	return triFalse
}
