package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/sys/unix"

	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/milter"
	"courriel/sieve"
	"courriel/tlsconf"
	"courriel/tlsconf/dane"
)

// runCheckConfig prints the effective configuration (defaults included,
// like postconf / doveconf -n), then checks what a start would need.
func runCheckConfig(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("check-config", stderr)
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	quiet := fs.Bool("q", false, "do not print the configuration, only the checks")
	if err := fs.Parse(args); err != nil {
		return err
	}
	data, err := os.ReadFile(*cfgPath)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// Files that cannot be read are listed with the other problems, all
	// in one run, rather than one per run.
	cfg, fileProblems, err := parseConfig(*cfgPath, data)
	if err != nil {
		return err
	}
	if !*quiet {
		shown := *cfg
		switch {
		case shown.LDAP.BindPasswordFile != "":
			// Read from the file: showing it as set would make the output,
			// pasted back, a file that sets both.
			shown.LDAP.BindPassword = ""
		case shown.LDAP.BindPassword != "":
			shown.LDAP.BindPassword = "(hidden)"
		}
		if shown.Queue.RelayhostPass != "" {
			shown.Queue.RelayhostPass = "(hidden)"
		}
		if shown.MailAuth.SRSSecretFile != "" {
			shown.MailAuth.SRSSecret = "" // read from the file, as bind_password
		} else if shown.MailAuth.SRSSecret != "" {
			// Whoever has it can make SRS addresses this server relays
			// bounces to.
			shown.MailAuth.SRSSecret = "(hidden)"
		}
		if err := toml.NewEncoder(stdout).Encode(shown); err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	problems := checkConfig(ctx, cfg, fileProblems, stdout)
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "\n%d problem(s):\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(stdout, "  - %s\n", p)
		}
		return exitf(1, "%d problem(s) found", len(problems))
	}
	fmt.Fprintln(stdout, "configuration OK")
	return nil
}

// checkConfig runs every check and returns the problems found, starting
// with fileProblems, those of the files the configuration names.
func checkConfig(ctx context.Context, cfg *Config, fileProblems []error, out io.Writer) []string {
	var problems []string
	report := func(name string, err error) {
		if err != nil {
			fmt.Fprintf(out, "FAIL %s: %v\n", name, err)
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			return
		}
		fmt.Fprintf(out, "ok   %s\n", name)
	}
	ldapFiles := false
	for _, err := range fileProblems {
		var ce *ConfigError
		if !errors.As(err, &ce) {
			report("file", err)
			continue
		}
		// "FAIL ldap.ca_file (/etc/courriel/config.toml:12): LDAP CA file: …"
		where := ce.File
		if ce.Line > 0 {
			where += ":" + strconv.Itoa(ce.Line)
		}
		report(fmt.Sprintf("%s (%s)", ce.Key, where), errors.New(ce.Msg))
		ldapFiles = ldapFiles || strings.HasPrefix(ce.Key, "ldap.")
	}

	dir, err := directory.New(cfg.directoryOptions())
	switch {
	case ldapFiles:
		// Without its CA or password the connection would only fail again.
		if err == nil {
			dir.Close()
		}
		fmt.Fprintf(out, "skip ldap: connect and bind, until the ldap files above are fixed\n")
	case err != nil:
		report("ldap", err)
	default:
		defer dir.Close()
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		err := dir.Ping(cctx)
		report(fmt.Sprintf("ldap: connect and bind as %q to %v", cfg.LDAP.BindDN, cfg.LDAP.URLs), err)
		if err == nil {
			// Each lookup must answer (found or not found), not fail.
			probe := map[directory.Map]string{
				directory.MapDomains: cfg.MyHostname, directory.MapAliases: "postmaster@" + cfg.MyHostname,
				directory.MapMailbox: "postmaster@" + cfg.MyHostname, directory.MapUID: "postmaster@" + cfg.MyHostname,
				directory.MapGID: "postmaster@" + cfg.MyHostname, directory.MapSenders: "postmaster@" + cfg.MyHostname,
				directory.MapUser: "postmaster",
			}
			for _, m := range directory.Maps {
				_, err := dir.Lookup(cctx, m, probe[m])
				if errors.Is(err, directory.ErrNotFound) {
					err = nil
				}
				report(fmt.Sprintf("ldap: lookup %s %s", m, probe[m]), err)
			}
			// RFC 5321 §4.5.1: every host that takes mail must take it for
			// postmaster; RCPT TO:<postmaster> is postmaster@myhostname.
			// Postfix in the seed's setup refuses it too when the
			// directory lacks it, so this warns rather than fails.
			if _, err := dir.ResolveRecipient(cctx, "postmaster@"+cfg.MyHostname); errors.Is(err, directory.ErrNotFound) {
				fmt.Fprintf(out, "warn ldap: postmaster@%s reaches nobody, so RCPT TO:<postmaster> gets 550 (RFC 5321 §4.5.1 requires it): add it as a mailacceptinggeneralid of the person who reads it\n", cfg.MyHostname)
			}
			if cfg.watchChanges() {
				report(fmt.Sprintf("ldap: change watch (sync search, RFC 4533) on %s", cfg.LDAP.URLs[0]), dir.NewWatcher(nil).Check(cctx))
			}
			if len(cfg.LDAP.WriteURLs) > 0 {
				dn := cmp.Or(cfg.LDAP.WriteBindDN, cfg.LDAP.BindDN)
				report(fmt.Sprintf("ldap: connect and bind as %q to write_urls %v", dn, cfg.LDAP.WriteURLs), dir.PingWrite(cctx))
			}
		}
	}

	if cfg.Listen.SMTP != "" && cfg.listenerTLS("smtp").MinVersion == "1.3" {
		// STARTTLS on port 25 is opportunistic: a sender that cannot
		// shake hands delivers in clear text (RFC 7435, RFC 9325 §5.2),
		// which is worse than TLS 1.2.
		fmt.Fprintf(out, "warn tls: min_version 1.3 on the smtp listener: senders without TLS 1.3 (many MTAs still) deliver in clear text instead; set [tls.listeners.smtp] min_version = \"1.2\"\n")
	}
	// By pair, as serve loads them: a second key file for the same
	// certificate is checked too, not taken for the first.
	seen := map[certPair]bool{}
	for _, name := range tlsListenerNames {
		lt := cfg.listenerTLS(name)
		if seen[listenerPair(lt)] {
			continue
		}
		if lt.CertFile == "" {
			if ac := cfg.TLS.ACME; ac.enabled() {
				seen[certPair{}] = true
				names := ac.Hostnames
				if len(names) == 0 {
					names = []string{cfg.MyHostname}
				}
				_, err := tlsconf.NewACME(tlsconf.ACMEOptions{DirectoryURL: ac.DirectoryURL, Hostnames: names, CacheDir: ac.CacheDir})
				report(fmt.Sprintf("tls: ACME from %s (port 443 must reach an implicit-TLS listener)", ac.DirectoryURL), err)
			}
			continue
		}
		seen[listenerPair(lt)] = true
		label := "tls: certificate " + lt.CertFile
		for _, l := range tlsListenerNames {
			if o := cfg.listenerTLS(l); o.CertFile == lt.CertFile && o.KeyFile != lt.KeyFile {
				label += " with key " + lt.KeyFile
				break
			}
		}
		// As serve: a certificate outside its dates is served (as Postfix
		// and Dovecot do), so it is a warning here, not a failure that
		// would keep `check-config && reload` from reloading anything.
		m, err := tlsconf.New(tlsconf.Options{CertFile: lt.CertFile, KeyFile: lt.KeyFile, ServeExpired: true})
		if err == nil {
			if c := m.Certificate(); time.Now().After(c.NotAfter) || time.Now().Before(c.NotBefore) {
				fmt.Fprintf(out, "warn tls: certificate %s is valid only from %s to %s: serve presents it, but clients that verify refuse it; renew it\n",
					lt.CertFile, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
			}
		}
		report(label, err)
		if err == nil {
			// Served anyway (MTAs on port 25 do not verify), but the
			// users' clients refuse it: said here rather than by them.
			if err := m.VerifyChain(clientRoots(cfg), time.Now()); err != nil {
				fmt.Fprintf(out, "warn tls: %v\n", err)
			}
			if w := keyFileWarning(lt.KeyFile); w != "" {
				fmt.Fprintf(out, "warn tls: %s\n", w)
			}
			bad := tlsconf.CheckHostnames(m.Certificate(), []string{cfg.MyHostname})
			switch {
			case len(bad) > 0 && lt.CertFile != cfg.TLS.CertFile:
				// A listener's own pair is there to serve another name
				// (imap.hosted-domain.com on imaps), and serve takes it
				// with a warning: so does check-config, or it would fail
				// for the server that runs.
				var users []string
				for _, l := range tlsListenerNames {
					if listenerPair(cfg.listenerTLS(l)) == listenerPair(lt) {
						users = append(users, l)
					}
				}
				c := m.Certificate()
				fmt.Fprintf(out, "warn tls: certificate %s (of %s) is not valid for %s but for %s: the clients of these listeners must use one of its names\n",
					lt.CertFile, strings.Join(users, ", "), cfg.MyHostname, strings.Join(append(append([]string(nil), c.DNSNames...), ipStrings(c)...), ", "))
			case len(bad) > 0:
				report("tls: certificate names", fmt.Errorf("%s is not valid for %v", lt.CertFile, bad))
			default:
				report("tls: certificate "+lt.CertFile+" valid for "+cfg.MyHostname, nil)
			}
		}
	}
	for _, p := range cfg.TLS.Certificates {
		m, err := tlsconf.New(tlsconf.Options{CertFile: p.CertFile, KeyFile: p.KeyFile, ServeExpired: true})
		if err != nil {
			report("tls: certificate "+p.CertFile, err)
			continue
		}
		c := m.Certificate()
		names := append(append([]string(nil), c.DNSNames...), ipStrings(c)...)
		report(fmt.Sprintf("tls: certificate %s, for the clients that ask for %s", p.CertFile, strings.Join(names, ", ")), nil)
		if err := m.VerifyChain(clientRoots(cfg), time.Now()); err != nil {
			fmt.Fprintf(out, "warn tls: %v\n", err)
		}
		if w := keyFileWarning(p.KeyFile); w != "" {
			fmt.Fprintf(out, "warn tls: %s\n", w)
		}
	}
	if base := cfg.Delivery.MaildirBase; base != "" {
		err := checkWritable(base)
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w (serve does not create it: every local delivery would get 451)", err)
		}
		report("maildir base "+base+" writable", err)
	}
	note, free, err := checkSpoolDir(cfg.Queue.Dir)
	report("queue directory "+cfg.Queue.Dir+" writable"+note, err)
	if err == nil && free < queue.SpoolReserve {
		fmt.Fprintf(out, "warn queue directory %s: %d KiB free on its file system, less than the %d KiB the spool keeps for delivery records besides the messages: new mail is refused (452 4.3.1) until there is room\n",
			cfg.Queue.Dir, free>>10, queue.SpoolReserve>>10)
	}
	for _, m := range cfg.Milters {
		mc, err := m.milterConfig()
		if err == nil {
			err = milter.Probe(mc)
		}
		report(fmt.Sprintf("milter %s answers (for %s)", m.Address, strings.Join(m.listeners(), ", ")), err)
	}
	for _, w := range cfg.Sieve.warnings {
		// Taken (Pigeonhole takes it too), not a problem.
		fmt.Fprintf(out, "warn %s: %s\n", w.key, w.msg)
	}
	if cfg.Sieve.Enabled {
		for _, p := range append(append([]string(nil), cfg.Sieve.Before...), cfg.Sieve.After...) {
			src, err := os.ReadFile(p)
			if err == nil {
				// Every error, as sievec lists them, not the first alone.
				var all []string
				_, err = sieve.CompileWith(src, sieve.CompileOptions{Limits: sieve.Limits{MaxActions: cfg.Sieve.MaxActions, MaxRedirects: cfg.Sieve.MaxRedirects}, Extensions: cfg.Sieve.exts,
					GlobalExtensions: cfg.Sieve.gexts, Global: true, Errors: func(e *sieve.Error) { all = append(all, e.Error()) }})
				if err != nil && len(all) > 1 {
					err = errors.New(strings.Join(all, "; "))
				}
			}
			report("sieve: admin script "+p+" compiles", err)
		}
	}
	checkDKIM(ctx, cfg, report, func(msg string) { fmt.Fprintf(out, "warn %s\n", msg) })
	if cfg.Queue.DANE {
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		report("dane: "+cfg.Queue.DNSSECResolver+" validates DNSSEC", dane.NewResolver(cfg.Queue.DNSSECResolver).Validates(lctx))
		cancel()
	}
	// A running courriel on this configuration holds its own ports: those
	// are fine (check-config before a reload), anyone else's are not.
	owner, ownerErr := queue.OwnerPID(cfg.Queue.Dir)
	type listener struct{ name, addr string }
	var earlier []listener
	for _, l := range []listener{{"smtp", cfg.Listen.SMTP}, {"submission", cfg.Listen.Submission},
		{"submissions", cfg.Listen.Submissions}, {"imaps", cfg.Listen.IMAPS}, {"imap", cfg.Listen.IMAP}, {"managesieve", cfg.Listen.ManageSieve}, {"http", cfg.Listen.HTTP}} {
		if l.addr == "" {
			continue
		}
		name := fmt.Sprintf("listen %s %s", l.name, l.addr)
		// Each port may be free while two listeners want the same one:
		// serve would then fail on the second bind.
		if i := slices.IndexFunc(earlier, func(e listener) bool { return sameSocket(e.addr, l.addr) }); i >= 0 {
			report(name, fmt.Errorf("the %s listener binds %s already", earlier[i].name, earlier[i].addr))
			continue
		}
		earlier = append(earlier, l)
		note, err := checkListen(l.addr, owner, ownerErr)
		if note != "" {
			name += " " + note
		}
		report(name, err)
	}
	if p := cfg.Listen.Local; p != "" {
		// serve makes a default socket it can, and runs without one it
		// cannot: a warning then, a failure for a path set on purpose.
		note, err := checkLocalSocket(p)
		switch {
		case err != nil && !cfg.Listen.localSet:
			fmt.Fprintf(out, "warn listen local %s: %v (courriel sendmail will fail; set listen.local, \"\" for off)\n", p, err)
		default:
			report(strings.TrimSpace("listen local "+p+" "+note), err)
		}
	}
	return problems
}

func ipStrings(c *x509.Certificate) []string {
	var s []string
	for _, ip := range c.IPAddresses {
		s = append(s, ip.String())
	}
	return s
}

// clientRoots are the CAs a client's verification is judged by: those of
// queue.ca_path (the system's, /etc/ssl/certs, by default), what mail
// clients and MTAs trust too; the system pool when that does not load.
func clientRoots(cfg *Config) *x509.CertPool {
	if p, err := tlsconf.LoadCAPool(cfg.Queue.CAPath); err == nil {
		return p
	}
	p, err := x509.SystemCertPool()
	if err != nil {
		return x509.NewCertPool()
	}
	return p
}

// keyFileWarning says when a private key file is readable by users other
// than its owner and group: anyone who reads it can impersonate the
// server (postconf(5): smtpd_tls_key_file readable by root only, "no
// access to anyone else"; certbot writes privkey.pem 0600).
func keyFileWarning(keyFile string) string {
	st, err := os.Stat(keyFile)
	if err != nil || st.Mode().Perm()&0o004 == 0 {
		return ""
	}
	return fmt.Sprintf("private key %s is readable by every user (mode %04o): chmod o-r %s", keyFile, st.Mode().Perm(), keyFile)
}

// sameSocket says whether two listen addresses cannot both be bound: the
// same port on the same host, or on a wildcard host that covers the other.
func sameSocket(a, b string) bool {
	ha, pa, erra := net.SplitHostPort(a)
	hb, pb, errb := net.SplitHostPort(b)
	if erra != nil || errb != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool {
		ip := net.ParseIP(h)
		return h == "" || ip != nil && ip.IsUnspecified()
	}
	return wild(ha) || wild(hb) || strings.EqualFold(ha, hb) || net.ParseIP(ha) != nil && net.ParseIP(ha).Equal(net.ParseIP(hb))
}

// checkSpoolDir checks the queue directory as serve uses it: serve creates
// it and its missing parents, so a missing one is fine (note says so)
// when the nearest directory that exists is writable. free is the room
// left on its file system.
func checkSpoolDir(dir string) (note string, free uint64, err error) {
	existing := dir
	for {
		_, err := os.Stat(existing)
		if err == nil {
			break
		}
		parent := filepath.Dir(existing)
		if !errors.Is(err, fs.ErrNotExist) || parent == existing {
			return "", 0, err
		}
		existing = parent
	}
	if err := checkWritable(existing); err != nil {
		return "", 0, err
	}
	if existing != dir {
		note = " (missing: serve creates it, in " + existing + ")"
	}
	var st unix.Statfs_t
	if err := unix.Statfs(existing, &st); err != nil {
		return note, math.MaxUint64, nil // nothing to warn about
	}
	return note, st.Bavail * uint64(st.Bsize), nil
}

// checkWritable creates and removes a file in dir (creating dir's missing
// parents is left to the server, which knows the owners).
func checkWritable(dir string) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, ".courriel-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(filepath.Clean(name))
}
