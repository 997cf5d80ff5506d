package directory

import (
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
)

// SchemaOptions says where `courriel ldap-schema` output applies. The zero
// value is the seed's directory. immutable once passed.
type SchemaOptions struct {
	// Database is the cn=config entry of the database holding Suffix.
	// Default olcDatabase={1}mdb,cn=config (Debian's first mdb database).
	Database string
	// Suffix is that database's olcSuffix. Default dc=xoyize,dc=xyz.
	Suffix string
	// MailBase is the subtree of mail users and aliases, at or below Suffix.
	// Default ou=mail,dc=xoyize,dc=xyz.
	MailBase string
	// ReaderDN is the service account allowed to read MailBase.
	// Default cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz.
	ReaderDN string
}

// Seed defaults for SchemaOptions.
const (
	DefaultSchemaDatabase = "olcDatabase={1}mdb,cn=config"
	DefaultSchemaSuffix   = "dc=xoyize,dc=xyz"
	DefaultSchemaMailBase = "ou=mail,dc=xoyize,dc=xyz"
	DefaultSchemaReaderDN = "cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz"
)

// The seed's postfixUser schema, byte for byte (OIDs under OpenLDAP's
// experimental arc 1.3.6.1.4.1.4203.666, as in credativ/postfix-ldap-schema).
const (
	schemaAttrAlias = "(1.3.6.1.4.1.4203.666.1.200 NAME 'mailacceptinggeneralid' DESC 'Postfix mail local address alias attribute' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024})"
	schemaAttrDrop  = "(1.3.6.1.4.1.4203.666.1.201 NAME 'maildrop' DESC 'Postfix mail final destination attribute' EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024})"
	schemaClass     = "(1.3.6.1.4.1.4203.666.1.100 NAME 'postfixUser' DESC 'Postfix mail user class' SUP top AUXILIARY MAY(mailacceptinggeneralid $ maildrop))"
)

func (o SchemaOptions) withDefaults() SchemaOptions {
	def := func(s *string, v string) {
		if *s = strings.TrimSpace(*s); *s == "" {
			*s = v
		}
	}
	def(&o.Database, DefaultSchemaDatabase)
	def(&o.Suffix, DefaultSchemaSuffix)
	def(&o.MailBase, DefaultSchemaMailBase)
	def(&o.ReaderDN, DefaultSchemaReaderDN)
	return o
}

// Validate checks that every DN parses (RFC 4514), that Database is an entry
// directly under cn=config, that MailBase is at or below Suffix, and that no
// DN carries a character that could leave its place in the LDIF or in the
// quoted ACL (control characters, '"', '\\').
func (o SchemaOptions) Validate() error {
	o = o.withDefaults()
	parsed := map[string]*ldap.DN{}
	for _, f := range []struct{ name, dn string }{
		{"database", o.Database}, {"suffix", o.Suffix}, {"mail base", o.MailBase}, {"reader DN", o.ReaderDN},
	} {
		if !utf8.ValidString(f.dn) {
			return fmt.Errorf("directory: schema %s is not UTF-8", f.name)
		}
		for _, r := range f.dn {
			if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
				return fmt.Errorf("directory: schema %s %q: character %q not allowed", f.name, f.dn, r)
			}
		}
		dn, err := ldap.ParseDN(f.dn)
		if err != nil {
			return fmt.Errorf("directory: schema %s %q: %w", f.name, f.dn, err)
		}
		if len(dn.RDNs) == 0 {
			return fmt.Errorf("directory: schema %s %q: empty DN", f.name, f.dn)
		}
		parsed[f.name] = dn
	}
	db := parsed["database"]
	config, _ := ldap.ParseDN("cn=config")
	if len(db.RDNs) != 2 || !config.AncestorOfFold(db) ||
		len(db.RDNs[0].Attributes) != 1 || !strings.EqualFold(db.RDNs[0].Attributes[0].Type, "olcDatabase") {
		return fmt.Errorf("directory: schema database %q: want olcDatabase={N}<type>,cn=config", o.Database)
	}
	suffix, base := parsed["suffix"], parsed["mail base"]
	if !suffix.EqualFold(base) && !suffix.AncestorOfFold(base) {
		return fmt.Errorf("directory: schema mail base %q is not within suffix %q", o.MailBase, o.Suffix)
	}
	return nil
}

// SchemaLDIF returns the LDIF that installs courriel's directory side into an
// OpenLDAP cn=config in one run, without ldapadd -c: the postfixUser schema,
// the mailacceptinggeneralid and maildrop indexes on o.Database, and the
// seed's two ACL rules inserted first in its olcAccess. Zero fields take the
// seed's defaults. It panics when o.Validate fails: check options from a user
// with Validate first.
func SchemaLDIF(o SchemaOptions) string {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	o = o.withDefaults()
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	attr := func(name, value string) { line(schemaLDIFLine(name, value)) }

	line("# courriel ldap-schema: the postfixUser schema, its indexes and the mail ACLs.")
	line("#")
	line("# Load it on the LDAP server as the cn=config administrator, in one run:")
	line("#   ldapadd -Y EXTERNAL -H ldapi:/// -f courriel-schema.ldif")
	line("# (or: ldapadd -x -H ldap://... -D cn=config -W -f courriel-schema.ldif)")
	line("#")
	line("# Before loading, look at what the database already has:")
	line("#   ldapsearch -Y EXTERNAL -H ldapi:/// -LLL -b '" + o.Database + "' olcSuffix olcDbIndex olcAccess")
	line("# - olcSuffix must be " + o.Suffix + "; otherwise pass the right database.")
	line("# - If the indexes or the postfix schema are already there, remove those")
	line("#   parts: ldapadd stops at the first record that fails (value exists).")
	line("# - The two ACL rules go in at positions {0} and {1}; existing rules move")
	line("#   down, unchanged. They must stay first: a broader earlier rule (such as")
	line("#   Debian's \"to * by * read\") would otherwise expose ou=mail. Check that no")
	line("#   existing rule relied on being first for userPassword.")
	line("")
	line("# 1. The schema (OIDs 1.3.6.1.4.1.4203.666.1.200/.201 attributes, .100 class).")
	line("dn: cn=postfix,cn=schema,cn=config")
	line("cn: postfix")
	line("objectclass: olcSchemaConfig")
	line("olcattributetypes: {0}" + schemaAttrAlias)
	line("olcattributetypes: {1}" + schemaAttrDrop)
	line("olcobjectclasses: {0}" + schemaClass)
	line("")
	line("# 2. Indexes for the alias, hosted-domain (substring) and mailbox lookups.")
	line("# 3. Access: passwords only for binding (and by their owner), ou=mail")
	line("#    readable by the reader account only.")
	attr("dn", o.Database)
	line("changetype: modify")
	line("add: olcDbIndex")
	line("olcDbIndex: mailacceptinggeneralid eq,sub")
	line("olcDbIndex: maildrop eq")
	line("-")
	line("add: olcAccess")
	attr("olcAccess", `{0}to dn.subtree="`+o.Suffix+`" attrs=userPassword by self =xw by anonymous auth by * none`)
	attr("olcAccess", `{1}to dn.subtree="`+o.MailBase+`" by dn.base="`+o.ReaderDN+`" read by * none`)
	line("-")
	return b.String()
}

// SchemaFile returns the postfixUser schema in slapd.conf form, for servers
// still configured with slapd.conf: include it after core.schema.
func SchemaFile() string {
	var b strings.Builder
	b.WriteString("# courriel: postfixUser schema (slapd.conf form). Include after core.schema.\n\n")
	for _, d := range []struct{ kind, def string }{
		{"attributetype", schemaAttrAlias},
		{"attributetype", schemaAttrDrop},
		{"objectclass", schemaClass},
	} {
		// One keyword per line, continuation lines start with a tab (slapd.conf(5)).
		def := strings.TrimSuffix(strings.TrimPrefix(d.def, "("), ")")
		def = strings.Replace(def, "MAY(", "MAY ( ", 1)
		def = strings.Replace(def, "$ maildrop)", "$ maildrop )", 1)
		for _, kw := range []string{" NAME ", " DESC ", " EQUALITY ", " SUBSTR ", " SYNTAX ", " SUP ", " AUXILIARY", " MAY "} {
			def = strings.Replace(def, kw, "\n\t"+strings.TrimPrefix(kw, " "), 1)
		}
		b.WriteString(d.kind + " ( " + def + " )\n\n")
	}
	return b.String()
}

// schemaLDIFLine writes "name: value", or "name:: base64" when value is not
// an RFC 2849 SAFE-STRING (non-ASCII, or a leading space, ':' or '<').
func schemaLDIFLine(name, value string) string {
	safe := value == "" || (value[0] != ' ' && value[0] != ':' && value[0] != '<' && !strings.HasSuffix(value, " "))
	for i := 0; safe && i < len(value); i++ {
		safe = value[i] >= 0x20 && value[i] < 0x7f
	}
	if safe {
		return name + ": " + value
	}
	return name + ":: " + base64.StdEncoding.EncodeToString([]byte(value))
}
