package testenv

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// syncTimeout bounds how long a consumer may take to catch up with its
// provider in WaitInSync. Generous: -race on 2 shared cores.
const syncTimeout = 30 * time.Second

// Replicated is an OpenLDAP provider and one consumer replica of it, the
// directory of a cluster node:
//
//   - Provider: StartSlapd's directory (schema, fixture, ACLs, accounts)
//     with the syncprov overlay on its mdb database.
//   - Consumer: the same cn=config, but an empty database filled by
//     syncrepl (type=refreshAndPersist, retry="1 +", bound as the
//     provider's rootdn), olcUpdateRef pointing at the provider so that
//     writes get a referral, and syncprov too so that a client can run a
//     persistent sync search (RFC 4533) against the replica. It has no
//     rootpw: nobody can bind as its rootdn and write to the replica alone.
//     Its Add, Modify and Delete helpers therefore fail; change the
//     Provider and WaitInSync.
//
// Both have certificates from the same CA (CAFile of either).
type Replicated struct {
	Provider *Slapd
	Consumer *Slapd
	more     []*Slapd // AddConsumer's
}

// StartReplicated starts a provider (opts apply to it; the consumer copies
// its schema choices) and a consumer, waits until the consumer holds the
// provider's data, and stops both when the test ends.
func StartReplicated(t testing.TB, opts ...Option) *Replicated {
	t.Helper()
	withSyncprov := func(o *options) { o.syncprov = true }
	p := StartSlapd(t, append(slices.Clone(opts), withSyncprov)...)
	r := &Replicated{Provider: p}
	r.Consumer = r.startConsumer(t, 1)
	r.WaitInSync(t)
	return r
}

// AddConsumer starts one more consumer of the provider (a cluster's next
// node) and waits until every consumer is in sync.
func (r *Replicated) AddConsumer(t testing.TB) *Slapd {
	t.Helper()
	c := r.startConsumer(t, 2+len(r.more))
	r.more = append(r.more, c)
	r.WaitInSync(t)
	return c
}

func (r *Replicated) startConsumer(t testing.TB, rid int) *Slapd {
	t.Helper()
	p := r.Provider
	// A consumer takes the provider's schema options, not its data.
	return StartSlapd(t, func(o *options) { o.syncprov = true }, func(o *options) {
		o.homeBase, o.withPostfix, o.withoutMisc = p.opts.homeBase, p.opts.withPostfix, p.opts.withoutMisc
		o.syncrepl = p.SyncreplConfig(rid, "1 +")
		o.updateRef = p.URL()
		o.ca = p.ca // one CA, as one admin's servers: a client verifies both
	})
}

// SyncreplConfig is an olcSyncrepl value replicating s's whole suffix as
// its rootdn: rid, retry (slapd.conf(5): "interval count ... +"; OpenLDAP's
// default retries only hourly) and short timeouts for tests.
func (s *Slapd) SyncreplConfig(rid int, retry string) string {
	return fmt.Sprintf(`rid=%03d provider=%s bindmethod=simple binddn="%s" credentials=%s `+
		`searchbase="%s" type=refreshAndPersist retry="%s" timeout=5 network-timeout=5`,
		rid, s.URL(), AdminDN, AdminPassword, Suffix, retry)
}

// ContextCSN returns the greatest contextCSN value of the suffix entry
// (one per serverID; CSNs of one format compare as strings), "" when the
// database has none yet (an empty consumer). Read anonymously: the
// suffix entry is readable by anyone under every ACL set of testenv.
func (s *Slapd) ContextCSN(t testing.TB) string {
	t.Helper()
	csn, err := s.contextCSN()
	if err != nil {
		t.Fatalf("testenv: contextCSN of %s: %v", s.URL(), err)
	}
	return csn
}

func (s *Slapd) contextCSN() (string, error) {
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	res, err := c.Search(ldap.NewSearchRequest(Suffix, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{"contextCSN"}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(res.Entries) != 1 {
		return "", fmt.Errorf("%d suffix entries", len(res.Entries))
	}
	vals := res.Entries[0].GetAttributeValues("contextCSN")
	if len(vals) == 0 {
		return "", nil
	}
	return slices.Max(vals), nil
}

// InSync reports whether the consumer's contextCSN equals the provider's:
// every change the provider has made is on the consumer.
func (r *Replicated) InSync(t testing.TB) bool {
	t.Helper()
	p := r.Provider.ContextCSN(t)
	c, err := r.Consumer.contextCSN()
	return err == nil && p != "" && p == c
}

// WaitInSync polls (bounded by syncTimeout) until every consumer has the
// provider's contextCSN; it fails the test when one does not catch up.
func (r *Replicated) WaitInSync(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(syncTimeout)
	for _, consumer := range append([]*Slapd{r.Consumer}, r.more...) {
		for {
			p := r.Provider.ContextCSN(t)
			c, err := consumer.contextCSN()
			if err == nil && p != "" && p == c {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("testenv: consumer %s not in sync after %v: provider contextCSN %q, consumer %q (%v)",
					consumer.URL(), syncTimeout, p, c, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// WaitFor polls the consumer (bounded by syncTimeout) until the entry dn
// has attribute attr with exactly the value want ("" = absent, or the
// entry gone), read anonymously or as bindDN when given.
func (r *Replicated) WaitFor(t testing.TB, dn, attr, want string) {
	t.Helper()
	deadline := time.Now().Add(syncTimeout)
	var got string
	var err error
	for {
		got, err = r.Consumer.readAttr(dn, attr)
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: consumer: %s %s = %q (%v) after %v, want %q", dn, attr, got, err, syncTimeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readAttr reads the values of attr on dn as the reader (who may read
// ou=mail), joined with "\n"; "" when absent or when the entry does not exist.
func (s *Slapd) readAttr(dn, attr string) (string, error) {
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(ReaderDN, ReaderPassword); err != nil {
		return "", err
	}
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 10, false, "(objectClass=*)", []string{attr}, nil))
	if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if len(res.Entries) != 1 {
		return "", nil
	}
	return strings.Join(res.Entries[0].GetAttributeValues(attr), "\n"), nil
}
