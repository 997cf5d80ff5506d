package testenv

// Option changes what StartSlapd builds.
type Option func(*options)

type options struct {
	homeBase    string
	withPostfix bool
	extraLDIF   []string
	withoutMisc bool

	// Replication, set by StartReplicated only.
	syncprov  bool   // the syncprov overlay on the mdb database
	syncrepl  string // olcSyncrepl: a consumer (no data, no rootpw)
	updateRef string // olcUpdateRef of a consumer
	ca        *CA    // nil: a new CA per slapd
	noData    bool   // no slapadd of base.ldif and fixture.ldif
}

func defaultOptions() options {
	return options{homeBase: DefaultHomeBase, withPostfix: true}
}

// WithHomeBase replaces /var/vmail in the fixture's homeDirectory values with
// dir (absolute), so tests can deliver into a temp dir.
func WithHomeBase(dir string) Option {
	return func(o *options) { o.homeBase = dir }
}

// WithoutPostfixSchema builds a directory as a fresh Debian install has it:
// no postfix schema, no mail indexes, Debian's default ACLs (userPassword by
// self write / anonymous auth; shadowLastChange; everything readable) and only
// the entries of base.ldif (suffix, ou=mail, ou=Manager, the reader). It is
// what `courriel ldap-schema` output is loaded into by its test.
func WithoutPostfixSchema() Option {
	return func(o *options) { o.withPostfix = false }
}

// WithExtraLDIF is applied with ldapmodify -a as the admin after the first
// start: plain entries are added, changetype records do what they say.
func WithExtraLDIF(ldif string) Option {
	return func(o *options) { o.extraLDIF = append(o.extraLDIF, ldif) }
}

// WithoutMiscSchema leaves OpenLDAP's misc.schema (mailHost,
// inetLocalMailRecipient) out, as a fresh Debian slapd has it: what
// `courriel ldap-schema -cluster` output is loaded into by its test.
func WithoutMiscSchema() Option {
	return func(o *options) { o.withoutMisc = true }
}

// WithCA makes the server certificate from ca instead of a CA of its own:
// servers of one test that must trust each other (a replica and its
// provider over StartTLS).
func WithCA(ca *CA) Option {
	return func(o *options) { o.ca = ca }
}

// WithoutData leaves the database empty (no suffix entry, no accounts): a
// replica to be, filled by syncrepl once configured. Add, Modify and
// Delete still work as the rootdn.
func WithoutData() Option {
	return func(o *options) { o.noData = true }
}

// WithSyncProv adds the syncprov overlay to the mdb database, as on a
// replication provider, so that a client can run a persistent sync search
// (RFC 4533) against this one server: a watcher's test that needs no
// replica.
func WithSyncProv() Option {
	return func(o *options) { o.syncprov = true }
}
