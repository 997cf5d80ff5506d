package directory

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Query is a Postfix-style LDAP table: a filter template and the attribute
// whose values, passed through ResultFormat, are the answer.
//
// Templates: %s is the whole key, %u its local part, %d its domain, %% a
// percent sign. Every substituted value is escaped (RFC 4515). As in
// Postfix, a key without a local part (or domain) makes a template that uses
// %u (or %d) match nothing, without asking the server.
type Query struct {
	Filter          string
	ResultAttribute string
	ResultFormat    string // default "%s"; same escapes, applied to each value
}

// Queries are the lookups of SPEC §2. Defaults come from the seed.
type Queries struct {
	Domains Query // hosted alias domains: any hit means hosted
	Aliases Query // address -> maildrops
	Mailbox Query // maildrop -> maildir path
	UID     Query // maildrop -> uidNumber
	GID     Query // maildrop -> gidNumber
	Senders Query // MAIL FROM address -> logins allowed to use it
	// User: login -> entry (home, uid, gid); ResultAttribute is the home.
	// Its key is a login: %u is the whole login (Dovecot's user_filter),
	// not the part before an '@' it may hold.
	User Query
}

// DefaultQueries returns the seed's Postfix maps and Dovecot user filter.
func DefaultQueries() Queries {
	return Queries{
		Domains: Query{Filter: "(mailacceptinggeneralid=*@%s)", ResultAttribute: "mailacceptinggeneralid", ResultFormat: "%d"},
		Aliases: Query{Filter: "(mailacceptinggeneralid=%s)", ResultAttribute: "maildrop"},
		Mailbox: Query{Filter: "(maildrop=%s)", ResultAttribute: "homeDirectory", ResultFormat: "%s/mailbox/"},
		UID:     Query{Filter: "(maildrop=%s)", ResultAttribute: "uidNumber"},
		GID:     Query{Filter: "(maildrop=%s)", ResultAttribute: "gidNumber"},
		Senders: Query{Filter: "(|(mailacceptinggeneralid=%s)(maildrop=%s))", ResultAttribute: "uid"},
		User:    Query{Filter: "(&(objectClass=posixAccount)(uid=%u))", ResultAttribute: "homeDirectory"},
	}
}

// Options configure a Directory. Zero values take the documented defaults.
type Options struct {
	URLs         []string // ldap:// or ldaps:// URLs, tried in order
	StartTLS     bool     // upgrade ldap:// connections (seed: start_tls = yes)
	CAFile       string   // PEM CA bundle used to verify the server
	RequireCert  bool     // verify the server certificate (seed: tls_require_cert = hard)
	ServerName   string   // expected certificate name; default: the URL's host
	BindDN       string   // service account (seed: cn=mailAccountReader,ou=Manager,...)
	BindPassword string
	BaseDN       string
	Scope        string // "sub" (default), "one" or "base"

	// WriteURLs are where writes go (the provider of a replicated
	// directory: SetPassword, SetHomeNode), tried in order. Empty: writes
	// are tried on URLs, and a referral (a consumer's olcUpdateRef) is
	// followed once.
	WriteURLs []string
	// WriteBindDN and WriteBindPassword are the account writes bind as;
	// empty: BindDN and BindPassword.
	WriteBindDN       string
	WriteBindPassword string

	DialTimeout    time.Duration // TCP connect; default 5s. A whole setup (TLS, service bind) gets DialTimeout+RequestTimeout
	RequestTimeout time.Duration // default 10s
	PoolSize       int           // search connections kept open; default 4
	SizeLimit      int           // entries per search, all its pages together; default 1000

	CacheTTL         time.Duration // positive answers; default 60s; negative -1 disables caching
	NegativeCacheTTL time.Duration // negative answers; default 10s

	// MailboxDomains are delivered to maildirs (seed: virtual_mailbox_domains
	// = $myhostname). Lower-case, no trailing dot.
	MailboxDomains []string
	Queries        Queries
	// AuthBindDN is the DN template a password is checked against (seed:
	// auth_bind_userdn = uid=%u,ou=mail,dc=xoyize,dc=xyz); %u is the
	// login's uid, whole as in Dovecot (escaped per RFC 4514). Empty: bind
	// to the DN the user lookup found.
	AuthBindDN string
	// QuotaAttribute names the attribute of a mailbox's entry holding its
	// storage quota ("1G", "500M", bytes, or Dovecot's "*:storage=1G"), and
	// QuotaMessagesAttribute the one holding its message count; empty, or
	// absent on the entry, is no limit (Dovecot: quota_rule from LDAP).
	QuotaAttribute         string
	QuotaMessagesAttribute string
	// HomeAttribute names the single-valued attribute of a user's entry
	// that gives the user's home node in a cluster (OpenLDAP misc.schema's
	// mailHost); "" reads none (a single node).
	HomeAttribute string
	// MinUID refuses mailboxes owned by a lower uid (Postfix
	// virtual_minimum_uid, default 100): mail must never be written as root.
	MinUID int
	// AliasRecursionLimit and AliasExpansionLimit bound alias expansion
	// (Postfix virtual_alias_recursion_limit 1000, virtual_alias_expansion_limit 1000).
	AliasRecursionLimit int
	AliasExpansionLimit int

	Logger *slog.Logger
	Now    func() time.Time
}

func (o *Options) setDefaults() {
	if o.Scope == "" {
		o.Scope = "sub"
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	if o.PoolSize == 0 {
		o.PoolSize = 4
	}
	if o.SizeLimit == 0 {
		o.SizeLimit = 1000
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 60 * time.Second
	}
	if o.NegativeCacheTTL == 0 {
		o.NegativeCacheTTL = 10 * time.Second
	}
	if o.MinUID == 0 {
		o.MinUID = 100
	}
	if o.AliasRecursionLimit == 0 {
		o.AliasRecursionLimit = 1000
	}
	if o.AliasExpansionLimit == 0 {
		o.AliasExpansionLimit = 1000
	}
	d := DefaultQueries()
	fill := func(q *Query, def Query) {
		q.Filter = parenthesize(q.Filter)
		if q.Filter == "" {
			q.Filter = def.Filter
		}
		if q.ResultAttribute == "" {
			q.ResultAttribute = def.ResultAttribute
		}
		if q.ResultFormat == "" {
			q.ResultFormat = def.ResultFormat
		}
		if q.ResultFormat == "" {
			q.ResultFormat = "%s"
		}
	}
	fill(&o.Queries.Domains, d.Domains)
	fill(&o.Queries.Aliases, d.Aliases)
	fill(&o.Queries.Mailbox, d.Mailbox)
	fill(&o.Queries.UID, d.UID)
	fill(&o.Queries.GID, d.GID)
	fill(&o.Queries.Senders, d.Senders)
	fill(&o.Queries.User, d.User)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	for i, dom := range o.MailboxDomains {
		o.MailboxDomains[i] = strings.TrimSuffix(strings.ToLower(dom), ".")
	}
}

// parenthesize puts a filter written without its outer parentheses
// ("maildrop=%s", as the seed's Postfix query_filter lines are written)
// in them, as OpenLDAP's libldap does for Postfix: the maps are copied
// as they are.
func parenthesize(filter string) string {
	f := strings.TrimSpace(filter)
	if f == "" || strings.HasPrefix(f, "(") {
		return f
	}
	return "(" + f + ")"
}

// Validate reports the first problem with o (after defaults).
func (o *Options) validate() error {
	if len(o.URLs) == 0 {
		return errors.New("no LDAP server URL")
	}
	for _, s := range o.URLs {
		u, err := url.Parse(s)
		if err != nil {
			return fmt.Errorf("LDAP URL %q: %w", s, err)
		}
		switch u.Scheme {
		case "ldap", "ldaps":
		case "ldapi":
			if o.StartTLS {
				return fmt.Errorf("LDAP URL %q: start_tls makes no sense over ldapi", s)
			}
		default:
			return fmt.Errorf("LDAP URL %q: scheme must be ldap, ldaps or ldapi", s)
		}
		if u.Scheme == "ldaps" && o.StartTLS {
			return fmt.Errorf("LDAP URL %q: ldaps:// is already TLS, turn start_tls off", s)
		}
	}
	if _, err := ldap.ParseDN(o.BaseDN); err != nil || o.BaseDN == "" {
		return fmt.Errorf("search base %q is not a DN", o.BaseDN)
	}
	if o.BindDN != "" {
		if _, err := ldap.ParseDN(o.BindDN); err != nil {
			return fmt.Errorf("bind DN %q: %w", o.BindDN, err)
		}
	}
	for _, s := range o.WriteURLs {
		if err := checkWriteURL(s); err != nil {
			return fmt.Errorf("LDAP write URL %q: %w", s, err)
		}
	}
	if o.WriteBindDN != "" {
		if _, err := ldap.ParseDN(o.WriteBindDN); err != nil {
			return fmt.Errorf("write bind DN %q: %w", o.WriteBindDN, err)
		}
	}
	if _, err := scopeValue(o.Scope); err != nil {
		return err
	}
	for name, q := range o.Queries.byName() {
		if err := q.validate(); err != nil {
			return fmt.Errorf("query %s: %w", name, err)
		}
	}
	if o.AuthBindDN != "" {
		probe, err := expandDN(o.AuthBindDN, "probe")
		if err != nil {
			return fmt.Errorf("auth bind DN template: %w", err)
		}
		if _, err := ldap.ParseDN(probe); err != nil {
			return fmt.Errorf("auth bind DN template %q: %w", o.AuthBindDN, err)
		}
	}
	for _, d := range o.MailboxDomains {
		if d == "" || strings.ContainsAny(d, "@ \t") {
			return fmt.Errorf("mailbox domain %q is not a domain", d)
		}
	}
	if o.PoolSize < 1 || o.SizeLimit < 1 {
		return errors.New("pool size and size limit must be positive")
	}
	return nil
}

func (q Queries) byName() map[string]Query {
	return map[string]Query{
		"domains": q.Domains, "aliases": q.Aliases, "mailbox": q.Mailbox,
		"uid": q.UID, "gid": q.GID, "senders": q.Senders, "user": q.User,
	}
}

func scopeValue(s string) (int, error) {
	switch s {
	case "sub", "subtree":
		return ldap.ScopeWholeSubtree, nil
	case "one", "onelevel":
		return ldap.ScopeSingleLevel, nil
	case "base":
		return ldap.ScopeBaseObject, nil
	}
	return 0, fmt.Errorf("scope %q: want sub, one or base", s)
}
