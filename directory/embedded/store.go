package embedded

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// storedAttr is one attribute of a loaded entry with its values prepared
// for matching. Immutable.
type storedAttr struct {
	name   string   // as spelled in the LDIF
	lname  string   // lower-case, for lookups
	values []string // as loaded
	folded []string // foldValue(values[i])
	valid  []bool   // values[i] is valid UTF-8 (else it never matches)
}

// dnAVA is one attribute=value of an entry's DN, for extensible :dn: filters.
type dnAVA struct{ typ, raw, folded string }

// storedEntry is a loaded entry. Immutable after newDirectory, so every
// connection reads it without locks.
type storedEntry struct {
	dn     string
	ndn    string   // normalized DN
	rdns   []string // normalized RDNs, leaf first
	attrs  []*storedAttr
	byName map[string]*storedAttr // by lname
	dnAVAs []dnAVA
	isRoot bool // no loaded parent: a naming context
}

func (e *storedEntry) attr(lname string) *storedAttr { return e.byName[lname] }

// userPasswordAttr is never returned and only used by Bind.
const userPasswordAttr = "userpassword"

// directory is the immutable set of entries a Server serves.
type directory struct {
	entries []*storedEntry // LDIF order
	byDN    map[string]*storedEntry
	roots   []string     // DNs of entries whose parent is not loaded: namingContexts
	root    *storedEntry // the root DSE (RFC 4512 §5.1)
}

func newDirectory(entries []Entry) (*directory, error) {
	d := &directory{byDN: make(map[string]*storedEntry, len(entries))}
	for _, in := range entries {
		e, err := newStoredEntry(in.clone())
		if err != nil {
			return nil, err
		}
		if _, dup := d.byDN[e.ndn]; dup {
			return nil, fmt.Errorf("embedded: duplicate dn %q", in.DN)
		}
		d.byDN[e.ndn] = e
		d.entries = append(d.entries, e)
	}
	for _, e := range d.entries {
		if _, ok := d.byDN[strings.Join(e.rdns[1:], ",")]; !ok {
			e.isRoot = true
			d.roots = append(d.roots, e.dn)
		}
	}
	d.root = &storedEntry{byName: map[string]*storedAttr{}}
	for _, a := range []Attribute{
		{Name: "objectClass", Values: []string{"top"}},
		{Name: "namingContexts", Values: d.roots},
		{Name: "supportedLDAPVersion", Values: []string{"3"}},
		{Name: "supportedExtension", Values: []string{oidWhoAmI}},
	} {
		sa := &storedAttr{name: a.Name, lname: strings.ToLower(a.Name)}
		for _, v := range a.Values {
			sa.values = append(sa.values, v)
			sa.folded = append(sa.folded, foldValue(v))
			sa.valid = append(sa.valid, utf8.ValidString(v))
		}
		d.root.attrs = append(d.root.attrs, sa)
		d.root.byName[sa.lname] = sa
	}
	return d, nil
}

func (d *directory) rootDSE() *storedEntry { return d.root }

func newStoredEntry(in Entry) (*storedEntry, error) {
	if in.DN == "" {
		return nil, fmt.Errorf("embedded: entry with an empty dn")
	}
	rdns, err := normalizeRDNs(in.DN)
	if err != nil {
		return nil, fmt.Errorf("embedded: dn %q: %w", in.DN, err)
	}
	parsed, _ := ldap.ParseDN(in.DN) // cannot fail: normalizeRDNs parsed it
	e := &storedEntry{dn: in.DN, ndn: strings.Join(rdns, ","), rdns: rdns, byName: map[string]*storedAttr{}}
	for _, rdn := range parsed.RDNs {
		for _, atv := range rdn.Attributes {
			e.dnAVAs = append(e.dnAVAs, dnAVA{typ: strings.ToLower(atv.Type), raw: atv.Value, folded: foldValue(atv.Value)})
		}
	}
	for _, a := range in.Attributes {
		if !validAttrDesc(a.Name) {
			return nil, fmt.Errorf("embedded: dn %q: invalid attribute description %q", in.DN, truncate(a.Name))
		}
		lname := strings.ToLower(a.Name)
		sa := e.byName[lname]
		if sa == nil {
			sa = &storedAttr{name: a.Name, lname: lname}
			e.byName[lname] = sa
			e.attrs = append(e.attrs, sa)
		}
		for _, v := range a.Values {
			sa.values = append(sa.values, v)
			sa.folded = append(sa.folded, foldValue(v))
			sa.valid = append(sa.valid, utf8.ValidString(v))
		}
	}
	return e, nil
}

// find returns the entry with the normalized DN, nil if absent.
func (d *directory) find(ndn string) *storedEntry { return d.byDN[ndn] }

// matchedDN returns the DN of the closest loaded ancestor of rdns (RFC 4511
// §4.1.9 matchedDN for noSuchObject), "" if none.
func (d *directory) matchedDN(rdns []string) string {
	for i := 1; i < len(rdns); i++ {
		if e := d.byDN[strings.Join(rdns[i:], ",")]; e != nil {
			return e.dn
		}
	}
	return ""
}

// inScope reports whether e is within scope of the base (normalized RDNs,
// leaf first; empty = the root, whose subtree is every entry).
func inScope(e *storedEntry, base []string, scope int) bool {
	if len(base) == 0 && scope == ldap.ScopeSingleLevel {
		return e.isRoot // the children of the root DSE are the naming contexts
	}
	switch scope {
	case ldap.ScopeBaseObject:
		if len(e.rdns) != len(base) {
			return false
		}
	case ldap.ScopeSingleLevel:
		if len(e.rdns) != len(base)+1 {
			return false
		}
	case ldap.ScopeWholeSubtree:
		if len(e.rdns) < len(base) {
			return false
		}
	default:
		return false
	}
	off := len(e.rdns) - len(base)
	for i, r := range base {
		if e.rdns[off+i] != r {
			return false
		}
	}
	return true
}

// DemoHomeBase is the home directory prefix used in DemoLDIF.
const DemoHomeBase = "/var/vmail"

// RewriteHomes returns a copy of entries whose homeDirectory values under
// oldBase are moved under newBase: with oldBase /var/vmail and newBase
// /tmp/demo/vmail, /var/vmail/alice becomes /tmp/demo/vmail/alice. Values
// outside oldBase (after path.Clean, so /var/vmail/../etc is outside) are
// left as they are.
func RewriteHomes(entries []Entry, oldBase, newBase string) []Entry {
	oldBase, newBase = path.Clean(oldBase), path.Clean(newBase)
	out := make([]Entry, len(entries))
	for i, e := range entries {
		out[i] = e.clone()
		for j, a := range out[i].Attributes {
			if !strings.EqualFold(a.Name, "homeDirectory") {
				continue
			}
			for k, v := range a.Values {
				c := path.Clean(v)
				if strings.HasPrefix(c, oldBase+"/") {
					out[i].Attributes[j].Values[k] = newBase + c[len(oldBase):]
				}
			}
		}
	}
	return out
}
