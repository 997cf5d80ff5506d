package directory_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"courriel/directory"
	"courriel/internal/testenv"
)

// findProgram finds an OpenLDAP program, also in /usr/sbin (often not in a
// non-root PATH); missing, the test skips, or fails when CI=true.
func findProgram(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/usr/local/sbin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not installed (apt-get install slapd ldap-utils)", name)
	}
	t.Skipf("%s not installed", name)
	return ""
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir()
}

func run(t *testing.T, prog string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "LDAPNOINIT=1") // no host ldap.conf
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func dialLDAP(t *testing.T, url string) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	c.SetTimeout(10 * time.Second)
	t.Cleanup(func() { c.Close() })
	return c
}

func searchAll(c *ldap.Conn, base, filter string, attrs ...string) ([]*ldap.Entry, error) {
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		0, 10, false, filter, attrs, nil))
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// TestSchemaLDIFLoadsIntoFreshSlapd loads `courriel ldap-schema` output with
// the documented ldapadd command into a slapd set up as Debian leaves it (no
// postfix schema, "to * by * read"), then uses the schema, the indexes and
// the ACLs.
func TestSchemaLDIFLoadsIntoFreshSlapd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		opts  directory.SchemaOptions
		extra string // entries the options need
		// reader of the mail base
		readerDN, readerPW string
	}{
		{name: "seed defaults", readerDN: testenv.ReaderDN, readerPW: testenv.ReaderPassword},
		{
			name: "other base and reader",
			opts: directory.SchemaOptions{
				Database: "olcDatabase={1}MDB,CN=config",
				MailBase: "ou=people,dc=xoyize,dc=xyz",
				ReaderDN: "cn=courriel,ou=Manager,dc=xoyize,dc=xyz",
			},
			extra: "dn: ou=people,dc=xoyize,dc=xyz\nobjectClass: organizationalUnit\nou: people\n\n" +
				"dn: cn=courriel,ou=Manager,dc=xoyize,dc=xyz\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: courriel\nuserPassword: courriel-secret\n",
			readerDN: "cn=courriel,ou=Manager,dc=xoyize,dc=xyz", readerPW: "courriel-secret",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ldapadd := findProgram(t, "ldapadd")
			var opts []testenv.Option
			opts = append(opts, testenv.WithoutPostfixSchema())
			if tt.extra != "" {
				opts = append(opts, testenv.WithExtraLDIF(tt.extra))
			}
			s := testenv.StartSlapd(t, opts...)
			mailBase := tt.opts.MailBase
			if mailBase == "" {
				mailBase = directory.DefaultSchemaMailBase
			}

			// Before: Debian's ACLs let anyone read the mail base.
			anon := dialLDAP(t, s.URL())
			if got, err := searchAll(anon, mailBase, "(objectClass=*)"); err != nil || len(got) == 0 {
				t.Fatalf("precondition: anonymous read of %s = %v, %v", mailBase, got, err)
			}

			file := filepath.Join(t.TempDir(), "courriel-schema.ldif")
			if err := os.WriteFile(file, []byte(directory.SchemaLDIF(tt.opts)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := run(t, ldapadd, "-Y", "EXTERNAL", "-H", s.LDAPIURL(), "-f", file); err != nil {
				t.Fatalf("ldapadd: %v\n%s", err, out)
			}
			// Not idempotent, as its comment says: a second run stops on "exists".
			if out, err := run(t, ldapadd, "-Y", "EXTERNAL", "-H", s.LDAPIURL(), "-f", file); err == nil {
				t.Errorf("second ldapadd succeeded:\n%s", out)
			}

			// cn=config: indexes added, our ACL rules first, Debian's kept after.
			cfg := dialLDAP(t, s.URL())
			if err := cfg.Bind(s.ConfigDN(), s.ConfigPassword()); err != nil {
				t.Fatal(err)
			}
			db, err := searchAll(cfg, "olcDatabase={1}mdb,cn=config", "(objectClass=olcDatabaseConfig)", "olcDbIndex", "olcAccess")
			if err != nil || len(db) != 1 {
				t.Fatalf("database config: %v, %v", db, err)
			}
			idx := db[0].GetAttributeValues("olcDbIndex")
			for _, want := range []string{"mailacceptinggeneralid eq,sub", "maildrop eq"} {
				if !slices.Contains(idx, want) {
					t.Errorf("olcDbIndex %q lacks %q", idx, want)
				}
			}
			acl := db[0].GetAttributeValues("olcAccess")
			if len(acl) != 5 || !strings.HasPrefix(acl[0], "{0}to dn.subtree=\"dc=xoyize,dc=xyz\" attrs=userPassword") ||
				!strings.HasPrefix(acl[1], "{1}to dn.subtree=\""+mailBase+"\"") || !strings.HasSuffix(acl[4], "to * by * read") {
				t.Errorf("olcAccess = %q", acl)
			}

			// The schema works: entries using postfixUser can be added.
			s.Add(t, "dn: uid=nina,"+mailBase+"\nobjectClass: account\nobjectClass: posixAccount\nobjectClass: postfixUser\n"+
				"uid: nina\ncn: nina\nuidNumber: 21000\ngidNumber: 21000\nhomeDirectory: /var/vmail/nina\n"+
				"userPassword: nina-secret\nmailacceptinggeneralid: nina@new.example\nmaildrop: nina@xoyize.xyz\n\n"+
				"dn: uid=list,"+mailBase+"\nobjectClass: account\nobjectClass: postfixUser\nuid: list\n"+
				"mailacceptinggeneralid: list@new.example\nmaildrop: nina@xoyize.xyz\nmaildrop: other@foreign.example\n")

			// The reader finds them through the indexed attributes (eq and sub).
			rc := dialLDAP(t, s.URL())
			if err := rc.StartTLS(s.CA().ClientTLSConfig("127.0.0.1")); err != nil {
				t.Fatal(err)
			}
			if err := rc.Bind(tt.readerDN, tt.readerPW); err != nil {
				t.Fatalf("reader bind: %v", err)
			}
			lookups := []struct {
				filter string
				want   int
			}{
				{"(mailacceptinggeneralid=NINA@new.example)", 1},
				{"(mailacceptinggeneralid=*@new.example)", 2},
				{"(maildrop=nina@xoyize.xyz)", 2},
				{"(maildrop=other@foreign.example)", 1},
				{"(mailacceptinggeneralid=nobody@new.example)", 0},
			}
			for _, l := range lookups {
				got, err := searchAll(rc, mailBase, l.filter, "maildrop", "userPassword")
				if err != nil || len(got) != l.want {
					t.Errorf("reader %s: %d entries, %v; want %d", l.filter, len(got), err, l.want)
				}
				for _, e := range got {
					if e.GetAttributeValue("userPassword") != "" {
						t.Errorf("reader reads userPassword of %s", e.DN)
					}
				}
			}

			// Anonymous now sees nothing under the mail base, but users can bind.
			if got, err := searchAll(anon, mailBase, "(objectClass=*)"); err == nil && len(got) > 0 {
				t.Errorf("anonymous still reads %d entries under %s", len(got), mailBase)
			}
			uc := dialLDAP(t, s.URL())
			if err := uc.Bind("uid=nina,"+mailBase, "nina-secret"); err != nil {
				t.Errorf("user bind: %v", err)
			}
			if err := uc.Bind("uid=nina,"+mailBase, "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
				t.Errorf("wrong password: %v, want result 49", err)
			}
		})
	}
}

func TestSchemaOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts directory.SchemaOptions
		ok   bool
	}{
		{"zero value", directory.SchemaOptions{}, true},
		{"blank is default", directory.SchemaOptions{Suffix: "  "}, true},
		{"other suffix", directory.SchemaOptions{Suffix: "dc=example,dc=org", MailBase: "ou=mail,dc=example,dc=org", ReaderDN: "cn=r,dc=example,dc=org"}, true},
		{"mail base is the suffix", directory.SchemaOptions{MailBase: "dc=xoyize,dc=xyz"}, true},
		{"case and spaces", directory.SchemaOptions{MailBase: "OU=Mail, DC=Xoyize, DC=xyz", Database: "olcDatabase={2}mdb,CN=Config"}, true},
		{"non-ASCII suffix", directory.SchemaOptions{Suffix: "dc=café,dc=example", MailBase: "ou=mail,dc=café,dc=example"}, true},
		{"not a DN", directory.SchemaOptions{Suffix: "xoyize.xyz"}, false},
		{"mail base outside suffix", directory.SchemaOptions{MailBase: "ou=mail,dc=example,dc=org"}, false},
		{"database not under cn=config", directory.SchemaOptions{Database: "olcDatabase={1}mdb,cn=other"}, false},
		{"database too deep", directory.SchemaOptions{Database: "cn=x,olcDatabase={1}mdb,cn=config"}, false},
		{"database is cn=config", directory.SchemaOptions{Database: "cn=config"}, false},
		{"database wrong attribute", directory.SchemaOptions{Database: "cn={1}mdb,cn=config"}, false},
		{"LDIF injection", directory.SchemaOptions{ReaderDN: "cn=r,dc=xoyize,dc=xyz\ndn: cn=evil"}, false},
		{"ACL injection", directory.SchemaOptions{ReaderDN: `cn=r" write by * manage,dc=xoyize,dc=xyz`}, false},
		{"backslash", directory.SchemaOptions{ReaderDN: `cn=a\,b,dc=xoyize,dc=xyz`}, false},
		{"NUL", directory.SchemaOptions{MailBase: "ou=ma\x00il,dc=xoyize,dc=xyz"}, false},
		{"not UTF-8", directory.SchemaOptions{MailBase: "ou=\xff,dc=xoyize,dc=xyz"}, false},
	}
	for _, tt := range tests {
		err := tt.opts.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok=%v", tt.name, err, tt.ok)
		}
		func() {
			defer func() {
				if r := recover(); (r == nil) != tt.ok {
					t.Errorf("%s: SchemaLDIF panic = %v, want ok=%v", tt.name, r, tt.ok)
				}
			}()
			_ = directory.SchemaLDIF(tt.opts)
		}()
	}
}

func TestSchemaLDIFText(t *testing.T) {
	t.Parallel()
	def := directory.SchemaLDIF(directory.SchemaOptions{})
	// The seed's schema lines, byte for byte, and its index lines.
	for _, want := range []string{
		"dn: cn=postfix,cn=schema,cn=config\ncn: postfix\nobjectclass: olcSchemaConfig\n",
		"olcattributetypes: {0}(1.3.6.1.4.1.4203.666.1.200 NAME 'mailacceptinggeneralid' DESC 'Postfix mail local address alias attribute' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024})\n",
		"olcattributetypes: {1}(1.3.6.1.4.1.4203.666.1.201 NAME 'maildrop' DESC 'Postfix mail final destination attribute' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024})\n",
		"olcobjectclasses: {0}(1.3.6.1.4.1.4203.666.1.100 NAME 'postfixUser' DESC 'Postfix mail user class' SUP top AUXILIARY MAY(mailacceptinggeneralid $ maildrop))\n",
		"dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcDbIndex\nolcDbIndex: mailacceptinggeneralid eq,sub\nolcDbIndex: maildrop eq\n-\n",
		`olcAccess: {1}to dn.subtree="ou=mail,dc=xoyize,dc=xyz" by dn.base="cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz" read by * none` + "\n",
	} {
		if !strings.Contains(def, want) {
			t.Errorf("default LDIF lacks %q", want)
		}
	}
	// A non-ASCII DN cannot be a plain LDIF value (RFC 2849 SAFE-STRING).
	utf := directory.SchemaLDIF(directory.SchemaOptions{Suffix: "dc=café,dc=example", MailBase: "ou=mail,dc=café,dc=example"})
	for _, line := range strings.Split(utf, "\n") {
		if !strings.HasPrefix(line, "#") && strings.ContainsFunc(line, func(r rune) bool { return r > 0x7e }) {
			t.Errorf("non-ASCII outside a comment: %q", line)
		}
	}
	if !strings.Contains(utf, "olcAccess:: ") {
		t.Error("non-ASCII olcAccess not base64-encoded")
	}
}

// TestSchemaFileLoads checks the slapd.conf form with slaptest.
func TestSchemaFileLoads(t *testing.T) {
	t.Parallel()
	slaptest := findProgram(t, "slaptest")
	var core string
	for _, d := range []string{"/etc/ldap/schema", "/etc/openldap/schema"} {
		if p := filepath.Join(d, "core.schema"); fileExists(p) {
			core = p
		}
	}
	if core == "" {
		if os.Getenv("CI") == "true" { // scripts/test installs it
			t.Fatal("no core.schema")
		}
		t.Skip("no core.schema")
	}
	dir := t.TempDir()
	schema := filepath.Join(dir, "postfix.schema")
	if err := os.WriteFile(schema, []byte(directory.SchemaFile()), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, extra string
		ok          bool
	}{
		{"schema", "", true},
		// The control: a conf using an undefined attribute must fail, or
		// slaptest would prove nothing.
		{"undefined attribute", "attributetype ( 1.3.6.1.4.1.4203.666.1.299 NAME 'x' SUP nosuchattr )\n", false},
	}
	for _, tt := range tests {
		conf := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".conf")
		text := "include " + core + "\ninclude " + schema + "\n" + tt.extra
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, slaptest, "-u", "-f", conf)
		if (err == nil) != tt.ok {
			t.Errorf("%s: slaptest = %v, want ok=%v\n%s", tt.name, err, tt.ok, out)
		}
	}
	if !strings.Contains(directory.SchemaFile(), "MAY ( mailacceptinggeneralid $ maildrop )") {
		t.Errorf("SchemaFile:\n%s", directory.SchemaFile())
	}
}

// The cluster LDIF, loaded with ldapadd after the base output into two
// slapds set up as Debian leaves them (no postfix schema, no misc.schema,
// no syncprov), makes them a working provider and consumer: entries with
// mailHost replicate, passwords too, writes on the consumer are referred
// to the provider, and the consumer answers courriel's sync search.
func TestClusterSchemaLDIFLoads(t *testing.T) {
	t.Parallel()
	ldapadd := findProgram(t, "ldapadd")
	ca := testenv.NewCA(t)
	fresh := []testenv.Option{testenv.WithoutPostfixSchema(), testenv.WithoutMiscSchema(), testenv.WithCA(ca)}
	p := testenv.StartSlapd(t, fresh...)
	c := testenv.StartSlapd(t, append(fresh, testenv.WithoutData())...)
	const replicatorPW = "replicator-secret"
	load := func(s *testenv.Slapd, name, ldif string) {
		t.Helper()
		file := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(file, []byte(ldif), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := run(t, ldapadd, "-Y", "EXTERNAL", "-H", s.LDAPIURL(), "-f", file); err != nil {
			t.Fatalf("ldapadd %s: %v\n%s", name, err, out)
		}
	}
	var o directory.SchemaOptions
	load(p, "schema.ldif", directory.SchemaLDIF(o))
	load(p, "cluster.ldif", directory.ClusterSchemaLDIF(o, directory.ClusterSchemaOptions{Role: directory.ClusterProvider}))
	p.Add(t, "dn: cn=replicator,ou=Manager,dc=xoyize,dc=xyz\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n"+
		"cn: replicator\nuserPassword: "+replicatorPW+"\n\n"+
		"dn: uid=nina,ou=mail,dc=xoyize,dc=xyz\nobjectClass: account\nobjectClass: posixAccount\nobjectClass: postfixUser\n"+
		"objectClass: inetLocalMailRecipient\nuid: nina\ncn: nina\nuidNumber: 21000\ngidNumber: 21000\nhomeDirectory: /var/vmail/nina\n"+
		"userPassword: nina-secret\nmailacceptinggeneralid: nina@new.example\nmaildrop: nina@xoyize.xyz\nmailHost: node-a\n")

	load(c, "schema.ldif", directory.SchemaLDIF(o))
	load(c, "cluster.ldif", directory.ClusterSchemaLDIF(o, directory.ClusterSchemaOptions{
		Role: directory.ClusterConsumer, ProviderURL: p.URL(), ProviderCAFile: ca.CertFile(), ReplicatorPassword: replicatorPW,
	}))
	r := &testenv.Replicated{Provider: p, Consumer: c}
	nina := "uid=nina,ou=mail,dc=xoyize,dc=xyz"
	r.WaitFor(t, nina, "mailHost", "node-a")
	r.WaitInSync(t)

	// Passwords came along (the replicator's rule comes first), and a
	// write on the consumer is referred to the provider.
	uc := dialLDAP(t, c.URL())
	if err := uc.Bind(nina, "nina-secret"); err != nil {
		t.Fatalf("nina's bind on the consumer: %v", err)
	}
	res, err := uc.ModifyWithResult(&ldap.ModifyRequest{DN: nina, Changes: []ldap.Change{{Operation: ldap.ReplaceAttribute,
		Modification: ldap.PartialAttribute{Type: "userPassword", Vals: []string{"other"}}}}})
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultReferral) || res == nil || !strings.HasPrefix(res.Referral, p.URL()) {
		t.Errorf("write on the consumer: %v %+v, want a referral to %s", err, res, p.URL())
	}

	// courriel reading the consumer: its change watch is answered, and a
	// mailHost changed on the provider is seen through the mailHost index.
	do := directory.Options{
		URLs: []string{c.URL()}, StartTLS: true, CAFile: ca.CertFile(), RequireCert: true,
		BindDN: testenv.ReaderDN, BindPassword: testenv.ReaderPassword, BaseDN: testenv.MailBase,
		MailboxDomains: []string{"xoyize.xyz"}, HomeAttribute: "mailHost", CacheTTL: time.Hour, NegativeCacheTTL: time.Hour,
	}
	d := newDir(t, do)
	w := d.NewWatcher(nil)
	// A node may read the provider itself: its watch works there too.
	po := do
	po.URLs = []string{p.URL()}
	if err := newDir(t, po).NewWatcher(nil).Check(context.Background()); err != nil {
		t.Errorf("watch on the provider: %v", err)
	}
	runWatcher(t, w)
	eventually(t, "watch connected to the consumer", func() (bool, string) { return w.Status().Connected, statusString(w.Status()) })
	if got, err := resolve(d, "nina@new.example"); err != nil || got != "nina@xoyize.xyz@node=node-a" {
		t.Fatalf("resolve before: %q %v", got, err)
	}
	p.Modify(t, "dn: "+nina+"\nchangetype: modify\nreplace: mailHost\nmailHost: node-b\n")
	eventually(t, "new home node seen", func() (bool, string) {
		got, err := resolve(d, "nina@new.example")
		return err == nil && got == "nina@xoyize.xyz@node=node-b", got + " " + errString(err)
	})
	rc := dialLDAP(t, c.URL())
	if err := rc.Bind(testenv.ReaderDN, testenv.ReaderPassword); err != nil {
		t.Fatal(err)
	}
	if got, err := searchAll(rc, testenv.MailBase, "(mailHost=NODE-B)", "uid"); err != nil || len(got) != 1 {
		t.Errorf("(mailHost=NODE-B) on the consumer: %d entries, %v", len(got), err)
	}
}

func TestClusterSchemaOptionsValidate(t *testing.T) {
	t.Parallel()
	var o directory.SchemaOptions
	for _, tc := range []struct {
		name string
		c    directory.ClusterSchemaOptions
		ok   bool
	}{
		{"provider", directory.ClusterSchemaOptions{Role: "provider"}, true},
		{"consumer", directory.ClusterSchemaOptions{Role: "consumer", ProviderURL: "ldaps://ldap1.example.org"}, true},
		{"no role", directory.ClusterSchemaOptions{}, false},
		{"consumer without provider", directory.ClusterSchemaOptions{Role: "consumer"}, false},
		{"provider URL scheme", directory.ClusterSchemaOptions{Role: "consumer", ProviderURL: "http://x"}, false},
		{"quote in password", directory.ClusterSchemaOptions{Role: "consumer", ProviderURL: "ldap://x", ReplicatorPassword: `a" rid=2`}, false},
		{"newline in DN", directory.ClusterSchemaOptions{Role: "provider", ReplicatorDN: "cn=a\n,dc=x"}, false},
		{"relative CA", directory.ClusterSchemaOptions{Role: "consumer", ProviderURL: "ldap://x", ProviderCAFile: "ca.pem"}, false},
		{"rid", directory.ClusterSchemaOptions{Role: "consumer", ProviderURL: "ldap://x", RID: 1000}, false},
	} {
		if err := tc.c.Validate(o); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
