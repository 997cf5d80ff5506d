package main

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/imap"
	"courriel/internal/envaddr"
	"courriel/managesieve"
	"courriel/sieve"
	"courriel/sieve/scripts"
	"courriel/smtp"
	"courriel/tlsconf"
)

// Config is the whole configuration file. This file is the only place that
// parses TOML; every package gets its own small Options built from it.
type Config struct {
	MyHostname       string   `toml:"myhostname"`
	MailboxDomains   []string `toml:"mailbox_domains"`
	MyNetworks       []string `toml:"mynetworks"`
	MessageSizeLimit int64    `toml:"message_size_limit"`
	RecipientLimit   int      `toml:"recipient_limit"`
	LogLevel         string   `toml:"log_level"`

	Listen ListenConfig `toml:"listen"`
	SMTP   SMTPConfig   `toml:"smtp"`
	IMAP   IMAPConfig   `toml:"imap"`
	// ManageSieve is the ManageSieve listener's limits and those of the
	// users' Sieve scripts.
	ManageSieve ManageSieveConfig `toml:"managesieve"`
	TLS         TLSConfig         `toml:"tls"`
	LDAP        LDAPConfig        `toml:"ldap"`
	Delivery    DeliveryConfig    `toml:"delivery"`
	Queue       QueueConfig       `toml:"queue"`
	Milters     []MilterConfig    `toml:"milter"` // [[milter]] (milterconf.go)
	Monitor     MonitorConfig     `toml:"monitor"`
	MailAuth    MailAuthConfig    `toml:"mailauth"`
	Sieve       SieveConfig       `toml:"sieve"`
	// Cluster makes this node one of several on a replicated directory
	// (clusterconf.go); absent: a single node.
	Cluster ClusterConfig `toml:"cluster"`
	// ProxyProtocol puts client listeners behind load balancers
	// (proxyconf.go); absent: clients connect directly.
	ProxyProtocol ProxyProtocolConfig `toml:"proxy_protocol"`
}

// SieveConfig is about running users' Sieve scripts at delivery (Dovecot
// Pigeonhole's sieve_* settings).
type SieveConfig struct {
	// Enabled runs ~/.dovecot.sieve (Pigeonhole's default active script)
	// and the scripts below for every local copy.
	Enabled bool `toml:"enabled"`
	// Before and After are the administrator's scripts, run in order
	// before and after the user's (sieve_before, sieve_after).
	Before []string `toml:"before"`
	After  []string `toml:"after"`
	// Global is the directory of the scripts `include :global` names
	// (sieve_global): NAME.sieve files; "" for none.
	Global string `toml:"global"`
	// MaxActions and MaxRedirects bound one run (sieve_max_actions,
	// sieve_max_redirects).
	MaxActions   int `toml:"max_actions"`
	MaxRedirects int `toml:"max_redirects"`
	// MaxCPUTime stops a run that goes on longer (sieve_max_cpu_time; wall
	// time here): the message is kept in INBOX and the reason logged.
	MaxCPUTime time.Duration `toml:"max_cpu_time"`
	// ResourceUsageTimeout: a user's script whose long runs (over 1.5 s)
	// add up past MaxCPUTime within it is disabled, until a new version
	// is stored after it (sieve_resource_usage_timeout); 0: no such limit.
	ResourceUsageTimeout time.Duration `toml:"resource_usage_timeout"`
	// VacationUseOriginalRecipient counts the address the sender used
	// (before alias expansion) as the user's in vacation's check that the
	// message is addressed to the user (sieve_vacation_use_original_recipient).
	VacationUseOriginalRecipient bool `toml:"vacation_use_original_recipient"`
	// Extensions are those scripts may require, in the syntax and with
	// the meaning of Pigeonhole's sieve_extensions ("+editheader
	// +spamtest" adds to the default set, "fileinto vacation" is the
	// whole set, "" is none); nil: Pigeonhole's default. For ManageSieve
	// and delivery alike. A name courriel does not know is ignored with
	// a warning, as Pigeonhole ignores one (serve logs it, check-config
	// shows it); so is one Pigeonhole knows but courriel does not
	// implement, whose scripts then do not compile here (see
	// sieve.ParseExtensions).
	Extensions *string `toml:"extensions"`
	// exts is Extensions read, by validate.
	exts sieve.Extensions
	// GlobalExtensions are those only the administrator's scripts (before,
	// after, and those include :global names) may require, on top of
	// Extensions: Pigeonhole's sieve_global_extensions, same syntax and
	// meaning ("editheader spamtest" or "+editheader +spamtest": its set
	// starts empty, not at the default). One named here is refused to the
	// users' scripts even when Extensions has it, and ManageSieve does not
	// offer it. Unset or "": none.
	GlobalExtensions string `toml:"global_extensions"`
	// gexts is GlobalExtensions read, by validate.
	gexts sieve.GlobalExtensions
	// warnings are what validate found and ignored in Extensions and
	// GlobalExtensions, Pigeonhole's warnings: logged at start, shown
	// by check-config.
	warnings []keyWarning
}

// keyWarning is a setting taken but warned of: its key and the warning.
type keyWarning struct{ key, msg string }

// MonitorConfig is about the http listener (listen.http).
type MonitorConfig struct {
	// TrustedNetworks may read /metrics and why /healthz fails; others get
	// 403 and a bare status. Autoconfig is public.
	TrustedNetworks []string `toml:"trusted_networks"`
}

type ListenConfig struct {
	SMTP        string `toml:"smtp"`
	Submission  string `toml:"submission"`
	Submissions string `toml:"submissions"`
	IMAPS       string `toml:"imaps"`
	IMAP        string `toml:"imap"`
	// ManageSieve (RFC 5804): plain with STARTTLS, as Dovecot's
	// managesieve-login on 4190.
	ManageSieve string `toml:"managesieve"`
	HTTP        string `toml:"http"`
	// Cluster is the internal mail hop of a cluster node: SMTP where the
	// other nodes hand over copies for the users homed here, after AUTH
	// with the cluster secret. Off ("") on a single node.
	Cluster string `toml:"cluster"`
	// Local is the path of the local submission socket, where `courriel
	// sendmail` (/usr/sbin/sendmail) hands over cron's, scripts' and
	// PHP's mail, as Postfix's postdrop. On by default at
	// DefaultLocalSocket, as Postfix's sendmail always works; "" turns
	// it off.
	Local string `toml:"local"`
	// localSet: the configuration names listen.local. A default socket
	// that cannot be made (a read-only /run under an older unit file) is
	// logged and serve goes on without it; one the admin asked for stops
	// the start, as a busy port does.
	localSet bool
}

// DefaultLocalSocket is listen.local's default, and where sendmail looks
// when it cannot read the configuration (which holds the LDAP password).
const DefaultLocalSocket = "/run/courriel/sendmail.sock"

// SMTPConfig applies to each SMTP listener (smtp, submission, submissions).
type SMTPConfig struct {
	// ConnectionLimitPerIP: connections from one address (one /64 for
	// IPv6) to one listener (Postfix: smtpd_client_connection_count_limit).
	ConnectionLimitPerIP int `toml:"connection_limit_per_ip"`
	// ConnectionLimit: connections to one listener.
	ConnectionLimit int `toml:"connection_limit"`
	// ForbidUnauthPipelining: 554 and disconnect for a client that sends
	// before the greeting or past a command that must end a pipelined
	// group (Postfix 3.9: smtpd_forbid_unauth_pipelining = yes).
	ForbidUnauthPipelining bool `toml:"forbid_unauth_pipelining"`
	// BareNewline: "normalize" or "reject" (Postfix: smtpd_forbid_bare_newline).
	BareNewline string `toml:"bare_newline"`
	// RejectUnauthSenderLoginMismatch: on port 25, a client that did not
	// log in may not use a sender address [ldap.query.senders] gives an
	// owner (Postfix: reject_unauth_sender_login_mismatch, half of the
	// seed's reject_sender_login_mismatch). Default true.
	RejectUnauthSenderLoginMismatch bool `toml:"reject_unauth_sender_login_mismatch"`
}

// IMAPConfig is about the IMAP listeners (imaps, imap) together.
type IMAPConfig struct {
	// ConnectionLimitPerIP: connections from one address (one /64 for
	// IPv6) that have not logged in yet.
	ConnectionLimitPerIP int `toml:"connection_limit_per_ip"`
	// UserIPConnectionLimit: logged-in connections of one user from one
	// address (Dovecot: mail_max_userip_connections).
	UserIPConnectionLimit int `toml:"user_ip_connection_limit"`
	// ConnectionLimit: connections in all.
	ConnectionLimit int `toml:"connection_limit"`
}

// ManageSieveConfig is about the ManageSieve listener and the users'
// Sieve scripts (kept as Pigeonhole keeps them: ~/sieve/, ~/.dovecot.sieve).
type ManageSieveConfig struct {
	// MaxScripts: scripts of one user; 0 is no limit (Pigeonhole:
	// sieve_quota_max_scripts).
	MaxScripts int `toml:"max_scripts"`
	// MaxStorage: bytes of one user's scripts together; 0 is no limit
	// (sieve_quota_max_storage).
	MaxStorage int64 `toml:"max_storage"`
	// MaxScriptSize: bytes of one script (sieve_max_script_size).
	MaxScriptSize int64 `toml:"max_script_size"`
	// ConnectionLimitPerIP: connections from one address not logged in yet.
	ConnectionLimitPerIP int `toml:"connection_limit_per_ip"`
	// UserIPConnectionLimit: logged-in connections of one user from one address.
	UserIPConnectionLimit int `toml:"user_ip_connection_limit"`
	// ConnectionLimit: connections in all.
	ConnectionLimit int `toml:"connection_limit"`
}

type TLSConfig struct {
	CertFile   string `toml:"cert_file"`
	KeyFile    string `toml:"key_file"`
	MinVersion string `toml:"min_version"` // "1.2" (default) or "1.3"
	// ACME gets the certificate from an ACME CA (TLS-ALPN-01) instead of
	// cert_file/key_file.
	ACME ACMEConfig `toml:"acme"`
	// Listeners overrides the certificate or minimum version of one
	// listener (smtp, submission, submissions, imaps, imap, managesieve).
	Listeners map[string]TLSListenerConfig `toml:"listeners"`
	// Certificates are more pairs, served to the clients that ask for a
	// name of theirs (SNI) or cannot use the main pair (an RSA pair
	// beside an ECDSA one): [[tls.certificates]], on every listener.
	Certificates []TLSPair `toml:"certificates"`
}

// TLSPair is a certificate file and its key.
type TLSPair struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// ACMEConfig turns on ACME when DirectoryURL is set.
type ACMEConfig struct {
	DirectoryURL string   `toml:"directory_url"`
	Email        string   `toml:"email"`
	Hostnames    []string `toml:"hostnames"` // default: [myhostname]
	CacheDir     string   `toml:"cache_dir"`
	CAFile       string   `toml:"ca_file"` // CA of the ACME server itself; "" = system roots
}

func (a ACMEConfig) enabled() bool { return a.DirectoryURL != "" }

// TLSListenerConfig is one listener's TLS settings; empty fields inherit [tls].
type TLSListenerConfig struct {
	CertFile   string `toml:"cert_file"`
	KeyFile    string `toml:"key_file"`
	MinVersion string `toml:"min_version"`
}

// tlsListenerNames are the listeners that speak TLS.
var tlsListenerNames = []string{"smtp", "submission", "submissions", "imaps", "imap", "managesieve"}

// listenerTLS returns the effective TLS settings of a listener.
func (c *Config) listenerTLS(name string) TLSListenerConfig {
	eff := TLSListenerConfig{CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, MinVersion: c.TLS.MinVersion}
	if o, ok := c.TLS.Listeners[name]; ok {
		if o.CertFile != "" {
			eff.CertFile, eff.KeyFile = o.CertFile, o.KeyFile
		}
		if o.MinVersion != "" {
			eff.MinVersion = o.MinVersion
		}
	}
	return eff
}

type LDAPConfig struct {
	URLs             []string      `toml:"urls"`
	StartTLS         bool          `toml:"start_tls"`
	CAFile           string        `toml:"ca_file"`
	RequireCert      bool          `toml:"require_cert"`
	BindDN           string        `toml:"bind_dn"`
	BindPassword     string        `toml:"bind_password"`
	BindPasswordFile string        `toml:"bind_password_file"`
	SearchBase       string        `toml:"search_base"`
	Scope            string        `toml:"scope"`
	DialTimeout      time.Duration `toml:"dial_timeout"`
	Timeout          time.Duration `toml:"timeout"`
	PoolSize         int           `toml:"pool_size"`
	CacheTTL         time.Duration `toml:"cache_ttl"`
	NegativeCacheTTL time.Duration `toml:"negative_cache_ttl"`
	AuthBindUserDN   string        `toml:"auth_bind_userdn"`
	MinUID           int           `toml:"min_uid"`
	// Quota attributes of a mailbox's entry (none: no quota).
	QuotaAttribute         string       `toml:"quota_attribute"`
	QuotaMessagesAttribute string       `toml:"quota_messages_attribute"`
	Query                  QueryConfigs `toml:"query"`
	// WatchChanges keeps a persistent sync search (RFC 4533) on the first
	// URL, the node's replica, that drops cached answers on every change.
	// Unset: on with [cluster], off on a single node.
	WatchChanges *bool `toml:"watch_changes"`
	// WriteURLs are the provider's URLs, where courriel passwd -user and
	// move-user write; empty: writes follow the replica's referral.
	WriteURLs []string `toml:"write_urls"`
	// WriteBindDN and the file holding its password: the account writes
	// bind as (default: bind_dn).
	WriteBindDN           string `toml:"write_bind_dn"`
	WriteBindPasswordFile string `toml:"write_bind_password_file"`

	writeBindPassword string // read from WriteBindPasswordFile by ParseConfig
}

// watchChanges says whether the directory's change watcher runs.
func (c *Config) watchChanges() bool {
	if c.LDAP.WatchChanges != nil {
		return *c.LDAP.WatchChanges
	}
	return c.Cluster.enabled()
}

type QueryConfigs struct {
	Domains QueryConfig `toml:"domains"`
	Aliases QueryConfig `toml:"aliases"`
	Mailbox QueryConfig `toml:"mailbox"`
	UID     QueryConfig `toml:"uid"`
	GID     QueryConfig `toml:"gid"`
	Senders QueryConfig `toml:"senders"`
	User    QueryConfig `toml:"user"`
}

type QueryConfig struct {
	Filter          string `toml:"filter"`
	ResultAttribute string `toml:"result_attribute"`
	ResultFormat    string `toml:"result_format"`
}

type DeliveryConfig struct {
	MaildirBase string `toml:"maildir_base"`
	Sync        string `toml:"sync"`
}

type QueueConfig struct {
	Dir           string            `toml:"dir"`
	TLSPolicy     string            `toml:"tls_policy"`
	CAPath        string            `toml:"ca_path"`
	MaxLifetime   time.Duration     `toml:"max_lifetime"`
	DelayWarning  time.Duration     `toml:"delay_warning"`
	Relayhost     string            `toml:"relayhost"`
	RelayhostTLS  string            `toml:"relayhost_tls"`
	RelayhostUser string            `toml:"relayhost_username"`
	RelayhostPass string            `toml:"relayhost_password"`
	DNSServer     string            `toml:"dns_server"`
	Routes        map[string]string `toml:"routes"`
	// TLSPolicies are the admin's TLS levels per recipient domain (Postfix
	// smtp_tls_policy_maps): they replace tls_policy and the receiver's
	// DANE and MTA-STS policies for MX deliveries to that domain.
	TLSPolicies map[string]string `toml:"tls_policies"`
	// DANE (RFC 7672): TLSA records of MX hosts, through DNSSECResolver.
	DANE bool `toml:"dane"`
	// DANERoutes applies DANE to the relayhost and [queue.routes] hosts
	// given by name too: for "[HOST]", TLSA at _PORT._tcp.HOST when HOST's
	// addresses are validated (Postfix: smtp_tls_security_level = dane with
	// [relayhost]); for "HOST", its MX hosts' as for a recipient domain.
	DANERoutes bool `toml:"dane_routes"`
	// DNSSECResolver is the DNSSEC-validating resolver ("host:port") whose
	// AD bit DANE trusts, as Postfix's smtp_dns_support_level = dnssec:
	// it should be on loopback (a local unbound). Required with dane.
	DNSSECResolver string `toml:"dnssec_resolver"`
	// MTASTS (RFC 8461): recipient domains' MTA-STS policies, fetched over
	// HTTPS and cached in <dir>/mta-sts.
	MTASTS bool `toml:"mta_sts"`
	// TLSRPT (RFC 8460): count outbound TLS sessions per policy domain in
	// <dir>/tlsrpt and mail the daily reports to the domains that ask.
	TLSRPT bool `toml:"tlsrpt"`
	// Concurrency is how many messages are delivered at once (Postfix:
	// default_process_limit); DestinationConcurrency how many sessions
	// one destination gets at most (default_destination_concurrency_limit):
	// 0 for a fifth of Concurrency.
	Concurrency            int `toml:"concurrency"`
	DestinationConcurrency int `toml:"destination_concurrency"`
	// ProxyInterfaces are addresses that reach this host's port 25 from
	// outside (a NAT or a load balancer in front: Postfix's
	// proxy_interfaces): an MX host at one of them is this host, as one
	// at listen.smtp's addresses is (the loop detection).
	ProxyInterfaces []string `toml:"proxy_interfaces"`
}

// MailAuthConfig is mail authentication (courriel/mailauth): DKIM keys
// for what our users send, and the SPF/DKIM/DMARC checks of port 25.
type MailAuthConfig struct {
	// InboundChecks runs SPF, DKIM and DMARC on mail arriving on port 25
	// (not from authenticated clients or mynetworks).
	InboundChecks bool `toml:"inbound_checks"`
	// DMARCReject is what a DMARC p=reject failure gets: "reject"
	// (550 5.7.1) or "quarantine" (the Junk folder).
	DMARCReject string `toml:"dmarc_reject"`
	// DNSServer ("host:port") answers the checks; default [queue]
	// dns_server, else the system's resolver.
	DNSServer string `toml:"dns_server"`
	// SRSSecret enables SRS for what port 25 forwards outside: the
	// sender becomes SRS0=…@myhostname, authenticated with this secret
	// (at least 16 characters; changing it voids the addresses of
	// forwards still in flight).
	SRSSecret string `toml:"srs_secret"`
	// SRSSecretFile holds the secret instead (its first line; the demo's
	// DIR/srs-secret), read with the configuration.
	SRSSecretFile string `toml:"srs_secret_file"`
	// ARCSealDomain, when set, ARC-seals (RFC 8617) what port 25 forwards
	// outside with the active DKIM key of this domain (one of
	// [[mailauth.dkim]]; its RSA key, else its Ed25519 one). Needs
	// inbound_checks: the seal carries their results.
	ARCSealDomain string       `toml:"arc_seal_domain"`
	DKIM          []DKIMConfig `toml:"dkim"`
}

// DKIMConfig is one selector of one domain ([[mailauth.dkim]]): its
// Ed25519 key is published as "<selector>-ed25519._domainkey.<domain>",
// its RSA key as "<selector>-rsa._domainkey.<domain>". Several selectors
// of a domain may be listed (rotation); the one marked active signs.
type DKIMConfig struct {
	Domain         string `toml:"domain"`
	Selector       string `toml:"selector"`
	Ed25519KeyFile string `toml:"ed25519_key_file"`
	RSAKeyFile     string `toml:"rsa_key_file"`
	Active         bool   `toml:"active"`
}

// dnsServer is the resolver address of the checks.
func (m MailAuthConfig) dnsServer(c *Config) string {
	if m.DNSServer != "" {
		return m.DNSServer
	}
	return c.Queue.DNSServer
}

// defaultConfig holds every default; a file only overrides.
func defaultConfig() Config {
	q := directory.DefaultQueries()
	qc := func(q directory.Query) QueryConfig {
		return QueryConfig{Filter: q.Filter, ResultAttribute: q.ResultAttribute, ResultFormat: q.ResultFormat}
	}
	return Config{
		MessageSizeLimit: 10240000,
		RecipientLimit:   1000,
		LogLevel:         "info",
		Listen:           ListenConfig{SMTP: ":25", Submission: ":587", Submissions: ":465", IMAPS: ":993", ManageSieve: ":4190", Local: DefaultLocalSocket},
		SMTP: SMTPConfig{ForbidUnauthPipelining: true,
			ConnectionLimitPerIP: smtp.DefaultMaxConnsPerIP, ConnectionLimit: smtp.DefaultMaxConns,
			BareNewline: "normalize", RejectUnauthSenderLoginMismatch: true,
		},
		IMAP: IMAPConfig{
			ConnectionLimitPerIP: imap.DefaultMaxConnsPerIP, UserIPConnectionLimit: imap.DefaultMaxUserIPConns,
			ConnectionLimit: imap.DefaultMaxConns,
		},
		ManageSieve: ManageSieveConfig{
			MaxScriptSize: scripts.DefaultMaxScriptSize, ConnectionLimitPerIP: managesieve.DefaultMaxConnsPerIP,
			UserIPConnectionLimit: managesieve.DefaultMaxUserIPConns, ConnectionLimit: managesieve.DefaultMaxConns,
		},
		LDAP: LDAPConfig{
			URLs: []string{"ldap://localhost"}, StartTLS: true, RequireCert: true, Scope: "sub",
			DialTimeout: 5 * time.Second, Timeout: 10 * time.Second, PoolSize: 4,
			CacheTTL: 60 * time.Second, NegativeCacheTTL: 10 * time.Second, MinUID: 100,
			Query: QueryConfigs{
				Domains: qc(q.Domains), Aliases: qc(q.Aliases), Mailbox: qc(q.Mailbox),
				UID: qc(q.UID), GID: qc(q.GID), Senders: qc(q.Senders), User: qc(q.User),
			},
		},
		// Defaults that consumers would also take for "": written here
		// so that check-config prints them, as postconf -d does.
		TLS:      TLSConfig{MinVersion: "1.2"},
		Delivery: DeliveryConfig{MaildirBase: "/var/vmail", Sync: "auto"},
		Sieve:    SieveConfig{Enabled: true, MaxActions: 32, MaxRedirects: 4, MaxCPUTime: 30 * time.Second, ResourceUsageTimeout: time.Hour},
		MailAuth: MailAuthConfig{InboundChecks: true, DMARCReject: "reject"},
		Monitor:  MonitorConfig{TrustedNetworks: []string{"127.0.0.0/8", "::1/128"}},
		Queue: QueueConfig{
			Dir: "/var/spool/courriel", TLSPolicy: "verify", CAPath: "/etc/ssl/certs",
			MaxLifetime: 5 * 24 * time.Hour, Concurrency: 100,
		},
	}
}

// ConfigError points at the file, line and key of a problem.
type ConfigError struct {
	File string
	Line int // 0 when unknown
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// LoadConfig reads, decodes strictly and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	return ParseConfig(path, data)
}

// ParseConfig decodes data (named path in errors) over the defaults,
// validates it and reads the files it names (fileProblems): every refusal
// of a start is refused here, so check-config and SIGHUP refuse it too.
func ParseConfig(path string, data []byte) (*Config, error) {
	cfg, problems, err := parseConfig(path, data)
	if err != nil {
		return nil, err
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return cfg, nil
}

// parseConfig is ParseConfig with the problems of the files the
// configuration names apart, all of them: err is a configuration that
// cannot be used at all, problems are missing or unreadable files (each a
// *ConfigError), so check-config can list every one in a run.
func parseConfig(path string, data []byte) (*Config, []error, error) {
	cfg := defaultConfig()
	// Lists replace the defaults instead of merging into them.
	cfg.LDAP.URLs = nil
	cfg.Monitor.TrustedNetworks = nil
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, &ConfigError{File: path, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		// Type errors come as plain errors that still name the line and key.
		ce := &ConfigError{File: path, Msg: err.Error()}
		if m := typeErrRe.FindStringSubmatch(err.Error()); m != nil {
			ce.Line, _ = strconv.Atoi(m[1])
			ce.Key, ce.Msg = m[2], m[3]
		}
		return nil, nil, ce
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, nil, &ConfigError{File: path, Line: lineOfKey(data, k), Key: k.String(), Msg: "unknown key"}
	}
	if len(cfg.LDAP.URLs) == 0 {
		cfg.LDAP.URLs = defaultConfig().LDAP.URLs
	}
	cfg.Listen.localSet = md.IsDefined("listen", "local")
	if !md.IsDefined("monitor", "trusted_networks") {
		cfg.Monitor.TrustedNetworks = defaultConfig().Monitor.TrustedNetworks
	}
	if err := cfg.validate(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) {
			ce.File = path
			if ce.Line == 0 && ce.Key != "" {
				ce.Line = lineOfKey(data, strings.Split(ce.Key, "."))
			}
			return nil, nil, ce
		}
		return nil, nil, &ConfigError{File: path, Msg: err.Error()}
	}
	var problems []error
	for _, err := range cfg.readFiles() {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			ce = &ConfigError{Msg: err.Error()}
		}
		ce.File = path
		if ce.Line == 0 && ce.Key != "" {
			ce.Line = lineOfKey(data, strings.Split(ce.Key, "."))
		}
		problems = append(problems, ce)
	}
	return &cfg, problems, nil
}

// readFiles reads the secrets the configuration names and checks the CA
// files serve loads; it returns every problem, each a *ConfigError.
func (c *Config) readFiles() []error {
	var problems []error
	if f := c.LDAP.BindPasswordFile; f != "" {
		if pw, err := os.ReadFile(f); err != nil {
			problems = append(problems, keyErr("ldap.bind_password_file", "%v", err))
		} else {
			c.LDAP.BindPassword = strings.TrimRight(string(pw), "\r\n")
		}
	}
	if f := c.LDAP.WriteBindPasswordFile; f != "" {
		if pw, err := os.ReadFile(f); err != nil {
			problems = append(problems, keyErr("ldap.write_bind_password_file", "%v", err))
		} else {
			c.LDAP.writeBindPassword = strings.TrimRight(string(pw), "\r\n")
		}
	}
	if f := c.MailAuth.SRSSecretFile; f != "" {
		// Checked here, not by validate: the demo validates its
		// configuration with the secret already read.
		secret, err := readSRSSecret(f)
		if c.MailAuth.SRSSecret != "" {
			err = errors.New("set srs_secret or srs_secret_file, not both")
		}
		if err != nil {
			problems = append(problems, keyErr("mailauth.srs_secret_file", "%v", err))
		} else {
			c.MailAuth.SRSSecret = secret
		}
	}
	if c.LDAP.CAFile != "" {
		// validate checked the options without the file: its reading
		// is the only error left.
		if _, err := directory.New(c.directoryOptions()); err != nil {
			msg := strings.TrimPrefix(err.Error(), "directory: ")
			problems = append(problems, keyErr(ldapKeyOf(msg), "%s", msg))
		}
	}
	if f := c.Cluster.SecretFile; f != "" {
		secret, err := cluster.ReadSecret(f)
		switch {
		case err != nil:
			problems = append(problems, keyErr("cluster.secret_file", "%v", err))
		case len(secret) < cluster.MinSecretLen:
			problems = append(problems, keyErr("cluster.secret_file", "the secret has %d bytes, at least %d needed", len(secret), cluster.MinSecretLen))
		default:
			c.Cluster.secret = secret
		}
	}
	if c.Queue.needRootCAs() && c.Queue.CAPath != "" {
		if err := checkCAPath(c.Queue.CAPath); err != nil {
			problems = append(problems, keyErr("queue.ca_path", "%v", err))
		}
	}
	return problems
}

// readSRSSecret reads an SRS secret file: its first line, at least 16
// characters.
func readSRSSecret(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	secret, _, _ := strings.Cut(string(data), "\n")
	secret = strings.TrimSpace(secret)
	if len(secret) < 16 {
		return "", fmt.Errorf("%s: the secret has %d characters, at least 16 needed", file, len(secret))
	}
	return secret, nil
}

// needRootCAs says whether the queue verifies certificates, with the CAs
// of ca_path: tls_policy or a tls_policies entry verify, MTA-STS, TLSRPT.
func (q QueueConfig) needRootCAs() bool {
	need := q.TLSPolicy == "verify" || q.MTASTS || q.TLSRPT
	for _, p := range q.TLSPolicies {
		need = need || p == "verify"
	}
	return need
}

// checkCAPath fails where tlsconf.LoadCAPool fails, without loading a
// whole system store on every configuration load: a directory passes at
// its first file with a certificate.
func checkCAPath(p string) error {
	st, err := os.Stat(p)
	if err != nil || !st.IsDir() {
		_, err := tlsconf.LoadCAPool(p)
		return err
	}
	entries, err := os.ReadDir(p)
	if err == nil {
		for _, e := range entries { // sorted by name
			f := filepath.Join(p, e.Name())
			if st, err := os.Stat(f); err != nil || !st.Mode().IsRegular() {
				continue
			}
			if _, err := tlsconf.LoadCAPool(f); err == nil {
				return nil
			}
		}
	}
	_, err = tlsconf.LoadCAPool(p)
	return err
}

var typeErrRe = regexp.MustCompile(`line (\d+) \(last key "([^"]*)"\): (.*)$`)

// lineOfKey finds the line defining key (table header then key = ...).
// The TOML library does not expose positions of undecoded keys.
func lineOfKey(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	lines := strings.Split(string(data), "\n")
	table := strings.Join(key[:len(key)-1], ".")
	last := regexp.QuoteMeta(key[len(key)-1])
	keyRe := regexp.MustCompile(`^\s*"?` + last + `"?\s*=`)
	hdrRe := regexp.MustCompile(`^\s*\[\s*([^\]]+?)\s*\]`)
	current := ""
	for i, l := range lines {
		if m := hdrRe.FindStringSubmatch(l); m != nil {
			current = strings.ReplaceAll(m[1], " ", "")
			if current == strings.Join(key, ".") {
				return i + 1
			}
			continue
		}
		if keyRe.MatchString(l) && (current == table || strings.HasSuffix(table, current) && current != "") {
			return i + 1
		}
	}
	// Dotted keys or inline tables: settle for the last component.
	for i, l := range lines {
		if strings.Contains(l, key[len(key)-1]) {
			return i + 1
		}
	}
	return 0
}

func keyErr(key, format string, args ...any) error {
	return &ConfigError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	if c.MyHostname == "" {
		return keyErr("myhostname", "required: the mail host name (seed: xoyize.xyz)")
	}
	if strings.ContainsAny(c.MyHostname, " @/\\") || strings.HasSuffix(c.MyHostname, ".") {
		return keyErr("myhostname", "%q is not a host name", c.MyHostname)
	}
	for _, d := range c.MailboxDomains {
		if d == "" || strings.ContainsAny(d, " @/\\") {
			return keyErr("mailbox_domains", "%q is not a domain", d)
		}
	}
	if _, err := c.Networks(); err != nil {
		return keyErr("mynetworks", "%v", err)
	}
	if _, err := parsePrefixes(c.Monitor.TrustedNetworks); err != nil {
		return keyErr("monitor.trusted_networks", "%v", err)
	}
	if c.MessageSizeLimit < 1024 || c.MessageSizeLimit > 1<<31 {
		return keyErr("message_size_limit", "%d is out of range (1024 .. 2147483648)", c.MessageSizeLimit)
	}
	if c.RecipientLimit < 1 || c.RecipientLimit > 100000 {
		return keyErr("recipient_limit", "%d is out of range (1 .. 100000)", c.RecipientLimit)
	}
	if c.SMTP.ConnectionLimitPerIP < 1 || c.SMTP.ConnectionLimitPerIP > 100000 {
		return keyErr("smtp.connection_limit_per_ip", "%d is out of range (1 .. 100000)", c.SMTP.ConnectionLimitPerIP)
	}
	if c.SMTP.ConnectionLimit < c.SMTP.ConnectionLimitPerIP || c.SMTP.ConnectionLimit > 1000000 {
		return keyErr("smtp.connection_limit", "%d is out of range (connection_limit_per_ip .. 1000000)", c.SMTP.ConnectionLimit)
	}
	if c.IMAP.ConnectionLimitPerIP < 1 || c.IMAP.ConnectionLimitPerIP > 100000 {
		return keyErr("imap.connection_limit_per_ip", "%d is out of range (1 .. 100000)", c.IMAP.ConnectionLimitPerIP)
	}
	if c.IMAP.UserIPConnectionLimit < 1 || c.IMAP.UserIPConnectionLimit > 100000 {
		return keyErr("imap.user_ip_connection_limit", "%d is out of range (1 .. 100000)", c.IMAP.UserIPConnectionLimit)
	}
	if c.IMAP.ConnectionLimit < c.IMAP.ConnectionLimitPerIP || c.IMAP.ConnectionLimit > 1000000 {
		return keyErr("imap.connection_limit", "%d is out of range (connection_limit_per_ip .. 1000000)", c.IMAP.ConnectionLimit)
	}
	if m := c.ManageSieve; m.MaxScripts < 0 || m.MaxScripts > 1000000 {
		return keyErr("managesieve.max_scripts", "%d is out of range (0 .. 1000000; 0 is no limit)", m.MaxScripts)
	}
	if m := c.ManageSieve; m.MaxStorage < 0 || m.MaxStorage > 1<<40 {
		return keyErr("managesieve.max_storage", "%d is out of range (0 .. 1099511627776; 0 is no limit)", m.MaxStorage)
	}
	if m := c.ManageSieve; m.MaxScriptSize < 1024 || m.MaxScriptSize > 64<<20 {
		return keyErr("managesieve.max_script_size", "%d is out of range (1024 .. 67108864)", m.MaxScriptSize)
	}
	if m := c.ManageSieve; m.ConnectionLimitPerIP < 1 || m.ConnectionLimitPerIP > 100000 {
		return keyErr("managesieve.connection_limit_per_ip", "%d is out of range (1 .. 100000)", m.ConnectionLimitPerIP)
	}
	if m := c.ManageSieve; m.UserIPConnectionLimit < 1 || m.UserIPConnectionLimit > 100000 {
		return keyErr("managesieve.user_ip_connection_limit", "%d is out of range (1 .. 100000)", m.UserIPConnectionLimit)
	}
	if m := c.ManageSieve; m.ConnectionLimit < m.ConnectionLimitPerIP || m.ConnectionLimit > 1000000 {
		return keyErr("managesieve.connection_limit", "%d is out of range (connection_limit_per_ip .. 1000000)", m.ConnectionLimit)
	}
	if _, err := smtp.ParseBareNewline(c.SMTP.BareNewline); err != nil {
		return keyErr("smtp.bare_newline", "%q: want normalize or reject", c.SMTP.BareNewline)
	}
	if err := c.Cluster.validate(c); err != nil {
		return err
	}
	if err := c.ProxyProtocol.validate(); err != nil {
		return err
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return keyErr("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	for key, addr := range map[string]string{"listen.smtp": c.Listen.SMTP, "listen.submission": c.Listen.Submission,
		"listen.submissions": c.Listen.Submissions, "listen.imaps": c.Listen.IMAPS, "listen.imap": c.Listen.IMAP, "listen.managesieve": c.Listen.ManageSieve, "listen.http": c.Listen.HTTP, "listen.cluster": c.Listen.Cluster} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return keyErr(key, "%q: want host:port, or \"\" for off", addr)
		}
	}
	if p := c.Listen.Local; p != "" {
		switch {
		case !filepath.IsAbs(p) || filepath.Clean(p) != p:
			return keyErr("listen.local", "%q: want an absolute, clean path, or \"\" for off", p)
		case len(p) > maxSocketPath:
			return keyErr("listen.local", "%q: longer than a Unix socket path may be (%d bytes)", p, maxSocketPath)
		}
	}
	needTLS := c.Listen.Submission != "" || c.Listen.Submissions != "" || c.Listen.IMAPS != "" || c.Listen.IMAP != "" || c.Listen.SMTP != "" || c.Listen.ManageSieve != ""
	if needTLS && !c.TLS.ACME.enabled() && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return keyErr("tls.cert_file", "required: a certificate and key (tls.cert_file, tls.key_file), or [tls.acme]")
	}
	if a := c.TLS.ACME; a.enabled() {
		if !strings.HasPrefix(a.DirectoryURL, "https://") {
			return keyErr("tls.acme.directory_url", "%q must be an https:// URL", a.DirectoryURL)
		}
		if !filepath.IsAbs(a.CacheDir) {
			return keyErr("tls.acme.cache_dir", "required: an absolute directory for the account key and certificates")
		}
		if c.TLS.CertFile != "" {
			return keyErr("tls.cert_file", "set cert_file/key_file or [tls.acme], not both")
		}
	}
	if err := checkMinVersion("tls.min_version", c.TLS.MinVersion); err != nil {
		return err
	}
	if err := checkTLSPaths("tls.", c.TLS.CertFile, c.TLS.KeyFile); err != nil {
		return err
	}
	for i, p := range c.TLS.Certificates {
		key := fmt.Sprintf("tls.certificates[%d].", i)
		switch {
		case c.TLS.ACME.enabled():
			return keyErr(key+"cert_file", "[tls.acme] serves the names it holds; [[tls.certificates]] is for certificate files")
		case p.CertFile == "" || p.KeyFile == "":
			return keyErr(key+"cert_file", "set cert_file and key_file together")
		}
		if err := checkTLSPaths(key, p.CertFile, p.KeyFile); err != nil {
			return err
		}
	}
	for name, l := range c.TLS.Listeners {
		key := "tls.listeners." + name
		if !slices.Contains(tlsListenerNames, name) {
			return keyErr(key, "unknown listener (want one of %s)", strings.Join(tlsListenerNames, ", "))
		}
		if (l.CertFile == "") != (l.KeyFile == "") {
			return keyErr(key+".cert_file", "set cert_file and key_file together")
		}
		if err := checkTLSPaths(key+".", l.CertFile, l.KeyFile); err != nil {
			return err
		}
		if err := checkMinVersion(key+".min_version", l.MinVersion); err != nil {
			return err
		}
	}
	if c.LDAP.BindPassword != "" && c.LDAP.BindPasswordFile != "" {
		return keyErr("ldap.bind_password_file", "set bind_password or bind_password_file, not both")
	}
	if (c.LDAP.WriteBindDN == "") != (c.LDAP.WriteBindPasswordFile == "") {
		return keyErr("ldap.write_bind_dn", "set write_bind_dn and write_bind_password_file together")
	}
	if c.LDAP.SearchBase == "" {
		return keyErr("ldap.search_base", "required (seed: ou=mail,dc=xoyize,dc=xyz)")
	}
	// The CA file is read by readFiles, with the other files.
	dopts := c.directoryOptions()
	dopts.CAFile = ""
	if _, err := directory.New(dopts); err != nil {
		msg := strings.TrimPrefix(err.Error(), "directory: ")
		return keyErr(ldapKeyOf(msg), "%s", msg)
	}
	if c.Delivery.MaildirBase != "" && (!filepath.IsAbs(c.Delivery.MaildirBase) || filepath.Clean(c.Delivery.MaildirBase) != c.Delivery.MaildirBase) {
		return keyErr("delivery.maildir_base", "%q must be an absolute clean path", c.Delivery.MaildirBase)
	}
	if _, err := delivery.ParseSyncMode(c.Delivery.Sync); err != nil {
		return keyErr("delivery.sync", "%v", err)
	}
	for _, list := range []struct {
		key   string
		paths []string
	}{{"sieve.before", c.Sieve.Before}, {"sieve.after", c.Sieve.After}} {
		for _, p := range list.paths {
			if !filepath.IsAbs(p) {
				return keyErr(list.key, "%q must be an absolute path", p)
			}
		}
	}
	if g := c.Sieve.Global; g != "" && !filepath.IsAbs(g) {
		return keyErr("sieve.global", "%q must be an absolute path", g)
	}
	if c.Sieve.MaxActions <= 0 || c.Sieve.MaxRedirects <= 0 || c.Sieve.MaxCPUTime <= 0 {
		return keyErr("sieve", "max_actions, max_redirects and max_cpu_time must be positive")
	}
	// Names not known are ignored, as Pigeonhole ignores them: a
	// warning, never a refused start.
	c.Sieve.warnings = nil
	if c.Sieve.Extensions != nil {
		x, warns := sieve.ParseExtensions(*c.Sieve.Extensions)
		for _, w := range warns {
			c.Sieve.warnings = append(c.Sieve.warnings, keyWarning{"sieve.extensions", w})
		}
		c.Sieve.exts = x
	}
	gexts, warns := sieve.ParseGlobalExtensions(c.Sieve.GlobalExtensions)
	for _, w := range warns {
		c.Sieve.warnings = append(c.Sieve.warnings, keyWarning{"sieve.global_extensions", w})
	}
	c.Sieve.gexts = gexts
	if c.Sieve.ResourceUsageTimeout < 0 {
		return keyErr("sieve.resource_usage_timeout", "%v must not be negative (0 turns the limit off)", c.Sieve.ResourceUsageTimeout)
	}
	if !filepath.IsAbs(c.Queue.Dir) {
		return keyErr("queue.dir", "%q must be an absolute path", c.Queue.Dir)
	}
	switch c.Queue.TLSPolicy {
	case "none", "may", "encrypt", "verify":
	default:
		return keyErr("queue.tls_policy", "%q: want none, may, encrypt or verify", c.Queue.TLSPolicy)
	}
	for _, a := range c.Queue.ProxyInterfaces {
		if _, err := netip.ParseAddr(a); err != nil {
			return keyErr("queue.proxy_interfaces", "%q: want an IP address", a)
		}
	}
	switch c.Queue.RelayhostTLS {
	case "", "starttls", "implicit":
	default:
		return keyErr("queue.relayhost_tls", "%q: want starttls or implicit", c.Queue.RelayhostTLS)
	}
	if c.Queue.MaxLifetime <= 0 {
		return keyErr("queue.max_lifetime", "must be positive")
	}
	if c.Queue.Concurrency < 0 || c.Queue.Concurrency > 10000 {
		return keyErr("queue.concurrency", "%d is out of range (0 for the default .. 10000)", c.Queue.Concurrency)
	}
	if c.Queue.DestinationConcurrency < 0 || c.Queue.DestinationConcurrency > 10000 {
		return keyErr("queue.destination_concurrency", "%d is out of range (0 for a fifth of concurrency .. 10000)", c.Queue.DestinationConcurrency)
	}
	// A negative timeout made every LDAP search fail at once, reported as
	// an i/o timeout that sent the admin after the network.
	for _, d := range []struct {
		key      string
		v, limit time.Duration
	}{
		{"ldap.dial_timeout", c.LDAP.DialTimeout, 10 * time.Minute},
		{"ldap.timeout", c.LDAP.Timeout, 10 * time.Minute},
		{"ldap.cache_ttl", c.LDAP.CacheTTL, 24 * time.Hour},
		{"ldap.negative_cache_ttl", c.LDAP.NegativeCacheTTL, 24 * time.Hour},
		{"queue.delay_warning", c.Queue.DelayWarning, c.Queue.MaxLifetime},
		{"cluster.connect_timeout", c.Cluster.ConnectTimeout, time.Hour},
	} {
		if d.v < 0 || d.v > d.limit {
			return keyErr(d.key, "%v is out of range (0 for the default .. %v)", d.v, d.limit)
		}
	}
	// 0 reached the directory as "unset" and became 100 there, silently;
	// as it is, it would let mail be written as root, which Postfix's
	// virtual_minimum_uid (at least 1) refuses too. The key left out
	// keeps defaultConfig's 100.
	if c.LDAP.MinUID < 1 || c.LDAP.MinUID > math.MaxInt32 {
		return keyErr("ldap.min_uid", "%d is out of range (1 .. %d; 0 would let mail be written as root; leave the key out for 100)",
			c.LDAP.MinUID, math.MaxInt32)
	}
	// The relayhost and the routes' nexthops are in Postfix's syntax
	// (queue.ParseNexthop): "host" and "host:port" go to host's MX hosts
	// (its own addresses without MX), "[host]" and "[host]:port" to the
	// host itself. Whether the name exists is the queue's to find out at
	// delivery (a relayhost that does not defers), not a reason to refuse
	// to start: the DNS may be down while the server boots.
	if c.Queue.Relayhost != "" {
		if _, err := queue.ParseNexthop(c.Queue.Relayhost); err != nil {
			return keyErr("queue.relayhost", "%v: want host, host:port, [host] or [host]:port", err)
		}
	}
	for _, dom := range slices.Sorted(maps.Keys(c.Queue.Routes)) {
		hp := c.Queue.Routes[dom]
		if _, lit := envaddr.ParseAddrLiteral(dom); dom != "*" && !lit && !envaddr.ValidHostname(dom) {
			return keyErr("queue.routes", "%q is not a domain (want a domain, an address literal or \"*\")", dom)
		}
		if _, err := queue.ParseNexthop(hp); err != nil {
			return keyErr("queue.routes", "%s = %v: want host, host:port, [host] or [host]:port", dom, err)
		}
	}
	for dom, p := range c.Queue.TLSPolicies {
		switch p {
		case "none", "may", "encrypt", "verify":
		default:
			return keyErr("queue.tls_policies", "%s = %q: want none, may, encrypt or verify", dom, p)
		}
	}
	if c.Queue.DANERoutes && !c.Queue.DANE {
		return keyErr("queue.dane_routes", "needs dane = true")
	}
	if c.Queue.DANE && c.Queue.DNSSECResolver == "" {
		return keyErr("queue.dnssec_resolver", "required with dane = true: a DNSSEC-validating resolver, e.g. \"127.0.0.1:53\"")
	}
	if c.Queue.DNSSECResolver != "" {
		if _, _, err := net.SplitHostPort(c.Queue.DNSSECResolver); err != nil {
			return keyErr("queue.dnssec_resolver", "%q: want host:port", c.Queue.DNSSECResolver)
		}
	}
	if err := c.validateMilters(); err != nil {
		return err
	}
	return c.MailAuth.validate()
}

func (m MailAuthConfig) validate() error {
	switch m.DMARCReject {
	case "reject", "quarantine":
	default:
		return keyErr("mailauth.dmarc_reject", "%q: want reject or quarantine", m.DMARCReject)
	}
	if m.DNSServer != "" {
		if _, _, err := net.SplitHostPort(m.DNSServer); err != nil {
			return keyErr("mailauth.dns_server", "%q: want host:port", m.DNSServer)
		}
	}
	if m.SRSSecret != "" && len(m.SRSSecret) < 16 {
		return keyErr("mailauth.srs_secret", "at least 16 characters")
	}
	active := map[string]bool{}
	seen := map[string]bool{}
	for _, k := range m.DKIM {
		d := strings.ToLower(k.Domain)
		if d == "" || k.Selector == "" {
			return keyErr("mailauth.dkim", "every key needs a domain and a selector")
		}
		if k.Ed25519KeyFile == "" && k.RSAKeyFile == "" {
			return keyErr("mailauth.dkim", "%s selector %s: no key file (ed25519_key_file, rsa_key_file)", d, k.Selector)
		}
		if seen[d+" "+k.Selector] {
			return keyErr("mailauth.dkim", "%s selector %s given twice", d, k.Selector)
		}
		seen[d+" "+k.Selector] = true
		if k.Active {
			if active[d] {
				return keyErr("mailauth.dkim", "%s: more than one active selector", d)
			}
			active[d] = true
		}
	}
	if d := strings.ToLower(m.ARCSealDomain); d != "" {
		if !active[d] {
			return keyErr("mailauth.arc_seal_domain", "%q has no active selector in [[mailauth.dkim]]", m.ARCSealDomain)
		}
		if !m.InboundChecks {
			return keyErr("mailauth.arc_seal_domain", "needs inbound_checks = true (the seal carries their results)")
		}
	}
	return nil
}

// ldapKeyOf names the [ldap] key a directory option error is about.
func ldapKeyOf(msg string) string {
	for _, m := range []struct{ prefix, key string }{
		{"LDAP URL", "ldap.urls"}, {"LDAP write URL", "ldap.write_urls"}, {"write bind DN", "ldap.write_bind_dn"}, {"no LDAP server URL", "ldap.urls"}, {"LDAP CA file", "ldap.ca_file"},
		{"search base", "ldap.search_base"}, {"bind DN", "ldap.bind_dn"}, {"scope", "ldap.scope"},
		{"auth bind DN template", "ldap.auth_bind_userdn"}, {"pool size", "ldap.pool_size"},
	} {
		if strings.HasPrefix(msg, m.prefix) {
			return m.key
		}
	}
	if q, ok := strings.CutPrefix(msg, "query "); ok {
		if name, _, ok := strings.Cut(q, ":"); ok {
			return "ldap.query." + name
		}
	}
	return "ldap"
}

// checkTLSPaths refuses a relative certificate or key file: it would be
// found from the directory check-config runs in (/etc/courriel) and not
// from serve's (/ under systemd), or a SIGHUP's, so that check-config
// passed and the start failed.
func checkTLSPaths(prefix, certFile, keyFile string) error {
	for _, f := range []struct{ key, path string }{{"cert_file", certFile}, {"key_file", keyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return keyErr(prefix+f.key, "%q must be an absolute path", f.path)
		}
	}
	return nil
}

func checkMinVersion(key, v string) error {
	switch v {
	case "", "1.2", "1.3":
		return nil
	}
	return keyErr(key, "%q: want \"1.2\" or \"1.3\" (older versions are never offered)", v)
}

// Networks parses mynetworks.
func (c *Config) Networks() ([]netip.Prefix, error) { return parsePrefixes(c.MyNetworks) }

// TrustedNetworks parses monitor.trusted_networks; never nil, so an empty
// list trusts nobody instead of taking the monitor package's default.
func (c *Config) TrustedNetworks() ([]netip.Prefix, error) {
	p, err := parsePrefixes(c.Monitor.TrustedNetworks)
	if p == nil {
		p = []netip.Prefix{}
	}
	return p, err
}

// parsePrefixes parses addresses and prefixes (an address is its own /32
// or /128).
func parsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("%q is not an address or prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *Config) directoryOptions() directory.Options {
	l := c.LDAP
	q := func(q QueryConfig) directory.Query {
		return directory.Query{Filter: q.Filter, ResultAttribute: q.ResultAttribute, ResultFormat: q.ResultFormat}
	}
	return directory.Options{
		URLs: l.URLs, StartTLS: l.StartTLS, CAFile: l.CAFile, RequireCert: l.RequireCert,
		BindDN: l.BindDN, BindPassword: l.BindPassword, BaseDN: l.SearchBase, Scope: l.Scope,
		DialTimeout: l.DialTimeout, RequestTimeout: l.Timeout, PoolSize: l.PoolSize,
		CacheTTL: l.CacheTTL, NegativeCacheTTL: l.NegativeCacheTTL,
		MailboxDomains: append([]string{c.MyHostname}, c.MailboxDomains...),
		Queries: directory.Queries{
			Domains: q(l.Query.Domains), Aliases: q(l.Query.Aliases), Mailbox: q(l.Query.Mailbox),
			UID: q(l.Query.UID), GID: q(l.Query.GID), Senders: q(l.Query.Senders), User: q(l.Query.User),
		},
		AuthBindDN: l.AuthBindUserDN, MinUID: l.MinUID,
		QuotaAttribute: l.QuotaAttribute, QuotaMessagesAttribute: l.QuotaMessagesAttribute,
		HomeAttribute: c.Cluster.homeAttribute(),
		WriteURLs:     l.WriteURLs, WriteBindDN: l.WriteBindDN, WriteBindPassword: l.writeBindPassword,
	}
}
