package directory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

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

// refusePaging makes s refuse paged searches to the reader, as
// TestPagingRefusedByServer's servers do.
func refusePaging(t *testing.T, s *testenv.Slapd) {
	t.Helper()
	s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcLimits\n"+
		"olcLimits: dn.exact=\""+testenv.ReaderDN+"\" size.prtotal=disabled\n")
}

// A replica that refuses paging to the reader, reached in a failover,
// makes the searches sent to it plain, not those sent to the primary once
// lookups are back on it: the primary's plain size limit is below a list
// that its paged searches return in full, and a plain search there would
// defer the mail (4xx) until a reload.
func TestPagingRefusalIsPerServer(t *testing.T) {
	t.Parallel()
	const n = 10
	primary := testenv.StartSlapd(t, testenv.WithExtraLDIF(manyAliasesLDIF(n)))
	// A plain search gets 3 entries at most; a paged one, all of them.
	primary.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcLimits\n"+
		"olcLimits: dn.exact=\""+testenv.ReaderDN+"\" size.soft=3 size.hard=3 size.prtotal=unlimited\n")
	// The replica holds the fixture alone: its answers tell it apart.
	replica := testenv.StartSlapd(t, testenv.WithCA(primary.CA()))
	refusePaging(t, replica)
	var logs bytes.Buffer
	o := options(primary)
	o.URLs = []string{primary.URL(), replica.URL()}
	o.CacheTTL, o.NegativeCacheTTL = -1, -1
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d := newDir(t, o)
	directory.SetPreferredCheckEvery(d, 10*time.Millisecond)
	ctx := context.Background()
	const onPrimary, onReplica = 4 + n, 4
	logins := func(what string) int {
		t.Helper()
		got, err := d.SenderLogins(ctx, "alice@xoyize.xyz")
		if err != nil || len(got) != onPrimary && len(got) != onReplica {
			t.Fatalf("%s: SenderLogins(alice@xoyize.xyz) = %d logins, %v; want %d (primary) or %d (replica)", what, len(got), err, onPrimary, onReplica)
		}
		return len(got)
	}
	if got := logins("on the primary"); got != onPrimary {
		t.Fatalf("first lookup answered by the replica")
	}
	primary.Stop(t)
	if got := logins("primary down"); got != onReplica {
		t.Fatalf("lookup with the primary down answered by it")
	}
	primary.Start(t)
	// Lookups go back to the primary once the pool's check finds it
	// answering; each must be answered in full.
	for deadline := time.Now().Add(time.Minute); logins("primary back") != onPrimary; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lookups never went back to the primary")
		}
	}
	if w := strings.Count(logs.String(), "refuses paged searches"); w != 1 || !strings.Contains(logs.String(), replica.URL()) {
		t.Errorf("%d warnings, want 1 naming %s:\n%s", w, replica.URL(), logs.String())
	}
}

// A server's refusal of paging is remembered for PagingRefusalFor, not
// until a reload: then it is asked for pages again, so that an admin who
// changed its limits is followed, and the refusal is logged once each
// time.
func TestPagingRefusalExpires(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	refusePaging(t, s)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var logs bytes.Buffer
	o := options(s)
	o.CacheTTL, o.NegativeCacheTTL = -1, -1
	o.Now = clk.Now
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d := newDir(t, o)
	ctx := context.Background()
	for i, step := range []struct {
		after    time.Duration // on the clock, before the lookup
		searches int64         // 2: a refused page, then plain; 1: plain at once
	}{
		{0, 2},
		{directory.PagingRefusalFor - time.Second, 1},
		{time.Second, 2},
		{0, 1},
	} {
		clk.Add(step.after)
		before := d.Stats().Searches
		got, err := d.SenderLogins(ctx, "alice@xoyize.xyz")
		if err != nil || len(got) != 4 {
			t.Fatalf("%d: SenderLogins(alice@xoyize.xyz) = %q, %v", i, got, err)
		}
		if n := d.Stats().Searches - before; n != step.searches {
			t.Errorf("%d: %v after the last lookup, SenderLogins cost %d searches, want %d", i, step.after, n, step.searches)
		}
	}
	if w := strings.Count(logs.String(), "refuses paged searches"); w != 2 || strings.Count(logs.String(), s.URL()) != 2 {
		t.Errorf("%d warnings, want 2, each naming %s:\n%s", w, s.URL(), logs.String())
	}
}
