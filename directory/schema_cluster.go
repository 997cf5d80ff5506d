package directory

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Roles of a directory server in a cluster, for ClusterSchemaLDIF.
const (
	ClusterProvider = "provider" // the one server writes go to
	ClusterConsumer = "consumer" // a node's local replica
)

// ClusterSchemaOptions say what `courriel ldap-schema -cluster ROLE` prints.
type ClusterSchemaOptions struct {
	Role string // ClusterProvider or ClusterConsumer
	// ProviderURL is where a consumer replicates from and refers writes
	// to (ldap:// gets StartTLS, required; or ldaps://). Consumer only.
	ProviderURL string
	// ProviderCAFile is the CA a consumer verifies the provider with.
	// Default /etc/ldap/tls/CA.pem.
	ProviderCAFile string
	// ReplicatorDN is the account consumers replicate as: it reads
	// everything on the provider, userPassword included. Default
	// cn=replicator,ou=Manager,<suffix>.
	ReplicatorDN string
	// ReplicatorPassword goes into the consumer's olcSyncrepl (slapd keeps
	// it in cn=config in clear); "" prints a placeholder to replace.
	ReplicatorPassword string
	// RID is the consumer's replica id (1-999, unique on that consumer).
	RID int
}

// DefaultProviderCAFile is the seed's CA file path.
const DefaultProviderCAFile = "/etc/ldap/tls/CA.pem"

// OpenLDAP's misc.schema (cn=misc, as Debian's misc.ldif): mailHost and
// the auxiliary class inetLocalMailRecipient that allows it
// (draft-lachman-laser-ldap-mail-routing), with the rest of that file so
// that the entry is the one an admin would otherwise load.
var miscSchema = []struct{ kind, def string }{
	{"olcAttributeTypes", "( 2.16.840.1.113730.3.1.13 NAME 'mailLocalAddress' DESC 'RFC822 email address of this recipient' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} )"},
	{"olcAttributeTypes", "( 2.16.840.1.113730.3.1.18 NAME 'mailHost' DESC 'FQDN of the SMTP/MTA of this recipient' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} SINGLE-VALUE )"},
	{"olcAttributeTypes", "( 2.16.840.1.113730.3.1.47 NAME 'mailRoutingAddress' DESC 'RFC822 routing address of this recipient' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26{256} SINGLE-VALUE )"},
	{"olcAttributeTypes", "( 1.3.6.1.4.1.42.2.27.2.1.15 NAME 'rfc822MailMember' DESC 'rfc822 mail address of group member(s)' EQUALITY caseIgnoreIA5Match SYNTAX 1.3.6.1.4.1.1466.115.121.1.26 )"},
	{"olcObjectClasses", "( 2.16.840.1.113730.3.2.147 NAME 'inetLocalMailRecipient' DESC 'Internet local mail recipient' SUP top AUXILIARY MAY ( mailLocalAddress $ mailHost $ mailRoutingAddress ) )"},
	{"olcObjectClasses", "( 1.3.6.1.4.1.42.2.27.1.2.5 NAME 'nisMailAlias' DESC 'NIS mail alias' SUP top STRUCTURAL MUST cn MAY rfc822MailMember )"},
}

func (c ClusterSchemaOptions) withDefaults(o SchemaOptions) ClusterSchemaOptions {
	c.ReplicatorDN = strings.TrimSpace(c.ReplicatorDN)
	if c.ReplicatorDN == "" {
		c.ReplicatorDN = "cn=replicator,ou=Manager," + o.Suffix
	}
	if c.ProviderCAFile == "" {
		c.ProviderCAFile = DefaultProviderCAFile
	}
	if c.RID == 0 {
		c.RID = 1
	}
	return c
}

// Validate checks c with the SchemaOptions it goes with.
func (c ClusterSchemaOptions) Validate(o SchemaOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	o = o.withDefaults()
	c = c.withDefaults(o)
	switch c.Role {
	case ClusterProvider, ClusterConsumer:
	default:
		return fmt.Errorf("directory: cluster role %q: want %s or %s", c.Role, ClusterProvider, ClusterConsumer)
	}
	// Every value lands in a quoted olcSyncrepl or ACL value.
	quotable := func(what, v string) error {
		for _, r := range v {
			if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
				return fmt.Errorf("directory: %s: character %q not allowed", what, r)
			}
		}
		return nil
	}
	if err := quotable("replicator DN", c.ReplicatorDN); err != nil {
		return err
	}
	if _, err := ldap.ParseDN(c.ReplicatorDN); err != nil {
		return fmt.Errorf("directory: replicator DN %q: %w", c.ReplicatorDN, err)
	}
	if c.Role == ClusterConsumer {
		if c.ProviderURL == "" {
			return fmt.Errorf("directory: a consumer needs the provider's URL")
		}
		if err := checkWriteURL(c.ProviderURL); err != nil {
			return fmt.Errorf("directory: provider URL %q: %w", c.ProviderURL, err)
		}
		if err := quotable("provider CA file", c.ProviderCAFile); err != nil {
			return err
		}
		if strings.ContainsAny(c.ProviderCAFile, " ") || !strings.HasPrefix(c.ProviderCAFile, "/") {
			return fmt.Errorf("directory: provider CA file %q: want an absolute path without spaces", c.ProviderCAFile)
		}
		if err := quotable("replicator password", c.ReplicatorPassword); err != nil {
			return err
		}
		if c.RID < 1 || c.RID > 999 {
			return fmt.Errorf("directory: rid %d: want 1 to 999", c.RID)
		}
	}
	return nil
}

// ClusterSchemaLDIF returns what a cluster adds to one directory server's
// cn=config, to load after SchemaLDIF's output: misc.schema (mailHost), an
// eq index on mailHost and the indexes syncrepl needs, the syncprov
// overlay (on the provider for its consumers; on a consumer for courriel's
// change watch), and for the role: the replicator's read access and limits
// (provider), or the syncrepl stanza, the update referral and the reader's
// size limit (consumer). It panics when c.Validate(o) fails.
func ClusterSchemaLDIF(o SchemaOptions, c ClusterSchemaOptions) string {
	if err := c.Validate(o); err != nil {
		panic(err)
	}
	o = o.withDefaults()
	c = c.withDefaults(o)
	var b strings.Builder
	line := func(s string) { b.WriteString(s + "\n") }
	attr := func(name, value string) { line(schemaLDIFLine(name, value)) }

	line("# courriel ldap-schema -cluster " + c.Role + ": what a cluster of courriel nodes needs on")
	if c.Role == ClusterProvider {
		line("# the provider, the one directory server that takes writes.")
	} else {
		line("# a node's local replica (an OpenLDAP consumer of " + c.ProviderURL + ").")
	}
	line("#")
	line("# Load it after the output of `courriel ldap-schema` (without -cluster), as the")
	line("# cn=config administrator:  ldapadd -Y EXTERNAL -H ldapi:/// -f courriel-cluster.ldif")
	line("# As there, ldapadd stops at the first record that fails: remove the parts")
	line("# already present (misc.schema is often loaded; syncprov may be built in,")
	line("# then drop the cn=module record).")
	line("")
	if c.Role == ClusterProvider {
		line("# The consumers replicate as " + c.ReplicatorDN + ": create it first, in")
		line("# the data (not cn=config), as the directory's rootdn, for instance:")
		line("#   dn: " + c.ReplicatorDN)
		line("#   objectClass: organizationalRole")
		line("#   objectClass: simpleSecurityObject")
		line("#   cn: replicator")
		line("#   userPassword: <slappasswd or courriel passwd output>")
		line("")
	}
	line("# 1. OpenLDAP's misc.schema: mailHost, each user's home node, on the auxiliary")
	line("#    class inetLocalMailRecipient (courriel adds the class when it sets mailHost).")
	line("dn: cn=misc,cn=schema,cn=config")
	line("objectClass: olcSchemaConfig")
	line("cn: misc")
	for i, d := range miscSchema {
		n := i
		if d.kind == "olcObjectClasses" {
			n = i - 4
		}
		attr(d.kind, "{"+strconv.Itoa(n)+"}"+d.def)
	}
	line("")
	line("# 2. The syncprov module (Debian builds it as a module; cn=module{0} is where")
	line("#    Debian loads back_mdb).")
	line("dn: cn=module{0},cn=config")
	line("changetype: modify")
	line("add: olcModuleLoad")
	line("olcModuleLoad: syncprov")
	line("-")
	line("")
	line("# 3. The database: mailHost indexed (home node lookups), entryCSN and")
	line("#    entryUUID indexed (syncrepl's own searches).")
	if c.Role == ClusterProvider {
		line("#    The replicator reads everything, passwords included (consumers")
		line("#    check logins), through a rule placed first that lets everyone else")
		line("#    fall through to the rules below (\"by * break\"), and has no size or")
		line("#    time limit: a consumer's first refresh reads the whole directory.")
		line("#    Nor has the reader a size limit, for a node that reads the provider")
		line("#    itself: courriel's change watch starts with a refresh of the base.")
	} else {
		line("#    Replication: refreshAndPersist (changes pushed as they happen), retry")
		line("#    every 5 s five times then every 60 s forever (OpenLDAP's default gives up")
		line("#    to hourly retries), TLS verified. Writes sent here get a referral to the")
		line("#    provider (olcUpdateRef): courriel follows it (or set [ldap] write_urls).")
		line("#    Give this database no olcRootPW: a write as its rootdn would change the")
		line("#    replica alone. The reader gets no size limit: courriel's change watch")
		line("#    starts with a sync refresh of the whole search base.")
	}
	attr("dn", o.Database)
	line("changetype: modify")
	line("add: olcDbIndex")
	line("olcDbIndex: mailHost eq")
	line("olcDbIndex: entryCSN eq")
	line("olcDbIndex: entryUUID eq")
	line("-")
	if c.Role == ClusterProvider {
		line("add: olcAccess")
		attr("olcAccess", `{0}to * by dn.exact="`+c.ReplicatorDN+`" read by * break`)
		line("-")
		line("add: olcLimits")
		attr("olcLimits", `dn.exact="`+c.ReplicatorDN+`" size=unlimited time=unlimited`)
		attr("olcLimits", `dn.exact="`+o.ReaderDN+`" size=unlimited`)
		line("-")
	} else {
		pw := c.ReplicatorPassword
		if pw == "" {
			pw = "REPLACE-WITH-THE-REPLICATOR-PASSWORD"
		}
		tlsParams := ` tls_cacert="` + c.ProviderCAFile + `" tls_reqcert=demand`
		if strings.HasPrefix(c.ProviderURL, "ldap://") {
			tlsParams = " starttls=critical" + tlsParams
		}
		line("add: olcSyncrepl")
		attr("olcSyncrepl", fmt.Sprintf(`rid=%03d provider=%s bindmethod=simple binddn="%s" credentials="%s" `+
			`searchbase="%s" type=refreshAndPersist retry="5 5 60 +" timeout=10 network-timeout=10%s`,
			c.RID, c.ProviderURL, c.ReplicatorDN, pw, o.Suffix, tlsParams))
		line("-")
		line("add: olcUpdateRef")
		attr("olcUpdateRef", c.ProviderURL)
		line("-")
		line("add: olcLimits")
		attr("olcLimits", `dn.exact="`+o.ReaderDN+`" size=unlimited`)
		line("-")
	}
	line("")
	line("# 4. The syncprov overlay: checkpoint the contextCSN every 100 writes or 10")
	line("#    minutes; a session log so that a consumer (or courriel's watch) back")
	line("#    after a short absence gets only what changed.")
	attr("dn", "olcOverlay=syncprov,"+o.Database)
	line("changetype: add")
	line("objectClass: olcOverlayConfig")
	line("objectClass: olcSyncProvConfig")
	line("olcOverlay: syncprov")
	line("olcSpCheckpoint: 100 10")
	line("olcSpSessionLog: 10000")
	return b.String()
}
