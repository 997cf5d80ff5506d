package embedded

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func startDemo(t *testing.T, mod func(*Options)) *Server {
	t.Helper()
	opts := Options{Addr: "127.0.0.1:0", LDIF: DemoLDIF}
	if mod != nil {
		mod(&opts)
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func dial(t *testing.T, s *Server) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + s.Addr())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// A bound, not an assertion: a server bug fails the test instead of
	// hanging it.
	c.SetTimeout(time.Minute)
	t.Cleanup(func() { c.Close() })
	return c
}

func resultCode(err error) uint16 {
	var le *ldap.Error
	if errors.As(err, &le) {
		return le.ResultCode
	}
	if err == nil {
		return ldap.LDAPResultSuccess
	}
	return 0xffff
}

func dns(res *ldap.SearchResult) []string {
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	slices.Sort(out)
	return out
}

func TestSearchScopes(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	users := []string{"uid=alice,ou=mail,dc=xoyize,dc=xyz", "uid=bob,ou=mail,dc=xoyize,dc=xyz", "uid=xomail,ou=mail,dc=xoyize,dc=xyz"}
	tests := []struct {
		base   string
		scope  int
		filter string
		want   []string
	}{
		{"ou=mail,dc=xoyize,dc=xyz", ldap.ScopeBaseObject, "(objectClass=*)", []string{"ou=mail,dc=xoyize,dc=xyz"}},
		{"OU=Mail, DC=Xoyize,DC=XYZ", ldap.ScopeBaseObject, "(objectClass=*)", []string{"ou=mail,dc=xoyize,dc=xyz"}},
		{"ou=mail,dc=xoyize,dc=xyz", ldap.ScopeSingleLevel, "(objectClass=*)", users},
		{"ou=mail,dc=xoyize,dc=xyz", ldap.ScopeWholeSubtree, "(objectClass=*)", append([]string{"ou=mail,dc=xoyize,dc=xyz"}, users...)},
		{"dc=xoyize,dc=xyz", ldap.ScopeSingleLevel, "(objectClass=*)", []string{"ou=Manager,dc=xoyize,dc=xyz", "ou=mail,dc=xoyize,dc=xyz"}},
		{"dc=xoyize,dc=xyz", ldap.ScopeWholeSubtree, "(objectClass=posixAccount)", users},
		{"dc=xoyize,dc=xyz", ldap.ScopeWholeSubtree, "(objectClass=simpleSecurityObject)", []string{DemoReaderDN}},
		{"uid=bob,ou=mail,dc=xoyize,dc=xyz", ldap.ScopeSingleLevel, "(objectClass=*)", nil},
		{"uid=bob,ou=mail,dc=xoyize,dc=xyz", ldap.ScopeBaseObject, "(uid=alice)", nil},
		{"", ldap.ScopeSingleLevel, "(objectClass=*)", []string{"dc=xoyize,dc=xyz"}},
	}
	for _, tc := range tests {
		res, err := c.Search(ldap.NewSearchRequest(tc.base, tc.scope, ldap.NeverDerefAliases, 0, 0, false, tc.filter, nil, nil))
		if err != nil {
			t.Errorf("search %q scope %d %s: %v", tc.base, tc.scope, tc.filter, err)
			continue
		}
		if got := dns(res); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("search %q scope %d %s = %q, want %q", tc.base, tc.scope, tc.filter, got, tc.want)
		}
	}
}

// TestSearchSeedQueries runs the seed's Postfix and Dovecot lookups.
func TestSearchSeedQueries(t *testing.T) {
	t.Parallel()
	s := startDemo(t, func(o *Options) { o.HomeBase = "/srv/demo/vmail" })
	c := dial(t, s)
	if err := c.Bind(DemoReaderDN, DemoPassword); err != nil {
		t.Fatalf("reader bind: %v", err)
	}
	tests := []struct {
		filter string
		attr   string
		want   []string
	}{
		{"(mailacceptinggeneralid=*@hosted-domain.com)", "mailacceptinggeneralid", []string{"alice@example.org", "alice@hosted-domain.com", "bob@example.org", "bob@hosted-domain.com", "contact@hosted-domain.com", "postmaster@example.org", "postmaster@hosted-domain.com", "postmaster@xoyize.xyz", "sales@hosted-domain.com", "test0@hosted-domain.com", "test1@hosted-domain.com"}},
		{"(mailacceptinggeneralid=TEST0@hosted-domain.com)", "maildrop", []string{"xomail@xoyize.xyz"}},
		{"(maildrop=xomail@xoyize.xyz)", "homeDirectory", []string{"/srv/demo/vmail/xomail"}},
		{"(maildrop=bob@xoyize.xyz)", "uidNumber", []string{"20002"}},
		{"(|(mailacceptinggeneralid=alice@example.org)(maildrop=alice@example.org))", "uid", []string{"alice"}},
		{"(&(objectClass=posixAccount)(uid=alice))", "gidNumber", []string{"20000"}},
		{"(mailacceptinggeneralid=" + ldap.EscapeFilter("*)(uid=*") + ")", "uid", nil},
		{"(uid=" + ldap.EscapeFilter("xomail\x00") + ")", "uid", nil},
		{"(uid=" + ldap.EscapeFilter("xo\xffmail") + ")", "uid", nil},
		{"(uid=" + ldap.EscapeFilter("*") + ")", "uid", nil},
	}
	for _, tc := range tests {
		res, err := c.Search(ldap.NewSearchRequest(DemoSearchBase, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, tc.filter, []string{tc.attr}, nil))
		if err != nil {
			t.Errorf("search %s: %v", tc.filter, err)
			continue
		}
		var got []string
		for _, e := range res.Entries {
			got = append(got, e.GetEqualFoldAttributeValues(tc.attr)...)
			for _, a := range e.Attributes {
				if !strings.EqualFold(a.Name, tc.attr) {
					t.Errorf("search %s: attribute %s returned, only %s asked", tc.filter, a.Name, tc.attr)
				}
			}
		}
		slices.Sort(got)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("search %s %s = %q, want %q", tc.filter, tc.attr, got, tc.want)
		}
	}
}

func TestSearchAttributes(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	get := func(attrs []string, typesOnly bool) *ldap.Entry {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest("uid=xomail,ou=mail,dc=xoyize,dc=xyz", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, typesOnly, "(objectClass=*)", attrs, nil))
		if err != nil || len(res.Entries) != 1 {
			t.Fatalf("search %q: %v, %d entries", attrs, err, len(res.Entries))
		}
		return res.Entries[0]
	}
	names := func(e *ldap.Entry) []string {
		var n []string
		for _, a := range e.Attributes {
			n = append(n, a.Name)
		}
		return n
	}
	all := []string{"cn", "gidNumber", "homeDirectory", "mailacceptinggeneralid", "maildrop", "objectClass", "mailHost", "uid", "uidNumber"}
	tests := []struct {
		attrs []string
		want  []string
	}{
		{nil, all},
		{[]string{"*"}, all},
		{[]string{"*", "userPassword"}, all},
		{[]string{"userPassword"}, nil},
		{[]string{"USERPASSWORD", "uid"}, []string{"uid"}},
		{[]string{"1.1"}, nil},
		{[]string{"+"}, nil},
		{[]string{"MAILDROP", "homedirectory", "nosuch"}, []string{"homeDirectory", "maildrop"}},
	}
	for _, tc := range tests {
		if got := names(get(tc.attrs, false)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("attributes %q = %q, want %q", tc.attrs, got, tc.want)
		}
	}
	e := get([]string{"maildrop"}, true)
	if len(e.Attributes) != 1 || len(e.Attributes[0].Values) != 0 {
		t.Errorf("typesOnly returned %+v", e.Attributes)
	}
	// Even the user itself never reads its password.
	if err := c.Bind("uid=xomail,ou=mail,dc=xoyize,dc=xyz", DemoPassword); err != nil {
		t.Fatal(err)
	}
	if v := get([]string{"userPassword"}, false).GetAttributeValues("userPassword"); len(v) != 0 {
		t.Errorf("userPassword returned to its owner: %q", v)
	}
}

func TestSearchErrors(t *testing.T) {
	t.Parallel()
	s := startDemo(t, func(o *Options) { o.SizeLimit = 2 })
	c := dial(t, s)
	search := func(base, filter string, size int) (*ldap.SearchResult, error) {
		return c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, size, 0, false, filter, nil, nil))
	}
	_, err := search("ou=nosuch,dc=xoyize,dc=xyz", "(objectClass=*)", 0)
	if resultCode(err) != ldap.LDAPResultNoSuchObject {
		t.Errorf("missing base: %v, want noSuchObject", err)
	}
	var le *ldap.Error
	if errors.As(err, &le) && le.MatchedDN != "dc=xoyize,dc=xyz" {
		t.Errorf("matchedDN = %q, want dc=xoyize,dc=xyz", le.MatchedDN)
	}
	if _, err := search("not a dn", "(objectClass=*)", 0); resultCode(err) != ldap.LDAPResultInvalidDNSyntax {
		t.Errorf("bad base: %v, want invalidDNSyntax", err)
	}
	res, err := search(DemoSearchBase, "(objectClass=*)", 0)
	if resultCode(err) != ldap.LDAPResultSizeLimitExceeded || len(res.Entries) != 2 {
		t.Errorf("server size limit: %v, %d entries; want sizeLimitExceeded with 2", err, len(res.Entries))
	}
	res, err = search(DemoSearchBase, "(objectClass=*)", 1)
	if resultCode(err) != ldap.LDAPResultSizeLimitExceeded || len(res.Entries) != 1 {
		t.Errorf("client size limit: %v, %d entries; want sizeLimitExceeded with 1", err, len(res.Entries))
	}
	if res, err := search(DemoSearchBase, "(uid=bob)", 1); err != nil || len(res.Entries) != 1 {
		t.Errorf("exactly the limit: %v, %d entries", err, len(res.Entries))
	}
	deep := strings.Repeat("(!", maxFilterDepth+1) + "(uid=x)" + strings.Repeat(")", maxFilterDepth+1)
	if _, err := search(DemoSearchBase, deep, 0); resultCode(err) != ldap.LDAPResultAdminLimitExceeded {
		t.Errorf("deep filter: %v, want adminLimitExceeded", err)
	}
	// The connection is still usable.
	if res, err := search(DemoSearchBase, "(uid=alice)", 0); err != nil || len(res.Entries) != 1 {
		t.Errorf("after errors: %v", err)
	}
}

func TestRootDSE(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	res, err := c.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"namingContexts"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("root DSE: %v", err)
	}
	if got := res.Entries[0].GetAttributeValues("namingContexts"); !reflect.DeepEqual(got, []string{DemoBaseDN}) {
		t.Errorf("namingContexts = %q", got)
	}
}

func TestBind(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	tests := []struct {
		name, dn, pw string
		want         uint16
	}{
		{"reader", DemoReaderDN, "demo", ldap.LDAPResultSuccess},
		{"user", "uid=alice,ou=mail,dc=xoyize,dc=xyz", "demo", ldap.LDAPResultSuccess},
		{"dn case and spaces", "UID=Bob, OU=mail,dc=XOYIZE,dc=xyz", "demo", ldap.LDAPResultSuccess},
		{"wrong password", "uid=alice,ou=mail,dc=xoyize,dc=xyz", "Demo", ldap.LDAPResultInvalidCredentials},
		{"unknown dn", "uid=nobody,ou=mail,dc=xoyize,dc=xyz", "demo", ldap.LDAPResultInvalidCredentials},
		{"entry without password", "ou=mail,dc=xoyize,dc=xyz", "demo", ldap.LDAPResultInvalidCredentials},
		{"bad dn", "garbage", "demo", ldap.LDAPResultInvalidDNSyntax},
		{"password without dn", "", "demo", ldap.LDAPResultInvalidCredentials},
		{"dn without password", "uid=alice,ou=mail,dc=xoyize,dc=xyz", "", ldap.LDAPResultUnwillingToPerform},
		{"nul in password", "uid=alice,ou=mail,dc=xoyize,dc=xyz", "demo\x00", ldap.LDAPResultInvalidCredentials},
	}
	for _, tc := range tests {
		var err error
		if tc.pw == "" {
			err = c.UnauthenticatedBind(tc.dn)
		} else {
			err = c.Bind(tc.dn, tc.pw)
		}
		if got := resultCode(err); got != tc.want {
			t.Errorf("%s: bind = %v (%d), want %d", tc.name, err, got, tc.want)
		}
	}
	// Anonymous: both empty, then anonymous search works.
	if err := c.UnauthenticatedBind(""); err != nil {
		t.Fatalf("anonymous bind: %v", err)
	}
	if res, err := c.Search(ldap.NewSearchRequest(DemoSearchBase, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false, "(uid=xomail)", nil, nil)); err != nil || len(res.Entries) != 1 {
		t.Fatalf("anonymous search: %v", err)
	}
}

func TestWhoAmIAfterFailedBind(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	if err := c.Bind("uid=bob,ou=mail,dc=xoyize,dc=xyz", "demo"); err != nil {
		t.Fatal(err)
	}
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:uid=bob,ou=mail,dc=xoyize,dc=xyz" {
		t.Fatalf("WhoAmI = %+v, %v", who, err)
	}
	// RFC 4511 §4.2.1: a failed bind leaves the connection anonymous.
	_ = c.Bind("uid=bob,ou=mail,dc=xoyize,dc=xyz", "wrong")
	if who, err := c.WhoAmI(nil); err != nil || who.AuthzID != "" {
		t.Fatalf("WhoAmI after failed bind = %+v, %v", who, err)
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	const dn = "uid=alice,ou=mail,dc=xoyize,dc=xyz"
	add := ldap.NewAddRequest("uid=eve,ou=mail,dc=xoyize,dc=xyz", nil)
	add.Attribute("uid", []string{"eve"})
	mod := ldap.NewModifyRequest(dn, nil)
	mod.Replace("maildrop", []string{"eve@evil.example"})
	tests := []struct {
		name string
		op   func() error
		want uint16
	}{
		{"add", func() error { return c.Add(add) }, ldap.LDAPResultUnwillingToPerform},
		{"modify", func() error { return c.Modify(mod) }, ldap.LDAPResultUnwillingToPerform},
		{"delete", func() error { return c.Del(ldap.NewDelRequest(dn, nil)) }, ldap.LDAPResultUnwillingToPerform},
		{"moddn", func() error { return c.ModifyDN(ldap.NewModifyDNRequest(dn, "uid=eve", true, "")) }, ldap.LDAPResultUnwillingToPerform},
		{"compare", func() error { _, err := c.Compare(dn, "userPassword", "demo"); return err }, ldap.LDAPResultUnwillingToPerform},
		{"passwd", func() error {
			_, err := c.PasswordModify(ldap.NewPasswordModifyRequest(dn, "demo", "x"))
			return err
		}, ldap.LDAPResultProtocolError},
		// go-ldap stops reading a connection whose StartTLS failed: use
		// a connection of its own.
		{"starttls", func() error { return dial(t, s).StartTLS(nil) }, ldap.LDAPResultUnavailable},
	}
	for _, tc := range tests {
		if err := tc.op(); resultCode(err) != tc.want {
			t.Errorf("%s = %v (%d), want %d", tc.name, err, resultCode(err), tc.want)
		}
	}
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(maildrop=alice@xoyize.xyz)", nil, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Errorf("entry changed or connection broken: %v", err)
	}
}

func TestCriticalControl(t *testing.T) {
	t.Parallel()
	s := startDemo(t, nil)
	c := dial(t, s)
	ctrl := ldap.NewControlString("1.2.3.4.5", true, "")
	_, err := c.Search(ldap.NewSearchRequest(DemoBaseDN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, []ldap.Control{ctrl}))
	if resultCode(err) != ldap.LDAPResultUnavailableCriticalExtension {
		t.Errorf("critical control: %v, want unavailableCriticalExtension", err)
	}
}

func TestMalformedInput(t *testing.T) {
	t.Parallel()
	s := startDemo(t, func(o *Options) { o.MaxMessageSize = 1024 })
	notice := []byte(oidNoticeOfDisconnection)
	tests := []struct {
		name   string
		in     []byte
		notice bool // a Notice of Disconnection is expected before the close
	}{
		{"not ber", []byte("GET / HTTP/1.0\r\n\r\n"), true},
		{"tls hello", []byte{0x16, 0x03, 0x01, 0x00, 0x05}, true},
		{"too large", []byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, true},
		{"length field too long", []byte{0x30, 0x85, 0, 0, 0, 0, 1}, true},
		{"indefinite", []byte{0x30, 0x80, 0x00, 0x00}, true},
		{"truncated", []byte{0x30, 0x05, 0x02, 0x01}, false},
		{"message id zero", []byte{0x30, 0x05, 0x02, 0x01, 0x00, 0x42, 0x00}, true},
		{"unknown op", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x7f, 0x00}, true},
		{"bind not constructed", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x40, 0x00}, true},
		{"search without fields", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x63, 0x00}, true},
		{"extended without name", []byte{0x30, 0x05, 0x02, 0x01, 0x01, 0x77, 0x00}, true},
	}
	for _, tc := range tests {
		nc, err := net.Dial("tcp", s.Addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Write(tc.in); err != nil {
			t.Fatal(err)
		}
		// Half-close so a server waiting for more bytes sees EOF; the
		// server must answer and close, not hang.
		_ = nc.(*net.TCPConn).CloseWrite()
		_ = nc.SetReadDeadline(time.Now().Add(time.Minute)) // a bound, not an assertion
		out, err := io.ReadAll(nc)
		nc.Close()
		if err != nil {
			t.Errorf("%s: reading until close: %v", tc.name, err)
		}
		if got := bytes.Contains(out, notice); got != tc.notice {
			t.Errorf("%s: notice of disconnection sent = %v, want %v (%x)", tc.name, got, tc.notice, out)
		}
	}
	// Still serving.
	c := dial(t, s)
	if err := c.Bind(DemoReaderDN, DemoPassword); err != nil {
		t.Fatal(err)
	}
}

// TestNoGoroutineLeak is not parallel, so the goroutine count is ours.
func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", LDIF: DemoLDIF})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ldap.DialURL("ldap://" + s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bind(DemoReaderDN, DemoPassword); err != nil {
		t.Fatal(err)
	}
	c.Close()
	idle, err := net.Dial("tcp", s.Addr()) // connected, never speaks
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for the server's goroutines; the client's own may
	// take a moment to go. Bounded wait.
	for i := 0; i < 500 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestMaxConnections(t *testing.T) {
	t.Parallel()
	s := startDemo(t, func(o *Options) { o.MaxConnections = 2 })
	c1, c2 := dial(t, s), dial(t, s)
	for _, c := range []*ldap.Conn{c1, c2} {
		if err := c.Bind(DemoReaderDN, DemoPassword); err != nil {
			t.Fatal(err)
		}
	}
	c3 := dial(t, s)
	if err := c3.Bind(DemoReaderDN, DemoPassword); err == nil {
		t.Fatal("third connection served past MaxConnections=2")
	}
	c1.Close()
	// The slot frees once the server has seen c1 go; retry a bounded
	// number of times without sleeping on a clock.
	var err error
	for range 1000 {
		c4, derr := ldap.DialURL("ldap://" + s.Addr())
		if derr != nil {
			t.Fatal(derr)
		}
		err = c4.Bind(DemoReaderDN, DemoPassword)
		c4.Close()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no slot after closing a connection: %v", err)
	}
}

// TestCloseWithIdleClients checks Close does not wait for clients.
func TestCloseWithIdleClients(t *testing.T) {
	t.Parallel()
	s, err := Start(context.Background(), Options{Addr: "127.0.0.1:0", LDIF: DemoLDIF})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	if err := c.Bind(DemoReaderDN, DemoPassword); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.Bind(DemoReaderDN, DemoPassword); err == nil {
		t.Fatal("bind succeeded after Close")
	}
	// The port is free again. When it is not, another test running at the
	// same time got it from the kernel: then it must not be our directory.
	ln, err := net.Listen("tcp", s.Addr())
	if err == nil {
		ln.Close()
		return
	}
	other, err := ldap.DialURL("ldap://" + s.Addr())
	if err != nil {
		return
	}
	defer other.Close()
	other.SetTimeout(5 * time.Second)
	if err := other.Bind(DemoReaderDN, DemoPassword); err == nil {
		t.Fatal("still serving after Close")
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]Options{
		"no addr":    {LDIF: DemoLDIF},
		"no entries": {Addr: "127.0.0.1:0"},
		"bad ldif":   {Addr: "127.0.0.1:0", LDIF: []byte("dn: cn=a\nchangetype: add\n")},
		"bad addr":   {Addr: "127.0.0.1:99999", LDIF: DemoLDIF},
		"bad entry":  {Addr: "127.0.0.1:0", Entries: []Entry{{DN: "bad", Attributes: []Attribute{{"cn", []string{"a"}}}}}},
	} {
		if s, err := Start(context.Background(), o); err == nil {
			s.Close()
			t.Errorf("%s: Start succeeded", name)
		}
	}
}

func TestEntriesAreCopied(t *testing.T) {
	t.Parallel()
	entries := []Entry{{DN: "dc=x", Attributes: []Attribute{{"dc", []string{"x"}}, {"objectClass", []string{"top"}}}}}
	s := startDemo(t, func(o *Options) { o.Entries = entries })
	entries[0].Attributes[0].Values[0] = "changed"
	c := dial(t, s)
	res, err := c.Search(ldap.NewSearchRequest("dc=x", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(dc=x)", nil, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("caller's change reached the server: %v, %d entries", err, len(res.Entries))
	}
}

// TestLdapsearch runs OpenLDAP's own client against the server.
func TestLdapsearch(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("ldapsearch")
	if err != nil {
		if os.Getenv("CI") == "true" { // scripts/test installs it
			t.Fatal("ldapsearch not installed")
		}
		t.Skip("ldapsearch not installed")
	}
	s := startDemo(t, nil)
	cmd := exec.Command(bin, "-x", "-LLL", "-o", "ldif-wrap=no", "-H", "ldap://"+s.Addr(), "-b", DemoBaseDN, "(uid=xomail)")
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ldapsearch: %v\n%s", err, out)
	}
	for _, want := range []string{
		"dn: uid=xomail,ou=mail,dc=xoyize,dc=xyz",
		"mailacceptinggeneralid: test0@hosted-domain.com",
		"mailacceptinggeneralid: test1@hosted-domain.com",
		"maildrop: xomail@xoyize.xyz",
		"homeDirectory: /var/vmail/xomail",
		"uidNumber: 20000",
	} {
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("ldapsearch output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(strings.ToLower(string(out)), "userpassword") {
		t.Errorf("ldapsearch output shows userPassword:\n%s", out)
	}
	// A simple bind as the reader, and a wrong password (exit 49).
	cmd = exec.Command(bin, "-x", "-LLL", "-H", "ldap://"+s.Addr(), "-D", DemoReaderDN, "-w", "demo", "-b", DemoSearchBase, "-s", "one", "1.1")
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	if out, err := cmd.CombinedOutput(); err != nil || strings.Count(string(out), "dn: ") != 3 {
		t.Errorf("ldapsearch as reader: %v\n%s", err, out)
	}
	cmd = exec.Command(bin, "-x", "-H", "ldap://"+s.Addr(), "-D", DemoReaderDN, "-w", "nope", "-b", DemoBaseDN)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1")
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ldap.LDAPResultInvalidCredentials {
		t.Errorf("ldapsearch with a wrong password: %v, want exit 49", err)
	}
}
