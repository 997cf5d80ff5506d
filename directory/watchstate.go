package directory

import (
	"crypto/sha256"
	"encoding/binary"
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
// through what the service account may read, so the filters must name
// attributes the account may read, not only search (an ACL of "search"
// would let a filter's result change unseen); the seed's ACL gives it
// "read" on the whole of ou=mail.

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
	names := map[string]bool{}
	add := func(a string) {
		if a != "" {
			names[strings.ToLower(a)] = true
		}
	}
	all := false
	for _, q := range d.opts.Queries.byName() {
		add(q.ResultAttribute)
		f, ok, err := expandFilter(q.Filter, "probe@example.org")
		if err != nil || !ok {
			all = true
			continue
		}
		p, err := ldap.CompileFilter(f)
		if err != nil || !filterAttributes(p, add) {
			all = true
		}
	}
	add(d.opts.QuotaAttribute)
	add(d.opts.QuotaMessagesAttribute)
	add(d.opts.HomeAttribute)
	add("uid") // LookupUser's login
	out := []string{"*"}
	if all {
		out = append(out, "+")
	}
	for a := range names {
		out = append(out, a)
	}
	slices.Sort(out[1:])
	return out
}

// readsAttribute reports whether a lookup may read attribute a: a query
// or an option names it, or a filter reads attributes it does not name.
func (d *Directory) readsAttribute(a string) bool {
	attrs := d.watchAttributes()
	return slices.Contains(attrs, "+") || slices.Contains(attrs, strings.ToLower(a))
}

// filterAttributes calls add for every attribute p names; false when
// some cannot be named (an extensible match on any attribute).
func filterAttributes(p *ber.Packet, add func(string)) bool {
	switch p.Tag {
	case ldap.FilterAnd, ldap.FilterOr, ldap.FilterNot:
		ok := true
		for _, c := range p.Children {
			ok = filterAttributes(c, add) && ok
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
