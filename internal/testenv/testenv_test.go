package testenv_test

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"courriel/internal/testenv"
)

func dial(t *testing.T, s *testenv.Slapd) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(s.URL(), ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("dial %s: %v", s.URL(), err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetTimeout(10 * time.Second)
	return c
}

func dialStartTLS(t *testing.T, s *testenv.Slapd) *ldap.Conn {
	t.Helper()
	c := dial(t, s)
	if err := c.StartTLS(s.CA().ClientTLSConfig("127.0.0.1")); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	return c
}

func search(t *testing.T, c *ldap.Conn, base, filter string, attrs ...string) ([]*ldap.Entry, error) {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 10, false, filter, attrs, nil))
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

func TestSlapdLifecycle(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)

	// The reader, over StartTLS verified against the test CA, sees ou=mail.
	c := dialStartTLS(t, s)
	if err := c.Bind(s.ReaderDN(), s.ReaderPassword()); err != nil {
		t.Fatalf("reader bind: %v", err)
	}
	got, err := search(t, c, s.MailBase(), "(mailacceptinggeneralid=test0@hosted-domain.com)", "maildrop", "userPassword")
	if err != nil || len(got) != 1 {
		t.Fatalf("reader search = %v, %v; want one entry", got, err)
	}
	if md := got[0].GetAttributeValue("maildrop"); md != "xomail@xoyize.xyz" {
		t.Errorf("maildrop = %q", md)
	}
	if pw := got[0].GetAttributeValue("userPassword"); pw != "" {
		t.Errorf("reader can read userPassword %q; ACL wants none", pw)
	}

	// A StartTLS that does not trust the CA fails.
	bad := dial(t, s)
	if err := bad.StartTLS(&tls.Config{ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}); err == nil {
		t.Error("StartTLS without the test CA succeeded")
	}

	// Anonymous sees nothing under ou=mail.
	anon := dial(t, s)
	if got, err := search(t, anon, s.MailBase(), "(objectClass=*)"); err == nil && len(got) > 0 {
		t.Errorf("anonymous read %d entries under ou=mail", len(got))
	}

	// A user binds over ldaps with the right password, not a wrong one.
	tc, err := ldap.DialURL(s.LDAPSURL(), ldap.DialWithTLSConfig(s.CA().ClientTLSConfig("127.0.0.1")))
	if err != nil {
		t.Fatalf("ldaps: %v", err)
	}
	defer tc.Close()
	if err := tc.Bind("uid=xomail,"+s.MailBase(), testenv.XomailPassword); err != nil {
		t.Errorf("xomail bind: %v", err)
	}
	if err := tc.Bind("uid=xomail,"+s.MailBase(), "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("bind with a wrong password = %v; want result 49", err)
	}

	// Data written before Stop survives a restart on the same port.
	s.Add(t, "dn: uid=carol,ou=mail,dc=xoyize,dc=xyz\nobjectClass: account\nobjectClass: postfixUser\nuid: carol\nmaildrop: carol@xoyize.xyz\n")
	url := s.URL()
	s.Stop(t)
	if c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second})); err == nil {
		c.Close()
		t.Fatal("dial after Stop succeeded")
	}
	s.Stop(t) // twice is harmless
	s.Start(t)
	if s.URL() != url {
		t.Errorf("URL after restart = %s, want %s", s.URL(), url)
	}
	c = dialStartTLS(t, s)
	if err := c.Bind(s.ReaderDN(), s.ReaderPassword()); err != nil {
		t.Fatalf("reader bind after restart: %v", err)
	}
	if got, err := search(t, c, s.MailBase(), "(maildrop=carol@xoyize.xyz)"); err != nil || len(got) != 1 {
		t.Errorf("entry added before restart: %v, %v", got, err)
	}
}

func TestFixtureMatchesUsers(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	s := testenv.StartSlapd(t, testenv.WithHomeBase(home))
	users := s.Users()
	if len(users) < 4 {
		t.Fatalf("Users() = %d users", len(users))
	}
	c := dialStartTLS(t, s)
	if err := c.Bind(s.ReaderDN(), s.ReaderPassword()); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		t.Run(u.Login, func(t *testing.T) {
			if !strings.HasPrefix(u.Home, home+"/") {
				t.Errorf("home %q not under %q", u.Home, home)
			}
			got, err := search(t, c, s.MailBase(), "(&(objectClass=posixAccount)(uid="+ldap.EscapeFilter(u.Login)+"))",
				"homeDirectory", "uidNumber", "gidNumber", "mailacceptinggeneralid", "maildrop")
			if err != nil || len(got) != 1 {
				t.Fatalf("search: %v, %v", got, err)
			}
			e := got[0]
			if e.DN != u.DN {
				t.Errorf("DN = %q, want %q", e.DN, u.DN)
			}
			if h := e.GetAttributeValue("homeDirectory"); h != u.Home {
				t.Errorf("homeDirectory = %q, want %q", h, u.Home)
			}
			if v := e.GetAttributeValue("uidNumber"); v != strconv.Itoa(u.UID) {
				t.Errorf("uidNumber = %s, want %d", v, u.UID)
			}
			if v := e.GetAttributeValue("gidNumber"); v != strconv.Itoa(u.GID) {
				t.Errorf("gidNumber = %s, want %d", v, u.GID)
			}
			if v := e.GetAttributeValues("mailacceptinggeneralid"); !slices.Equal(v, u.Aliases) {
				t.Errorf("aliases = %q, want %q", v, u.Aliases)
			}
			if v := e.GetAttributeValues("maildrop"); !slices.Equal(v, []string{u.Maildrop}) {
				t.Errorf("maildrop = %q, want %q", v, u.Maildrop)
			}
			uc := dial(t, s)
			if err := uc.Bind(u.DN, u.Password); err != nil {
				t.Errorf("bind %s: %v", u.Login, err)
			}
		})
	}
}

// TestAliasEntries pins the alias-only cases of doc.go's table.
func TestAliasEntries(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	c := dialStartTLS(t, s)
	if err := c.Bind(s.ReaderDN(), s.ReaderPassword()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		alias     string
		maildrops []string
	}{
		{"chain1@hosted-domain.com", []string{"chain2@hosted-domain.com"}},
		{"chain2@hosted-domain.com", []string{"chain3@hosted-domain.com"}},
		{"chain3@hosted-domain.com", []string{"alice@xoyize.xyz"}},
		{"loop1@hosted-domain.com", []string{"loop2@hosted-domain.com"}},
		{"loop2@hosted-domain.com", []string{"loop1@hosted-domain.com"}},
		{"team@hosted-domain.com", []string{"alice@xoyize.xyz", "bob@xoyize.xyz"}},
		{"fwd@hosted-domain.com", []string{"someone@foreign.example"}},
		{"bob@xoyize.xyz", []string{"bob@xoyize.xyz"}},
		{"TEST0@Hosted-Domain.COM", []string{"xomail@xoyize.xyz"}}, // caseIgnoreMatch
		{"nobody@hosted-domain.com", nil},
	}
	for _, tt := range tests {
		got, err := search(t, c, s.MailBase(), "(mailacceptinggeneralid="+ldap.EscapeFilter(tt.alias)+")", "maildrop")
		if err != nil {
			t.Fatalf("%s: %v", tt.alias, err)
		}
		var drops []string
		for _, e := range got {
			drops = append(drops, e.GetAttributeValues("maildrop")...)
		}
		if !slices.Equal(drops, tt.maildrops) {
			t.Errorf("%s → %q, want %q", tt.alias, drops, tt.maildrops)
		}
	}
	// The hosted-domain lookup of the spec, through the sub index.
	got, err := search(t, c, s.MailBase(), "(mailacceptinggeneralid=*@example.org)", "uid")
	if err != nil || len(got) != 3 {
		t.Errorf("*@example.org: %d entries, %v; want alice, bob, zoe", len(got), err)
	}
}

func TestAddModifyDeleteAndExtraLDIF(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithExtraLDIF(
		"dn: uid=extra,ou=mail,dc=xoyize,dc=xyz\nobjectClass: account\nobjectClass: postfixUser\nuid: extra\nmailacceptinggeneralid: extra@example.org\nmaildrop: alice@xoyize.xyz\n"))
	c := dial(t, s)
	if err := c.Bind(s.AdminDN(), s.AdminPassword()); err != nil {
		t.Fatal(err)
	}
	count := func(filter string) int {
		t.Helper()
		got, err := search(t, c, s.Suffix(), filter)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}
	if n := count("(mailacceptinggeneralid=extra@example.org)"); n != 1 {
		t.Fatalf("extra LDIF entry: %d", n)
	}
	s.Modify(t, "dn: uid=extra,ou=mail,dc=xoyize,dc=xyz\nchangetype: modify\nreplace: maildrop\nmaildrop: bob@xoyize.xyz\n")
	if n := count("(&(uid=extra)(maildrop=bob@xoyize.xyz))"); n != 1 {
		t.Errorf("after Modify: %d", n)
	}
	s.Delete(t, "uid=extra,ou=mail,dc=xoyize,dc=xyz")
	if n := count("(uid=extra)"); n != 0 {
		t.Errorf("after Delete: %d", n)
	}

	// cn=config is writable as its rootdn over TCP...
	s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: gidNumber eq\n")
	cc := dial(t, s)
	if err := cc.Bind(s.ConfigDN(), s.ConfigPassword()); err != nil {
		t.Fatal(err)
	}
	got, err := search(t, cc, "olcDatabase={1}mdb,cn=config", "(objectClass=*)", "olcDbIndex")
	if err != nil || len(got) != 1 || !slices.Contains(got[0].GetAttributeValues("olcDbIndex"), "gidNumber eq") {
		t.Errorf("olcDbIndex after ModifyConfig: %v, %v", got, err)
	}

	// ...and over ldapi with SASL EXTERNAL as this process's uid.
	lc, err := ldap.DialURL(s.LDAPIURL())
	if err != nil {
		t.Fatalf("ldapi: %v", err)
	}
	defer lc.Close()
	if err := lc.ExternalBind(); err != nil {
		t.Fatalf("EXTERNAL bind: %v", err)
	}
	if got, err := search(t, lc, "cn=schema,cn=config", "(cn=*postfix)", "cn"); err != nil || len(got) != 1 {
		t.Errorf("postfix schema over ldapi: %v, %v", got, err)
	}
}

func TestWithoutPostfixSchema(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithoutPostfixSchema())
	if len(s.Users()) != 0 {
		t.Errorf("Users() = %v", s.Users())
	}
	c := dial(t, s)
	if err := c.Bind(s.AdminDN(), s.AdminPassword()); err != nil {
		t.Fatal(err)
	}
	add := ldap.NewAddRequest("uid=x,"+s.MailBase(), nil)
	add.Attribute("objectClass", []string{"account", "postfixUser"})
	add.Attribute("uid", []string{"x"})
	if err := c.Add(add); err == nil {
		t.Error("postfixUser entry added to a directory without the schema")
	}
	// Debian's default ACLs: everything but passwords readable.
	anon := dial(t, s)
	if got, err := search(t, anon, s.MailBase(), "(objectClass=*)"); err != nil || len(got) != 1 {
		t.Errorf("anonymous read of ou=mail: %v, %v", got, err)
	}
}

func TestCA(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	certFile, keyFile := ca.Issue(t, "mail.example.test", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(certFile) != filepath.Dir(keyFile) {
		t.Errorf("cert and key in different dirs")
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for range 3 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	tests := []struct {
		name   string
		config *tls.Config
		ok     bool
	}{
		{"dns name", ca.ClientTLSConfig("mail.example.test"), true},
		{"ip", ca.ClientTLSConfig("127.0.0.1"), true},
		{"wrong name", ca.ClientTLSConfig("other.example.test"), false},
	}
	for _, tt := range tests {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), tt.config)
		if c != nil {
			c.Close()
		}
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
	other := testenv.NewCA(t)
	if other.Pool().Equal(ca.Pool()) {
		t.Error("two CAs share a pool")
	}
}

// FreePorts gives distinct ports that a server can bind and that no
// listener on port 0 gets meanwhile (they lie below the ephemeral
// range); RefusingAddr refuses connections, and keeps its port from
// every listener, for the whole test.
func TestPorts(t *testing.T) {
	t.Parallel()
	ports := testenv.FreePorts(t, 20)
	refusing := testenv.RefusingAddr(t)
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p <= 1024 || p > 65535 {
			t.Fatalf("FreePorts = %v", ports)
		}
		seen[p] = true
	}
	_, rp, _ := net.SplitHostPort(refusing)
	for range 500 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if seen[p] || strconv.Itoa(p) == rp {
			t.Fatalf("a listener on port 0 was given %d, of FreePorts %v or RefusingAddr %s", p, ports, refusing)
		}
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d of FreePorts: %v", p, err)
			continue
		}
		l.Close()
	}
	if c, err := net.DialTimeout("tcp", refusing, 5*time.Second); err == nil {
		c.Close()
		t.Errorf("RefusingAddr %s accepted a connection", refusing)
	}
}

// A change on the provider reaches the consumer; a write on the consumer is
// referred to the provider; a restarted consumer catches up.
func TestReplicated(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	alice := "uid=alice," + testenv.MailBase
	if r.Provider.ContextCSN(t) == "" || !r.InSync(t) {
		t.Fatalf("not in sync at start: %q %q", r.Provider.ContextCSN(t), r.Consumer.ContextCSN(t))
	}

	// The replica has the fixture, passwords included (users bind there).
	c := dial(t, r.Consumer)
	if err := c.Bind(alice, testenv.AlicePassword); err != nil {
		t.Fatalf("alice bind on the consumer: %v", err)
	}

	r.Provider.Modify(t, "dn: "+alice+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: node-b\n")
	r.WaitFor(t, alice, "mailHost", "node-b")
	r.WaitInSync(t)

	// Writes on the replica (here alice changing her own password) are
	// referred to the provider, and change nothing on the replica.
	res, err := c.ModifyWithResult(&ldap.ModifyRequest{DN: alice, Changes: []ldap.Change{{
		Operation: ldap.ReplaceAttribute, Modification: ldap.PartialAttribute{Type: "userPassword", Vals: []string{"new-secret"}}}}})
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultReferral) || res == nil || !strings.HasPrefix(res.Referral, r.Provider.URL()) {
		t.Fatalf("write on the consumer: %v %+v; want a referral to %s", err, res, r.Provider.URL())
	}
	// The rootdn cannot bind on the replica (no rootpw there).
	if err := dial(t, r.Consumer).Bind(testenv.AdminDN, testenv.AdminPassword); err == nil {
		t.Error("the rootdn binds on the consumer")
	}

	// Consumer killed while the provider changes; back, it catches up.
	r.Consumer.Kill(t)
	r.Provider.Modify(t, "dn: "+alice+"\nchangetype: modify\nreplace: mailHost\nmailHost: node-c\n")
	r.Consumer.Start(t)
	r.WaitFor(t, alice, "mailHost", "node-c")
	// Provider down and back: the consumer's retry ("1 +") reconnects.
	r.Provider.Stop(t)
	r.Provider.Start(t)
	r.Provider.Modify(t, "dn: "+alice+"\nchangetype: modify\ndelete: mailHost\n")
	r.WaitFor(t, alice, "mailHost", "")
	r.WaitInSync(t)
}
