package sieve

import (
	"fmt"
	"slices"
	"strings"
)

// The extensions a script may require are Pigeonhole's configurable set
// (its sieve_extensions setting), so that a script courriel takes is one
// Pigeonhole takes after a rollback, and the reverse. The catalogue below
// is Pigeonhole 0.5.19's registry in its order (sieve-extensions.c:
// sieve_dummy_extensions, then sieve_core_extensions as the load handlers
// register them, then sieve_extra_extensions), restricted to those
// courriel implements; its order is the one managesieved lists them in
// (sieve_extensions_get_string walks the registry).

type extensionInfo struct {
	name string
	// on by default: Pigeonhole's core extensions (enabled at
	// registration), not its extra ones ("explicit configuration is
	// necessary to make these useful")
	on bool
	// listed in the SIEVE capability; the comparator "extensions" are
	// dummies Pigeonhole never lists, though a script may require them
	listed bool
}

var extensionCatalogue = []extensionInfo{
	{"comparator-i;octet", true, false}, {"comparator-i;ascii-casemap", true, false},
	// Core, in the order managesieved 0.5.19 lists them: variables comes
	// before body because include's load handler registers it.
	{"fileinto", true, true}, {"reject", true, true}, {"envelope", true, true},
	{"encoded-character", true, true}, {"vacation", true, true}, {"subaddress", true, true},
	{"comparator-i;ascii-numeric", true, true}, {"relational", true, true}, {"regex", true, true},
	{"imap4flags", true, true}, {"copy", true, true}, {"include", true, true},
	{"variables", true, true}, {"body", true, true}, {"enotify", true, true},
	{"environment", true, true}, {"mailbox", true, true}, {"date", true, true},
	{"index", true, true}, {"ihave", true, true}, {"duplicate", true, true},
	{"mime", true, true}, {"foreverypart", true, true}, {"extracttext", true, true},
	// Extra: off unless configured.
	{"vacation-seconds", false, true}, {"spamtest", false, true}, {"spamtestplus", false, true},
	{"virustest", false, true}, {"editheader", false, true},
	// Pigeonhole registers it last, and only when built with its
	// unfinished extensions (Debian's is not: there `+ereject` is an
	// unknown name). courriel implements it; an admin may enable it.
	{"ereject", false, true},
}

// pigeonholeOnly are the extensions Pigeonhole 0.5.19 knows (every one
// off by default) that courriel does not implement: naming one in the
// setting is refused rather than ignored, since scripts requiring it
// would work under Dovecot and not here.
var pigeonholeOnly = []string{
	"mboxmetadata", "servermetadata", "special-use",
	"vnd.dovecot.debug", "vnd.dovecot.environment", "vnd.dovecot.report",
	"imapflags", "notify", "vnd.dovecot.duplicate",
}

// defaultMask has the bits of the extensions on by default.
var defaultMask = func() uint64 {
	var m uint64
	for i, e := range extensionCatalogue {
		if e.on {
			m |= 1 << i
		}
	}
	return m
}()

func extensionIndex(name string) int {
	return slices.IndexFunc(extensionCatalogue, func(e extensionInfo) bool { return e.name == name })
}

// Extensions is the set of extensions scripts may require and ihave
// finds, Pigeonhole's sieve_extensions. The zero value is Pigeonhole's
// default set (its core extensions: no spamtest, spamtestplus,
// virustest, editheader, vacation-seconds nor ereject). Comparable.
type Extensions struct {
	// flip has the bits of the extensions whose state differs from the
	// default, so that the zero value is the default set.
	flip uint64
}

// AllExtensions enables every extension courriel implements.
func AllExtensions() Extensions {
	return Extensions{flip: ^defaultMask & (1<<len(extensionCatalogue) - 1)}
}

func (x Extensions) mask() uint64 { return x.flip ^ defaultMask }

// Enabled says whether a script may require name.
func (x Extensions) Enabled(name string) bool {
	i := extensionIndex(name)
	return i >= 0 && x.mask()&(1<<i) != 0
}

// Capability lists the enabled extensions for ManageSieve's SIEVE
// capability, in managesieved's order; the comparators i;octet and
// i;ascii-casemap are not listed, as in Pigeonhole.
func (x Extensions) Capability() []string {
	var out []string
	m := x.mask()
	for i, e := range extensionCatalogue {
		if e.listed && m&(1<<i) != 0 {
			out = append(out, e.name)
		}
	}
	return out
}

// String is the set as an absolute setting ParseExtensions reads back.
func (x Extensions) String() string {
	var out []string
	m := x.mask()
	for i, e := range extensionCatalogue {
		if m&(1<<i) != 0 {
			out = append(out, e.name)
		}
	}
	return strings.Join(out, " ")
}

// ParseExtensions reads a setting in the syntax of Pigeonhole's
// sieve_extensions, with its meaning: names separated by spaces or tabs;
// when any has a + or - prefix the list is relative to the default set
// (-name removes, +name or a bare name adds, and an addition wins over a
// removal of the same name), otherwise it is the whole set, and an empty
// setting enables nothing. As in Pigeonhole, vacation-seconds brings
// vacation with it (its load handler enables vacation). Unlike
// Pigeonhole, which warns and ignores it, a name courriel does not
// implement is an error: a script requiring it would compile under
// Dovecot and not here.
func ParseExtensions(setting string) (Extensions, error) {
	var add, remove uint64
	relative := false
	for _, word := range strings.FieldsFunc(setting, func(r rune) bool { return r == ' ' || r == '\t' }) {
		name := word
		op := byte(0)
		if name[0] == '+' || name[0] == '-' {
			op, name, relative = name[0], name[1:], true
		}
		i := extensionIndex(name)
		if i < 0 {
			if slices.Contains(pigeonholeOnly, name) {
				return Extensions{}, fmt.Errorf("%q is a Pigeonhole Sieve extension courriel does not implement", name)
			}
			return Extensions{}, fmt.Errorf("unknown Sieve extension %q (known: %s)", name, AllExtensions())
		}
		if op == '-' {
			remove |= 1 << i
		} else {
			add |= 1 << i
		}
	}
	var m uint64
	if relative {
		m = defaultMask &^ remove
	}
	m |= add
	if m&(1<<extensionIndex("vacation-seconds")) != 0 {
		m |= 1 << extensionIndex("vacation")
	}
	return Extensions{flip: m ^ defaultMask}, nil
}
