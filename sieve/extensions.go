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
// off by default) that courriel does not implement. Named in the
// setting, one is ignored as a name Pigeonhole does not know is, with a
// warning of courriel's own (Pigeonhole would enable it silently): a
// configuration carried over from Dovecot (old ones often name the
// deprecated imapflags and notify) starts, and the warning says what
// changes. Refusing to start instead would stop all mail for the sake
// of the few scripts requiring it, which do not compile here whatever
// the setting: ManageSieve refuses them, and at delivery the message is
// kept in the INBOX with the error logged, as for any script that does
// not compile (nothing is lost).
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
// vacation with it (its load handler enables vacation). A name courriel
// does not know is ignored, as Pigeonhole 0.5.19 ignores one it does not
// know (sieve_extensions_set_string; its prefix still makes the setting
// relative): the warnings say which, one a name, in Pigeonhole's words;
// one Pigeonhole knows and courriel does not implement (pigeonholeOnly)
// is ignored too, with a warning of courriel's. The caller logs them.
func ParseExtensions(setting string) (Extensions, []string) {
	add, remove, relative, warnings := parseExtensionNames(setting)
	var m uint64
	if relative {
		m = defaultMask &^ remove
	}
	return Extensions{flip: withVacation(m|add) ^ defaultMask}, warnings
}

// withVacation adds vacation to a mask with vacation-seconds, whose load
// handler enables it in Pigeonhole.
func withVacation(m uint64) uint64 {
	if m&(1<<extensionIndex("vacation-seconds")) != 0 {
		m |= 1 << extensionIndex("vacation")
	}
	return m
}

// parseExtensionNames reads a setting's names: those added (+name or a
// bare name), those removed (-name), whether any had a prefix, and the
// warnings of the names ignored.
func parseExtensionNames(setting string) (add, remove uint64, relative bool, warnings []string) {
	for _, word := range strings.FieldsFunc(setting, func(r rune) bool { return r == ' ' || r == '\t' }) {
		name := word
		op := byte(0)
		if name[0] == '+' || name[0] == '-' {
			op, name, relative = name[0], name[1:], true
		}
		i := extensionIndex(name)
		if i < 0 {
			warnings = append(warnings, unknownExtensionWarning(name))
			continue
		}
		if op == '-' {
			remove |= 1 << i
		} else {
			add |= 1 << i
		}
	}
	return add, remove, relative, warnings
}

// unknownExtensionWarning is the warning of a name a setting names that
// courriel ignores: Pigeonhole's (sieve-extensions.c) for a name it does
// not know either.
func unknownExtensionWarning(name string) string {
	if slices.Contains(pigeonholeOnly, name) {
		return fmt.Sprintf("ignored extension '%s' while configuring available extensions: "+
			"Pigeonhole implements it, courriel does not (scripts requiring it do not compile)", name)
	}
	return fmt.Sprintf("ignored unknown extension '%s' while configuring available extensions", name)
}

// GlobalExtensions are Pigeonhole's sieve_global_extensions: extensions
// only global scripts may require (the admin's, Pigeonhole's sieve_before
// and sieve_after, and any script included :global), on top of
// sieve_extensions. The zero value is none. As in Pigeonhole 0.5.19
// (sieve_extensions_set_string with global set), one named there is
// enabled and marked global: personal scripts may not require it even
// when sieve_extensions enables it, ihave is false of it in them, and
// ManageSieve does not list it.
type GlobalExtensions struct {
	mask uint64
}

// ParseGlobalExtensions reads a setting in the syntax of Pigeonhole's
// sieve_global_extensions, the syntax of sieve_extensions. Pigeonhole
// reads it relative to the global set so far, which starts empty, not to
// the default set: relative or absolute, the set is the names without a
// - prefix, and -name removes nothing (an addition wins, as in
// ParseExtensions).
// Names it does not know are ignored, with warnings, as ParseExtensions
// ignores them.
func ParseGlobalExtensions(setting string) (GlobalExtensions, []string) {
	add, _, _, warnings := parseExtensionNames(setting)
	return GlobalExtensions{mask: add}, warnings
}

// String is the set as a setting ParseGlobalExtensions reads back.
func (g GlobalExtensions) String() string {
	return Extensions{flip: g.mask ^ defaultMask}.String()
}

// ForGlobal is the set global scripts may require: those x enables and
// those g marks global (vacation-seconds brings vacation).
func (x Extensions) ForGlobal(g GlobalExtensions) Extensions {
	return Extensions{flip: withVacation(x.mask()|g.mask) ^ defaultMask}
}

// ForPersonal is the set personal scripts may require, and ManageSieve
// lists: those enabled but not marked global. As in Pigeonhole, where
// vacation-seconds' load handler enables vacation unmarked, a global
// vacation-seconds gives personal scripts vacation.
func (x Extensions) ForPersonal(g GlobalExtensions) Extensions {
	return Extensions{flip: (x.ForGlobal(g).mask() &^ g.mask) ^ defaultMask}
}
