package directory

import (
	"testing"

	"github.com/go-ldap/ldap/v3"
)

func TestExpandFilter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tmpl, key, want string
		ok              bool
	}{
		{"(mailacceptinggeneralid=%s)", "test0@hosted-domain.com", "(mailacceptinggeneralid=test0@hosted-domain.com)", true},
		{"(mailacceptinggeneralid=*@%s)", "hosted-domain.com", "(mailacceptinggeneralid=*@hosted-domain.com)", true},
		{"(&(objectClass=posixAccount)(uid=%u))", "xomail", "(&(objectClass=posixAccount)(uid=xomail))", true},
		{"(uid=%u)", "a@b", "(uid=a)", true},
		{"(dom=%d)", "a@b.c", "(dom=b.c)", true},
		{"(dom=%d)", "nodomain", "", false},
		{"(uid=%u)", "@b.c", "", false},
		{"(|(a=%s)(b=%s))", "x@y", "(|(a=x@y)(b=x@y))", true},
		{"(a=100%%)", "k", "(a=100%)", true},
		// Hostile keys are escaped and cannot change the filter's shape.
		{"(uid=%s)", "*", `(uid=\2a)`, true},
		{"(uid=%s)", "*)(uid=*", `(uid=\2a\29\28uid=\2a)`, true},
		{"(uid=%s)", `a\b`, `(uid=a\5cb)`, true},
		{"(uid=%s)", "a\x00b", `(uid=a\00b)`, true},
		{"(uid=%s)", "\xff", `(uid=\ff)`, true},
		{"(uid=%s)", "é", `(uid=\c3\a9)`, true},
		// A quoted local part is looked up in Postfix's internal form,
		// unquoted, and what the quotes held is escaped like anything else.
		{"(mail=%s)", `"john doe"@x.example`, "(mail=john doe@x.example)", true},
		{"(uid=%u)", `"john doe"@x.example`, "(uid=john doe)", true},
		{"(mail=%s)", `"a\"b\\c"@x.example`, `(mail=a"b\5cc@x.example)`, true},
		{"(mail=%s)", `"*)(uid=*"@x.example`, `(mail=\2a\29\28uid=\2a@x.example)`, true},
		{"(mail=%s)", `"x"`, `(mail="x")`, true}, // no domain: no address
	}
	for _, tt := range tests {
		got, ok, err := expandFilter(tt.tmpl, tt.key)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("expandFilter(%q, %q) = %q, %v, %v; want %q, %v", tt.tmpl, tt.key, got, ok, err, tt.want, tt.ok)
		}
		if ok {
			p, err := ldap.CompileFilter(got)
			if err != nil {
				t.Errorf("filter %q does not compile: %v", got, err)
				continue
			}
			// The escaped filter has exactly the template's structure.
			want, _ := ldap.CompileFilter(mustExpand(t, tt.tmpl, "k@d"))
			if len(p.Children) != len(want.Children) || p.Tag != want.Tag {
				t.Errorf("filter %q changed shape", got)
			}
		}
	}
}

// The user query's filter takes the whole login for %u, as Dovecot's
// user_filter; an address's filters take its local part.
func TestExpandLoginFilter(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		tmpl, login, want string
		ok                bool
	}{
		{"(&(objectClass=posixAccount)(uid=%u))", "xomail", "(&(objectClass=posixAccount)(uid=xomail))", true},
		{"(&(objectClass=posixAccount)(uid=%u))", "carol@example.org", "(&(objectClass=posixAccount)(uid=carol@example.org))", true},
		{"(&(uid=%u)(dom=%d))", "carol@example.org", "(&(uid=carol@example.org)(dom=example.org))", true},
		{"(dom=%d)", "xomail", "", false},
		{"(uid=%u)", "*)(uid=*", `(uid=\2a\29\28uid=\2a)`, true},
		{"(uid=%s)", `"x"@y`, `(uid="x"@y)`, true}, // a login is not unquoted
	} {
		got, ok, err := expandLoginFilter(tt.tmpl, tt.login)
		if err != nil || ok != tt.ok || got != tt.want {
			t.Errorf("expandLoginFilter(%q, %q) = %q, %v, %v; want %q, %v", tt.tmpl, tt.login, got, ok, err, tt.want, tt.ok)
		}
	}
}

func mustExpand(t *testing.T, tmpl, key string) string {
	s, _, err := expandFilter(tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestExpandErrors(t *testing.T) {
	t.Parallel()
	for _, tmpl := range []string{"(uid=%x)", "(uid=%", "%1"} {
		if _, _, err := expandFilter(tmpl, "k"); err == nil {
			t.Errorf("expandFilter(%q) accepted a bad template", tmpl)
		}
	}
}

func TestExpandDN(t *testing.T) {
	t.Parallel()
	tests := []struct{ key, want string }{
		{"xomail", "uid=xomail,ou=mail,dc=xoyize,dc=xyz"},
		{"a,ou=admin", `uid=a\,ou\=admin,ou=mail,dc=xoyize,dc=xyz`},
		{"a+b", `uid=a\+b,ou=mail,dc=xoyize,dc=xyz`},
		{"#x", `uid=\#x,ou=mail,dc=xoyize,dc=xyz`},
		{"a\x00", `uid=a\00,ou=mail,dc=xoyize,dc=xyz`},
		// %u is the whole login, as Dovecot's auth_bind_userdn.
		{"carol@example.org", "uid=carol@example.org,ou=mail,dc=xoyize,dc=xyz"},
	}
	for _, tt := range tests {
		got, err := expandDN("uid=%u,ou=mail,dc=xoyize,dc=xyz", tt.key)
		if err != nil {
			t.Fatalf("expandDN(%q): %v", tt.key, err)
		}
		if tt.key == "a,ou=admin" {
			// go-ldap leaves '=' alone, which RFC 4514 allows; what matters is
			// that the DN still has exactly four RDNs.
			tt.want = `uid=a\,ou=admin,ou=mail,dc=xoyize,dc=xyz`
		}
		if got != tt.want {
			t.Errorf("expandDN(%q) = %q, want %q", tt.key, got, tt.want)
		}
		dn, err := ldap.ParseDN(got)
		if err != nil || len(dn.RDNs) != 4 {
			t.Errorf("expandDN(%q) = %q: not a 4-RDN DN (%v)", tt.key, got, err)
		}
	}
}

func TestFormatResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		format, value, want string
		ok                  bool
	}{
		{"%s/mailbox/", "/var/vmail/xomail", "/var/vmail/xomail/mailbox/", true},
		{"%d", "test0@hosted-domain.com", "hosted-domain.com", true},
		{"%d", "nodomain", "", false},
		{"%u", "test0@hosted-domain.com", "test0", true},
		{"%s", "a%b", "a%b", true},
		{"%s/mailbox/", "", "", false}, // an empty value is none (Postfix)
	}
	for _, tt := range tests {
		got, ok := formatResult(tt.format, tt.value)
		if got != tt.want || ok != tt.ok {
			t.Errorf("formatResult(%q, %q) = %q, %v; want %q, %v", tt.format, tt.value, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCheckMaildir(t *testing.T) {
	t.Parallel()
	good := map[string]string{"/var/vmail/xomail/mailbox/": "/var/vmail/xomail/mailbox/", "/var/vmail/x/mailbox": "/var/vmail/x/mailbox/"}
	for in, want := range good {
		if got, err := checkMaildir(in); err != nil || got != want {
			t.Errorf("checkMaildir(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"var/vmail/x/", "/var/vmail/../etc/", "/var//vmail/", "/", "", "/var/vmail/x\n/", "/a/./b/"} {
		if _, err := checkMaildir(bad); err == nil {
			t.Errorf("checkMaildir(%q) accepted", bad)
		}
	}
}

func FuzzExpandFilter(f *testing.F) {
	for _, s := range []string{"*", "*)(uid=*", `\`, "\x00", "a@b", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		got, ok, err := expandFilter("(&(objectClass=posixAccount)(uid=%s))", key)
		if err != nil || !ok {
			t.Fatalf("expand: %v %v", ok, err)
		}
		p, err := ldap.CompileFilter(got)
		if err != nil {
			t.Fatalf("%q: %v", got, err)
		}
		if p.Tag != ldap.FilterAnd || len(p.Children) != 2 || p.Children[1].Tag != ldap.FilterEqualityMatch {
			t.Fatalf("key %q changed the filter's shape: %q", key, got)
		}
	})
}

// TestExpandFilterAllocatesOnce: every directory lookup builds a filter;
// the builder is sized once instead of growing byte by byte.
func TestExpandFilterAllocatesOnce(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, ok, err := expandFilter("(&(objectClass=courrielAccount)(mailacceptinggeneralid=%s))", "test0@hosted-domain.com"); !ok || err != nil {
			t.Fatal(ok, err)
		}
	})
	if n > 1 {
		t.Errorf("%v allocations per filter, want 1", n)
	}
}
