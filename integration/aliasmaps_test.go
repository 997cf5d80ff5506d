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
	for i := range 1000 { // the alias itself and 1000 addresses: 1001
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
