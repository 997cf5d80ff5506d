package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"courriel/mailauth"
	"courriel/smtp"
)

// dkimSelector is one configured selector with its keys loaded.
type dkimSelector struct {
	DKIMConfig
	keys map[mailauth.Algorithm]crypto.Signer
}

// loadDKIMKeys reads every configured key (a missing or unreadable file is
// an error: serve refuses to start rather than send unsigned mail).
func loadDKIMKeys(m MailAuthConfig) ([]dkimSelector, error) {
	var out []dkimSelector
	for _, k := range m.DKIM {
		s := dkimSelector{DKIMConfig: k, keys: map[mailauth.Algorithm]crypto.Signer{}}
		s.Domain = strings.ToLower(k.Domain)
		for a, p := range map[mailauth.Algorithm]string{mailauth.Ed25519: k.Ed25519KeyFile, mailauth.RSA: k.RSAKeyFile} {
			if p == "" {
				continue
			}
			key, err := mailauth.LoadKey(p, a)
			if err != nil {
				return nil, fmt.Errorf("mailauth.dkim %s selector %s: %w", s.Domain, k.Selector, err)
			}
			s.keys[a] = key
		}
		out = append(out, s)
	}
	return out, nil
}

// dkimKeys are the signer of the active selectors and the ARC sealer,
// loaded together and replaced together on reload.
type dkimKeys struct {
	signer *mailauth.Signer
	sealer *mailauth.Sealer // nil: forwards are not sealed
}

// liveKeys is the DKIM signer every sender uses (smtp's Signer, our DSNs
// and reports): reload swaps the keys under it without a restart.
type liveKeys struct{ p atomic.Pointer[dkimKeys] }

func (l *liveKeys) Sign(msg io.ReaderAt, size int64) ([]byte, error) {
	return l.p.Load().signer.Sign(msg, size)
}

func (l *liveKeys) sealer() *mailauth.Sealer { return l.p.Load().sealer }

// newDKIMKeys reads the keys of the active selectors (and the ARC
// sealer's).
func newDKIMKeys(m MailAuthConfig) (*dkimKeys, error) {
	sels, err := loadDKIMKeys(m)
	if err != nil {
		return nil, err
	}
	var dks []mailauth.DomainKeys
	out := &dkimKeys{}
	for _, s := range sels {
		if !s.Active {
			continue
		}
		dk := mailauth.DomainKeys{Domain: s.Domain, Selector: s.Selector, Keys: s.keys}
		dks = append(dks, dk)
		if strings.EqualFold(s.Domain, m.ARCSealDomain) {
			if out.sealer, err = mailauth.NewSealer(dk); err != nil {
				return nil, err
			}
		}
	}
	if out.signer, err = mailauth.NewSigner(dks); err != nil {
		return nil, err
	}
	return out, nil
}

// newLiveKeys loads the keys once, for the start-up.
func newLiveKeys(m MailAuthConfig) (*liveKeys, error) {
	k, err := newDKIMKeys(m)
	if err != nil {
		return nil, err
	}
	l := &liveKeys{}
	l.p.Store(k)
	return l, nil
}

func runDKIM(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "keygen" && args[0] != "check") {
		fmt.Fprintln(stderr, "usage: courriel dkim keygen -domain D -selector S [-dir DIR]\n       courriel dkim check -domain D [-config F] [-dns HOST:PORT]")
		return exitf(2, "want keygen or check")
	}
	fs := newFlagSet("dkim "+args[0], stderr)
	domain := fs.String("domain", "", "the signing domain (d=)")
	if args[0] == "keygen" {
		sel := fs.String("selector", "", "the selector (rotation: a new one each time, e.g. 2026a)")
		dir := fs.String("dir", "/etc/courriel/dkim", "the keys go to DIR/DOMAIN/SELECTOR-{ed25519,rsa}.pem")
		if err := fs.Parse(args[1:]); err != nil {
			return exitf(2, "%v", err)
		}
		if *domain == "" || *sel == "" {
			return exitf(2, "dkim keygen needs -domain and -selector")
		}
		return dkimKeygen(stdout, *dir, strings.ToLower(*domain), *sel)
	}
	cfgPath := fs.String("config", defaultConfigPath, "configuration file")
	dnsAddr := fs.String("dns", "", "ask this DNS server (host:port) instead of mailauth.dns_server or the system's")
	if err := fs.Parse(args[1:]); err != nil {
		return exitf(2, "%v", err)
	}
	if *domain == "" {
		return exitf(2, "dkim check needs -domain")
	}
	cfg, err := LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if *dnsAddr == "" {
		*dnsAddr = cfg.MailAuth.dnsServer(cfg)
	}
	return dkimCheck(ctx, stdout, cfg.MailAuth, strings.ToLower(*domain), mailauth.NewResolver(*dnsAddr))
}

func dkimKeygen(stdout io.Writer, dir, domain, sel string) error {
	paths, err := mailauth.GenerateKeys(dir, domain, sel)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "; DNS records to publish for %s (selector %s):\n", domain, sel)
	for _, a := range []mailauth.Algorithm{mailauth.Ed25519, mailauth.RSA} {
		key, err := mailauth.LoadKey(paths[a], a)
		if err != nil {
			return err
		}
		rec, err := mailauth.TXTRecord(key)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s._domainkey.%s. 3600 IN TXT %s\n", mailauth.DNSSelector(sel, a), domain, mailauth.ZoneStrings(rec))
	}
	// Inactive: a key signs only once receivers can find its record,
	// and a domain has one active selector (a rotation's new table goes
	// in beside the old one, which keeps signing until the switch).
	fmt.Fprintf(stdout, `
# configuration: add it as it is (active = false: it signs nothing yet);
# once the records above are published, set active = true here and
# active = false on the domain's previous selector if any, then reload.
[[mailauth.dkim]]
domain = %q
selector = %q
ed25519_key_file = %q
rsa_key_file = %q
active = false
`, domain, sel, paths[mailauth.Ed25519], paths[mailauth.RSA])
	return nil
}

// dkimCheck compares the published key records of every configured
// selector of domain with its keys; exit status 1 if one differs.
func dkimCheck(ctx context.Context, stdout io.Writer, m MailAuthConfig, domain string, r mailauth.Resolver) error {
	sels, err := loadDKIMKeys(m)
	if err != nil {
		return err
	}
	bad, n := 0, 0
	for _, s := range sels {
		if s.Domain != domain {
			continue
		}
		for _, a := range []mailauth.Algorithm{mailauth.Ed25519, mailauth.RSA} {
			key, ok := s.keys[a]
			if !ok {
				continue
			}
			n++
			name := mailauth.DNSSelector(s.Selector, a) + "._domainkey." + domain
			state := ""
			if s.Active {
				state = " (active)"
			}
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			txts, err := r.LookupTXT(lctx, name)
			cancel()
			if err == nil {
				err = mailauth.MatchRecord(txts, key)
			}
			if err != nil {
				bad++
				fmt.Fprintf(stdout, "%s%s: MISMATCH: %v\n", name, state, err)
				continue
			}
			fmt.Fprintf(stdout, "%s%s: ok\n", name, state)
		}
	}
	if n == 0 {
		return exitf(1, "no DKIM key configured for %s", domain)
	}
	if bad > 0 {
		return exitf(1, "%d of %d published DKIM records of %s do not match the keys", bad, n, domain)
	}
	return nil
}

// authChecker adapts *mailauth.Checker to smtp.AuthChecker (mailauth
// knows nothing of smtp), and offers the ARC seal of forwards.
type authChecker struct {
	c    *mailauth.Checker
	keys *liveKeys
}

func (a authChecker) Check(ctx context.Context, in smtp.AuthInput, msg io.ReaderAt, size int64) (smtp.AuthVerdict, error) {
	v, err := a.c.Check(ctx, mailauth.Input{IP: in.IP, Helo: in.Helo, MailFrom: in.MailFrom}, msg, size)
	if err != nil {
		return smtp.AuthVerdict{}, err
	}
	out := smtp.AuthVerdict{Fields: v.Fields, Header: v.Header, HeaderEnd: v.HeaderEnd, Reason: v.Reason, SPFFailed: v.SPFFailed}
	if sealer := a.keys.sealer(); sealer != nil {
		out.Seal = func(msg io.ReaderAt, size int64) ([]byte, error) {
			return sealer.Seal(msg, size, v.ARC, v.ARCInstances, v.Fields)
		}
	}
	switch v.Action {
	case mailauth.Quarantine:
		out.Action = smtp.AuthQuarantine
	case mailauth.Reject:
		out.Action = smtp.AuthReject
	case mailauth.Defer:
		out.Action = smtp.AuthDefer
	}
	return out, nil
}

// newAuthChecker is port 25's checker, nil when the checks are off.
func newAuthChecker(cfg *Config, keys *liveKeys) smtp.AuthChecker {
	m := cfg.MailAuth
	if !m.InboundChecks {
		return nil
	}
	return authChecker{mailauth.NewChecker(cfg.MyHostname, mailauth.NewResolver(m.dnsServer(cfg)), m.DMARCReject == "quarantine"), keys}
}

// smtpSRS is a.srs for smtp.Options: a nil interface when SRS is off.
func (a *app) smtpSRS() smtp.SRS {
	if a.srs == nil {
		return nil
	}
	return a.srs
}

// checkDKIM is check-config's part: every configured key loads, and its
// record is published as `courriel dkim keygen` printed it.
// A record not published yet is a warning, not a failure: the DNS is not
// the configuration, and `check-config && systemctl reload` must not stop
// at it (receivers treat the signature as absent meanwhile). A published
// record for another key fails: receivers would see dkim=fail.
func checkDKIM(ctx context.Context, cfg *Config, report func(string, error), warn func(string)) {
	if len(cfg.MailAuth.DKIM) == 0 {
		return
	}
	sels, err := loadDKIMKeys(cfg.MailAuth)
	report("dkim: keys load", err)
	if err != nil {
		return
	}
	r := mailauth.NewResolver(cfg.MailAuth.dnsServer(cfg))
	for _, s := range sels {
		for _, a := range []mailauth.Algorithm{mailauth.Ed25519, mailauth.RSA} {
			key, ok := s.keys[a]
			if !ok {
				continue
			}
			name := mailauth.DNSSelector(s.Selector, a) + "._domainkey." + s.Domain
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			txts, err := r.LookupTXT(lctx, name)
			cancel()
			if err == nil {
				err = mailauth.MatchRecord(txts, key)
			}
			var dnsErr *net.DNSError
			if errors.Is(err, mailauth.ErrNoKeyRecord) || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				rec, _ := mailauth.TXTRecord(key)
				warn("dkim: " + name + " is not published: receivers see the signatures as absent until it is: " + name + ". IN TXT " + mailauth.ZoneStrings(rec))
				continue
			}
			report("dkim: "+name+" published", err)
		}
	}
}
