package directory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"courriel/directory"
	"courriel/internal/testenv"
)

// manyAliasesLDIF: n alias entries, many0..many<n-1>, whose maildrop is
// alice's: with the fixture's four, 4+n entries share that maildrop.
func manyAliasesLDIF(n int) string {
	var ldif string
	for i := range n {
		ldif += fmt.Sprintf("dn: uid=many%d,ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\n"+
			"uid: many%d\nmailacceptinggeneralid: many%d@hosted-domain.com\nmaildrop: alice@xoyize.xyz\n\n", i, i, i)
	}
	return ldif
}

// A maildrop shared by more entries than the server lets a plain search
// return is still looked up in full, in pages, as far as the server
// allows paged searches (slapd: size.prtotal) and up to Options.SizeLimit;
// past either, the lookup is ErrUnavailable (4xx), never a partial answer.
// Its mailbox is found whatever the limits.
func TestSharedMaildropPastSizeLimit(t *testing.T) {
	t.Parallel()
	const n = 250 // more than one page
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(manyAliasesLDIF(n)))
	// A plain search gets 3 entries at most; a paged one, all of them.
	s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSizeLimit\n"+
		"olcSizeLimit: size.soft=3 size.hard=3 size.prtotal=unlimited\n")
	ctx := context.Background()
	d := newDir(t, options(s))

	want := []string{"alice", "chain3", "mixed", "team"}
	for i := range n {
		want = append(want, fmt.Sprintf("many%d", i))
	}
	slices.Sort(want)
	got, err := d.SenderLogins(ctx, "alice@xoyize.xyz")
	slices.Sort(got)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("SenderLogins(alice@xoyize.xyz) = %d logins, %v; want %d", len(got), err, len(want))
	}
	r, err := d.ResolveRecipient(ctx, "many7@hosted-domain.com")
	if err != nil || len(r.Destinations) != 1 || r.Destinations[0].Mailbox == nil || r.Destinations[0].Mailbox.Maildir != "/var/vmail/alice/mailbox/" {
		t.Errorf("ResolveRecipient(many7@hosted-domain.com) = %+v, %v", r, err)
	}

	// Options.SizeLimit bounds all the pages together.
	o := options(s)
	o.SizeLimit = n
	if got, err := newDir(t, o).SenderLogins(ctx, "alice@xoyize.xyz"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("SenderLogins past Options.SizeLimit = %d logins, %v; want ErrUnavailable", len(got), err)
	}

	// A server that bounds paged searches too (slapd's default: size.prtotal
	// is size.hard) cannot be read in full: temporary, not a partial list.
	s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nreplace: olcSizeLimit\nolcSizeLimit: 3\n")
	if got, err := newDir(t, options(s)).SenderLogins(ctx, "alice@xoyize.xyz"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("SenderLogins past the server's hard limit = %d logins, %v; want ErrUnavailable", len(got), err)
	}
	// The mailbox of that maildrop is still found: its lookup asks only for
	// the entries with a home, one here, in one search or in separate ones.
	sep := options(s)
	sep.Queries = directory.DefaultQueries()
	sep.Queries.UID.Filter = "(&(maildrop=%s)(uidNumber=*))"
	for name, o := range map[string]directory.Options{"one search": options(s), "separate searches": sep} {
		r, err := newDir(t, o).ResolveRecipient(ctx, "many7@hosted-domain.com")
		if err != nil || len(r.Destinations) != 1 || r.Destinations[0].Mailbox == nil ||
			r.Destinations[0].Mailbox.Maildir != "/var/vmail/alice/mailbox/" || r.Destinations[0].Mailbox.Home != "/var/vmail/alice" {
			t.Errorf("%s: ResolveRecipient(many7@hosted-domain.com) past the server's hard limit = %+v, %v", name, r, err)
		}
	}
}

// A reader whose slapd limits forbid paged searches (size.prtotal=disabled)
// or allow smaller pages than courriel's (size.pr) gets adminLimitExceeded
// to a paged search, control not critical or not. Postfix, whose dict_ldap
// never pages, works with the same server: so must courriel, with plain
// searches bounded by the plain size limits, instead of deferring every
// recipient. Another admin limit (size.unchecked) stays a temporary error.
func TestPagingRefusedByServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, limit := range []string{"size.prtotal=disabled", "size.pr=10"} {
		t.Run(limit, func(t *testing.T) {
			s := testenv.StartSlapd(t)
			s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcLimits\n"+
				"olcLimits: dn.exact=\""+testenv.ReaderDN+"\" "+limit+"\n")
			o := options(s)
			o.CacheTTL, o.NegativeCacheTTL = -1, -1
			d := newDir(t, o)
			for i := range 2 { // the refusal, then plain at once
				before := d.Stats().Searches
				got, err := d.SenderLogins(ctx, "alice@xoyize.xyz")
				slices.Sort(got)
				if want := []string{"alice", "chain3", "mixed", "team"}; err != nil || !slices.Equal(got, want) {
					t.Errorf("%d: SenderLogins(alice@xoyize.xyz) = %q, %v; want %q", i, got, err, want)
				}
				if n := d.Stats().Searches - before; i == 1 && n != 1 {
					t.Errorf("%d: SenderLogins cost %d searches, want 1 (plain)", i, n)
				}
				r, err := d.ResolveRecipient(ctx, "team@hosted-domain.com")
				if err != nil || len(r.Destinations) != 2 || r.Destinations[0].Mailbox == nil {
					t.Errorf("%d: ResolveRecipient(team@hosted-domain.com) = %+v, %v", i, r, err)
				}
			}
			if _, err := d.SenderLogins(ctx, "nobody@xoyize.xyz"); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("SenderLogins(nobody@xoyize.xyz): %v, want ErrNotFound", err)
			}
		})
	}
	t.Run("size.unchecked", func(t *testing.T) {
		s := testenv.StartSlapd(t)
		s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcLimits\n"+
			"olcLimits: dn.exact=\""+testenv.ReaderDN+"\" size.unchecked=1\n")
		// An unindexed filter: every entry is a candidate.
		o := options(s)
		o.Queries = directory.DefaultQueries()
		o.Queries.Senders.Filter = "(|(description=%s)(cn=%s))"
		if got, err := newDir(t, o).SenderLogins(ctx, "alice"); !errors.Is(err, directory.ErrUnavailable) || !strings.Contains(err.Error(), "Admin Limit Exceeded") {
			t.Errorf("past size.unchecked: %q, %v; want ErrUnavailable", got, err)
		}
	})
}
