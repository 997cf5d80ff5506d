package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"courriel/delivery/queue"
	"courriel/directory/embedded"
	"courriel/mailauth"
	"courriel/milter"
	"courriel/tlsconf"
)

// The demo contract's fixed ports (SPEC §8), so docs and scripts can rely on them.
const (
	demoSMTPPort        = "2525"
	demoSubmissionPort  = "2587"
	demoSubmissionsPort = "2465"
	demoIMAPSPort       = "2993"
	demoLDAPPort        = "3389"
	demoHTTPPort        = "8025"
	demoManageSievePort = "14190"
)

// demoConfig is the configuration `courriel demo` runs with: a plain Config,
// so `courriel serve -config` on its printed form behaves the same.
func demoConfig(dir, listen string) Config {
	cfg := defaultConfig()
	cfg.MyHostname = "xoyize.xyz"
	at := func(port string) string { return net.JoinHostPort(listen, port) }
	cfg.Listen = ListenConfig{SMTP: at(demoSMTPPort), Submission: at(demoSubmissionPort),
		Submissions: at(demoSubmissionsPort), IMAPS: at(demoIMAPSPort), ManageSieve: at(demoManageSievePort), HTTP: at(demoHTTPPort),
		// No local submission socket: the demo runs beside whatever owns
		// /run/courriel (and as any user); -print-config says local = "".
		localSet: true}
	cfg.TLS = TLSConfig{CertFile: filepath.Join(dir, "tls", "cert.pem"), KeyFile: filepath.Join(dir, "tls", "key.pem")}
	cfg.LDAP.URLs = []string{"ldap://" + at(demoLDAPPort)}
	// The embedded directory listens on loopback only and speaks no TLS.
	cfg.LDAP.StartTLS, cfg.LDAP.RequireCert = false, false
	cfg.LDAP.BindDN, cfg.LDAP.BindPassword = embedded.DemoReaderDN, embedded.DemoPassword
	cfg.LDAP.SearchBase = embedded.DemoSearchBase
	cfg.LDAP.AuthBindUserDN = "uid=%u," + embedded.DemoSearchBase
	cfg.LDAP.CacheTTL, cfg.LDAP.NegativeCacheTTL = 10*time.Second, 5*time.Second
	cfg.Delivery.MaildirBase = filepath.Join(dir, "vmail")
	cfg.Queue.Dir = filepath.Join(dir, "queue")
	cfg.Queue.TLSPolicy = "may"
	// Made by demoMailAuth on the first start.
	cfg.MailAuth.SRSSecretFile = filepath.Join(dir, "srs-secret")
	for _, d := range demoDKIMDomains {
		key := func(a mailauth.Algorithm) string {
			return filepath.Join(dir, "dkim", d, mailauth.DNSSelector(demoDKIMSelector, a)+".pem")
		}
		cfg.MailAuth.DKIM = append(cfg.MailAuth.DKIM, DKIMConfig{Domain: d, Selector: demoDKIMSelector,
			Ed25519KeyFile: key(mailauth.Ed25519), RSAKeyFile: key(mailauth.RSA), Active: true})
	}
	return cfg
}

// The demo's DKIM keys: its domains (demo.ldif's and myhostname, which
// signs the DSNs), under one selector, generated in DIR/dkim on the first
// start and kept.
var demoDKIMDomains = []string{"xoyize.xyz", "hosted-domain.com", "example.org"}

const demoDKIMSelector = "demo"

// demoMailAuth makes what the demo's mail authentication needs on its
// first start (DKIM keys, the SRS secret in srs_secret_file) and reads them
// afterwards; it returns the DNS records to publish.
func demoMailAuth(cfg *Config, dir string) (string, error) {
	var recs strings.Builder
	for _, k := range cfg.MailAuth.DKIM {
		if _, err := os.Stat(k.Ed25519KeyFile); errors.Is(err, fs.ErrNotExist) {
			if _, err := mailauth.GenerateKeys(filepath.Join(dir, "dkim"), k.Domain, k.Selector); err != nil {
				return "", err
			}
		}
		for a, p := range map[mailauth.Algorithm]string{mailauth.Ed25519: k.Ed25519KeyFile, mailauth.RSA: k.RSAKeyFile} {
			key, err := mailauth.LoadKey(p, a)
			if err != nil {
				return "", err
			}
			rec, err := mailauth.TXTRecord(key)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(&recs, "%s._domainkey.%s. IN TXT %s\n", mailauth.DNSSelector(k.Selector, a), k.Domain, mailauth.ZoneStrings(rec))
		}
	}
	secretFile := cfg.MailAuth.SRSSecretFile
	if _, err := os.Stat(secretFile); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 24)
		rand.Read(b)
		if err := os.WriteFile(secretFile, []byte(base64.StdEncoding.EncodeToString(b)), 0o600); err != nil {
			return "", fmt.Errorf("demo srs secret: %w", err)
		}
	}
	// Read as serve reads it from the printed configuration.
	secret, err := readSRSSecret(secretFile)
	if err != nil {
		return "", fmt.Errorf("demo srs secret: %w", err)
	}
	cfg.MailAuth.SRSSecret = secret
	return recs.String(), nil
}

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	dirFlag := fs.String("dir", "./courriel-demo", "data directory: maildirs, queue, certificate")
	listen := fs.String("listen", "127.0.0.1", "address every demo listener binds")
	ldifFile := fs.String("ldif", "", "LDIF file for the embedded directory (default: the built-in demo.ldif)")
	printConfig := fs.Bool("print-config", false, "print the configuration the demo runs with, as TOML, and exit")
	dnsAddr := fs.String("dns", "", "DNS server (host:port) for the inbound SPF/DKIM/DMARC checks; default the machine's resolver")
	expose := fs.Bool("expose-demo-passwords", false, "allow a -listen address that is not loopback: every demo account (password \"demo\") and the embedded LDAP directory become reachable from the network")
	clusterDemo := fs.Bool("cluster", false, "run two cluster nodes sharing the embedded directory: a on "+demoHostA+", b on "+demoHostB+" (-listen does not apply)")
	var milters stringList
	fs.Var(&milters, "milter", "milter `address` (inet:HOST:PORT or unix:/path) for the port-25 listener, with the tempfail policy; repeatable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir, err := filepath.Abs(*dirFlag)
	if err != nil {
		return err
	}
	cfg := demoConfig(dir, *listen)
	for _, m := range milters {
		cfg.Milters = append(cfg.Milters, MilterConfig{Address: m, Listeners: []string{"smtp"}, DefaultAction: "tempfail",
			ConnectTimeout: milter.DefaultConnectTimeout, CommandTimeout: milter.DefaultCommandTimeout,
			ContentTimeout: milter.DefaultContentTimeout})
	}
	cfg.MailAuth.DNSServer = *dnsAddr
	if *clusterDemo {
		listenSet := false
		fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
		if listenSet {
			return exitf(2, "-listen does not apply to -cluster: node a listens on %s, node b on %s", demoHostA, demoHostB)
		}
		ldif := embedded.DemoLDIF
		if *ldifFile != "" {
			if ldif, err = os.ReadFile(*ldifFile); err != nil {
				return err
			}
		}
		if !*printConfig {
			unlock, err := lockDemoDir(dir, demoClusterConfig(dir, demoNodeA).Queue.Dir, demoClusterConfig(dir, demoNodeB).Queue.Dir)
			if err != nil {
				return err
			}
			defer unlock()
		}
		return runDemoCluster(ctx, demoClusterOptions{dir: dir, ldif: ldif, printConfig: *printConfig, dns: *dnsAddr, milters: cfg.Milters}, stdout, stderr)
	}
	if *printConfig {
		fmt.Fprintf(stdout, "# courriel demo configuration (courriel serve -config FILE runs the same,\n# once the embedded directory of `courriel demo` or an equivalent LDAP server is up)\n")
		return toml.NewEncoder(stdout).Encode(cfg)
	}
	if !*expose && !isLoopback(*listen) {
		return exitf(2, "-listen %s is not a loopback address: the demo's accounts all have the password %q and its embedded LDAP directory (port %s) answers anyone; "+
			"add -expose-demo-passwords to serve them to the network anyway", *listen, embedded.DemoPassword, demoLDAPPort)
	}
	// After the refusal above, which creates nothing; before anything is
	// written in dir: a demo running there reloads its certificate when it
	// changes, and keeps its keys.
	unlock, err := lockDemoDir(dir, cfg.Queue.Dir)
	if err != nil {
		return err
	}
	defer unlock()

	ldif := embedded.DemoLDIF
	if *ldifFile != "" {
		if ldif, err = os.ReadFile(*ldifFile); err != nil {
			return err
		}
	}
	for _, d := range []string{dir, cfg.Delivery.MaildirBase, cfg.Queue.Dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("demo directory: %w", err)
		}
		if d == cfg.Queue.Dir {
			// Envelopes and messages of every user: the server's alone.
			if err := os.Chmod(d, 0o700); err != nil {
				return fmt.Errorf("demo directory: %w", err)
			}
		}
	}
	// Users' homes may belong to their uids: they must be able to reach them.
	if err := os.Chmod(cfg.Delivery.MaildirBase, 0o711); err != nil {
		return err
	}
	entries, err := embedded.ParseLDIF(bytes.NewReader(ldif))
	if err != nil {
		return fmt.Errorf("demo directory: %w", err)
	}
	if err := demoSieveScripts(embedded.RewriteHomes(entries, embedded.DemoHomeBase, cfg.Delivery.MaildirBase)); err != nil {
		return err
	}
	if _, _, err := tlsconf.SelfSigned(filepath.Join(dir, "tls"), []string{"localhost", *listen, cfg.MyHostname}); err != nil {
		return fmt.Errorf("demo certificate: %w", err)
	}
	log, flushLog := newLogger(stderr, cfg.LogLevel, new(slog.LevelVar))
	defer flushLog()
	ldapSrv, err := embedded.Start(ctx, embedded.Options{
		Addr: net.JoinHostPort(*listen, demoLDAPPort), LDIF: ldif, HomeBase: cfg.Delivery.MaildirBase,
		Logger: log, // the server names itself (component=ldap-embedded)
	})
	if err != nil {
		return fmt.Errorf("embedded directory: %w", err)
	}
	defer ldapSrv.Close()

	records, err := demoMailAuth(&cfg, dir)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return err
	}
	a, err := newApp(&cfg, log)
	if err != nil {
		return err
	}
	defer a.close()
	if err := a.listen(); err != nil {
		return err
	}
	printDemoHelp(stdout, &cfg, *listen, dir)
	fmt.Fprintf(stdout, "\nDKIM: mail submitted on %s and %s is signed; the records to publish (keys in %s):\n%s",
		demoSubmissionPort, demoSubmissionsPort, filepath.Join(dir, "dkim"), records)
	return a.run(ctx)
}

// lockDemoDir takes DIR/.demo.lock for as long as the demo runs, and
// checks that no server runs the spool (a serve -config of the printed
// configuration): a second demo on the same directory stops there, before
// it rewrites the certificate, keys and scripts of the running one.
func lockDemoDir(dir string, spools ...string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".demo.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, exitf(1, "a demo already runs on %s: stop it, or give another -dir", dir)
		}
		return nil, fmt.Errorf("demo directory lock: %w", err)
	}
	for _, sp := range spools {
		if pid, err := queue.OwnerPID(sp); err == nil && pid > 0 {
			f.Close()
			return nil, exitf(1, "the spool %s is run by process %d (a courriel serve of this demo's configuration?): stop it, or give another -dir", sp, pid)
		}
	}
	return func() { f.Close() }, nil
}

func printDemoHelp(w io.Writer, cfg *Config, host, dir string) {
	// An IPv6 address goes in brackets: [::1]:2525 (swaks takes
	// [SERVER]:PORT, quoted for the shell).
	at := func(port string) string { return net.JoinHostPort(host, port) }
	server := func(port string) string {
		if hp := at(port); strings.HasPrefix(hp, "[") {
			return "'" + hp + "'"
		}
		return at(port)
	}
	fmt.Fprintf(w, `
courriel demo is running (Ctrl-C stops it). Data in %[2]s

Users (password "demo"): xomail (test0@hosted-domain.com, test1@hosted-domain.com,
xomail@xoyize.xyz, and postmaster), alice (alice@hosted-domain.com,
alice@example.org), bob.

Try it:
  # inbound mail, as another MTA would send it
  swaks --server %[10]s --to test0@hosted-domain.com --from someone@example.net
  ls %[2]s/vmail/xomail/mailbox/new/

  # submission with STARTTLS and AUTH, as Thunderbird does
  swaks --server %[11]s --tls -au xomail -ap demo \
        --from test0@hosted-domain.com --to alice@example.org
  # submissions (implicit TLS)
  swaks --server %[12]s --tlsc -au alice -ap demo --from alice@example.org --to test1@hosted-domain.com

  # read the mailbox over IMAPS
  curl -k --user xomail:demo 'imaps://%[13]s/INBOX?ALL'
  curl -k --user xomail:demo 'imaps://%[13]s/INBOX;UID=1'

  # Sieve scripts over ManageSieve (STARTTLS), as Thunderbird's sieve add-on does
  sieve-connect --server %[1]s --port %[9]s --user xomail --notlsverify --list

  # metrics, health, Thunderbird autoconfig
  curl 'http://%[14]s/healthz'
  curl 'http://%[14]s/mail/config-v1.1.xml?emailaddress=test0@hosted-domain.com'

  # alice's Sieve script (~alice/.dovecot.sieve -> sieve/demo.sieve) files
  # "[list]" mail into Lists and flags "urgent" mail
  swaks --server %[10]s --to alice@example.org --from someone@example.net \
        --header 'Subject: [list] weekly news'
  ls %[2]s/vmail/alice/mailbox/.Lists/new/

  # the directory itself
  ldapsearch -x -H 'ldap://%[15]s' -b dc=xoyize,dc=xyz

Thunderbird: IMAP server %[1]s port %[6]s SSL/TLS, SMTP server %[1]s port %[4]s
STARTTLS, normal password, user name xomail; accept the self-signed certificate.
Sieve filters (ManageSieve): server %[1]s port %[9]s, STARTTLS, same user.
`, host, dir, demoSMTPPort, demoSubmissionPort, demoSubmissionsPort, demoIMAPSPort, demoLDAPPort, demoHTTPPort, demoManageSievePort,
		server(demoSMTPPort), server(demoSubmissionPort), server(demoSubmissionsPort), at(demoIMAPSPort), at(demoHTTPPort), at(demoLDAPPort))
}

// demoSieve is alice's sample script in the demo.
const demoSieve = `# courriel demo: alice's active Sieve script, where Dovecot Pigeonhole
# keeps it (~/sieve/demo.sieve, made active by the ~/.dovecot.sieve link).
require ["fileinto", "mailbox", "imap4flags"];
if header :contains "subject" "[list]" {
  fileinto :create "Lists";
  stop;
}
if header :contains "subject" "urgent" {
  addflag "\\Flagged";
}
`

// demoSieveScripts gives alice (when entries have her) the sample script,
// unless her home already has an active script (a demo directory used
// again). Her home, the script and its link are hers, mode 0700 and 0600,
// as Pigeonhole's ManageSieve leaves them (when run as root): a home of
// root would be trusted as the administrator's layout.
func demoSieveScripts(entries []embedded.Entry) error {
	for _, e := range entries {
		uid, home := e.Get("uid"), e.Get("homeDirectory")
		if len(uid) != 1 || uid[0] != "alice" || len(home) != 1 {
			continue
		}
		owner := func(string) error { return nil }
		if un, gn := e.Get("uidNumber"), e.Get("gidNumber"); os.Geteuid() == 0 && len(un) == 1 && len(gn) == 1 {
			u, err1 := strconv.Atoi(un[0])
			g, err2 := strconv.Atoi(gn[0])
			if err1 == nil && err2 == nil {
				owner = func(p string) error { return os.Lchown(p, u, g) }
			}
		}
		if err := demoSieveScript(home[0], owner); err != nil {
			return fmt.Errorf("demo sieve script: %w", err)
		}
	}
	return nil
}

func demoSieveScript(home string, owner func(string) error) error {
	link := filepath.Join(home, ".dovecot.sieve")
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	dir := filepath.Join(home, "sieve")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	script := filepath.Join(dir, "demo.sieve")
	if err := os.WriteFile(script, []byte(demoSieve), 0o600); err != nil {
		return err
	}
	if err := os.Symlink("sieve/demo.sieve", link); err != nil {
		return err
	}
	for _, p := range []string{home, dir, script, link} {
		if err := owner(p); err != nil {
			return err
		}
	}
	return nil
}

// isLoopback reports whether host (an address or a name) reaches this
// machine only: a loopback address, or a name all of whose addresses are.
// "" and unspecified addresses listen on every interface.
func isLoopback(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	if host == "" {
		return false
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}
