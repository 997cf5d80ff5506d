package main

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"courriel/directory"
	"courriel/tlsconf"
)

// reload is SIGHUP: certificates are re-read and cached directory answers
// dropped; the configuration file is re-read and checked, and what changed
// is logged. A bad file is refused and the running configuration kept.
func (a *app) reload() {
	var next *Config
	var nextErr error
	if a.cfgPath != "" {
		next, nextErr = LoadConfig(a.cfgPath)
	}
	// Certificates the configuration now names in other files are loaded
	// from those; the others are read again (a renewal in place). Not
	// both: the files given up may be gone already.
	var moved map[*tlsconf.Manager]bool
	tlsRestart := false
	if nextErr == nil && next != nil {
		moved, tlsRestart = a.reloadCertificateFiles(next)
	}
	reread := slices.Collect(maps.Values(a.tls))
	reread = append(reread, a.tlsMore...)
	for _, m := range reread {
		if moved[m] {
			continue
		}
		// The files served now, not those named at start: SetFiles may
		// have moved the Manager since. Both, as listeners may share a
		// certificate file with different keys.
		cert, key := m.Files()
		if err := m.Reload(); err != nil {
			a.log.Error("SIGHUP: certificate reload failed, keeping the old one", "cert_file", cert, "key_file", key, "err", err)
		} else {
			a.log.Info("SIGHUP: certificate reloaded", "cert_file", cert, "key_file", key)
		}
	}
	a.dir.FlushCache()
	a.log.Info("SIGHUP: directory cache flushed")
	if a.cfgPath == "" {
		return
	}
	if nextErr != nil {
		a.log.Error("SIGHUP: new configuration refused, keeping the running one", "err", nextErr)
		return
	}
	// DKIM keys are read again on every SIGHUP: a key file replaced in
	// place (a rotation that keeps the selector) needs no edit of the
	// configuration.
	a.reloadDKIM(next)
	certsApplied := len(moved) > 0
	changed := configDiff(a.cfg, next)
	if len(changed) == 0 {
		if !certsApplied {
			a.log.Info("SIGHUP: configuration unchanged")
		}
		return
	}
	var restart []string
	ldapChanged := false
	for _, key := range changed {
		if strings.HasPrefix(key, "ldap.") {
			ldapChanged = true
			continue
		}
		if strings.HasPrefix(key, "mailauth.dkim[") {
			continue // applied by reloadDKIM
		}
		switch key {
		case "log_level":
			// Said before applying: a higher level would hide it.
			a.log.Info("SIGHUP: applied", "key", key, "value", next.LogLevel)
			if a.level != nil {
				_ = a.level.UnmarshalText([]byte(next.LogLevel))
			}
		case "mailauth.arc_seal_domain":
			// Applied by reloadDKIM.
		case "tls.cert_file", "tls.key_file":
			// Applied by reloadCertificateFiles, or refused there
			// with the reason.
			if tlsRestart {
				restart = append(restart, key)
			}
		default:
			if strings.HasPrefix(key, "tls.listeners.") && (strings.HasSuffix(key, ".cert_file") || strings.HasSuffix(key, ".key_file")) && !tlsRestart {
				continue
			}
			restart = append(restart, key)
		}
	}
	if ldapChanged {
		a.reloadDirectory(next)
	}
	if len(restart) > 0 {
		a.log.Warn("SIGHUP: these changes take effect at the next restart", "keys", strings.Join(restart, ","))
	}
	a.cfg.LogLevel = next.LogLevel
}

// reloadCertificateFiles serves the certificate files next names, where
// they differ from the running ones, as postfix reload and doveadm reload
// do for new connections (moving from a self-signed pair to
// /etc/letsencrypt/live/... must not need a restart). Each Manager takes
// the one pair all its listeners now name; a pair that does not load is
// refused with the reason and the running one kept (serve would refuse to
// start with it). It returns true when what changed needs a restart
// instead: a switch between files and ACME, or listeners that shared a
// pair and now name different ones; moved holds the Managers that serve
// other files now.
func (a *app) reloadCertificateFiles(next *Config) (moved map[*tlsconf.Manager]bool, restart bool) {
	type pair struct{ cert, key string }
	applied := true
	for _, m := range a.tls {
		cert, key := m.Files()
		if cert == "" {
			continue // ACME: see the check of listeners below
		}
		targets := map[pair]bool{}
		for _, name := range tlsListenerNames {
			if lt := a.cfg.listenerTLS(name); lt.CertFile == cert && lt.KeyFile == key {
				nt := next.listenerTLS(name)
				targets[pair{nt.CertFile, nt.KeyFile}] = true
			}
		}
		if len(targets) != 1 {
			restart = true
			continue
		}
		var to pair
		for p := range targets {
			to = p
		}
		if to == (pair{cert, key}) {
			continue
		}
		if to.cert == "" {
			restart = true // to ACME
			continue
		}
		if err := m.SetFiles(to.cert, to.key); err != nil {
			applied = false
			a.log.Error("SIGHUP: new certificate files refused, keeping the running ones", "cert_file", cert, "new_cert_file", to.cert, "err", err)
			continue
		}
		if moved == nil {
			moved = map[*tlsconf.Manager]bool{}
		}
		moved[m] = true
		a.log.Info("SIGHUP: applied new certificate files", "cert_file", to.cert, "key_file", to.key, "was", cert)
	}
	for _, name := range tlsListenerNames {
		// From ACME to files: a Manager of another kind.
		if a.cfg.listenerTLS(name).CertFile == "" && next.listenerTLS(name).CertFile != "" {
			restart = true
		}
	}
	if applied && !restart {
		// The running configuration names what is served now, so that
		// the next SIGHUP compares against it; min_version stays the
		// running one (applied at the next restart).
		a.cfg.TLS.CertFile, a.cfg.TLS.KeyFile = next.TLS.CertFile, next.TLS.KeyFile
		listeners := map[string]TLSListenerConfig{}
		for _, name := range tlsListenerNames {
			o, n := a.cfg.TLS.Listeners[name], next.TLS.Listeners[name]
			o.CertFile, o.KeyFile = n.CertFile, n.KeyFile
			if o != (TLSListenerConfig{}) {
				listeners[name] = o
			}
		}
		if len(listeners) == 0 {
			listeners = nil
		}
		a.cfg.TLS.Listeners = listeners
	}
	return moved, restart
}

// reloadDirectory replaces the directory client when [ldap] changed, but
// only once the new settings reach the server: a typo in a reloaded file
// must not take mail down.
func (a *app) reloadDirectory(next *Config) {
	o := next.directoryOptions()
	o.Logger = a.log.With("component", "directory")
	d, err := directory.New(o)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = d.Ping(ctx)
		cancel()
		if err != nil {
			d.Close()
		}
	}
	if err != nil {
		a.log.Error("SIGHUP: new [ldap] settings do not work, keeping the running ones", "err", err)
		return
	}
	a.dir.swap(d)
	// The watcher binds as the reader on the first URL: it follows the
	// new client (a rotated password would otherwise lock it out).
	if next.watchChanges() {
		a.watch.restart(d)
	} else {
		a.watch.stop()
	}
	a.cfg.LDAP = next.LDAP
	a.log.Info("SIGHUP: applied [ldap] settings (new directory connections)")
}

// configDiff lists the dotted keys whose values differ.
func configDiff(old, next *Config) []string {
	flat := func(c *Config) map[string]string {
		var b strings.Builder
		shown := *c
		_ = toml.NewEncoder(&b).Encode(shown)
		out := map[string]string{}
		table := ""
		arrays := map[string]int{} // [[milter]]: milter[0], milter[1]…
		for _, line := range strings.Split(b.String(), "\n") {
			line = strings.TrimSpace(line)
			if strings.HasPrefix(line, "[[") {
				name := strings.Trim(line, "[]")
				table = name + "[" + strconv.Itoa(arrays[name]) + "]."
				arrays[name]++
				continue
			}
			if strings.HasPrefix(line, "[") {
				table = strings.Trim(line, "[]") + "."
				continue
			}
			if k, v, ok := strings.Cut(line, " = "); ok {
				out[table+k] = v
			}
		}
		return out
	}
	a, b := flat(old), flat(next)
	var keys []string
	for k, v := range b {
		if a[k] != v {
			keys = append(keys, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// reloadDKIM replaces the DKIM signer and the ARC sealer with the keys the
// configuration names now. A key that does not load keeps every running
// key: mail must not leave unsigned because of a bad file.
func (a *app) reloadDKIM(next *Config) {
	k, err := newDKIMKeys(next.MailAuth)
	if err != nil {
		a.log.Error("SIGHUP: DKIM keys not reloaded, keeping the running ones", "err", err)
		return
	}
	a.signer.p.Store(k)
	a.cfg.MailAuth.DKIM, a.cfg.MailAuth.ARCSealDomain = next.MailAuth.DKIM, next.MailAuth.ARCSealDomain
	a.log.Info("SIGHUP: DKIM keys reloaded", "selectors", len(next.MailAuth.DKIM), "arc_seal_domain", next.MailAuth.ARCSealDomain)
}
