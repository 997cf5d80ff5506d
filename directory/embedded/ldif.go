package embedded

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// Entry is one directory entry as read from LDIF. Attribute names keep the
// spelling of the file (returned that way to clients); comparisons ignore
// case.
type Entry struct {
	DN         string
	Attributes []Attribute
}

// Attribute is one attribute description with its values, in file order.
type Attribute struct {
	Name   string
	Values []string
}

// Get returns the values of the named attribute (case-insensitive), nil if
// absent.
func (e Entry) Get(name string) []string {
	for _, a := range e.Attributes {
		if strings.EqualFold(a.Name, name) {
			return a.Values
		}
	}
	return nil
}

// clone returns a deep copy, so a caller's later changes cannot reach a
// running server.
func (e Entry) clone() Entry {
	c := Entry{DN: e.DN, Attributes: make([]Attribute, len(e.Attributes))}
	for i, a := range e.Attributes {
		c.Attributes[i] = Attribute{Name: a.Name, Values: append([]string(nil), a.Values...)}
	}
	return c
}

// Limits of ParseLDIF. LDIF files are written by the operator, but a typo
// (a binary file given by mistake) must give an error, not exhaust memory.
const (
	maxLDIFLine  = 1 << 20 // one physical line
	maxLDIFValue = 1 << 20 // one logical (unfolded) line
)

// ErrLDIF is wrapped by every ParseLDIF syntax error.
var ErrLDIF = errors.New("ldif")

// LDIFError is a syntax error at a line of the input (1-based; for a folded
// line, the line where it starts).
type LDIFError struct {
	Line int
	Msg  string
}

func (e *LDIFError) Error() string { return fmt.Sprintf("ldif: line %d: %s", e.Line, e.Msg) }

// Unwrap makes errors.Is(err, ErrLDIF) true.
func (e *LDIFError) Unwrap() error { return ErrLDIF }

func lerr(line int, format string, args ...any) error {
	return &LDIFError{Line: line, Msg: fmt.Sprintf(format, args...)}
}

// logicalLine is one unfolded LDIF line.
type logicalLine struct {
	n    int    // first physical line
	text string // unfolded, without the line terminator
}

// ParseLDIF reads RFC 2849 content records (no change records). It accepts
// comments, folded lines, "attr:: base64", "version: 1", attribute options
// and UTF-8 plain values; it refuses URL values ("attr:< file"), change
// records, duplicate DNs, duplicate values and records without attributes.
func ParseLDIF(r io.Reader) ([]Entry, error) {
	lines, err := readLogicalLines(r)
	if err != nil {
		return nil, err
	}
	var (
		entries []Entry
		seen    = map[string]int{} // normalized DN -> line of its record
		rec     []logicalLine
		first   = true
	)
	flush := func() error {
		if len(rec) == 0 {
			return nil
		}
		if first {
			first = false
			if name, _, ok := strings.Cut(rec[0].text, ":"); ok && strings.EqualFold(name, "version") {
				if err := parseVersion(rec[0]); err != nil {
					return err
				}
				rec = rec[1:]
				if len(rec) == 0 {
					return nil
				}
			}
		}
		e, err := parseRecord(rec)
		if err != nil {
			return err
		}
		ndn, err := normalizeDN(e.DN)
		if err != nil {
			return lerr(rec[0].n, "dn %q: %v", e.DN, err)
		}
		if prev, dup := seen[ndn]; dup {
			return lerr(rec[0].n, "duplicate dn %q (first at line %d)", e.DN, prev)
		}
		seen[ndn] = rec[0].n
		entries = append(entries, e)
		rec = rec[:0]
		return nil
	}
	for _, l := range lines {
		if l.text == "" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		rec = append(rec, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return entries, nil
}

// readLogicalLines splits the input into lines, drops comments and unfolds
// continuation lines (RFC 2849 note 2: a line starting with one space
// continues the previous one; a comment may be folded too).
func readLogicalLines(r io.Reader) ([]logicalLine, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLDIFLine)
	var (
		out       []logicalLine
		cur       strings.Builder // the logical line being unfolded
		curLine   int             // its first physical line; 0 when none
		n         int
		inComment bool
	)
	flush := func() {
		if curLine != 0 {
			out = append(out, logicalLine{n: curLine, text: cur.String()})
			cur.Reset()
			curLine = 0
		}
	}
	for sc.Scan() {
		n++
		raw := bytes.TrimSuffix(sc.Bytes(), []byte("\r"))
		switch {
		case len(raw) > 0 && raw[0] == ' ':
			if inComment {
				continue
			}
			if curLine == 0 {
				return nil, lerr(n, "continuation line without a line to continue")
			}
			if cur.Len()+len(raw)-1 > maxLDIFValue {
				return nil, lerr(curLine, "line longer than %d bytes", maxLDIFValue)
			}
			cur.Write(raw[1:])
		case len(raw) > 0 && raw[0] == '#':
			flush()
			inComment = true
		case len(bytes.TrimSpace(raw)) == 0:
			// A blank line (or one of spaces only) ends a record.
			flush()
			inComment = false
			out = append(out, logicalLine{n: n})
		default:
			flush()
			inComment = false
			curLine = n
			cur.Write(raw)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, lerr(n+1, "line longer than %d bytes", maxLDIFLine)
		}
		return nil, fmt.Errorf("ldif: reading: %w", err)
	}
	flush()
	return out, nil
}

func parseVersion(l logicalLine) error {
	_, v, _ := strings.Cut(l.text, ":")
	if strings.TrimSpace(v) != "1" {
		return lerr(l.n, "unsupported LDIF version %q (want 1)", strings.TrimSpace(v))
	}
	return nil
}

// parseRecord turns the lines of one record into an Entry.
func parseRecord(rec []logicalLine) (Entry, error) {
	name, dn, err := parseAttrVal(rec[0])
	if err != nil {
		return Entry{}, err
	}
	if !strings.EqualFold(name, "dn") {
		return Entry{}, lerr(rec[0].n, "record must start with \"dn:\", found %q", truncate(name))
	}
	if dn == "" {
		return Entry{}, lerr(rec[0].n, "empty dn (the root DSE cannot be loaded)")
	}
	e := Entry{DN: dn}
	index := map[string]int{}      // lower-case name -> index in e.Attributes
	values := map[[2]string]bool{} // {lower-case name, folded value}: duplicates
	for _, l := range rec[1:] {
		name, val, err := parseAttrVal(l)
		if err != nil {
			return Entry{}, err
		}
		lname := strings.ToLower(name)
		switch lname {
		case "changetype":
			return Entry{}, lerr(l.n, "changetype records are not supported: content LDIF only")
		case "control":
			return Entry{}, lerr(l.n, "controls are not supported: content LDIF only")
		case "dn":
			return Entry{}, lerr(l.n, "second dn in one record (missing blank line?)")
		}
		key := [2]string{lname, foldValue(val)}
		if values[key] {
			// slapd refuses it too (attributeOrValueExists).
			return Entry{}, lerr(l.n, "duplicate value %q for attribute %s", truncate(val), name)
		}
		values[key] = true
		i, ok := index[lname]
		if !ok {
			index[lname] = len(e.Attributes)
			e.Attributes = append(e.Attributes, Attribute{Name: name, Values: []string{val}})
			continue
		}
		e.Attributes[i].Values = append(e.Attributes[i].Values, val)
	}
	if len(e.Attributes) == 0 {
		return Entry{}, lerr(rec[0].n, "entry %q has no attributes", truncate(dn))
	}
	return e, nil
}

// parseAttrVal parses "name: value", "name:: base64" (RFC 2849 attrval-spec).
func parseAttrVal(l logicalLine) (name, value string, err error) {
	if l.text == "-" {
		return "", "", lerr(l.n, "\"-\" separator: change records are not supported, content LDIF only")
	}
	name, rest, ok := strings.Cut(l.text, ":")
	if !ok {
		return "", "", lerr(l.n, "missing ':' in %q", truncate(l.text))
	}
	if !validAttrDesc(name) {
		return "", "", lerr(l.n, "invalid attribute description %q", truncate(name))
	}
	switch {
	case strings.HasPrefix(rest, ":"):
		enc := strings.Trim(rest[1:], " ")
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return "", "", lerr(l.n, "attribute %s: bad base64 value: %v", name, err)
		}
		return name, string(b), nil
	case strings.HasPrefix(rest, "<"):
		return "", "", lerr(l.n, "attribute %s: URL values (\":<\") are not supported", name)
	}
	value = strings.TrimLeft(rest, " ")
	if !utf8.ValidString(value) {
		return "", "", lerr(l.n, "attribute %s: value is not valid UTF-8 (use \"%s::\" and base64)", name, name)
	}
	if strings.ContainsRune(value, 0) {
		return "", "", lerr(l.n, "attribute %s: NUL in value (use base64)", name)
	}
	return name, value, nil
}

// validAttrDesc checks RFC 4512 §2.5 AttributeDescription: a descriptor
// (keychar run starting with a letter) or a numeric OID, then ;options.
func validAttrDesc(s string) bool {
	typ, opts, _ := strings.Cut(s, ";")
	if !validDescr(typ) && !validOID(typ) {
		return false
	}
	if opts == "" {
		return !strings.HasSuffix(s, ";")
	}
	for _, o := range strings.Split(opts, ";") {
		if o == "" || !isKeychars(o) {
			return false
		}
	}
	return true
}

func validDescr(s string) bool {
	return s != "" && isAlpha(s[0]) && isKeychars(s)
}

func isKeychars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

func validOID(s string) bool {
	if s == "" {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if part == "" || (len(part) > 1 && part[0] == '0') {
			return false
		}
		for i := 0; i < len(part); i++ {
			if !isDigit(part[i]) {
				return false
			}
		}
	}
	return true
}

func isAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// truncate keeps error messages short; LDIF lines can be a megabyte.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// normalizeDN returns the comparison form of a DN (RFC 4514 syntax, parsed
// by go-ldap): attribute types and values lower-cased, insignificant spaces
// removed, multi-valued RDNs sorted, every special character escaped so
// that distinct DNs never collide.
func normalizeDN(dn string) (string, error) {
	rdns, err := normalizeRDNs(dn)
	if err != nil {
		return "", err
	}
	return strings.Join(rdns, ","), nil
}

// normalizeRDNs returns the normalized RDNs, leaf first.
func normalizeRDNs(dn string) ([]string, error) {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(parsed.RDNs))
	for _, rdn := range parsed.RDNs {
		if len(rdn.Attributes) == 0 {
			return nil, errors.New("empty RDN")
		}
		parts := make([]string, 0, len(rdn.Attributes))
		for _, atv := range rdn.Attributes {
			parts = append(parts, escapeDNPart(strings.ToLower(atv.Type))+"="+escapeDNPart(foldValue(atv.Value)))
		}
		sortStrings(parts)
		out = append(out, strings.Join(parts, "+"))
	}
	return out, nil
}

func escapeDNPart(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case ',', '+', '=', '\\':
			fmt.Fprintf(&b, "\\%02x", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sortStrings is an insertion sort: RDNs have one or two attributes.
func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
