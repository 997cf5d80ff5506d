package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"courriel/cluster"
	"courriel/cluster/move"
	"courriel/delivery"
	"courriel/delivery/maildirsize"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/filter"
	"courriel/imap"
	"courriel/internal/envaddr"
	"courriel/internal/logwriter"
	"courriel/loginguard"
	"courriel/mailauth"
	"courriel/managesieve"
	"courriel/milter"
	"courriel/monitor"
	"courriel/sieve/scripts"
	"courriel/smtp"
	"courriel/tlsconf"
	"courriel/tlsconf/dane"
	"courriel/tlsconf/mtasts"
	"courriel/tlsconf/tlsrpt"

	gosmtp "github.com/emersion/go-smtp"
)

// shutdownGrace bounds how long transactions in flight may finish after
// SIGTERM before connections are closed.
const shutdownGrace = 30 * time.Second

func runServe(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log, flushLog := newLogger(stderr, cfg.LogLevel, level)
	defer flushLog()
	for _, w := range cfg.Sieve.warnings {
		// Pigeonhole's words, as its log has them ("sieve: ...").
		log.Warn("sieve: "+w.msg, "key", w.key)
	}
	a, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	a.cfgPath, a.level = *cfgPath, level
	defer a.close()
	if err := a.listen(); err != nil {
		return err
	}
	return a.run(ctx)
}

// newLogger logs text to w at the level named (validated by the config),
// kept in lv so SIGHUP can change it. The lines of concurrent sessions
// share write(2) calls (logwriter: four lines per message were a tenth of
// the system calls of an SMTP delivery); the function returned writes
// whatever is still held, for the caller to run before it returns.
func newLogger(w io.Writer, level string, lv *slog.LevelVar) (*slog.Logger, func()) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	lv.Set(l)
	lw := logwriter.New(w, logHeld)
	return slog.New(logwriter.NewHandler(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: lv}), lw)), func() { lw.Sync() }
}

// logHeld bounds the log lines held while one goroutine writes (a few
// hundred lines); past it, loggers wait for that write.
const logHeld = 64 << 10

// app is one running server: every component built from one Config.
type app struct {
	cfg     *Config
	cfgPath string         // "" when the configuration is not from a file (demo)
	level   *slog.LevelVar // nil: fixed
	log     *slog.Logger
	metrics *monitor.Metrics
	dir     *liveDirectory
	// watch drops cached directory answers when the replica changes
	// ([ldap] watch_changes, see dirwatch.go); otherwise they expire by
	// their TTL only.
	watch *liveWatcher
	store *delivery.Store
	// local stores local copies for smtp and the queue: the store itself,
	// or the Sieve filter around it ([sieve] enabled).
	local localDeliverer
	queue *queue.Queue
	tls   map[certPair]*tlsconf.Manager // by the pair named at start: listeners sharing a pair share a manager
	// tlsMore are [[tls.certificates]]'s pairs, chosen by SNI after a
	// listener's own (tlsFor).
	tlsMore []*tlsconf.Manager
	imap    *imap.Server
	sieve   *managesieve.Server // nil without listen.managesieve
	// guard throttles failed logins for every listener that takes a
	// password: IMAP and SMTP AUTH count together.
	guard  *loginguard.Guard
	signer *liveKeys        // DKIM: submitted mail, our DSNs and reports; ARC seal of forwards
	srs    *mailauth.SRS    // nil without [mailauth] srs_secret
	tlsrpt *tlsrpt.Recorder // nil without [queue] tlsrpt

	// cluster is the node map, nil on a single node; holds the users
	// being moved away from this node. User moves (move-user,
	// cluster/move): the gate wraps local delivery; importer takes XIMPORT.
	cluster  *cluster.Cluster
	holds    *cluster.Holds
	gate     *move.Gate
	importer *move.Importer

	listeners []boundListener
	// pickup submits the maildrop's files (nil without listen.local).
	pickup *pickup
}

type boundListener struct {
	name  string
	ln    net.Listener
	serve func(net.Listener) error
	stop  func(context.Context) error
}

func newApp(cfg *Config, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log, metrics: monitor.NewMetrics(), guard: loginguard.New(loginguard.Options{})}
	dopts := cfg.directoryOptions()
	dopts.Logger = log.With("component", "directory")
	d, err := directory.New(dopts)
	if err != nil {
		return nil, err
	}
	a.dir = newLiveDirectory(d)
	a.watch = &liveWatcher{flush: a.dir.FlushCache}
	pingCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := a.dir.Ping(pingCtx); err != nil {
		// Not fatal: mail gets 4xx until the directory answers, as Postfix.
		log.Warn("directory not reachable at start-up; recipients get 451 until it is", "err", err)
	}
	cancel()

	chown := os.Geteuid() == 0
	if !chown {
		log.Warn("not running as root: maildirs are created and written as this process's user, not the users' uidNumber/gidNumber", "uid", os.Geteuid())
	}
	if err := a.loadCertificates(); err != nil {
		return nil, err
	}
	if a.cluster, err = cfg.newCluster(); err != nil {
		return nil, err
	}
	a.holds = cluster.NewHolds()
	var imapSrv *imap.Server
	syncMode, _ := delivery.ParseSyncMode(cfg.Delivery.Sync) // checked with the configuration
	if a.store, err = delivery.NewStore(delivery.Options{
		Hostname: cfg.MyHostname, AllowedBase: cfg.Delivery.MaildirBase, Chown: chown, Sync: syncMode,
		Logger: log.With("component", "delivery"),
		OnDelivered: func(maildir, folder, name string) {
			if imapSrv != nil {
				imapSrv.Delivered(maildir, folder, name)
			}
		},
		OnFolderCreated: subscribeFolder(chown, log),
		KeywordLetters:  filter.KeywordLetters,
	}); err != nil {
		return nil, err
	}
	a.local = a.store
	if base := cfg.Delivery.MaildirBase; base != "" {
		// Not created here (Dovecot does not either: its owner and mode
		// are the admin's); said at the start rather than by each 451.
		if st, err := os.Stat(base); err != nil || !st.IsDir() {
			log.Error("delivery.maildir_base is not a directory: every local delivery gets 451 until it is created", "maildir_base", base, "err", err)
		}
	}
	// Keys are read once, before anything can send: a missing key stops
	// the start-up rather than letting unsigned mail out.
	if a.signer, err = newLiveKeys(cfg.MailAuth); err != nil {
		return nil, err
	}
	if s := cfg.MailAuth.SRSSecret; s != "" {
		if a.srs, err = mailauth.NewSRS(s, cfg.MyHostname, nil); err != nil {
			return nil, err
		}
	}
	if cfg.Sieve.Enabled {
		if a.local, err = a.sieveFilter(chown, log); err != nil {
			return nil, err
		}
	}
	if err := a.moveSetup(chown); err != nil {
		return nil, err
	}
	if a.queue, err = a.openQueue(); err != nil {
		return nil, err
	}
	if cfg.Listen.IMAPS != "" || cfg.Listen.IMAP != "" {
		if imapSrv, err = imap.NewServer(imap.Options{
			Auth: a.dir, TLSConfig: a.tlsFor("imap"), Logger: log.With("component", "imap"),
			AllowedBase: cfg.Delivery.MaildirBase, Chown: chown, Metrics: a.metrics, Guard: a.guard,
			MaxConnsPerIP: cfg.IMAP.ConnectionLimitPerIP, MaxUserIPConns: cfg.IMAP.UserIPConnectionLimit,
			MaxConns: cfg.IMAP.ConnectionLimit, Cluster: a.cluster, Holds: a.holds,
		}); err != nil {
			return nil, err
		}
		a.imap = imapSrv
	}
	if cfg.Listen.ManageSieve != "" {
		m := cfg.ManageSieve
		if a.sieve, err = managesieve.NewServer(managesieve.Options{
			Auth: a.dir, TLSConfig: a.tlsFor("managesieve"), Logger: log.With("component", "managesieve"),
			Metrics: a.metrics, Guard: a.guard, AllowedBase: cfg.Delivery.MaildirBase, Chown: chown,
			Limits:        scripts.Limits{MaxScripts: m.MaxScripts, MaxStorage: m.MaxStorage, MaxScriptSize: m.MaxScriptSize},
			GlobalScripts: a.cfg.Sieve.Global,
			// the deliverer's set, so that a script stored runs
			Extensions:       a.cfg.Sieve.exts,
			GlobalExtensions: a.cfg.Sieve.gexts,
			MaxConnsPerIP:    m.ConnectionLimitPerIP, MaxUserIPConns: m.UserIPConnectionLimit, MaxConns: m.ConnectionLimit,
			Cluster: a.cluster, Holds: a.holds,
		}); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// certPair is what a listener's certificate is known by: both files, so
// that listeners naming one certificate file with different key files (a
// copy of the key owned by another user, an ECDSA key beside the RSA one
// by mistake) each get, or are refused with, the key they name rather
// than the first listener's.
type certPair struct{ cert, key string }

func listenerPair(lt TLSListenerConfig) certPair { return certPair{lt.CertFile, lt.KeyFile} }

// loadCertificates loads every certificate pair the listeners use.
func (a *app) loadCertificates() error {
	a.tls = map[certPair]*tlsconf.Manager{}
	for _, name := range tlsListenerNames {
		lt := a.cfg.listenerTLS(name)
		if a.tls[listenerPair(lt)] != nil {
			continue
		}
		if lt.CertFile == "" {
			if !a.cfg.TLS.ACME.enabled() {
				continue
			}
			m, err := a.acmeManager()
			if err != nil {
				return err
			}
			a.tls[certPair{}] = m
			continue
		}
		m, err := tlsconf.New(tlsconf.Options{
			CertFile: lt.CertFile, KeyFile: lt.KeyFile, Hostnames: []string{a.cfg.MyHostname},
			Logger: a.log.With("component", "tls"), ReloadCheckInterval: tlsconf.DefaultReloadCheckInterval,
			ServeExpired: true, // as Postfix and Dovecot: an expired certificate is logged and served, not a reason to take no mail
		})
		if err != nil {
			return err
		}
		a.tls[listenerPair(lt)] = m
	}
	for _, p := range a.cfg.TLS.Certificates {
		m, err := tlsconf.New(tlsconf.Options{
			CertFile: p.CertFile, KeyFile: p.KeyFile,
			Logger: a.log.With("component", "tls"), ReloadCheckInterval: tlsconf.DefaultReloadCheckInterval,
			ServeExpired: true,
		})
		if err != nil {
			return fmt.Errorf("tls.certificates: %w", err)
		}
		a.tlsMore = append(a.tlsMore, m)
	}
	return nil
}

// acmeManager gets certificates from the configured ACME CA; the first
// order starts now, in the background, so a slow CA does not delay start-up.
func (a *app) acmeManager() (*tlsconf.Manager, error) {
	ac := a.cfg.TLS.ACME
	o := tlsconf.ACMEOptions{DirectoryURL: ac.DirectoryURL, Email: ac.Email, Hostnames: ac.Hostnames,
		CacheDir: ac.CacheDir, Logger: a.log.With("component", "acme")}
	if len(o.Hostnames) == 0 {
		o.Hostnames = []string{a.cfg.MyHostname}
	}
	if ac.CAFile != "" {
		pool, err := tlsconf.LoadCAPool(ac.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.acme.ca_file: %w", err)
		}
		o.RootCAs = pool
	}
	m, err := tlsconf.NewACME(o)
	if err != nil {
		return nil, err
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if err := m.Obtain(ctx); err != nil {
			a.log.Error("ACME: no certificate yet; TLS handshakes fail until one is issued", "err", err)
		}
	}()
	return m, nil
}

// tlsFor is the server TLS configuration of one listener: its certificate
// (reloaded on change) and minimum version.
func (a *app) tlsFor(listener string) *tls.Config {
	lt := a.cfg.listenerTLS(listener)
	m := a.tls[listenerPair(lt)]
	if m == nil {
		return nil
	}
	c := m.ServerConfig()
	if lt.MinVersion == "1.3" {
		c.MinVersion = tls.VersionTLS13
	}
	if listener == "smtp" {
		c.CipherSuites = tlsconf.OpportunisticCipherSuites()
	}
	if len(a.tlsMore) > 0 && lt.CertFile != "" {
		c.GetCertificate = tlsconf.ChooseCertificate(append([]*tlsconf.Manager{m}, a.tlsMore...)...)
	}
	return c
}

func (a *app) openQueue() (*queue.Queue, error) {
	q := a.cfg.Queue
	policy, err := queue.ParsePolicy(q.TLSPolicy)
	if err != nil {
		return nil, err
	}
	o := queue.Options{
		Dir: q.Dir, Hostname: a.cfg.MyHostname, Logger: a.log, // the queue names itself (component=queue)
		Resolver: queue.NewResolver(q.DNSServer), Routes: q.Routes, TLSPolicy: policy,
		MaxLifetime: q.MaxLifetime, DelayWarning: q.DelayWarning,
		Concurrency: q.Concurrency, DestinationConcurrency: q.DestinationConcurrency,
		MaxMessageBytes: a.cfg.MessageSizeLimit, MaxRecipients: a.cfg.RecipientLimit,
		Local:     a.local,
		Mailboxes: queueDirectory{dir: a.dir, holds: a.holds},
		Cluster:   a.cluster,
	}
	if a.cluster != nil {
		o.Homes = queueDirectory{dir: a.dir, holds: a.holds}
	}
	o.TLSPolicies = map[string]queue.Policy{}
	for dom, p := range q.TLSPolicies {
		o.TLSPolicies[dom] = queue.Policy(p)
	}
	// The configuration's readFiles checks the same (check-config, SIGHUP).
	if q.needRootCAs() && q.CAPath != "" {
		if o.RootCAs, err = tlsconf.LoadCAPool(q.CAPath); err != nil {
			return nil, fmt.Errorf("queue.ca_path: %w", err)
		}
	}
	if err := a.receiverPolicies(&o); err != nil {
		return nil, err
	}
	if q.Relayhost != "" {
		o.Relayhost = &queue.Relayhost{Addr: q.Relayhost, ImplicitTLS: q.RelayhostTLS == "implicit",
			Username: q.RelayhostUser, Password: q.RelayhostPass}
	}
	o.Bounce = a.deliverBounce
	o.Attempted = a.metrics.Delivery // courriel_deliveries_total
	o.LocalAddrs = selfAddrs(a.cfg, net.InterfaceAddrs, a.log)
	return queue.Open(o)
}

// selfAddrs are the addresses at which the queue knows itself among MX
// hosts: listen.smtp's (localAddrs) and queue.proxy_interfaces.
func selfAddrs(cfg *Config, ifaces func() ([]net.Addr, error), log *slog.Logger) []netip.Addr {
	addrs := localAddrs(cfg.Listen.SMTP, ifaces, log)
	for _, p := range cfg.Queue.ProxyInterfaces {
		if a, err := netip.ParseAddr(p); err == nil && !slices.Contains(addrs, a.Unmap()) { // checked by validate
			addrs = append(addrs, a.Unmap())
		}
	}
	return addrs
}

// localAddrs are the addresses the port-25 listener at listen
// ("host:port", "" for none) receives mail on, for the queue to know
// itself among MX hosts (queue.Options.LocalAddrs, Postfix
// inet_interfaces): the address it binds, those of its host name, or
// every interface's (ifaces) for a wildcard, as Postfix's
// inet_interfaces = all. Only that listener's: a wildcard submission
// listener says nothing of where a domain's mail goes (another MTA on
// another address of this machine may be its MX).
func localAddrs(listen string, ifaces func() ([]net.Addr, error), log *slog.Logger) []netip.Addr {
	host, _, err := net.SplitHostPort(listen)
	if listen == "" || err != nil {
		return nil
	}
	var ips []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{a}
	} else if host != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if err != nil {
			log.Warn("address of the smtp listener not found: mail to it as an MX host is not recognised as a loop", "listen", listen, "err", err)
		}
	}
	if host == "" || len(ips) == 1 && ips[0].IsUnspecified() {
		addrs, err := ifaces()
		if err != nil {
			log.Warn("interface addresses unknown: mail to them as MX hosts is not recognised as a loop", "err", err)
		}
		ips = nil
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil {
				ips = append(ips, p.Addr())
			}
		}
	}
	var out []netip.Addr
	for _, a := range ips {
		if a = a.Unmap().WithZone(""); a.IsValid() && !a.IsUnspecified() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// receiverPolicies sets up DANE, MTA-STS and TLSRPT for the queue, as
// configured.
func (a *app) receiverPolicies(o *queue.Options) error {
	q := a.cfg.Queue
	log := a.log.With("component", "queue")
	if q.DANE {
		if ap, err := netip.ParseAddrPort(q.DNSSECResolver); err != nil || !ap.Addr().IsLoopback() {
			// Postfix's advice too: the AD bit crosses the network unprotected.
			log.Warn("DANE trusts the AD bit of a resolver that is not on loopback", "dnssec_resolver", q.DNSSECResolver)
		}
		o.DANE = dane.NewResolver(q.DNSSECResolver)
		o.DANERoutes = q.DANERoutes
	}
	txt := mailauth.NewResolver(q.DNSServer)
	if q.MTASTS {
		// The policy host is found through the queue's DNS server too.
		dialer := &net.Dialer{Timeout: time.Minute}
		if q.DNSServer != "" {
			dialer.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, q.DNSServer)
			}}
		}
		c, err := mtasts.New(mtasts.Options{Dir: filepath.Join(q.Dir, "mta-sts"), Resolver: txt, RootCAs: o.RootCAs, Logger: log, DialContext: dialer.DialContext})
		if err != nil {
			return err
		}
		o.MTASTS = c
	}
	if q.TLSRPT {
		r, err := tlsrpt.New(tlsrpt.Options{
			Dir: filepath.Join(q.Dir, "tlsrpt"), Hostname: a.cfg.MyHostname, Resolver: txt, Logger: log,
			Send: a.sendTLSReport, RootCAs: o.RootCAs, // https: rua endpoints, verified as MTA-STS policy hosts
		})
		if err != nil {
			return err
		}
		a.tlsrpt, o.TLSReport = r, r
	}
	return nil
}

// sendTLSReport queues a TLSRPT report, DKIM-signed when myhostname has a
// key (RFC 8460 §5.3 asks for a signature); a signing failure sends it
// unsigned.
func (a *app) sendTLSReport(ctx context.Context, from string, to []string, msg []byte) error {
	if sig, err := a.signer.Sign(bytes.NewReader(msg), int64(len(msg))); err != nil {
		a.log.Warn("TLSRPT report not signed", "err", err)
	} else {
		msg = append(sig, msg...)
	}
	_, err := a.queue.Enqueue(ctx, from, to, msg)
	return err
}

// deliverBounce hands a DSN to a local sender's maildir, or queues it for a
// remote one, with opts (queue.Options.Bounce).
func (a *app) deliverBounce(ctx context.Context, msg *queue.Message, report []byte, opts ...queue.Option) error {
	to := msg.From
	var class *directory.DomainClass // the domain of to, when classified here
	if a.srs != nil && a.srs.IsSRS(to) {
		// A forward of ours: the DSN goes to the sender it was forwarded
		// for (srsSender never writes an SRS sender for one that failed SPF).
		orig, err := a.srs.Reverse(to)
		if err != nil {
			a.log.Warn("bounce dropped: invalid SRS sender", "queue_id", msg.ID, "from", msg.From, "err", err)
			return nil
		}
		_, domain, _ := envaddr.Split(orig)
		c, err := a.dir.ClassifyDomain(ctx, domain)
		if err != nil {
			return err
		}
		if c == directory.DomainForeign {
			return a.enqueueBounce(ctx, msg, []string{orig}, nil, report, opts)
		}
		to, class = orig, &c
	}
	var res directory.Resolution
	var err error
	if class != nil {
		// Classified just above: the directory need not ask again.
		res, err = a.dir.ResolveClassified(ctx, to, *class)
	} else {
		res, err = a.dir.ResolveRecipient(ctx, to)
	}
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			a.log.Warn("bounce dropped: the sender is unknown", "queue_id", msg.ID, "from", msg.From)
			return nil
		}
		return err
	}
	var local []delivery.Recipient
	var remote []string
	for _, d := range res.Destinations {
		if d.Remote {
			remote = append(remote, d.Address)
			continue
		}
		local = append(local, delivery.Recipient{Address: d.Address, OrigTo: to,
			Maildir: d.Mailbox.Maildir, UID: d.Mailbox.UID, GID: d.Mailbox.GID,
			Quota: maildirsize.Limits{Bytes: d.Mailbox.QuotaBytes, Messages: d.Mailbox.QuotaMessages}})
	}
	return a.enqueueBounce(ctx, msg, remote, local, report, opts)
}

// enqueueBounce queues a DSN, signed when myhostname has a DKIM key, with
// the options the queue gave it (SMTPUTF8 for an RFC 6533 DSN: its remote
// copies leave only with it; its local ones are stored as they are).
func (a *app) enqueueBounce(ctx context.Context, msg *queue.Message, remote []string, local []delivery.Recipient, report []byte, opts []queue.Option) error {
	// Queued for every destination at once, then stored locally at once:
	// a local copy that fails is retried by the queue, and never makes the
	// whole DSN come again (duplicates in the maildirs already served).
	body := strings.ReplaceAll(string(report), "\r\n", "\n")
	body = strings.ReplaceAll(body, "\n", "\r\n")
	// Signed when myhostname (the MAILER-DAEMON's domain) has a DKIM key;
	// a signing failure leaves the DSN unsigned rather than lost.
	if sig, err := a.signer.Sign(strings.NewReader(body), int64(len(body))); err != nil {
		a.log.Warn("bounce not signed", "msg_id", cmp.Or(msg.MsgID, msg.ID), "queue_id", msg.ID, "err", err)
	} else {
		body = string(sig) + body
	}
	// The original's msg_id: one grep shows the message and its bounce.
	_, _, err := a.queue.Accept(ctx, cmp.Or(msg.MsgID, msg.ID), "", remote, local, strings.NewReader(body), opts...)
	return err
}

// listen binds every configured listener before serving any, so a busy
// port stops the start-up instead of leaving half a server.
func (a *app) listen() error {
	cfg := a.cfg
	networks, _ := cfg.Networks()
	bareNewline, err := smtp.ParseBareNewline(cfg.SMTP.BareNewline)
	if err != nil {
		return err
	}
	// Messages being received that are too large for memory wait here, in
	// files without names, on the queue's file system.
	incoming := filepath.Join(cfg.Queue.Dir, "incoming")
	if err := os.MkdirAll(incoming, 0o700); err != nil {
		return fmt.Errorf("smtp spool: %w", err)
	}
	checker := newAuthChecker(cfg, a.signer)
	smtpServer := func(name string, kind smtp.Kind) (*smtp.Server, error) {
		var milters *milter.Chain
		if kind != smtp.Cluster && kind != smtp.Local { // the front node ran them; non_smtpd_milters
			if milters, err = cfg.milterChain(name, a.log); err != nil {
				return nil, err
			}
		}
		var tlsConfig *tls.Config
		switch kind {
		case smtp.Cluster:
			// The smtp certificate with [cluster] tls; else the hops are
			// in clear, on a private network.
			if cfg.Cluster.TLS {
				tlsConfig = a.tlsFor("smtp")
			}
		case smtp.Local: // a Unix socket: no TLS
		default:
			tlsConfig = a.tlsFor(name)
		}
		return smtp.NewServer(smtp.Options{
			Kind: kind, Hostname: cfg.MyHostname, Directory: a.dir, Deliverer: a.local, Queue: a.queue,
			TLSConfig: tlsConfig, MyNetworks: networks, AllowUnauthOwnedSender: !cfg.SMTP.RejectUnauthSenderLoginMismatch,
			MaxMessageBytes: cfg.MessageSizeLimit, MaxRecipients: cfg.RecipientLimit,
			MaxConnsPerIP: cfg.SMTP.ConnectionLimitPerIP, MaxConns: cfg.SMTP.ConnectionLimit,
			SpoolDir: incoming, BareNewline: bareNewline, AllowUnauthPipelining: !cfg.SMTP.ForbidUnauthPipelining,
			Signer: a.signer, AuthChecker: checker, SRS: a.smtpSRS(),
			Logger: a.log.With("component", name), Metrics: a.metrics, Listener: name, Guard: a.guard,
			Milters:      milters,
			ClusterNodes: a.cluster, Holds: a.holds, Mailboxes: a.dir,
			ImportHome: a.importHome,
		})
	}
	smtpListener := func(name, addr string, kind smtp.Kind) error {
		if addr == "" {
			return nil
		}
		srv, err := smtpServer(name, kind)
		if err != nil {
			return err
		}
		// No TCP keepalive: the session's read timeouts already end a
		// silent client, and turning it on costs four setsockopt calls per
		// connection, one connection per message for most senders
		// (Postfix's smtpd does not turn it on either).
		ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s on %s: %w", name, addr, err)
		}
		// smtp.Server does the implicit TLS of 465 itself (after the
		// per-IP connection limit), so ln stays plain here.
		a.listeners = append(a.listeners, boundListener{name: name, ln: a.proxyListener(name, ln), serve: srv.Serve, stop: srv.Shutdown})
		return nil
	}
	if err := smtpListener("smtp", cfg.Listen.SMTP, smtp.Inbound); err != nil {
		return err
	}
	if err := smtpListener("submission", cfg.Listen.Submission, smtp.Submission); err != nil {
		return err
	}
	if err := smtpListener("submissions", cfg.Listen.Submissions, smtp.Submissions); err != nil {
		return err
	}
	if err := smtpListener("cluster", cfg.Listen.Cluster, smtp.Cluster); err != nil {
		return err
	}
	if path := cfg.Listen.Local; path != "" {
		srv, err := smtpServer("local", smtp.Local)
		if err != nil {
			return err
		}
		ln, err := listenLocal(path)
		switch {
		case err != nil && cfg.Listen.localSet:
			return fmt.Errorf("listen local on %s: %w", path, err)
		case err != nil:
			a.log.Error("local submission socket unavailable: courriel sendmail will fail (exit 75) until it is; set listen.local (\"\" for off)",
				"path", path, "err", err)
		default:
			// Shutdown closes ln, which removes the socket file:
			// sendmail then says the server is not running.
			a.listeners = append(a.listeners, boundListener{name: "local", ln: ln, serve: srv.Serve, stop: srv.Shutdown})
			// For sendmail run by users who cannot read this file.
			if err := writePathsFile(path, cfg.Queue.Dir, cfg.MessageSizeLimit, cfg.MyHostname); err != nil {
				a.log.Warn("local submission: cannot write sendmail.paths beside the socket: sendmail run by users who cannot read the configuration uses the default paths",
					"dir", filepath.Dir(path), "err", err)
			}
			a.mailqListener(path)
		}
		// What sendmail left while the server was down, or could not
		// reach it, is submitted through this listener's session path.
		dir, err := openMaildrop(cfg.Queue.Dir, a.log)
		if err != nil {
			return err
		}
		a.pickup = newPickup(dir, srv, a.log.With("component", "pickup"), cfg.MessageSizeLimit, cfg.Queue.MaxLifetime)
		a.pickup.host = cfg.MyHostname
		a.pickup.bounce = a.maildropBounce
	}
	imapListener := func(name, addr string, implicit bool) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen %s on %s: %w", name, addr, err)
		}
		// The PROXY header comes before the TLS handshake.
		ln = a.proxyListener(name, ln)
		if implicit {
			ln = tls.NewListener(ln, a.tlsFor(name))
		}
		a.listeners = append(a.listeners, boundListener{name: name, ln: ln,
			serve: func(l net.Listener) error { return a.imap.Serve(l, implicit) }, stop: a.imap.Shutdown})
		return nil
	}
	if err := imapListener("imaps", cfg.Listen.IMAPS, true); err != nil {
		return err
	}
	if err := imapListener("imap", cfg.Listen.IMAP, false); err != nil {
		return err
	}
	if addr := cfg.Listen.ManageSieve; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listen managesieve on %s: %w", addr, err)
		}
		a.listeners = append(a.listeners, boundListener{name: "managesieve", ln: a.proxyListener("managesieve", ln), serve: a.sieve.Serve, stop: a.sieve.Shutdown})
	}
	a.controlListener()
	return a.httpListener()
}

// httpListener serves /metrics, /healthz and Thunderbird autoconfig.
func (a *app) httpListener() error {
	addr := a.cfg.Listen.HTTP
	if addr == "" {
		return nil
	}
	a.metrics.RegisterDirectoryStats(func() monitor.DirectoryStats {
		st := a.dir.Stats()
		return monitor.DirectoryStats{Searches: st.Searches, CacheHits: st.CacheHits, Binds: st.Binds, Errors: st.Errors}
	})
	if a.cfg.watchChanges() {
		registerWatchMetrics(a.metrics.Registry(), a.watch)
	}
	if a.imap != nil {
		registerKeptFolderMetrics(a.metrics.Registry(), a.imap)
	}
	registerCertificateMetrics(a.metrics.Registry(), append(slices.Collect(maps.Values(a.tls)), a.tlsMore...))
	registerQueueMetrics(a.metrics, a.queue)
	trusted, _ := a.cfg.TrustedNetworks() // checked with the configuration
	h := monitor.Handler(monitor.Options{
		Metrics: a.metrics, Trusted: trusted,
		Health: func(ctx context.Context) error {
			return a.dir.Ping(ctx)
		},
		Hostname: a.cfg.MyHostname,
		Services: &monitor.Services{IMAPS: a.boundPort("imaps"), IMAP: a.boundPort("imap"),
			Submissions: a.boundPort("submissions"), Submission: a.boundPort("submission")},
		IsHostedDomain: func(ctx context.Context, domain string) (bool, error) {
			c, err := a.dir.ClassifyDomain(ctx, domain)
			return c != directory.DomainForeign, err
		},
		Logger: a.log.With("component", "http"),
	})
	srv := monitor.NewServer(addr, h)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen http on %s: %w", addr, err)
	}
	a.listeners = append(a.listeners, boundListener{name: "http", ln: ln, serve: srv.Serve, stop: srv.Shutdown})
	return nil
}

// boundPort is the port the listener name is bound to (the one the
// kernel chose for ":0" included); 0 when it is off.
func (a *app) boundPort(name string) int {
	for _, l := range a.listeners {
		if l.name == name {
			_, p, err := net.SplitHostPort(l.ln.Addr().String())
			if err != nil {
				return 0
			}
			n, _ := strconv.Atoi(p)
			return n
		}
	}
	return 0
}

// run serves until ctx ends (SIGTERM), then shuts down gracefully. SIGHUP
// reloads certificates and forgets cached directory answers.
func (a *app) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(a.listeners)+1)
	a.log.Info("starting", "version", version())
	for _, l := range a.listeners {
		a.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		wg.Go(func() {
			if err := l.serve(l.ln); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s: %w", l.name, err)
			}
		})
	}
	// The queue outlives SIGTERM by the grace (queue.Shutdown below): a
	// delivery whose data went waits for its reply.
	qctx, qcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer qcancel()
	wg.Go(func() {
		if err := a.queue.Run(qctx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- fmt.Errorf("queue: %w", err)
		}
	})
	if a.tlsrpt != nil {
		wg.Go(func() { a.tlsrpt.Run(ctx) })
	}
	// The pickup stops first at a shutdown: the local listener lets the
	// submission in progress finish (its file is removed after its 250, or
	// submitted again at the next start).
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	if a.pickup != nil {
		wg.Go(func() { a.pickup.run(pctx) })
	}
	a.watch.begin(ctx, a.dir.get(), a.cfg.watchChanges())
	defer a.watch.stop()
	for _, m := range a.tls {
		wg.Go(func() { m.Watch(ctx) })
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			a.reload()
		case runErr = <-errc:
			a.log.Error("listener failed, shutting down", "err", runErr)
			break loop
		}
	}
	pcancel()
	a.log.Info("shutting down", "grace", shutdownGrace)
	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	// Every listener stops taking connections at once, and drains at the
	// same time as the others: one after the other, a session finishing
	// its DATA on port 25 kept 587, 993 and /healthz open and answering
	// for up to the whole grace.
	var stops sync.WaitGroup
	stops.Go(func() {
		if err := a.queue.Shutdown(sctx); err != nil {
			a.log.Warn("shutdown: deliveries cut short before their reply; they are retried", "err", err)
		}
	})
	for _, l := range a.listeners {
		stops.Go(func() {
			if err := l.stop(sctx); err != nil {
				a.log.Warn("shutdown", "listener", l.name, "err", err)
			}
		})
	}
	stops.Wait()
	cancel()
	qcancel()
	wg.Wait()
	a.log.Info("stopped")
	return runErr
}

func (a *app) close() {
	if a.queue != nil {
		a.queue.Close()
	}
	if a.dir != nil {
		a.dir.Close()
	}
	if a.store != nil {
		a.store.Close()
	}
}

// importHome takes a home sent by courriel move-user on another node
// (XIMPORT on listen.cluster): an archive refused for good (hostile,
// broken, a home that already holds mail) is a permanent reply, so the
// mover stops instead of retrying; anything else is temporary.
func (a *app) importHome(ctx context.Context, login string, r io.Reader) error {
	err := a.importer.ImportHome(ctx, login, r)
	if errors.Is(err, move.ErrRefused) {
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 7, 0}, Message: "Import refused: " + err.Error()}
	}
	return err
}

// maildropBounce queues a DSN to sender for rcpts of a maildrop file that
// was refused for good or not taken within the queue's lifetime: the
// message is accepted with every recipient failed (queue.WithFailed), as
// the local socket accepts a refused one. One entry, so one DSN, whatever
// the number of recipients: past the recipient limit (what one entry may
// hold), the first are named and the reason counts the others.
func (a *app) maildropBounce(ctx context.Context, sender string, rcpts []string, status, reason string, data []byte) error {
	if a.queue == nil {
		return errors.New("no queue")
	}
	if len(rcpts) == 0 {
		return errors.New("no recipient to name in a bounce")
	}
	if n := a.cfg.RecipientLimit; len(rcpts) > n {
		reason = fmt.Sprintf("%s (and to %d other recipients, not listed)", reason, len(rcpts)-n)
		rcpts = rcpts[:n]
	}
	_, _, err := a.queue.Accept(ctx, "", sender, nil, nil, bytes.NewReader(data), queue.WithFailed(rcpts, status, reason))
	return err
}
