package directory_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"courriel/directory"
	"courriel/directory/password"
	"courriel/internal/testenv"
)

// readEntry reads attrs of dn on s as its rootdn (the provider's truth).
func readEntry(t *testing.T, s *testenv.Slapd, dn string, attrs ...string) *ldap.Entry {
	t.Helper()
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	if err := c.Bind(s.AdminDN(), s.AdminPassword()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 10, false,
		"(objectClass=*)", attrs, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("read %s: %v", dn, err)
	}
	return res.Entries[0]
}

// SetHomeNode through the consumer: the write follows the consumer's
// referral to the provider, lands there and replicates back.
func TestSetHomeNodeFollowsReferral(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	o := replicaOptions(r)
	o.WriteBindDN, o.WriteBindPassword = r.Provider.AdminDN(), r.Provider.AdminPassword()
	d := newDir(t, o)
	ctx := context.Background()
	alice := "uid=alice," + testenv.MailBase

	steps := []struct {
		login, node string
		want        string // mailHost on the provider afterwards
	}{
		{"alice", "Node-B", "node-b"},                   // adds the class and the attribute
		{"alice@hosted-domain.com", "node-c", "node-c"}, // class already there: replace only
		{"alice", "", ""},                               // removed
		{"alice", "", ""},                               // removing what is absent is fine
	}
	for _, st := range steps {
		if err := d.SetHomeNode(ctx, st.login, st.node); err != nil {
			t.Fatalf("SetHomeNode(%q, %q): %v", st.login, st.node, err)
		}
		e := readEntry(t, r.Provider, alice, "mailHost", "objectClass")
		if got := e.GetAttributeValue("mailHost"); got != st.want {
			t.Errorf("after SetHomeNode(%q, %q): provider mailHost %q, want %q", st.login, st.node, got, st.want)
		}
		if !slices.Contains(e.GetAttributeValues("objectClass"), "inetLocalMailRecipient") {
			t.Errorf("objectClass %q lacks inetLocalMailRecipient", e.GetAttributeValues("objectClass"))
		}
		r.WaitFor(t, alice, "mailHost", st.want)
		// The writer's own cache was flushed: it reads the replica anew.
		if u, err := d.LookupUser(ctx, "alice"); err != nil || u.Node != st.want {
			t.Errorf("LookupUser after the write: node %q, %v; want %q", u.Node, err, st.want)
		}
	}

	for _, tt := range []struct {
		login, node string
		want        error
	}{
		{"nobody", "node-b", directory.ErrNotFound},
		{"alice", "bad node!", nil},
		{"alice", strings.Repeat("n", 300), nil},
	} {
		err := d.SetHomeNode(ctx, tt.login, tt.node)
		if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("SetHomeNode(%q, %q) = %v, want an error (%v)", tt.login, tt.node, err, tt.want)
		}
	}
	if got := readEntry(t, r.Provider, alice, "mailHost").GetAttributeValue("mailHost"); got != "" {
		t.Errorf("a refused call wrote mailHost %q", got)
	}

	// The default write account is the reader, who may not write: the
	// provider's refusal comes back as such, not as an outage.
	ro := newDir(t, replicaOptions(r))
	err := ro.SetHomeNode(ctx, "alice", "node-b")
	if !errors.As(err, new(*ldap.Error)) || !ldap.IsErrorWithCode(errors.Unwrap(err), ldap.LDAPResultInsufficientAccessRights) || errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("write as the reader: %v, want insufficient access", err)
	}
}

// SetPassword with write_urls: the hash lands on the provider, the user
// binds with it on the consumer (through Authenticate) once replicated.
func TestSetPasswordWriteURLs(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	o := replicaOptions(r)
	o.WriteURLs = []string{r.Provider.URL()}
	o.WriteBindDN, o.WriteBindPassword = r.Provider.AdminDN(), r.Provider.AdminPassword()
	d := newDir(t, o)
	ctx := context.Background()
	const pw = "a new passphrase for bob"
	hash, err := password.Hash(password.SSHA, []byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ResolveRecipient(ctx, "bob@xoyize.xyz"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetPassword(ctx, "bob", hash); err != nil {
		t.Fatal(err)
	}
	// No lookup reads a password: the cache is kept.
	before := d.Stats().Searches
	if _, err := d.ResolveRecipient(ctx, "bob@xoyize.xyz"); err != nil {
		t.Fatal(err)
	}
	if n := d.Stats().Searches - before; n != 0 {
		t.Errorf("SetPassword flushed the cache: %d searches to answer again", n)
	}
	bob := "uid=bob," + testenv.MailBase
	if got := readEntry(t, r.Provider, bob, "userPassword").GetAttributeValue("userPassword"); got != hash {
		t.Errorf("provider userPassword %q, want %q", got, hash)
	}
	eventually(t, "bob logs in on the replica with the new password", func() (bool, string) {
		_, err := d.Authenticate(ctx, "bob", pw)
		return err == nil, errString(err)
	})
	if _, err := d.Authenticate(ctx, "bob", testenv.BobPassword); !errors.Is(err, directory.ErrInvalidCredentials) {
		t.Errorf("old password: %v", err)
	}
	if err := d.SetPassword(ctx, "bob", "bad\nhash"); err == nil {
		t.Error("a hash with a newline was sent")
	}
}

// On a single server (no replica), a write the reader may not do is sent
// again as the write account.
func TestSetHomeNodeSingleServer(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	o := options(s)
	o.HomeAttribute = "mailHost"
	o.WriteBindDN, o.WriteBindPassword = s.AdminDN(), s.AdminPassword()
	d := newDir(t, o)
	if err := d.SetHomeNode(context.Background(), "zoe", "node-a"); err != nil {
		t.Fatal(err)
	}
	if got := readEntry(t, s, "uid=zoe,"+testenv.MailBase, "mailHost").GetAttributeValue("mailHost"); got != "node-a" {
		t.Errorf("mailHost %q", got)
	}
	noHome := options(s)
	if err := newDir(t, noHome).SetHomeNode(context.Background(), "zoe", "node-a"); err == nil {
		t.Error("SetHomeNode without a home attribute succeeded")
	}
}
