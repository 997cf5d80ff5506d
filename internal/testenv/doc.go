// Package testenv starts a real OpenLDAP slapd for a test, and makes test
// certificates and free ports: written once, used by every package's tests.
//
// StartSlapd builds a fresh cn=config in t.TempDir() with slapadd (core, cosine,
// nis and misc schemas (misc: mailHost, a cluster user's home node) from /etc/ldap/schema, the seed's postfixUser schema, one mdb
// database for dc=xoyize,dc=xyz with the seed's indexes and ACLs), loads
// fixture.ldif, and runs slapd in the foreground as a child process on
// kernel-picked ports of 127.0.0.1:
//
//	URL()       ldap://127.0.0.1:P    StartTLS offered (certificate from CAFile())
//	LDAPSURL()  ldaps://127.0.0.1:P2
//	LDAPIURL()  ldapi://<socket>      SASL EXTERNAL as this uid/gid manages cn=config
//
// The server certificate names 127.0.0.1, ::1 and localhost. slapd is stopped
// when the test ends; Stop and Start let a test watch the directory go away
// and come back on the same ports with the same data. Without slapd or slapadd
// the test is skipped, or failed when CI=true.
//
// StartReplicated starts two: a provider (syncprov) and a consumer replica
// (syncrepl refreshAndPersist, retry "1 +", olcUpdateRef to the provider,
// syncprov too, no rootpw), with certificates from one CA; ContextCSN,
// WaitInSync and WaitFor poll the replication (bounded).
//
// # Accounts
//
//	who                                           password         may
//	cn=admin,dc=xoyize,dc=xyz (rootdn)             AdminPassword    everything in the suffix
//	cn=config (rootdn of cn=config)                ConfigPassword   everything in cn=config
//	cn=mailAccountReader,ou=Manager,dc=xoyize,...  ReaderPassword   read ou=mail, but no userPassword
//	anonymous                                      -                bind (auth) only; ou=mail hidden
//
// The ACLs are the seed's: "to attrs=userPassword by self =xw by anonymous auth
// by * none", then "to dn.subtree=ou=mail,... by <reader> read by * none", then
// Debian's "to * by * read".
//
// # Fixture (fixture.ldif; FixtureUsers returns the posixAccount rows)
//
// Mail users are account+posixAccount+postfixUser under ou=mail,dc=xoyize,dc=xyz,
// homes under /var/vmail unless WithHomeBase(dir):
//
//	uid     uid/gid      home             aliases (mailacceptinggeneralid)                  maildrop           password
//	xomail  20000/20000  <base>/xomail    test0@hosted-domain.com test1@hosted-domain.com   xomail@xoyize.xyz  XomailPassword
//	alice   20001/20001  <base>/alice     alice@hosted-domain.com a.smith@hosted-domain.com alice@xoyize.xyz   AlicePassword
//	                                      alice@example.org contact@example.org
//	bob     20002/20002  <base>/bob       bob@hosted-domain.com bob@example.org             bob@xoyize.xyz     BobPassword
//	                                      robert@example.org bob@xoyize.xyz (maps to itself)
//	zoe     20003/20003  <base>/zoe       zoe@example.org zoe@hosted-domain.com             zoe@xoyize.xyz     ZoePassword (non-ASCII)
//
// Alias-only entries are account+postfixUser (no posixAccount, no password),
// uid=<name>,ou=mail,dc=xoyize,dc=xyz:
//
//	name    alias                      maildrop(s)                        case
//	chain1  chain1@hosted-domain.com   chain2@hosted-domain.com           a 3-hop chain:
//	chain2  chain2@hosted-domain.com   chain3@hosted-domain.com             chain1 → chain2 → chain3
//	chain3  chain3@hosted-domain.com   alice@xoyize.xyz                     → alice's mailbox
//	loop1   loop1@hosted-domain.com    loop2@hosted-domain.com            a loop
//	loop2   loop2@hosted-domain.com    loop1@hosted-domain.com
//	team    team@hosted-domain.com     alice@xoyize.xyz bob@xoyize.xyz    a list
//	mixed   mixed@hosted-domain.com    alice@xoyize.xyz bob@xoyize.xyz    a list with a foreign member
//	                                   someone@foreign.example
//	fwd     fwd@hosted-domain.com      someone@foreign.example            a forward to a foreign domain
//
// xoyize.xyz is the mailbox domain (myhostname); hosted-domain.com and
// example.org are hosted alias domains. Note that bob's self-mapping alias puts
// xoyize.xyz in a mailacceptinggeneralid too, so a domain lookup for it hits.
//
// WithoutPostfixSchema gives instead what a fresh Debian slapd has: no postfix
// schema or indexes, Debian's default ACLs (everything but passwords readable
// by anyone) and only the suffix, ou=mail, ou=Manager and the reader.
// WithExtraLDIF adds entries after the first start.
//
// # Certificates
//
// NewCA makes an ECDSA P-256 CA per test; CA.Issue writes a certificate and
// key for given hosts, CA.IssueCertificate returns a tls.Certificate, and
// CA.Pool / CA.ClientTLSConfig verify against it.
//
// # Ports
//
// FreePort returns a port that was free a moment ago, below the kernel's
// ephemeral range, where no other test's listener on port 0 can get it;
// RefusingAddr an address that refuses connections for the whole test.
package testenv
