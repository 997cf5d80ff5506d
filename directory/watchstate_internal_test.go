package directory

import (
	"slices"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// The sync search asks for every attribute a lookup reads: all user
// attributes, and those the filters and options name, operational or
// not; "+" when a filter reads attributes it does not name.
func TestWatchAttributes(t *testing.T) {
	t.Parallel()
	base := Options{URLs: []string{"ldap://127.0.0.1"}, BaseDN: "dc=x"}
	locked := base
	locked.Queries.User.Filter = "(&(uid=%u)(!(pwdAccountLockedTime=*))(mailQuota>=1))"
	locked.QuotaAttribute, locked.HomeAttribute = "mailQuota", "mailHost"
	anyAttr := base
	anyAttr.Queries.Aliases.Filter = "(:caseIgnoreMatch:=%s)"
	dnAttr := base
	dnAttr.Queries.Aliases.Filter = "(mailacceptinggeneralid:dn:caseIgnoreMatch:=%s)"
	defaults := []string{"*", "gidnumber", "homedirectory", "mailacceptinggeneralid", "maildrop", "objectclass", "uid", "uidnumber"}
	for _, tc := range []struct {
		name string
		o    Options
		want []string
	}{
		{"defaults", base, defaults},
		{"operational attribute in a filter", locked, []string{"*", "gidnumber", "homedirectory", "mailacceptinggeneralid", "maildrop",
			"mailhost", "mailquota", "pwdaccountlockedtime", "uid", "uidnumber"}},
		{"extensible match on any attribute", anyAttr, append([]string{"*", "+"}, defaults[1:]...)},
		{"extensible match with a type", dnAttr, defaults},
	} {
		o := tc.o
		o.setDefaults()
		if err := o.validate(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		d := &Directory{opts: o}
		if got := d.watchAttributes(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: watchAttributes() = %q, want %q", tc.name, got, tc.want)
		}
		// SetPassword keeps the cache unless a lookup may read a password.
		if got, want := d.readsAttribute("userPassword"), tc.name == "extensible match on any attribute"; got != want {
			t.Errorf("%s: readsAttribute(userPassword) = %v, want %v", tc.name, got, want)
		}
	}
}

// An entry's state changes with its DN and with any value, order
// included, and with nothing else.
func TestEntryState(t *testing.T) {
	t.Parallel()
	e := func(dn string, attrs ...*ldap.EntryAttribute) *ldap.Entry {
		return &ldap.Entry{DN: dn, Attributes: attrs}
	}
	a := func(name string, vals ...string) *ldap.EntryAttribute { return ldap.NewEntryAttribute(name, vals) }
	ref := e("uid=a,dc=x", a("maildrop", "a@x", "b@x"), a("uid", "a"))
	same := e("uid=a,dc=x", a("maildrop", "a@x", "b@x"), a("uid", "a"))
	if stateOf(ref) != stateOf(same) {
		t.Error("equal entries, different states")
	}
	for name, other := range map[string]*ldap.Entry{
		"renamed":        e("uid=b,dc=x", a("maildrop", "a@x", "b@x"), a("uid", "a")),
		"value order":    e("uid=a,dc=x", a("maildrop", "b@x", "a@x"), a("uid", "a")),
		"value removed":  e("uid=a,dc=x", a("maildrop", "a@x"), a("uid", "a")),
		"values joined":  e("uid=a,dc=x", a("maildrop", "a@xb@x"), a("uid", "a")),
		"attribute gone": e("uid=a,dc=x", a("maildrop", "a@x", "b@x")),
	} {
		if stateOf(ref) == stateOf(other) {
			t.Errorf("%s: same state", name)
		}
	}
	s := entryStates{}
	id := [16]byte{1}
	if s.record(id, ref) {
		t.Error("a first record is unchanged")
	}
	if !s.record(id, same) {
		t.Error("the same entry again is a change")
	}
	if s.record(id, e("uid=a,dc=x")) {
		t.Error("a changed entry is unchanged")
	}
}
