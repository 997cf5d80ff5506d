package directory_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"courriel/directory"
	"courriel/directory/password"
	"courriel/internal/testenv"
)

// clock is a settable time source for cache tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func options(s *testenv.Slapd) directory.Options {
	return directory.Options{
		URLs: []string{s.URL()}, StartTLS: true, CAFile: s.CAFile(), RequireCert: true,
		BindDN: s.ReaderDN(), BindPassword: s.ReaderPassword(), BaseDN: s.MailBase(),
		MailboxDomains: []string{"xoyize.xyz"},
		AuthBindDN:     "uid=%u," + s.MailBase(),
		DialTimeout:    2 * time.Second, RequestTimeout: 5 * time.Second,
	}
}

func newDir(t *testing.T, o directory.Options) *directory.Directory {
	t.Helper()
	d, err := directory.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// One slapd for the read-only tests of this file.
func sharedSlapd(t *testing.T) *testenv.Slapd {
	t.Helper()
	return testenv.StartSlapd(t)
}

func TestSeedLookups(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	d := newDir(t, options(s))
	ctx := context.Background()
	// SPEC §10 and the seed's postmap -q examples.
	tests := []struct {
		m    directory.Map
		key  string
		want []string
	}{
		{directory.MapAliases, "test0@hosted-domain.com", []string{"xomail@xoyize.xyz"}},
		{directory.MapMailbox, "xomail@xoyize.xyz", []string{"/var/vmail/xomail/mailbox/"}},
		{directory.MapUID, "xomail@xoyize.xyz", []string{"20000"}},
		{directory.MapGID, "xomail@xoyize.xyz", []string{"20000"}},
		{directory.MapSenders, "test0@hosted-domain.com", []string{"xomail"}},
		{directory.MapSenders, "xomail@xoyize.xyz", []string{"xomail"}},
		{directory.MapAliases, "TEST0@Hosted-Domain.COM", []string{"xomail@xoyize.xyz"}},
		{directory.MapAliases, "team@hosted-domain.com", []string{"alice@xoyize.xyz", "bob@xoyize.xyz"}},
		{directory.MapUser, "xomail", []string{"/var/vmail/xomail"}},
		// A login may be an address of the user, as LookupUser takes it.
		{directory.MapUser, "test0@hosted-domain.com", []string{"/var/vmail/xomail"}},
		{directory.MapUser, "alice@xoyize.xyz", []string{"/var/vmail/alice"}},
	}
	for _, tt := range tests {
		got, err := d.Lookup(ctx, tt.m, tt.key)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Lookup(%s, %q) = %q, %v; want %q", tt.m, tt.key, got, err, tt.want)
		}
	}
	// Like postmap, every value of every matching entry, formatted with %d.
	if got, err := d.Lookup(ctx, directory.MapDomains, "hosted-domain.com"); err != nil || !slices.Contains(got, "hosted-domain.com") || slices.Contains(got, "") {
		t.Errorf("Lookup(domains) = %q, %v", got, err)
	}
	for _, tt := range []struct {
		m   directory.Map
		key string
	}{
		{directory.MapDomains, "foreign.example"},
		{directory.MapAliases, "nobody@hosted-domain.com"},
		{directory.MapMailbox, "test0@hosted-domain.com"},
		{directory.MapDomains, "xoyize"},
	} {
		if got, err := d.Lookup(ctx, tt.m, tt.key); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("Lookup(%s, %q) = %q, %v; want ErrNotFound", tt.m, tt.key, got, err)
		}
	}
}

// The seed's Postfix maps, copied as they are written: their query_filter
// lines have no outer parentheses, which OpenLDAP's libldap supplies.
func TestSeedQueryFiltersAsWritten(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	o := options(s)
	o.Queries = directory.Queries{
		Domains: directory.Query{Filter: "mailacceptinggeneralid=*@%s", ResultAttribute: "mailacceptinggeneralid", ResultFormat: "%d"},
		Aliases: directory.Query{Filter: "mailacceptinggeneralid=%s", ResultAttribute: "maildrop"},
		Mailbox: directory.Query{Filter: "maildrop=%s", ResultAttribute: "homeDirectory", ResultFormat: "%s/mailbox/"},
		UID:     directory.Query{Filter: " maildrop=%s ", ResultAttribute: "uidNumber"},
		Senders: directory.Query{Filter: "(|(mailacceptinggeneralid=%s)(maildrop=%s))", ResultAttribute: "uid"},
	}
	d := newDir(t, o)
	ctx := context.Background()
	r, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com")
	if err != nil || len(r.Destinations) != 1 || r.Destinations[0].Mailbox == nil ||
		r.Destinations[0].Mailbox.Maildir != "/var/vmail/xomail/mailbox/" || r.Destinations[0].Mailbox.UID != 20000 {
		t.Errorf("ResolveRecipient(test0@hosted-domain.com) = %+v, %v", r, err)
	}
	if got, err := d.Lookup(ctx, directory.MapDomains, "hosted-domain.com"); err != nil || !slices.Equal(got, []string{"hosted-domain.com"}) {
		t.Errorf("Lookup(domains, hosted-domain.com) = %q, %v", got, err)
	}
	if _, err := d.ResolveRecipient(ctx, "nobody@hosted-domain.com"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("ResolveRecipient(nobody@hosted-domain.com): %v, want ErrNotFound", err)
	}
}

func TestResolveRecipient(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	d := newDir(t, options(s))
	ctx := context.Background()
	mb := func(login string) string { return "/var/vmail/" + login + "/mailbox/" }
	tests := []struct {
		addr string
		want []string // "address maildir" or "address forward"
	}{
		{"test0@hosted-domain.com", []string{"xomail@xoyize.xyz " + mb("xomail")}},
		{"xomail@xoyize.xyz", []string{"xomail@xoyize.xyz " + mb("xomail")}},
		{"Test1@HOSTED-domain.com", []string{"xomail@xoyize.xyz " + mb("xomail")}},
		{"chain1@hosted-domain.com", []string{"alice@xoyize.xyz " + mb("alice")}},
		{"team@hosted-domain.com", []string{"alice@xoyize.xyz " + mb("alice"), "bob@xoyize.xyz " + mb("bob")}},
		{"fwd@hosted-domain.com", []string{"someone@foreign.example forward"}},
		{"bob@xoyize.xyz", []string{"bob@xoyize.xyz " + mb("bob")}}, // maps to itself
		{"contact@example.org", []string{"alice@xoyize.xyz " + mb("alice")}},
		{"anyone@foreign.example", []string{"anyone@foreign.example forward"}},
	}
	for _, tt := range tests {
		r, err := d.ResolveRecipient(ctx, tt.addr)
		if err != nil {
			t.Errorf("ResolveRecipient(%q): %v", tt.addr, err)
			continue
		}
		var got []string
		for _, dst := range r.Destinations {
			if dst.Remote {
				got = append(got, dst.Address+" forward")
			} else {
				got = append(got, dst.Address+" "+dst.Mailbox.Maildir)
				if dst.Mailbox.UID < 20000 || dst.Mailbox.GID < 20000 {
					t.Errorf("%q: uid/gid %d/%d", tt.addr, dst.Mailbox.UID, dst.Mailbox.GID)
				}
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ResolveRecipient(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	for _, addr := range []string{"nobody@hosted-domain.com", "nobody@xoyize.xyz", "loop1@hosted-domain.com", "@xoyize.xyz", "xomail@", "xomail"} {
		if r, err := d.ResolveRecipient(ctx, addr); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("ResolveRecipient(%q) = %+v, %v; want ErrNotFound", addr, r, err)
		}
	}
	if _, err := d.ResolveRecipient(ctx, "loop2@hosted-domain.com"); !errors.Is(err, directory.ErrAliasLoop) {
		t.Errorf("loop: %v, want ErrAliasLoop", err)
	}
	for dom, want := range map[string]directory.DomainClass{
		"xoyize.xyz": directory.DomainMailbox, "XOYIZE.XYZ.": directory.DomainMailbox,
		"hosted-domain.com": directory.DomainHosted, "example.org": directory.DomainHosted,
		"foreign.example": directory.DomainForeign, "*": directory.DomainForeign,
	} {
		if got, err := d.ClassifyDomain(ctx, dom); err != nil || got != want {
			t.Errorf("ClassifyDomain(%q) = %v, %v; want %v", dom, got, err, want)
		}
	}
}

// Hostile keys match nothing and never widen a search: with a wildcard
// injected, "*" would match every alias and every user.
func TestHostileKeys(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	d := newDir(t, options(s))
	ctx := context.Background()
	keys := []string{"*", "*)(uid=*", "*)(|(uid=*", `\`, `\2a`, "xomail\x00", "xomail\x00@xoyize.xyz",
		strings.Repeat("a", 2048), "\xff\xfe@xoyize.xyz", "*@hosted-domain.com", "test0@hosted-domain.com)(uid=*",
		"x)(objectClass=*", "*@*"}
	for _, k := range keys {
		for _, m := range directory.Maps {
			if got, err := d.Lookup(ctx, m, k); !errors.Is(err, directory.ErrNotFound) {
				t.Errorf("Lookup(%s, %q) = %q, %v; want ErrNotFound", m, k, got, err)
			}
		}
		if r, err := d.ResolveRecipient(ctx, k); err == nil && !(len(r.Destinations) == 1 && r.Destinations[0].Remote) {
			t.Errorf("ResolveRecipient(%q) = %+v", k, r)
		}
		if _, err := d.Authenticate(ctx, k, testenv.XomailPassword); !errors.Is(err, directory.ErrInvalidCredentials) {
			t.Errorf("Authenticate(%q) = %v, want ErrInvalidCredentials", k, err)
		}
	}
	// A domain query with a wildcard key must not classify everything as hosted.
	if c, err := d.ClassifyDomain(ctx, "*"); err != nil || c != directory.DomainForeign {
		t.Errorf("ClassifyDomain(*) = %v, %v", c, err)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	// An address two accounts list.
	for _, uid := range []string{"xomail", "zoe"} {
		s.Modify(t, "dn: uid="+uid+","+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: shared@hosted-domain.com\n")
	}
	for _, template := range []string{"uid=%u," + testenv.MailBase, ""} {
		o := options(s)
		o.AuthBindDN = template // "" = search then bind
		d := newDir(t, o)
		tests := []struct {
			login, password string
			want            error
			wantLogin       string
		}{
			{"xomail", testenv.XomailPassword, nil, "xomail"},
			{"test0@hosted-domain.com", testenv.XomailPassword, nil, "xomail"},
			{"xomail@xoyize.xyz", testenv.XomailPassword, nil, "xomail"},
			{"XOMAIL", testenv.XomailPassword, nil, "xomail"},
			{"zoe", testenv.ZoePassword, nil, "zoe"},
			{"xomail", "wrong", directory.ErrInvalidCredentials, ""},
			{"xomail", "", directory.ErrInvalidCredentials, ""},
			{"xomail", testenv.XomailPassword + "\x00", directory.ErrInvalidCredentials, ""},
			{"xomail", testenv.XomailPassword[:5], directory.ErrInvalidCredentials, ""},
			{"nobody", "whatever", directory.ErrInvalidCredentials, ""},
			// A user's own address is a login although lists deliver to it
			// (team, mixed: alice@xoyize.xyz and bob@xoyize.xyz are their
			// maildrops); an address two accounts share is none.
			{"alice@xoyize.xyz", testenv.AlicePassword, nil, "alice"},
			{"Bob@xoyize.xyz", testenv.BobPassword, nil, "bob"},
			{"shared@hosted-domain.com", testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
			{"team@hosted-domain.com", testenv.AlicePassword, directory.ErrInvalidCredentials, ""}, // a list is no account
			{"chain1", "x", directory.ErrInvalidCredentials, ""},                                   // no posixAccount
			{"alice", testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
			{"", testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
			// A login is never quoted: no spelling of it escapes the
			// per-login failure count.
			{`"test0"@hosted-domain.com`, testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
			{`"te\st0"@hosted-domain.com`, testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
			{`"xomail"`, testenv.XomailPassword, directory.ErrInvalidCredentials, ""},
		}
		for _, tt := range tests {
			u, err := d.Authenticate(ctx, tt.login, tt.password)
			if tt.want == nil {
				if err != nil || u.Login != tt.wantLogin || u.Maildir != "/var/vmail/"+tt.wantLogin+"/mailbox/" || u.UID < 20000 {
					t.Errorf("[%q] Authenticate(%q) = %+v, %v", template, tt.login, u, err)
				}
				continue
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("[%q] Authenticate(%q, %q) = %+v, %v; want %v", template, tt.login, tt.password, u, err, tt.want)
			}
		}
	}
}

// TestUserMaildirFollowsMailboxQuery: a login's maildir (what IMAP serves)
// comes from the same rule as a maildrop's (where delivery writes): the
// mailbox query's attribute and result_format, not a fixed "/mailbox/".
func TestUserMaildirFollowsMailboxQuery(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	for _, format := range []string{"", "%s/Maildir/", "%s/mail/box/"} {
		o := options(s)
		if format != "" {
			o.Queries = directory.DefaultQueries()
			o.Queries.Mailbox.ResultFormat = format
		}
		d := newDir(t, o)
		u, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := d.Mailbox(ctx, "xomail@xoyize.xyz")
		if err != nil {
			t.Fatal(err)
		}
		if u.Maildir != mb.Maildir {
			t.Errorf("format %q: login's maildir %q, delivery's %q", format, u.Maildir, mb.Maildir)
		}
		// Sieve delivery finds the script in the home, and the user's
		// addresses for vacation, in the same entry.
		if mb.Home != u.Home || mb.Home != "/var/vmail/xomail" ||
			strings.Join(mb.Addresses, ",") != "test0@hosted-domain.com,test1@hosted-domain.com" {
			t.Errorf("format %q: home %q (login's %q), addresses %v", format, mb.Home, u.Home, mb.Addresses)
		}
		// The login Pigeonhole's vacation records name (filter's
		// vacationUser), as authentication finds it.
		if mb.Login != u.Login || mb.Login != "xomail" {
			t.Errorf("format %q: login %q (authentication's %q)", format, mb.Login, u.Login)
		}
		if want := strings.Replace(format, "%s", "/var/vmail/xomail", 1); format != "" && u.Maildir != want {
			t.Errorf("format %q: maildir %q, want %q", format, u.Maildir, want)
		}
	}
}

// With the uid and gid read by other filters than the mailbox (separate
// searches), the home and addresses are still the maildrop entry's.
func TestMailboxHomeSeparateQueries(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	o := options(s)
	o.Queries = directory.DefaultQueries()
	o.Queries.UID.Filter = "(&(maildrop=%s)(uidNumber=*))"
	mb, err := newDir(t, o).Mailbox(context.Background(), "alice@xoyize.xyz")
	if err != nil {
		t.Fatal(err)
	}
	if mb.Home != "/var/vmail/alice" || !slices.Contains(mb.Addresses, "alice@example.org") || mb.UID != 20001 || mb.Login != "alice" {
		t.Errorf("mailbox %+v, want alice's home, addresses, uid and login", mb)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	ctx := context.Background()

	wrongCA := testenv.NewCA(t)
	o := options(s)
	o.CAFile = wrongCA.CertFile()
	if _, err := newDir(t, o).ResolveRecipient(ctx, "test0@hosted-domain.com"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("wrong CA: %v, want ErrUnavailable", err)
	}
	o = options(s)
	o.BindPassword = "wrong"
	bad := newDir(t, o)
	if _, err := bad.ResolveRecipient(ctx, "test0@hosted-domain.com"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("wrong reader password: %v, want ErrUnavailable", err)
	}
	if _, err := bad.Authenticate(ctx, "xomail", testenv.XomailPassword); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("wrong reader password, auth: %v, want ErrUnavailable", err)
	}
	o = options(s)
	o.URLs = []string{"ldap://" + testenv.RefusingAddr(t)}
	if err := newDir(t, o).Ping(ctx); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("server down: %v, want ErrUnavailable", err)
	}

	// Stopped mid-run, then restarted: unavailable, then recovery without a
	// new Directory. Caching is off so each call reaches the server.
	o = options(s)
	o.CacheTTL, o.NegativeCacheTTL = -1, -1
	d := newDir(t, o)
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Fatal(err)
	}
	s.Stop(t)
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("stopped: %v, want ErrUnavailable", err)
	}
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("stopped, auth: %v, want ErrUnavailable", err)
	}
	if _, err := d.ResolveRecipient(ctx, "nobody@hosted-domain.com"); errors.Is(err, directory.ErrNotFound) {
		t.Errorf("stopped: an unknown address must not look unknown (%v)", err)
	}
	s.Start(t)
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
		t.Errorf("restarted: %v", err)
	}
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Errorf("restarted, auth: %v", err)
	}
}

// An alias added in LDAP becomes valid as a recipient and as a sender at
// the same moment: both lookups share one cache whose answers expire
// together.
func TestCacheSharedExpiry(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	ctx := context.Background()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	o := options(s)
	o.Now = clk.Now
	o.CacheTTL, o.NegativeCacheTTL = time.Minute, 10*time.Second
	d := newDir(t, o)

	const alias = "new-alias@hosted-domain.com"
	if _, err := d.ResolveRecipient(ctx, alias); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("before: %v", err)
	}
	if _, err := d.SenderLogins(ctx, alias); !errors.Is(err, directory.ErrNotFound) {
		t.Fatalf("before: %v", err)
	}
	s.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: "+alias+"\n")

	// Within the negative TTL, both still say no: the cache works, and the
	// two answers agree.
	before := d.Stats().Searches
	_, errR := d.ResolveRecipient(ctx, alias)
	_, errS := d.SenderLogins(ctx, alias)
	if !errors.Is(errR, directory.ErrNotFound) || !errors.Is(errS, directory.ErrNotFound) {
		t.Fatalf("cached: %v %v", errR, errS)
	}
	if n := d.Stats().Searches - before; n != 0 {
		t.Errorf("cached negative answers cost %d searches", n)
	}
	clk.Add(10 * time.Second)
	if r, err := d.ResolveRecipient(ctx, alias); err != nil || r.Destinations[0].Address != "xomail@xoyize.xyz" {
		t.Errorf("after TTL: %+v %v", r, err)
	}
	if l, err := d.SenderLogins(ctx, alias); err != nil || !slices.Equal(l, []string{"xomail"}) {
		t.Errorf("after TTL, sender: %q %v", l, err)
	}
}

// The maildir path from the directory is untrusted.
func TestBadDirectoryValues(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(`dn: uid=evil,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: posixAccount
objectclass: postfixUser
cn: evil
uid: evil
uidnumber: 20010
gidnumber: 20010
homedirectory: /var/vmail/../../etc
maildrop: evil@xoyize.xyz
mailacceptinggeneralid: evil@hosted-domain.com

dn: uid=rootish,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: posixAccount
objectclass: postfixUser
cn: rootish
uid: rootish
uidnumber: 0
gidnumber: 0
homedirectory: /var/vmail/rootish
maildrop: rootish@xoyize.xyz

dn: uid=nohome,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: posixAccount
objectclass: postfixUser
cn: nohome
uid: nohome
uidnumber: 20011
gidnumber: 20011
homedirectory:
maildrop: nohome@xoyize.xyz
`))
	d := newDir(t, options(s))
	ctx := context.Background()
	// nohome's empty homeDirectory must not become "/mailbox/" by the
	// seed's result_format "%s/mailbox/".
	for _, addr := range []string{"evil@hosted-domain.com", "rootish@xoyize.xyz", "nohome@xoyize.xyz"} {
		if r, err := d.ResolveRecipient(ctx, addr); !errors.Is(err, directory.ErrUnavailable) {
			t.Errorf("%s: %+v, %v; want ErrUnavailable (never deliver there, never bounce)", addr, r, err)
		}
	}
	if u, err := d.LookupUser(ctx, "nohome"); !errors.Is(err, directory.ErrUnavailable) {
		t.Errorf("LookupUser(nohome) = %+v, %v; want ErrUnavailable", u, err)
	}
	// postmap -q gives nothing for an empty value (Postfix's
	// db_common_expand: "empty lookup result ... ignored").
	if got, err := d.Lookup(ctx, directory.MapMailbox, "nohome@xoyize.xyz"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("Lookup(mailbox, nohome@xoyize.xyz) = %q, %v; want ErrNotFound", got, err)
	}
}

func TestLDAPS(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	o := options(s)
	o.URLs, o.StartTLS = []string{s.LDAPSURL()}, false
	if _, err := newDir(t, o).Authenticate(context.Background(), "alice", testenv.AlicePassword); err != nil {
		t.Fatal(err)
	}
}

// An alias past the expansion or nesting limit defers the whole recipient
// (Postfix's cleanup: 4.6.0 "unreasonable virtual_alias_maps map expansion
// size"): a temporary error, never part of the list, never "user unknown".
func TestExpansionLimitIsTemporary(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		set   func(*directory.Options)
		alias string
	}{
		// mixed: mixed, alice, bob, someone@foreign.example.
		{"expansion", func(o *directory.Options) { o.AliasExpansionLimit = 2 }, "mixed@hosted-domain.com"},
		// chain1 -> chain2 -> chain3 -> alice@xoyize.xyz.
		{"recursion", func(o *directory.Options) { o.AliasRecursionLimit = 1 }, "chain1@hosted-domain.com"},
	} {
		o := options(s)
		tc.set(&o)
		r, err := newDir(t, o).ResolveRecipient(ctx, tc.alias)
		if !errors.Is(err, directory.ErrExpansionLimit) || !errors.Is(err, directory.ErrUnavailable) || errors.Is(err, directory.ErrNotFound) {
			t.Errorf("%s: ResolveRecipient(%s) = %+v, %v; want ErrExpansionLimit, temporary", tc.name, tc.alias, r, err)
		}
		if len(r.Destinations) != 0 {
			t.Errorf("%s: partial expansion %+v", tc.name, r.Destinations)
		}
	}
	// Within the limits, the same aliases resolve.
	o := options(s)
	o.AliasExpansionLimit, o.AliasRecursionLimit = 4, 3
	d := newDir(t, o)
	for _, alias := range []string{"mixed@hosted-domain.com", "chain1@hosted-domain.com"} {
		if _, err := d.ResolveRecipient(ctx, alias); err != nil {
			t.Errorf("within limits: %s: %v", alias, err)
		}
	}
}

// The expansion limit counts the addresses of the list as it stands, as
// Postfix's cleanup does (argc > virtual_alias_expansion_limit): a list of
// exactly the limit is delivered, and so is one whose sublists add up to
// it; the aliases expanded on the way do not count. One more address is
// still deferred.
func TestExpansionLimitCountsTheList(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	entry := func(uid string, maildrops ...string) string {
		l := "dn: uid=" + uid + "," + testenv.MailBase + "\nobjectclass: account\nobjectclass: postfixUser\nuid: " + uid +
			"\nmailacceptinggeneralid: " + uid + "@hosted-domain.com\n"
		for _, m := range maildrops {
			l += "maildrop: " + m + "\n"
		}
		return l
	}
	s.Add(t, entry("list3", "r1@example.net", "r2@example.net", "r3@example.net"))
	s.Add(t, entry("list4", "r1@example.net", "r2@example.net", "r3@example.net", "r4@example.net"))
	s.Add(t, entry("outer", "sub1@hosted-domain.com", "r3@example.net"))
	s.Add(t, entry("sub1", "r1@example.net", "r2@example.net"))
	s.Add(t, entry("outer4", "sub1@hosted-domain.com", "sub2@hosted-domain.com"))
	s.Add(t, entry("sub2", "r3@example.net", "r4@example.net"))
	o := options(s)
	o.AliasExpansionLimit = 3
	d := newDir(t, o)
	ctx := context.Background()
	for _, alias := range []string{"list3@hosted-domain.com", "outer@hosted-domain.com"} {
		if r, err := d.ResolveRecipient(ctx, alias); err != nil || len(r.Destinations) != 3 {
			t.Errorf("limit 3: ResolveRecipient(%s) = %d destinations, %v; want 3", alias, len(r.Destinations), err)
		}
	}
	for _, alias := range []string{"list4@hosted-domain.com", "outer4@hosted-domain.com"} {
		if r, err := d.ResolveRecipient(ctx, alias); !errors.Is(err, directory.ErrExpansionLimit) {
			t.Errorf("limit 3: ResolveRecipient(%s) = %d destinations, %v; want ErrExpansionLimit", alias, len(r.Destinations), err)
		}
	}
}

// A hosted domain with more entries than the size limit is still hosted:
// the domain check asks for one entry (slapd then answers
// sizeLimitExceeded with that entry), not for all of them.
func TestHostedDomainPastSizeLimit(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	o := options(s)
	o.SizeLimit = 2 // hosted-domain.com has a dozen entries
	d := newDir(t, o)
	for dom, want := range map[string]directory.DomainClass{
		"hosted-domain.com": directory.DomainHosted, "example.org": directory.DomainHosted,
		"foreign.example": directory.DomainForeign,
	} {
		if got, err := d.ClassifyDomain(ctx, dom); err != nil || got != want {
			t.Errorf("ClassifyDomain(%q) = %v, %v; want %v", dom, got, err, want)
		}
	}
	if got, err := d.Lookup(ctx, directory.MapDomains, "hosted-domain.com"); err != nil || !slices.Equal(got, []string{"hosted-domain.com"}) {
		t.Errorf("Lookup(domains, hosted-domain.com) = %q, %v", got, err)
	}
	if r, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil || r.Destinations[0].Address != "xomail@xoyize.xyz" {
		t.Errorf("ResolveRecipient(test0@hosted-domain.com) = %+v, %v", r, err)
	}
	// Cached as before: asking again costs no search.
	before := d.Stats().Searches
	if _, err := d.ClassifyDomain(ctx, "hosted-domain.com"); err != nil {
		t.Fatal(err)
	}
	if n := d.Stats().Searches - before; n != 0 {
		t.Errorf("a cached domain check cost %d searches", n)
	}
}

// A maildrop value is split and cleaned as Postfix's mail_addr_crunch does
// (commas, <>), and a part that is no address is dropped at resolution,
// where it cannot refuse a whole message after DATA.
func TestMaildropValues(t *testing.T) {
	t.Parallel()
	alias := func(uid string, drops ...string) string {
		e := "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\nuid: " + uid +
			"\nmailacceptinggeneralid: " + uid + "@hosted-domain.com\n"
		for _, d := range drops {
			e += "maildrop: " + d + "\n"
		}
		return e + "\n"
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(
		alias("angle", "<alice@xoyize.xyz>")+
			alias("commas", "alice@xoyize.xyz, bob@xoyize.xyz")+
			alias("fwds", "x@outside.test,y@outside.test")+
			alias("params", "x@outside.test> NOTIFY=NEVER", "bob@xoyize.xyz")+
			alias("junk", "x@outside.test> NOTIFY=NEVER", "@@@", "<>")+
			alias("quoted", `"a,b"@outside.test`)+
			// Aliases that list themselves: as any other target, the
			// address itself is dropped when it has nowhere to go (a
			// hosted alias domain has no mailboxes), the others stay.
			alias("selfish", "selfish@hosted-domain.com", "alice@xoyize.xyz")+
			alias("selfonly", "selfonly@hosted-domain.com")))
	d := newDir(t, options(s))
	ctx := context.Background()
	for _, tt := range []struct {
		addr string
		want []string
	}{
		{"angle@hosted-domain.com", []string{"alice@xoyize.xyz"}},
		{"commas@hosted-domain.com", []string{"alice@xoyize.xyz", "bob@xoyize.xyz"}},
		{"fwds@hosted-domain.com", []string{"x@outside.test forward", "y@outside.test forward"}},
		{"params@hosted-domain.com", []string{"bob@xoyize.xyz"}},
		{"quoted@hosted-domain.com", []string{`"a,b"@outside.test forward`}},
		{"selfish@hosted-domain.com", []string{"alice@xoyize.xyz"}},
	} {
		r, err := d.ResolveRecipient(ctx, tt.addr)
		var got []string
		for _, dst := range r.Destinations {
			if dst.Remote {
				got = append(got, dst.Address+" forward")
			} else {
				got = append(got, dst.Address)
			}
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ResolveRecipient(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	for _, addr := range []string{"junk@hosted-domain.com", "selfonly@hosted-domain.com"} {
		if r, err := d.ResolveRecipient(ctx, addr); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("ResolveRecipient(%q), an alias to nothing deliverable: %+v, %v; want ErrNotFound", addr, r, err)
		}
	}
}

// A maildrop in Postfix's internal form, its local part unquoted, is
// taken as Postfix takes it and quoted for delivery and relay; what cannot
// be read as one local part is still dropped, beside a good target.
func TestMaildropInternalForm(t *testing.T) {
	t.Parallel()
	alias := func(uid string, drops ...string) string {
		e := "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\nuid: " + uid +
			"\nmailacceptinggeneralid: " + uid + "@hosted-domain.com\n"
		for _, d := range drops {
			e += "maildrop: " + d + "\n"
		}
		return e + "\n"
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(
		alias("ifwd", "john doe@outside.test")+
			alias("both", "John Doe@outside.test, x@outside.test")+
			alias("local", "jane doe@xoyize.xyz")+
			alias("bad", "bob@xoyize.xyz", "john (x) doe@outside.test", "a<b c@outside.test",
				"a b@c@outside.test", strings.Repeat("l", 240)+" long@outside.test")+ // quoted: past the 256-octet path
			alias("longfwd", strings.Repeat("l", 60)+" long@outside.test")+ // 67 octets quoted: no local-part limit
			`dn: uid=jane,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: posixAccount
objectclass: postfixUser
cn: jane
uid: jane
uidnumber: 20040
gidnumber: 20040
homedirectory: /var/vmail/jane
maildrop: jane doe@xoyize.xyz
`))
	d := newDir(t, options(s))
	for _, tt := range []struct {
		addr string
		want []string
	}{
		{"ifwd@hosted-domain.com", []string{`"john doe"@outside.test forward`}},
		{"both@hosted-domain.com", []string{`"john doe"@outside.test forward`, "x@outside.test forward"}},
		{"local@hosted-domain.com", []string{`"jane doe"@xoyize.xyz /var/vmail/jane/mailbox/`}},
		{`"jane doe"@xoyize.xyz`, []string{`"jane doe"@xoyize.xyz /var/vmail/jane/mailbox/`}},
		{"bad@hosted-domain.com", []string{"bob@xoyize.xyz /var/vmail/bob/mailbox/"}},
		{"longfwd@hosted-domain.com", []string{`"` + strings.Repeat("l", 60) + ` long"@outside.test forward`}},
	} {
		r, err := d.ResolveRecipient(context.Background(), tt.addr)
		var got []string
		for _, dst := range r.Destinations {
			if dst.Remote {
				got = append(got, dst.Address+" forward")
			} else {
				got = append(got, dst.Address+" "+dst.Mailbox.Maildir)
			}
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ResolveRecipient(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
}

// catchAllLDIF: a catch-all for catch.test, an address of catch.test with
// an alias of its own, and an alias that reaches catch.test.
const catchAllLDIF = `dn: uid=catchall,ou=mail,dc=xoyize,dc=xyz
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
maildrop: own@catch.test
`

// Postfix's virtual_alias_maps look user@domain up, then @domain when
// user@domain has no entry, at every level of the expansion.
func TestCatchAll(t *testing.T) {
	t.Parallel()
	resolve := func(d *directory.Directory, addr string) ([]string, error) {
		r, err := d.ResolveRecipient(context.Background(), addr)
		var got []string
		for _, dst := range r.Destinations {
			got = append(got, dst.Address)
		}
		return got, err
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(catchAllLDIF))
	d := newDir(t, options(s))
	for _, tt := range []struct {
		addr string
		want []string
	}{
		{"anyone@catch.test", []string{"alice@xoyize.xyz"}},
		{"Some.One@CATCH.test", []string{"alice@xoyize.xyz"}},
		{"*@catch.test", []string{"alice@xoyize.xyz"}}, // any address: the * is escaped, still a plain key
		{"own@catch.test", []string{"bob@xoyize.xyz"}}, // its own alias wins
		{"via@hosted-domain.com", []string{"alice@xoyize.xyz", "bob@xoyize.xyz"}},
		{"test0@hosted-domain.com", []string{"xomail@xoyize.xyz"}}, // no catch-all there
	} {
		if got, err := resolve(d, tt.addr); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ResolveRecipient(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	if got, err := resolve(d, "nobody@hosted-domain.com"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("ResolveRecipient(nobody@hosted-domain.com) = %q, %v; want ErrNotFound", got, err)
	}
	if c, err := d.ClassifyDomain(context.Background(), "catch.test"); err != nil || c != directory.DomainHosted {
		t.Errorf("ClassifyDomain(catch.test) = %v, %v", c, err)
	}
	// Who may send as an address: its own owners, else the catch-all's
	// (Postfix's smtpd_sender_login_maps goes through the same search).
	for _, tt := range []struct {
		addr string
		want []string
	}{
		{"anyone@catch.test", []string{"catchall"}},
		{"own@catch.test", []string{"own", "via"}}, // via has it as a maildrop
	} {
		got, err := d.SenderLogins(context.Background(), tt.addr)
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("SenderLogins(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
	if got, err := d.SenderLogins(context.Background(), "nobody@hosted-domain.com"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("SenderLogins(nobody@hosted-domain.com) = %q, %v; want ErrNotFound", got, err)
	}

	// A catch-all of a mailbox domain takes the mail of every user who is
	// not an alias of itself (bob is), also when reached through an alias:
	// Postfix's well-known rule.
	s = testenv.StartSlapd(t, testenv.WithExtraLDIF(`dn: uid=catchall,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: catchall
mailacceptinggeneralid: @xoyize.xyz
maildrop: zoe@xoyize.xyz
`))
	d = newDir(t, options(s))
	for _, tt := range []struct {
		addr string
		want []string
	}{
		{"xomail@xoyize.xyz", []string{"zoe@xoyize.xyz"}},
		{"test0@hosted-domain.com", []string{"zoe@xoyize.xyz"}},
		{"nobody@xoyize.xyz", []string{"zoe@xoyize.xyz"}},
		{"bob@xoyize.xyz", []string{"bob@xoyize.xyz"}},
		{"zoe@xoyize.xyz", []string{"zoe@xoyize.xyz"}},
	} {
		if got, err := resolve(d, tt.addr); err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("mailbox domain catch-all: ResolveRecipient(%q) = %q, %v; want %q", tt.addr, got, err, tt.want)
		}
	}
}

// A catch-all names who may send as the addresses of its domain, not who
// may log in as them: with xomail owning @hosted-domain.com, a made-up
// address of the domain is no login (each would be a fresh name for the
// per-login failure count), nor is the catch-all's own key; xomail's own
// addresses still are.
func TestCatchAllGivesNoLogin(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	s.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: @hosted-domain.com\n")
	d := newDir(t, options(s))
	ctx := context.Background()
	for _, login := range []string{"random0@hosted-domain.com", "Random1@Hosted-Domain.com", "@hosted-domain.com"} {
		if u, err := d.Authenticate(ctx, login, testenv.XomailPassword); !errors.Is(err, directory.ErrInvalidCredentials) {
			t.Errorf("Authenticate(%q, xomail's password) = %q, %v; want ErrInvalidCredentials", login, u.Login, err)
		}
		if u, err := d.LookupUser(ctx, login); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("LookupUser(%q) = %q, %v; want ErrNotFound", login, u.Login, err)
		}
	}
	for _, login := range []string{"xomail", "test0@hosted-domain.com", "xomail@xoyize.xyz"} {
		if u, err := d.Authenticate(ctx, login, testenv.XomailPassword); err != nil || u.Login != "xomail" {
			t.Errorf("Authenticate(%q) = %q, %v; want xomail", login, u.Login, err)
		}
	}
	// Sender ownership still goes through the catch-all, as in Postfix.
	if got, err := d.SenderLogins(ctx, "random0@hosted-domain.com"); err != nil || !slices.Equal(got, []string{"xomail"}) {
		t.Errorf("SenderLogins(random0@hosted-domain.com) = %q, %v; want [xomail]", got, err)
	}
}

// A homeDirectory with a trailing slash is the same directory, as Postfix
// and Dovecot take it; a relative one or one with ".." is still refused.
func TestHomeDirectoryCleaned(t *testing.T) {
	t.Parallel()
	user := func(uid, home string) string {
		return "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: posixAccount\nobjectclass: postfixUser\ncn: " + uid +
			"\nuid: " + uid + "\nuidnumber: 20020\ngidnumber: 20020\nhomedirectory: " + home + "\nmaildrop: " + uid + "@xoyize.xyz\n\n"
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(
		user("trailing", "/var/vmail/trailing/")+
			user("slashes", "/var//vmail/slashes//")+
			user("relative", "var/vmail/relative/")+
			user("dotdot", "/var/vmail/../../etc/")))
	ctx := context.Background()
	sep := options(s)
	sep.Queries = directory.DefaultQueries()
	sep.Queries.UID.Filter = "(&(maildrop=%s)(uidNumber=*))" // the mailbox by a search of its own
	for name, o := range map[string]directory.Options{"one search": options(s), "separate searches": sep} {
		d := newDir(t, o)
		for uid, home := range map[string]string{"trailing": "/var/vmail/trailing", "slashes": "/var/vmail/slashes"} {
			mb, err := d.Mailbox(ctx, uid+"@xoyize.xyz")
			if err != nil || mb.Maildir != home+"/mailbox/" || mb.Home != home {
				t.Errorf("%s: Mailbox(%s) = %+v, %v; want maildir %s/mailbox/", name, uid, mb, err, home)
			}
			u, err := d.LookupUser(ctx, uid)
			if err != nil || u.Maildir != home+"/mailbox/" || u.Home != home {
				t.Errorf("%s: LookupUser(%s) = %+v, %v", name, uid, u, err)
			}
		}
		for _, uid := range []string{"relative", "dotdot"} {
			if mb, err := d.Mailbox(ctx, uid+"@xoyize.xyz"); !errors.Is(err, directory.ErrUnavailable) {
				t.Errorf("%s: Mailbox(%s) = %+v, %v; want ErrUnavailable", name, uid, mb, err)
			}
			if u, err := d.LookupUser(ctx, uid); !errors.Is(err, directory.ErrUnavailable) {
				t.Errorf("%s: LookupUser(%s) = %+v, %v; want ErrUnavailable", name, uid, u, err)
			}
		}
	}
}

// Stats.Errors counts what the directory could not answer, by kind, every
// kind present from the start (courriel_ldap_errors_total).
func TestErrorStats(t *testing.T) {
	t.Parallel()
	s := sharedSlapd(t)
	ctx := context.Background()
	want := func(d *directory.Directory, counts map[string]int64) {
		t.Helper()
		got := d.Stats().Errors
		if len(got) != len(directory.ErrorKinds()) {
			t.Errorf("Errors = %v: want every kind of %v", got, directory.ErrorKinds())
		}
		for _, k := range directory.ErrorKinds() {
			if got[k] != counts[k] {
				t.Errorf("Errors[%s] = %d, want %d (all: %v)", k, got[k], counts[k], got)
			}
		}
	}
	d := newDir(t, options(s))
	if _, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil {
		t.Fatal(err)
	}
	want(d, nil)

	o := options(s)
	o.URLs = []string{"ldap://" + testenv.RefusingAddr(t)}
	down := newDir(t, o)
	if _, err := down.ResolveRecipient(ctx, "test0@hosted-domain.com"); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("server down: %v", err)
	}
	if err := down.Ping(ctx); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("server down, ping: %v", err)
	}
	want(down, map[string]int64{"connect": 2})

	// The server answers with an error: more entries than the size limit
	// (alice's address is in four entries).
	o = options(s)
	o.SizeLimit = 2
	small := newDir(t, o)
	if _, err := small.SenderLogins(ctx, "alice@xoyize.xyz"); !errors.Is(err, directory.ErrUnavailable) {
		t.Fatalf("past the size limit: %v", err)
	}
	want(small, map[string]int64{"server": 1})
}

// Two entries with the same maildrop make its mailbox ambiguous: the mail
// waits, and the error (logged at RCPT) names both entries and the fix.
func TestDuplicateMaildropNamesEntries(t *testing.T) {
	t.Parallel()
	user := func(uid string) string {
		return "dn: uid=" + uid + ",ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: posixAccount\nobjectclass: postfixUser\ncn: " + uid +
			"\nuid: " + uid + "\nuidnumber: 20030\ngidnumber: 20030\nhomedirectory: /var/vmail/" + uid + "\nmaildrop: dup@xoyize.xyz\n\n"
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(user("dup1")+user("dup2")))
	sep := options(s)
	sep.Queries = directory.DefaultQueries()
	sep.Queries.UID.Filter = "(&(maildrop=%s)(uidNumber=*))" // the mailbox by a search of its own
	for name, o := range map[string]directory.Options{"one search": options(s), "separate searches": sep} {
		_, err := newDir(t, o).ResolveRecipient(context.Background(), "dup@xoyize.xyz")
		if !errors.Is(err, directory.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", name, err)
		}
		for _, want := range []string{"uid=dup1,ou=mail,dc=xoyize,dc=xyz", "uid=dup2,ou=mail,dc=xoyize,dc=xyz", "one"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", name, err, want)
			}
		}
	}
}

// TestQuotedLocalPart: an address whose local part needs quoting is looked
// up as Postfix looks it up, in its internal form: "john doe"@domain finds
// the entry for john doe@domain, and the copy keeps the external form the
// queue takes; "x@y"@domain finds x@y@domain, as a recipient and as a
// sender its owner may use. A quoted wildcard matches nothing.
func TestQuotedLocalPart(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(`dn: uid=jdoe,ou=mail,dc=xoyize,dc=xyz
objectclass: account
objectclass: postfixUser
objectclass: top
uid: jdoe
mailacceptinggeneralid: john doe@hosted-domain.com
mailacceptinggeneralid: x@y@hosted-domain.com
maildrop: alice@xoyize.xyz
`))
	d := newDir(t, options(s))
	ctx := context.Background()
	r, err := d.ResolveRecipient(ctx, `"John Doe"@hosted-domain.com`)
	if err != nil || len(r.Destinations) != 1 || r.Destinations[0].Address != "alice@xoyize.xyz" {
		t.Fatalf(`ResolveRecipient("John Doe"@hosted-domain.com) = %+v, %v`, r, err)
	}
	for _, k := range []string{`"*"@hosted-domain.com`, `"john*"@hosted-domain.com`, `"jane doe"@hosted-domain.com`, `"x@z"@hosted-domain.com`} {
		if r, err := d.ResolveRecipient(ctx, k); !errors.Is(err, directory.ErrNotFound) {
			t.Errorf("ResolveRecipient(%q) = %+v, %v; want ErrNotFound", k, r, err)
		}
	}
	if r, err := d.ResolveRecipient(ctx, `"x@y"@hosted-domain.com`); err != nil || len(r.Destinations) != 1 || r.Destinations[0].Address != "alice@xoyize.xyz" {
		t.Errorf(`ResolveRecipient("x@y"@hosted-domain.com) = %+v, %v`, r, err)
	}
	if l, err := d.SenderLogins(ctx, `"x@y"@hosted-domain.com`); err != nil || !slices.Equal(l, []string{"jdoe"}) {
		t.Errorf(`SenderLogins("x@y"@hosted-domain.com) = %q, %v; want [jdoe]`, l, err)
	}
	if l, err := d.SenderLogins(ctx, `"x@z"@hosted-domain.com`); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf(`SenderLogins("x@z"@hosted-domain.com) = %q, %v; want ErrNotFound`, l, err)
	}
}

// silentServer accepts connections and never answers: a hung directory
// server (its process stuck, its disk full), which TCP alone cannot tell
// from a live one. accepted counts the connections it took.
func silentServer(t *testing.T) (url string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	accepted = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	return "ldap://" + ln.Addr().String(), accepted
}

// With the first server hung, the first connection waits out its setup
// timeout and goes to the second; later connections (after the second
// server closed them: a restart, its idletimeout) and the password binds'
// go to the second at once, not after another timeout each: the hung
// server is dialed once in all.
func TestHungFirstServerCostsOneTimeout(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	o := options(s)
	hung, dialed := silentServer(t)
	o.URLs = []string{hung, s.URL()}
	o.ServerName = "localhost"
	o.DialTimeout, o.RequestTimeout = time.Second, 4*time.Second
	o.CacheTTL, o.NegativeCacheTTL = -1, -1
	o.PoolSize = 1
	d := newDir(t, o)
	// The preferred-URL check dials the hung server too, in the background
	// and costing no lookup anything, yet counted as the dials this test
	// is about.
	directory.SetPreferredCheckEvery(d, 0)
	ctx := context.Background()
	lookup := func(what string) {
		t.Helper()
		if r, err := d.ResolveRecipient(ctx, "test0@hosted-domain.com"); err != nil || r.Destinations[0].Address != "xomail@xoyize.xyz" {
			t.Fatalf("%s: %+v, %v", what, r, err)
		}
	}
	lookup("first lookup") // waits for the hung server's setup timeout
	marked := time.Now()
	if n := dialed.Load(); n != 1 {
		t.Fatalf("first lookup: the hung server was dialed %d times, want 1", n)
	}
	once := func(what string) {
		t.Helper()
		if n := dialed.Load(); n != 1 {
			if time.Since(marked) >= directory.FailedURLsFor {
				// Not a slow path in the code: the mark ran out.
				t.Skipf("%v since the first lookup, past the hung URL's mark (%v): a dial to it is due again", time.Since(marked), directory.FailedURLsFor)
			}
			t.Errorf("%s: the hung server was dialed %d times in all, want 1 (the first lookup's)", what, n)
		}
	}
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Fatalf("first login: %v", err)
	}
	once("first login")
	s.Stop(t)
	s.Start(t)
	lookup("after restart")
	once("lookup after the second server's restart")
	if _, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	once("login after the second server's restart")
}

// A directory whose uids are addresses (multi-domain hosting; the seed's
// Dovecot user_filter (uid=%u) and auth_bind_userdn uid=%u take the whole
// login): the login is looked up and bound to as it is, never as its part
// before '@', which here is another user's uid; whether the entry lists
// the address (dave) or not (carol, found by its uid as Dovecot finds it).
func TestAddressUID(t *testing.T) {
	t.Parallel()
	user := func(uid, home string, n int, addrs ...string) string {
		h, err := password.Hash("", []byte(uid+"-secret"))
		if err != nil {
			t.Fatal(err)
		}
		e := fmt.Sprintf("dn: uid=%s,ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: posixAccount\nobjectclass: postfixUser\n"+
			"cn: %s\nuid: %s\nuidnumber: %d\ngidnumber: %d\nhomedirectory: %s\nmaildrop: %s\nuserpassword: %s\n",
			uid, uid, uid, n, n, home, strings.ReplaceAll(uid, "@", ".")+"@xoyize.xyz", h)
		for _, a := range addrs {
			e += "mailacceptinggeneralid: " + a + "\n"
		}
		return e + "\n"
	}
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(
		user("carol@example.org", "/var/vmail/carol-example", 20040)+
			user("carol", "/var/vmail/carol", 20041)+
			user("dave@example.org", "/var/vmail/dave-example", 20042, "dave@example.org")+
			user("dave", "/var/vmail/dave", 20043)))
	ctx := context.Background()
	for _, template := range []string{"uid=%u," + testenv.MailBase, ""} {
		o := options(s)
		o.AuthBindDN = template
		d := newDir(t, o)
		for _, tt := range []struct{ login, home string }{
			{"carol@example.org", "/var/vmail/carol-example"},
			{"dave@example.org", "/var/vmail/dave-example"},
			{"carol", "/var/vmail/carol"},
			{"dave", "/var/vmail/dave"},
		} {
			if u, err := d.Authenticate(ctx, tt.login, tt.login+"-secret"); err != nil || u.Login != tt.login || u.Home != tt.home {
				t.Errorf("[%q] Authenticate(%s) = %+v, %v; want %s's account", template, tt.login, u, err, tt.login)
			}
			if u, err := d.LookupUser(ctx, tt.login); err != nil || u.Home != tt.home {
				t.Errorf("[%q] LookupUser(%s) = %+v, %v; want %s's account", template, tt.login, u, err, tt.login)
			}
			if got, err := d.Lookup(ctx, directory.MapUser, tt.login); err != nil || !slices.Equal(got, []string{tt.home}) {
				t.Errorf("[%q] Lookup(user, %s) = %q, %v", template, tt.login, got, err)
			}
		}
		// The other user's password is no login.
		if u, err := d.Authenticate(ctx, "carol@example.org", "carol-secret"); !errors.Is(err, directory.ErrInvalidCredentials) {
			t.Errorf("[%q] Authenticate(carol@example.org) with carol's password = %+v, %v; want ErrInvalidCredentials", template, u, err)
		}
		if u, err := d.Authenticate(ctx, "nobody@example.org", "x"); !errors.Is(err, directory.ErrInvalidCredentials) {
			t.Errorf("[%q] Authenticate(nobody@example.org) = %+v, %v; want ErrInvalidCredentials", template, u, err)
		}
	}
}

// A login bounded by a deadline (IMAP's AuthTimeout) reaches the second
// URL when the first, an ldaps:// server, accepts and never shakes hands:
// the setup on the hung server stops RequestTimeout after the connect,
// not at the caller's deadline, which DialTimeout+RequestTimeout from the
// dial would pass. The deadline leaves the second server 18 s (its
// handshake and bind take milliseconds), the hung one 2 s of the 32 s it
// would have had.
func TestHungLDAPSServerLeavesTimeForTheNext(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	o := options(s)
	hung, _ := silentServer(t)
	o.URLs = []string{"ldaps://" + strings.TrimPrefix(hung, "ldap://"), s.LDAPSURL()}
	o.StartTLS, o.ServerName = false, "localhost"
	o.DialTimeout, o.RequestTimeout = 30*time.Second, 2*time.Second
	d := newDir(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if u, err := d.Authenticate(ctx, "xomail", testenv.XomailPassword); err != nil || u.Login != "xomail" {
		t.Errorf("login with the first server hung: %+v, %v", u, err)
	}
}
