package queue

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"courriel/cluster"
	"courriel/delivery"
)

// Policy is the outbound STARTTLS policy, named after Postfix's
// smtp_tls_security_level.
type Policy string

const (
	// PolicyNone never issues STARTTLS.
	PolicyNone Policy = "none"
	// PolicyMay uses STARTTLS when offered, without verifying the certificate
	// (opportunistic TLS, RFC 7435), and retries in plain text when the
	// handshake fails, as Postfix does.
	PolicyMay Policy = "may"
	// PolicyEncrypt requires STARTTLS but does not verify the certificate:
	// a server without STARTTLS makes the delivery defer.
	PolicyEncrypt Policy = "encrypt"
	// PolicyVerify requires STARTTLS and a certificate that chains to
	// Options.RootCAs and names the MX host (or the route or relayhost host).
	PolicyVerify Policy = "verify"
)

// ParsePolicy checks a policy name from the configuration.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(strings.ToLower(strings.TrimSpace(s))); p {
	case PolicyNone, PolicyMay, PolicyEncrypt, PolicyVerify:
		return p, nil
	}
	return "", fmt.Errorf("queue: unknown TLS policy %q (want none, may, encrypt or verify)", s)
}

// Relayhost is a smarthost every message goes through, unless Options.Routes
// names a route for the recipient's domain.
type Relayhost struct {
	Addr        string // Postfix's "host", "host:port" (MX lookup), "[host]", "[host]:port" (ParseNexthop)
	ImplicitTLS bool   // true: TLS from the first byte (465, RFC 8314); false: STARTTLS (587)
	Username    string // empty: no AUTH
	Password    string
}

// Resolver is what the queue needs from DNS. *net.Resolver satisfies it.
type Resolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// NewResolver returns a resolver that asks the DNS server at addr ("host:port")
// instead of the system's; an empty addr gives the system resolver.
func NewResolver(addr string) Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	return serverResolver{addr: addr, r: &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// serverResolver asks the server at addr. Go's resolver names in its
// errors the server of resolv.conf it would have asked, not the one it did
// (Dial chose it): the errors are corrected, so that the log sends the
// admin to the right server.
type serverResolver struct {
	addr string
	r    *net.Resolver
}

func (s serverResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mx, err := s.r.LookupMX(ctx, name)
	return mx, s.fix(err)
}

func (s serverResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := s.r.LookupIPAddr(ctx, host)
	return ips, s.fix(err)
}

func (s serverResolver) fix(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) && de.Server != "" {
		c := *de
		c.Server = s.addr
		return &c
	}
	return err
}

// Options configures a Queue. Zero values take the documented defaults.
type Options struct {
	Dir      string // spool directory, e.g. /var/spool/courriel
	Hostname string // HELO name, Reporting-MTA and MAILER-DAEMON domain
	Logger   *slog.Logger
	// Client opens the spool beside the process that runs it (`courriel
	// queue`): List, Show, Delete, Flush and Enqueue work, Run does not, and
	// the owner lock is never taken, so a server starting meanwhile keeps it.
	Client bool

	// LocalAddrs are the addresses this host receives mail on: its
	// SMTP listeners' (every interface's for a wildcard listener) and
	// those a proxy or NAT in front of it forwards (Postfix
	// inet_interfaces and proxy_interfaces). An MX host with one of them
	// is this host: it and the MX hosts of equal or worse preference are
	// dropped, and mail whose best MX host it is bounces, "mail for
	// DOMAIN loops back to myself" (loop.go). Empty: no such check.
	LocalAddrs []netip.Addr
	// self is LocalAddrs as a set, unmapped and without zones.
	self map[netip.Addr]bool

	Resolver Resolver // default net.DefaultResolver
	// Routes send a recipient domain's mail to a nexthop (ParseNexthop)
	// instead of the domain's MX hosts: the nexthop's own MX hosts for
	// "host", the host itself for "[host]"; "*" matches every domain.
	Routes    map[string]string
	Relayhost *Relayhost     // optional smarthost, after Routes
	TLSPolicy Policy         // default verify (the seed's smtp_tls_security_level)
	RootCAs   *x509.CertPool // for verify; nil = system pool
	// routes and relayhost are Routes (by normalised domain) and
	// Relayhost.Addr parsed.
	routes    map[string]Nexthop
	relayhost Nexthop

	// TLSPolicies are the admin's policies per recipient domain (Postfix
	// smtp_tls_policy_maps): for MX deliveries to the domain they replace
	// TLSPolicy and the receiver's DANE and MTA-STS policies.
	TLSPolicies map[string]Policy
	// DANE, when set, is the DNSSEC-validating resolver that MX deliveries
	// ask for MX, address and TLSA records (RFC 7672); nil: no DANE.
	DANE SecureResolver
	// DANERoutes applies DANE to the relayhost and static routes given by
	// name too (Postfix: smtp_tls_security_level = dane with a [relayhost]):
	// the name is the admin's, so it counts as a validated MX name, and
	// when its address records are validated the TLSA records at
	// _PORT._tcp.NAME authenticate its certificate.
	DANERoutes bool
	// MTASTS, when set, gives the MTA-STS policy of recipient domains
	// (RFC 8461); nil: no MTA-STS.
	MTASTS STSPolicies
	// TLSReport, when set, hears the outcome of every outbound TLS
	// session for TLSRPT (RFC 8460).
	TLSReport TLSReporter

	MaxLifetime  time.Duration // default 5 days (Postfix maximal_queue_lifetime)
	DelayWarning time.Duration // 0 = no delay warnings (Postfix delay_warning_time)
	MinBackoff   time.Duration // default 300s (Postfix minimal_backoff_time)
	MaxBackoff   time.Duration // default 4000s (Postfix maximal_backoff_time)
	Concurrency  int           // messages delivered at once; default 100

	// DestinationConcurrency bounds the SMTP connections open to one
	// destination (a domain's MX hosts, a static route or the relayhost),
	// idle ones included; default a fifth of Concurrency, at least 2 (20
	// for the default 100, Postfix's default_destination_concurrency_limit
	// and default_process_limit), so that one destination never takes
	// every delivery slot.
	DestinationConcurrency int
	// ConnectionCacheTime is how long an idle connection is kept for the
	// next message to its destination; default 2s (Postfix
	// smtp_connection_cache_time_limit).
	ConnectionCacheTime time.Duration
	// ConnectionReuseLimit is how many messages one connection carries
	// before it is closed; default 100 (Postfix
	// smtp_connection_reuse_count_limit).
	ConnectionReuseLimit int

	// Local stores the copies of local recipients (Accept): the delivery
	// store. Nil: such copies wait in the queue (a temporary failure).
	Local LocalDeliverer

	// Cluster is the node map (nil: a single node, every copy local).
	// Node copies (Recipient.Node) go to their node's cluster listener.
	Cluster *cluster.Cluster
	// Homes, when set, is asked before every attempt at a local copy
	// where its user lives now and whether the user is held (see place);
	// nil: the routes recorded at acceptance. On a retry with Mailboxes
	// set, Mailboxes' answer (Mailbox.Node, Held) stands for it; on the
	// first attempt, the caller's (delivery.Recipient.Entry set: Node,
	// Held).
	Homes HomeFinder
	// Mailboxes, when set, resolves every local copy's maildrop again
	// before each retry (never Accept's first attempt): the copy is
	// stored where the directory says now, bounces when the user is gone
	// and waits while the directory cannot answer (see reresolve); nil:
	// the targets recorded at acceptance.
	Mailboxes MailboxFinder
	// NodeRetry is the wait after a failed attempt at a node copy, or a
	// copy whose user is held (default 45s); a node that did not answer
	// is left alone for half of it.
	NodeRetry time.Duration
	// HandOverTimeout bounds HandOver's attempt at the home node (default
	// 5s, plus a second per MiB of message): past it the message is
	// queued instead, so a slow node never holds the sending client.
	HandOverTimeout time.Duration

	// Bounce delivers a DSN to a sender; report is the whole DSN message,
	// to be queued with opts through Accept (or AcceptForward): they
	// carry WithSMTPUTF8 for an RFC 6533 DSN, which needs SMTPUTF8 at a
	// next hop, and the DSN's queue id, under which Accept stores it once
	// (a DSN handed over before a crash is not stored again, doc.go). The
	// default enqueues it from the null sender like any other mail.
	Bounce func(ctx context.Context, msg *Message, report []byte, opts ...Option) error

	// Attempted, when set, hears the outcome of every delivery attempt
	// the queue records, once per recipient and attempt: "sent",
	// "deferred" or "bounced", the status word of its log line (a
	// temporary failure past MaxLifetime is "bounced"). Accept's first
	// attempt at a local copy and HandOver's are attempts too; a copy not
	// tried (postponed, not sent because another was refused) or cut short
	// by shutdown is none. It is called by the goroutine that records the
	// attempt, so it must be quick and safe for concurrent use: a metric's
	// counter (courriel_deliveries_total).
	Attempted func(status string)

	Now    func() time.Time                                                  // default time.Now
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error) // default net.Dialer
	// nodeDialer opens hops to cluster nodes: Dialer when one was given
	// (tests), else the cluster's, which leaves from this node's address.
	nodeDialer func(ctx context.Context, network, addr string) (net.Conn, error)

	MaxMessageBytes int64         // default 10240000 (Postfix message_size_limit); see traceAllowance
	MaxRecipients   int           // default 1000 (seed-like, SPEC §9)
	MaxQueueFiles   int           // most messages held at once (and spool entries read by Open or List); new mail past it is refused, ErrQueueFull; default 100000
	PollInterval    time.Duration // how often the runner looks for requests from other processes; default 1s
	ConnectTimeout  time.Duration // default 30s (Postfix smtp_connect_timeout)
	CommandTimeout  time.Duration // per SMTP command; default 5 min (RFC 5321 §4.5.3.2)
	// DataTimeout bounds each write of a message's data to a server:
	// one that stops reading it fails the attempt; default 3 min
	// (Postfix smtp_data_xfer_timeout, RFC 5321 §4.5.3.2.5).
	DataTimeout time.Duration
	// rsetTimeout bounds the wait for the reply to RSET, before a
	// cached session carries another message or after a transaction
	// that stopped early (Postfix smtp_rset_timeout); tests shorten it.
	rsetTimeout time.Duration
	// shuffle orders the MX hosts of one preference at each lookup
	// (resolveMX); default math/rand/v2's Shuffle. Tests set one of
	// their own so that the order each lookup gives is known.
	shuffle func(n int, swap func(i, j int))
}

// LocalDeliverer stores copies in maildirs: *delivery.Store. It returns
// one error per recipient, nil for a durable copy.
type LocalDeliverer interface {
	Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error
}

// Postfix defaults, kept beside the code that applies them.
const (
	defaultMaxLifetime     = 5 * 24 * time.Hour
	defaultMinBackoff      = 300 * time.Second
	defaultMaxBackoff      = 4000 * time.Second
	defaultConcurrency     = 100 // default_process_limit
	defaultMaxMessageBytes = 10240000
	defaultMaxRecipients   = 1000
	defaultMaxQueueFiles   = 100000
	defaultPollInterval    = time.Second
	defaultConnectTimeout  = 30 * time.Second
	defaultCommandTimeout  = 5 * time.Minute
	defaultDataTimeout     = 3 * time.Minute
	// Postfix smtp_rset_timeout: a server that does not answer RSET
	// within it is dropped, and a cached session so found costs the
	// message this long, not a command timeout, before a new one.
	defaultRsetTimeout     = 20 * time.Second
	defaultConnCacheTime   = 2 * time.Second
	defaultConnReuseLimit  = 100
	defaultHandOverTimeout = 5 * time.Second
	// Postfix smtp_connection_reuse_time_limit: a connection older than
	// this carries no further message.
	connectionReuseTime = 300 * time.Second
	// Postfix smtp_destination_recipient_limit: RCPTs per transaction.
	// RFC 5321 §4.5.3.1.8 only promises 100 per transaction.
	rcptsPerTransaction = 50
	// traceAllowance: a queued message may exceed MaxMessageBytes by this
	// much, the trace header courriel itself prepends (Received:) after
	// SMTP checked the message against the same limit. Without it a message
	// just under the limit passed SMTP and then failed in the queue.
	traceAllowance = 64 << 10
	// Postfix smtp_mx_address_limit: addresses tried per delivery.
	maxAddressesTried = 5
)

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("queue: Options.Dir is empty")
	}
	if o.Hostname == "" {
		return o, errors.New("queue: Options.Hostname is empty")
	}
	if !validHostname(o.Hostname) {
		return o, fmt.Errorf("queue: Options.Hostname %q is not a host name", o.Hostname)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	o.self = make(map[netip.Addr]bool, len(o.LocalAddrs))
	for _, a := range o.LocalAddrs {
		if a.IsValid() {
			o.self[a.Unmap().WithZone("")] = true
		}
	}
	if o.TLSPolicy == "" {
		o.TLSPolicy = PolicyVerify
	}
	if _, err := ParsePolicy(string(o.TLSPolicy)); err != nil {
		return o, err
	}
	policies := make(map[string]Policy, len(o.TLSPolicies))
	for dom, p := range o.TLSPolicies {
		pp, err := ParsePolicy(string(p))
		if err != nil {
			return o, fmt.Errorf("queue: TLS policy for %q: %w", dom, err)
		}
		policies[normalizeDomain(dom)] = pp
	}
	o.TLSPolicies = policies
	o.routes = make(map[string]Nexthop, len(o.Routes))
	for dom, addr := range o.Routes {
		nh, err := ParseNexthop(addr)
		if err != nil {
			return o, fmt.Errorf("queue: route for %q: %w", dom, err)
		}
		o.routes[normalizeDomain(dom)] = nh
	}
	if o.Relayhost != nil {
		nh, err := ParseNexthop(o.Relayhost.Addr)
		if err != nil {
			return o, fmt.Errorf("queue: relayhost: %w", err)
		}
		o.relayhost = nh
	}
	setDefault(&o.MaxLifetime, defaultMaxLifetime)
	setDefault(&o.MinBackoff, defaultMinBackoff)
	setDefault(&o.MaxBackoff, defaultMaxBackoff)
	setDefault(&o.Concurrency, defaultConcurrency)
	setDefault(&o.DestinationConcurrency, max(2, o.Concurrency/5))
	setDefault(&o.ConnectionCacheTime, defaultConnCacheTime)
	setDefault(&o.ConnectionReuseLimit, defaultConnReuseLimit)
	setDefault(&o.MaxMessageBytes, defaultMaxMessageBytes)
	setDefault(&o.MaxRecipients, defaultMaxRecipients)
	setDefault(&o.MaxQueueFiles, defaultMaxQueueFiles)
	setDefault(&o.PollInterval, defaultPollInterval)
	setDefault(&o.ConnectTimeout, defaultConnectTimeout)
	setDefault(&o.CommandTimeout, defaultCommandTimeout)
	setDefault(&o.DataTimeout, defaultDataTimeout)
	setDefault(&o.rsetTimeout, defaultRsetTimeout)
	setDefault(&o.NodeRetry, defaultNodeRetry)
	setDefault(&o.HandOverTimeout, defaultHandOverTimeout)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	if o.DelayWarning < 0 {
		return o, errors.New("queue: Options.DelayWarning is negative")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.shuffle == nil {
		o.shuffle = rand.Shuffle
	}
	o.nodeDialer = o.Dialer
	if o.Dialer == nil {
		d := &net.Dialer{Timeout: o.ConnectTimeout}
		o.Dialer = d.DialContext
		o.nodeDialer = o.Cluster.Dialer().DialContext
	}
	return o, nil
}

func setDefault[T int | int64 | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// splitHostPort checks a "host:port" from the configuration.
func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("address %q: %w", addr, err)
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", "", fmt.Errorf("address %q: bad host", addr)
	}
	if port == "" {
		return "", "", fmt.Errorf("address %q: no port", addr)
	}
	return host, port, nil
}
