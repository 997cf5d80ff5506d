package directory_test

import (
	"context"
	"errors"
	"testing"

	"courriel/directory"
	"courriel/internal/testenv"
)

// TestResolveClassifiedSearches counts LDAP searches with the cache off
// (each lookup reaches slapd): a caller that classified the recipient's
// domain (smtp's RCPT) is not made to pay for that classification again,
// and one resolution classifies each domain once, however many maildrops
// share it.
func TestResolveClassifiedSearches(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	o := options(s)
	o.CacheTTL, o.NegativeCacheTTL = -1, -1
	d := newDir(t, o)
	ctx := context.Background()
	searches := func(resolve func() error, wantErr error) int64 {
		t.Helper()
		before := d.Stats().Searches
		if err := resolve(); !errors.Is(err, wantErr) {
			t.Fatalf("resolve: %v, want %v", err, wantErr)
		}
		return d.Stats().Searches - before
	}

	// An unknown user of a hosted alias domain (no alias, no catch-all):
	// its domain, the one smtp classified, is classified again inside
	// ResolveRecipient, not inside ResolveClassified.
	const nobody = "nobody@hosted-domain.com"
	plain := searches(func() error { _, err := d.ResolveRecipient(ctx, nobody); return err }, directory.ErrNotFound)
	given := searches(func() error {
		_, err := d.ResolveClassified(ctx, nobody, directory.DomainHosted)
		return err
	}, directory.ErrNotFound)
	if plain-given != 1 {
		t.Errorf("ResolveRecipient: %d searches, ResolveClassified: %d; want one less (the domain)", plain, given)
	}

	// A second maildrop in the same foreign domain costs its own alias
	// lookups (the address, the catch-all), not a second classification.
	const fwd = "fwd@hosted-domain.com"
	one := searches(func() error { _, err := d.ResolveRecipient(ctx, fwd); return err }, nil)
	s.Modify(t, "dn: uid=fwd,"+testenv.MailBase+"\nchangetype: modify\nadd: maildrop\nmaildrop: other@foreign.example\n")
	var r directory.Resolution
	two := searches(func() (err error) { r, err = d.ResolveRecipient(ctx, fwd); return err }, nil)
	if len(r.Destinations) != 2 {
		t.Fatalf("%s resolves to %+v, want both forwards", fwd, r.Destinations)
	}
	if two-one != 2 {
		t.Errorf("one foreign maildrop: %d searches, two in one domain: %d; want 2 more (the alias and the catch-all)", one, two)
	}
}
