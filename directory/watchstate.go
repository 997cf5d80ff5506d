package directory

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// A Watcher flushes the whole cache on a change, never part of it: which
// cached answers a change affects depends on whether the entry matched
// each cached filter before or after it, and only the server can tell
// (matching rules, object class inheritance, attribute aliases); a guess
// on our side that is wrong once keeps a stale answer for a TTL. What a
// Watcher can tell safely is that a change touched nothing any lookup
// reads — a password, a ppolicy or lastbind timestamp — and skip the
// flush: every answer stays what the server would give. It sees a change
// only through what the service account may read, so that holds only
// when the account may read every attribute the filters name: with an
// ACL of "search" on one, a filter's result changes and the digest does
// not. searchOnlyAttribute checks it at every connection, and the
// Watcher flushes on every change while it does not hold.

// maxWatchedEntries bounds the states a Watcher keeps: past it, a change
// to an entry it has no state for flushes, as without states.
const maxWatchedEntries = 1_000_000

// entryState is a digest of an entry as the sync search returns it: its DN
// and every value of watchAttributes that the service account may read.
type entryState [16]byte

// watchAttributes are what the sync search asks for: every user attribute
// ("*"), and every attribute a query or an option names, which may be
// operational (a filter on pwdAccountLockedTime, a quota in an
// operational attribute). A filter whose attributes cannot all be named
// (an extensible match without a type) adds "+", every operational one.
// A change that leaves all of them as they were, and the DN, changes no
// cached answer: every search of the package names its attributes from
// the same options (Mailbox, LookupUser: result attributes, quota, home,
// "uid"), and its filters come from the queries.
func (d *Directory) watchAttributes() []string {
	names, all := d.filterAttributes()
	out := []string{"*"}
	if all {
		out = append(out, "+")
	}
	for _, a := range []string{d.opts.QuotaAttribute, d.opts.QuotaMessagesAttribute, d.opts.HomeAttribute,
		"uid"} { // LookupUser's login
		if a != "" {
			names = append(names, strings.ToLower(a))
		}
	}
	for _, q := range d.opts.Queries.byName() {
		if q.ResultAttribute != "" {
			names = append(names, strings.ToLower(q.ResultAttribute))
		}
	}
	slices.Sort(names)
	return append(out, slices.Compact(names)...)
}

// filterAttributes returns the attributes the queries' filters name, in
// lower case, sorted, once each; all is true when some filter reads
// attributes it does not name (or cannot be parsed here).
func (d *Directory) filterAttributes() (names []string, all bool) {
	seen := map[string]bool{}
	add := func(a string) {
		if a != "" {
			seen[strings.ToLower(a)] = true
		}
	}
	for _, q := range d.opts.Queries.byName() {
		f, ok, err := expandFilter(q.Filter, "probe@example.org")
		if err != nil || !ok {
			all = true
			continue
		}
		p, err := ldap.CompileFilter(f)
		if err != nil || !namedAttributes(p, add) {
			all = true
		}
	}
	for a := range seen {
		names = append(names, a)
	}
	slices.Sort(names)
	return names, all
}

// searchOnlyAttribute returns an attribute the filters name that the
// service account, bound on c, cannot be shown to read, and why; "" when
// it reads them all and a digest of what it reads may decide a flush. A
// search for (attr=*) that matches an entry yet returns no value of attr
// means the account may search attr but not read it. An attribute no
// entry has yet proves nothing: one added later, search-only, would go
// unseen. One entry is asked about per attribute: an ACL that lets the
// account read attr on some entries and only search it on others is
// not caught.
func (d *Directory) searchOnlyAttribute(c *ldap.Conn) (attr, why string) {
	names, all := d.filterAttributes()
	if all {
		return "(any)", "a filter matches on attributes it does not name"
	}
	for _, a := range names {
		req := ldap.NewSearchRequest(d.opts.BaseDN, d.scope, ldap.NeverDerefAliases,
			1, int(d.opts.RequestTimeout.Seconds()), false, "("+a+"=*)", []string{a}, nil)
		res, err := c.Search(req)
		if err != nil && (res == nil || len(res.Entries) == 0 || !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)) {
			return a, fmt.Sprintf("probe failed: %v", err)
		}
		if len(res.Entries) == 0 {
			return a, "no entry has it: cannot tell whether it is readable"
		}
		// Any attribute returned counts: a filter may name a supertype
		// or an alias, and the server answers with the names it holds.
		if !slices.ContainsFunc(res.Entries[0].Attributes, func(ea *ldap.EntryAttribute) bool { return len(ea.ByteValues) > 0 }) {
			return a, "the service account may search it but not read it"
		}
	}
	return "", ""
}

// readsAttribute reports whether a lookup may read attribute a: a query
// or an option names it, or a filter reads attributes it does not name.
func (d *Directory) readsAttribute(a string) bool {
	attrs := d.watchAttributes()
	return slices.Contains(attrs, "+") || slices.Contains(attrs, strings.ToLower(a))
}

// namedAttributes calls add for every attribute p names; false when
// some cannot be named (an extensible match on any attribute).
func namedAttributes(p *ber.Packet, add func(string)) bool {
	switch p.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		ok := true
		for _, c := range p.Children {
			ok = namedAttributes(c, add) && ok
		}
		return ok
	case ldap.FilterEqualityMatch, ldap.FilterSubstrings, ldap.FilterGreaterOrEqual,
		ldap.FilterLessOrEqual, ldap.FilterApproxMatch:
		if len(p.Children) == 0 {
			return false
		}
		add(ber.DecodeString(p.Children[0].Data.Bytes()))
		return true
	case ldap.FilterPresent:
		add(ber.DecodeString(p.Data.Bytes()))
		return true
	case ldap.FilterExtensibleMatch:
		// dnAttributes also matches the DN's values: the DN is in the
		// state. A type-less match reads every attribute.
		for _, c := range p.Children {
			if c.Tag == ldap.MatchingRuleAssertionType {
				add(ber.DecodeString(c.Data.Bytes()))
				return true
			}
		}
		return false
	}
	return false
}

// stateOf digests e as returned: DN, attribute names and values in order
// (a value order that changes is a change: safe), each length-prefixed.
func stateOf(e *ldap.Entry) entryState {
	h := sha256.New()
	var n [8]byte
	write := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(e.DN)
	for _, a := range e.Attributes {
		write(a.Name)
		binary.BigEndian.PutUint64(n[:], uint64(len(a.ByteValues)))
		h.Write(n[:])
		for _, v := range a.ByteValues {
			write(string(v))
		}
	}
	var s entryState
	copy(s[:], h.Sum(nil))
	return s
}

// entryStates are the states of the entries a Watcher has seen, by
// entryUUID, so that a change notification can be compared with the
// entry before it. Used by the Watcher's Run goroutine only.
type entryStates map[[16]byte]entryState

// record keeps the state of e after a notification (state add or
// modify) and reports whether it is unchanged from the one kept: false
// when none was (a new entry, one never seen, or past maxWatchedEntries).
func (s entryStates) record(id [16]byte, e *ldap.Entry) (unchanged bool) {
	st := stateOf(e)
	old, ok := s[id]
	if ok || len(s) < maxWatchedEntries {
		s[id] = st
	}
	return ok && old == st
}
