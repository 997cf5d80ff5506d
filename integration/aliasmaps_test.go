package integration

import (
	"fmt"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

// Postfix's virtual_alias_maps semantics through a real slapd and the
// real binary: what an admin's aliases do to mail at RCPT time.

// TestAliasExpansionLimitDefers: an alias that expands past 1000 addresses
// (Postfix's virtual_alias_expansion_limit) is deferred whole with 451
// 4.6.0, as Postfix's cleanup defers it, never accepted with part of its
// list.
func TestAliasExpansionLimitDefers(t *testing.T) {
	requireTool(t, "swaks")
	var ldif strings.Builder
	ldif.WriteString("dn: uid=huge,ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\nuid: huge\nmailacceptinggeneralid: huge@hosted-domain.com\n")
	for i := range 1001 { // counted as Postfix counts its list: 1001 addresses
		fmt.Fprintf(&ldif, "maildrop: u%d@foreign.example\n", i)
	}
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(ldif.String())))
	out := swaksTo(t, s, "huge@hosted-domain.com")
	if !strings.Contains(out, "<** 451 4.6.0 Alias expansion error") {
		t.Errorf("alias past the expansion limit: want 451 4.6.0\n%s", out)
	}
	if out, _ := run(t, "", binary, "queue", "-config", s.config, "list"); !strings.Contains(out, "empty") {
		t.Errorf("queue not empty:\n%s", out)
	}
	if !strings.Contains(s.logs(), "more than 1000 addresses") {
		t.Errorf("the log does not say which limit")
	}
}

// TestHostedDomainPastSizeLimit: a hosted alias domain with more entries
// than the client's size limit (1000) takes mail: the domain check asks
// slapd for one entry, not for every one.
func TestHostedDomainPastSizeLimit(t *testing.T) {
	requireTool(t, "swaks")
	var ldif strings.Builder
	for i := range 1001 {
		drop := fmt.Sprintf("u%d@foreign.example", i)
		if i == 1000 {
			drop = "alice@xoyize.xyz"
		}
		fmt.Fprintf(&ldif, "dn: uid=big%d,ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\nuid: big%d\nmailacceptinggeneralid: u%d@big.test\nmaildrop: %s\n\n", i, i, i, drop)
	}
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(ldif.String())))
	if out := swaksTo(t, s, "u1000@big.test"); !accepted(out) {
		t.Fatalf("an alias of a domain with 1001 entries:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Errorf("alice has %d messages, want 1", n)
	}
	if out := swaksTo(t, s, "nobody@big.test"); !strings.Contains(out, "<** 550 5.1.1") {
		t.Errorf("an unknown address of that domain: want 550 5.1.1\n%s", out)
	}
}

// TestMaildropValuesCrunched: maildrop values written as an admin may
// write them (<addr>, "a, b", "a,b") reach each address, as Postfix's
// mail_addr_crunch splits them; a value that is no address is dropped at
// RCPT and logged, and never refuses the whole message after DATA.
func TestMaildropValuesCrunched(t *testing.T) {
	requireTool(t, "swaks")
	alias := func(uid string, drops ...string) string {
		e := "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\nuid: " + uid +
			"\nmailacceptinggeneralid: " + uid + "@hosted-domain.com\n"
		for _, d := range drops {
			e += "maildrop: " + d + "\n"
		}
		return e + "\n"
	}
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(
		alias("angle", "<alice@xoyize.xyz>")+
			alias("commas", "xomail@xoyize.xyz, bob@xoyize.xyz")+
			alias("fwds", "x@outside.test,y@outside.test")+
			alias("params", "z@outside.test> NOTIFY=NEVER", "zoe@xoyize.xyz"))))
	out := swaksTo(t, s, "angle@hosted-domain.com", "commas@hosted-domain.com", "fwds@hosted-domain.com", "params@hosted-domain.com")
	if !accepted(out) || strings.Contains(out, "<** ") {
		t.Fatalf("swaks:\n%s", out)
	}
	for _, u := range []string{"alice", "xomail", "bob", "zoe"} {
		if n := len(s.maildirFiles(t, u, "new")); n != 1 {
			t.Errorf("%s has %d messages, want 1", u, n)
		}
	}
	// Each forward is one queue recipient of its own (the queue then tries
	// them: outside.test has no DNS here).
	waitFor(t, "the forwards' delivery attempts", func() bool {
		l := s.logs()
		return strings.Contains(l, "to=<x@outside.test>") && strings.Contains(l, "to=<y@outside.test>")
	})
	if l := s.logs(); strings.Contains(l, "to=<z@outside.test") || strings.Contains(l, "outside.test,") {
		t.Errorf("a maildrop value that is no address reached the queue")
	}
	if !strings.Contains(s.logs(), `alias=params@hosted-domain.com value="z@outside.test> NOTIFY=NEVER"`) {
		t.Errorf("the log does not name the alias and its bad value")
	}
}

// TestCatchAllAlias: an entry with mailacceptinggeneralid "@catch.test"
// takes the mail of every catch.test address without an alias of its own,
// also when an alias leads there, as Postfix's virtual_alias_maps do.
func TestCatchAllAlias(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(`dn: uid=catchall,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: catchall
mailacceptinggeneralid: @catch.test
maildrop: alice@xoyize.xyz

dn: uid=own,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: own
mailacceptinggeneralid: own@catch.test
maildrop: bob@xoyize.xyz

dn: uid=via,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: via
mailacceptinggeneralid: via@hosted-domain.com
maildrop: somebody@catch.test
`)))
	count := func(user string) int { return len(s.maildirFiles(t, user, "new")) }
	if out := swaksTo(t, s, "anyone@catch.test"); !accepted(out) {
		t.Fatalf("catch-all:\n%s", out)
	}
	if a, b := count("alice"), count("bob"); a != 1 || b != 0 {
		t.Errorf("catch-all: alice %d, bob %d; want 1 and 0", a, b)
	}
	if out := swaksTo(t, s, "own@catch.test"); !accepted(out) {
		t.Fatalf("own alias:\n%s", out)
	}
	if a, b := count("alice"), count("bob"); a != 1 || b != 1 {
		t.Errorf("own alias: alice %d, bob %d; want 1 and 1", a, b)
	}
	if out := swaksTo(t, s, "via@hosted-domain.com"); !accepted(out) {
		t.Fatalf("through the catch-all:\n%s", out)
	}
	if a := count("alice"); a != 2 {
		t.Errorf("through the catch-all: alice %d, want 2", a)
	}
	// Other domains are as before.
	if out := swaksTo(t, s, "nobody@hosted-domain.com"); !strings.Contains(out, "<** 550 5.1.1") {
		t.Errorf("nobody@hosted-domain.com: want 550 5.1.1\n%s", out)
	}
}

// TestHomeDirectoryTrailingSlash: a homeDirectory written with a trailing
// slash is delivered to, as Postfix and Dovecot deliver there (LookupUser,
// which IMAP uses, gives the same maildir: directory's
// TestHomeDirectoryCleaned).
func TestHomeDirectoryTrailingSlash(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	s.slapd.Add(t, `dn: uid=trailing,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: posixAccount
objectclass: postfixUser
cn: trailing
uid: trailing
uidnumber: 20000
gidnumber: 20000
homedirectory: `+s.vmail+`/trailing/
mailacceptinggeneralid: trailing@hosted-domain.com
maildrop: trailing@xoyize.xyz
`)
	if out := swaksTo(t, s, "trailing@hosted-domain.com"); !accepted(out) {
		t.Fatalf("homeDirectory with a trailing slash:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "trailing", "new")); n != 1 {
		t.Errorf("trailing has %d messages, want 1", n)
	}
}

// TestDirectoryErrorMetric: a directory outage shows in
// courriel_ldap_errors_total{kind="connect"}, for an alert.
func TestDirectoryErrorMetric(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t, withHTTP())
	if n := s.metric(t, `courriel_ldap_errors_total{kind="connect"}`); n != 0 {
		t.Fatalf("connect errors before the outage: %v", n)
	}
	s.slapd.Stop(t)
	if out := swaksTo(t, s, "alice@hosted-domain.com"); !strings.Contains(out, "<** 451 4.3.0") {
		t.Errorf("slapd down: want 451 4.3.0:\n%s", out)
	}
	if n := s.metric(t, `courriel_ldap_errors_total{kind="connect"}`); n < 1 {
		t.Errorf("connect errors after the outage: %v, want at least 1", n)
	}
	s.slapd.Start(t)
}

// TestDuplicateMaildropLog: two entries with one maildrop defer its mail,
// and the log line names both entries and what to fix.
func TestDuplicateMaildropLog(t *testing.T) {
	requireTool(t, "swaks")
	user := func(uid string) string {
		return "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: posixAccount\nobjectclass: postfixUser\ncn: " + uid +
			"\nuid: " + uid + "\nuidnumber: 20000\ngidnumber: 20000\nhomedirectory: /var/vmail/" + uid + "\nmaildrop: dup@xoyize.xyz\n\n"
	}
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(user("dup1")+user("dup2"))))
	if out := swaksTo(t, s, "dup@xoyize.xyz"); !strings.Contains(out, "<** 451 4.3.0") {
		t.Errorf("a maildrop on two entries: want 451 4.3.0\n%s", out)
	}
	var line string
	for _, l := range strings.Split(s.logs(), "\n") {
		if strings.Contains(l, "rcpt: resolve") {
			line = l
		}
	}
	for _, want := range []string{"uid=dup1,ou=mail,dc=xoyize,dc=xyz", "uid=dup2,ou=mail,dc=xoyize,dc=xyz", "kept on one of them only"} {
		if !strings.Contains(line, want) {
			t.Errorf("the log line %q does not say %q", line, want)
		}
	}
}
