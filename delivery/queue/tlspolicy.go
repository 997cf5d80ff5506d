package queue

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strconv"
	"strings"

	"courriel/tlsconf/dane"
	"courriel/tlsconf/mtasts"
	"courriel/tlsconf/tlsrpt"
)

// SecureResolver answers with whether each answer was DNSSEC-validated: the
// AD bit of a validating resolver the admin trusts. *dane.Resolver is one.
type SecureResolver interface {
	LookupMX(ctx context.Context, name string) ([]*net.MX, bool, error)
	// LookupIPAddr also returns the name host's CNAME chain leads to.
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, string, bool, error)
	LookupTLSA(ctx context.Context, port int, host string) ([]dane.Record, bool, error)
}

// STSPolicies answers a domain's MTA-STS policy: *mtasts.Cache.
type STSPolicies interface {
	Get(ctx context.Context, domain string) mtasts.Result
	// Refetch asks the policy host again (rate-limited), after the policy
	// refused every MX host; Result.Cached when nothing new was fetched.
	Refetch(ctx context.Context, domain string) mtasts.Result
}

// TLSReporter records session outcomes for TLSRPT: *tlsrpt.Recorder.
type TLSReporter interface {
	Record(tlsrpt.Result)
}

// tlsPlan is the TLS one connection must have, and why. The receiver's
// policies (DANE per MX host, MTA-STS per domain) replace the default
// level; an admin's policy for the domain (Options.TLSPolicies) replaces
// them, as Postfix's smtp_tls_policy_maps does.
type tlsPlan struct {
	level   Policy         // none, may, encrypt or verify
	dane    []dane.Record  // non-nil: the certificate is authenticated by these (level encrypt)
	names   []string       // DANE-TA: the names the leaf may carry
	sni     string         // DANE: the TLSA base domain; "": the host name
	sts     *mtasts.Policy // the MTA-STS policy in force (enforce or testing)
	testing bool           // MTA-STS testing: checked and reported, never enforced
	why     string         // for logs and the queue's status
	// nexthop, set for an MX host of a relayhost or route that an MX
	// lookup nobody validated named: under verify, the certificate must
	// name the nexthop or a name under it (Postfix's "secure" match,
	// nexthop and dot-nexthop) rather than the host DNS gave, which
	// whoever answers DNS chooses: the relayhost's password goes only to
	// a host the admin named.
	nexthop string

	domain  string            // the policy domain (recipient domain), "" for routes
	kind    tlsrpt.PolicyType // for TLSRPT
	strings []string          // the policy as published, for TLSRPT
}

// adminPolicy is the admin's level for the route's recipient domain, if
// any (MX routes only): where it is set, the receiver's policies are not
// asked.
func (q *Queue) adminPolicy(rt route) (Policy, bool) {
	if rt.domain == "" {
		return "", false
	}
	p, ok := q.o.TLSPolicies[rt.domain]
	return p, ok
}

// domainTLS is the part of the plan that holds for every host of a route:
// the admin's policy, or the MTA-STS policy of the domain.
func (q *Queue) domainTLS(ctx context.Context, rt route) tlsPlan {
	if p, ok := q.adminPolicy(rt); ok {
		return tlsPlan{level: p, why: "admin policy " + string(p) + " for " + rt.domain}
	}
	plan := tlsPlan{level: q.o.TLSPolicy, why: "default " + string(q.o.TLSPolicy), domain: rt.domain, kind: tlsrpt.PolicyNotFound}
	if rt.domain == "" || q.o.MTASTS == nil {
		return plan
	}
	return q.stsPlan(rt, q.o.MTASTS.Get(ctx, rt.domain))
}

// stsPlan is the domain's plan under an MTA-STS lookup's result.
func (q *Queue) stsPlan(rt route, res mtasts.Result) tlsPlan {
	plan := tlsPlan{level: q.o.TLSPolicy, why: "default " + string(q.o.TLSPolicy), domain: rt.domain, kind: tlsrpt.PolicyNotFound}
	if res.Err != nil && res.Policy == nil {
		var fe *mtasts.FetchError
		if errors.As(res.Err, &fe) {
			kind := tlsrpt.STSPolicyFetchError
			switch {
			case fe.Invalid:
				kind = tlsrpt.STSPolicyInvalid
			case fe.WebPKI:
				kind = tlsrpt.STSWebPKIInvalid
			}
			q.reportTLS(tlsrpt.Result{PolicyDomain: rt.domain, PolicyType: tlsrpt.PolicySTS, Failure: kind, FailureReason: res.Err.Error()})
		}
	}
	if res.Policy == nil {
		return plan
	}
	plan.sts, plan.kind, plan.strings = res.Policy, tlsrpt.PolicySTS, res.Policy.Strings()
	if res.Policy.Mode == mtasts.ModeEnforce {
		plan.level, plan.why = PolicyVerify, "mta-sts enforce ("+rt.domain+")"
	} else {
		plan.testing, plan.why = true, plan.why+", mta-sts testing ("+rt.domain+")"
	}
	return plan
}

// hopTLS completes the plan for one MX host: DANE when its TLSA records are
// DNSSEC-validated (RFC 8461 §2: DANE takes precedence over MTA-STS), else
// MTA-STS's MX match. A failure means the host must not be used.
func (q *Queue) hopTLS(ctx context.Context, rt route, dp tlsPlan, h hop, ad addrDNS) (tlsPlan, *failure) {
	if h.nexthop != "" && !h.mxSecure && !strings.EqualFold(h.name, h.nexthop) {
		dp.nexthop = strings.ToLower(strings.TrimSuffix(h.nexthop, "."))
	}
	if _, ok := q.adminPolicy(rt); ok || rt.domain == "" && !h.secureDNS {
		// A route or relayhost gets DANE only with Options.DANERoutes.
		return dp, nil
	}
	port, err := strconv.Atoi(h.port)
	if err != nil {
		port = 25
	}
	plan := dp
	// RFC 7672 §2.2: TLSA records are looked up only for MX hosts whose
	// MX RRset and address records are both validated; §2.2.2: at the
	// name a (validated) CNAME chain leads to first, then at the MX name.
	bases := []string{h.name}
	if ad.canonical != "" && ad.canonical != h.name {
		bases = []string{ad.canonical, h.name}
	}
	for _, base := range bases {
		if q.o.DANE == nil || !h.mxSecure || !ad.secure {
			break
		}
		recs, secure, err := q.o.DANE.LookupTLSA(ctx, port, base)
		var de *net.DNSError
		switch {
		case err != nil && errors.As(err, &de) && de.IsNotFound:
			// No TLSA records here: the next base, or no DANE.
			continue
		case err != nil:
			// RFC 7672 §2.2: a failed TLSA lookup (bogus or unreachable)
			// makes the host unusable; it may be a downgrade attack.
			f := tempFailure("4.7.5", "TLSA lookup for _"+h.port+"._tcp."+base+" failed, host not used (RFC 7672 §2.2): "+printable(err.Error(), 200))
			f.relay, f.remoteMTA = h.name, h.name
			q.reportTLS(tlsrpt.Result{PolicyDomain: rt.domain, PolicyType: tlsrpt.PolicyTLSA, ReceivingMX: h.name, Failure: tlsrpt.DNSSECInvalid, FailureReason: f.text})
			return plan, f
		case secure:
			plan.strings = nil
			for i, r := range recs {
				if i == dane.MaxRecords {
					break
				}
				plan.strings = append(plan.strings, r.String())
			}
			plan.kind, plan.sts, plan.testing = tlsrpt.PolicyTLSA, nil, false
			plan.level = PolicyEncrypt // TLS is required either way (RFC 7672 §2.2)
			plan.sni = base            // RFC 7672 §8.1: SNI is the TLSA base domain
			if usable := dane.Usable(recs); len(usable) > 0 {
				plan.dane = usable
				// RFC 7672 §3.2.2: the TLSA base domain, the MX name
				// when they differ, and the next-hop domain.
				plan.names = []string{base, h.name}
				if nd := cmp.Or(rt.domain, h.nexthop); nd != "" {
					// A relayhost's or route's nexthop is its
					// next-hop domain (Postfix: the nexthop).
					plan.names = append(plan.names, nd)
				}
				plan.why = "dane (" + base + ")"
			} else {
				plan.why = "dane, no usable TLSA record: unauthenticated TLS (" + base + ")"
			}
			return plan, nil
		}
		break // an insecure TLSA RRset: no DANE
	}
	if plan.sts != nil && !plan.sts.Match(h.name) {
		text := "MX host " + h.name + " is not listed in the MTA-STS policy of " + rt.domain
		if !plan.testing {
			f := tempFailure("4.7.5", text+" (mode enforce), host not used")
			f.relay, f.remoteMTA = h.name, h.name
			q.reportTLS(tlsrpt.Result{PolicyDomain: rt.domain, PolicyType: tlsrpt.PolicySTS, PolicyStrings: plan.strings, ReceivingMX: h.name, Failure: tlsrpt.ValidationFailure, FailureReason: f.text})
			return plan, f
		}
		q.reportTLS(tlsrpt.Result{PolicyDomain: rt.domain, PolicyType: tlsrpt.PolicySTS, PolicyStrings: plan.strings, ReceivingMX: h.name, Failure: tlsrpt.ValidationFailure, FailureReason: text + " (mode testing, delivered anyway)"})
		q.log.Info("MTA-STS testing: MX host not listed, delivering anyway", "domain", rt.domain, "mx", h.name)
	}
	return plan, nil
}

// tlsConfig is the client side of outbound TLS under a plan. Without
// verification the certificate is accepted as is: opportunistic TLS
// (RFC 7435) still beats clear text. testFail receives what MTA-STS testing
// mode would have refused.
func (q *Queue) tlsConfig(name string, plan *tlsPlan, testFail *error) *tls.Config {
	if plan.sni != "" {
		name = plan.sni
	}
	cfg := &tls.Config{
		ServerName: name, // SNI: the MX host (RFC 7672 §8.1); an IP sends none
		RootCAs:    q.o.RootCAs,
		MinVersion: tls.VersionTLS12, // SPEC §7
	}
	switch {
	case plan.dane != nil:
		cfg.InsecureSkipVerify = true // the chain is checked against the TLSA records instead
		records, names := plan.dane, plan.names
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := dane.Verify(cs, records, names)
			return err
		}
	case plan.level == PolicyVerify && plan.nexthop != "":
		cfg.InsecureSkipVerify = true // the chain below, the name against the nexthop
		roots, nexthop := q.o.RootCAs, plan.nexthop
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyNexthop(cs, nexthop, roots)
		}
	case plan.level == PolicyVerify:
	case plan.testing:
		cfg.InsecureSkipVerify = true
		roots := q.o.RootCAs
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			*testFail = verifyPKIX(cs, name, roots)
			return nil
		}
	default:
		cfg.InsecureSkipVerify = true
	}
	return cfg
}

// verifyNexthop checks the chain to roots and that the leaf names nexthop
// or a host under it (a DNS name or wildcard ending in ".nexthop").
func verifyNexthop(cs tls.ConnectionState, nexthop string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	leaf := cs.PeerCertificates[0]
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
		return err
	}
	if leaf.VerifyHostname(nexthop) == nil {
		return nil
	}
	for _, n := range leaf.DNSNames {
		if strings.HasSuffix(strings.ToLower(strings.TrimSuffix(n, ".")), "."+nexthop) {
			return nil
		}
	}
	return x509.HostnameError{Certificate: leaf, Host: nexthop + " (nor a host under it: the MX lookup was not DNSSEC-validated)"}
}

// verifyPKIX is what crypto/tls would check: the chain to roots and the name.
func verifyPKIX(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return err
}

// tlsFailureType is the TLSRPT result type of a TLS error.
func tlsFailureType(err error) tlsrpt.ResultType {
	var he x509.HostnameError
	var ce x509.CertificateInvalidError
	var ua x509.UnknownAuthorityError
	switch {
	case errors.Is(err, dane.ErrNoMatch):
		return tlsrpt.TLSAInvalid
	case errors.As(err, &he):
		return tlsrpt.CertificateHostMismatch
	case errors.As(err, &ce) && ce.Reason == x509.Expired:
		return tlsrpt.CertificateExpired
	case errors.As(err, &ua):
		return tlsrpt.CertificateNotTrusted
	}
	return tlsrpt.ValidationFailure
}

// reportTLS hands a session outcome to TLSRPT, if configured.
func (q *Queue) reportTLS(r tlsrpt.Result) {
	if q.o.TLSReport == nil || r.PolicyDomain == "" {
		return
	}
	r.FailureReason = printable(r.FailureReason, 300)
	q.o.TLSReport.Record(r)
}

// reportSession records one session's outcome under its plan.
func (q *Queue) reportSession(plan *tlsPlan, h hop, conn net.Conn, kind tlsrpt.ResultType, reason string) {
	if plan.domain == "" {
		return
	}
	hostOf := func(a net.Addr) string {
		if ta, ok := a.(*net.TCPAddr); ok {
			return ta.IP.String()
		}
		return ""
	}
	q.reportTLS(tlsrpt.Result{
		PolicyDomain: plan.domain, PolicyType: plan.kind, PolicyStrings: plan.strings,
		SendingIP: hostOf(conn.LocalAddr()), ReceivingMX: h.name, ReceivingIP: hostOf(conn.RemoteAddr()),
		Failure: kind, FailureReason: reason,
	})
}

func joinWhy(text, why string) string {
	if why == "" || strings.Contains(text, "[tls: ") {
		return text
	}
	return text + " [tls: " + why + "]"
}
