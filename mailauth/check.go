package mailauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"

	"courriel/internal/envaddr"
)

// Action is what the checks decide for a message.
type Action int

const (
	Accept     Action = iota
	Quarantine        // deliver to the Junk folder
	Reject            // 550 5.7.1
	Defer             // 451: the policy wants a decision and DNS failed
)

func (a Action) String() string {
	return [...]string{"accept", "quarantine", "reject", "defer"}[a]
}

// Input is what the checks know of the SMTP session; every string is
// hostile.
type Input struct {
	IP       netip.Addr
	Helo     string
	MailFrom string // "" for the null sender
}

// Verdict is the outcome of Check.
type Verdict struct {
	// Fields is the Authentication-Results field to put on top, CRLF
	// terminated.
	Fields []byte
	// Header, when not nil, is the message's first HeaderEnd octets (its
	// header fields) without the Authentication-Results fields claiming
	// our authserv-id (RFC 8601 §5: only we may write those).
	Header    []byte
	HeaderEnd int64
	Action    Action
	Reason    string // why, when Action is not Accept
	// SPFFailed: the MAIL FROM domain says the client may not send for it
	// (fail or softfail), so nothing must bounce to that sender.
	SPFFailed bool
	// ARC is the validation of the message's ARC chain (none, pass, fail,
	// temperror) and ARCInstances how many sets it has (-1: malformed):
	// what Sealer.Seal needs to extend the chain.
	ARC          authres.ResultValue
	ARCInstances int
}

// Limits of one check.
const (
	// checkTimeout bounds all the DNS work for one message; what is not
	// answered by then is a temperror.
	checkTimeout = 20 * time.Second
	// maxSignatures: a message with more DKIM signatures gets only the
	// first ones verified (each costs a DNS lookup and a hash of the body).
	maxSignatures = 8
)

// Checker runs SPF, DKIM and DMARC on inbound mail. It is safe for
// concurrent use and holds no lock while checking.
type Checker struct {
	authservID string
	resolver   Resolver
	// onReject is what a DMARC p=reject failure gets: Reject, or Quarantine
	// for a site that prefers not to refuse (courriel's dmarc_reject).
	onReject Action
	// sample draws a number in [0, 100) for DMARC's pct.
	sample func() int
}

// NewChecker returns a Checker writing authservID (courriel: myhostname) in
// its results. quarantineRejects makes DMARC p=reject deliver to Junk
// instead of refusing.
func NewChecker(authservID string, r Resolver, quarantineRejects bool) *Checker {
	c := &Checker{authservID: authservID, resolver: r, onReject: Reject, sample: func() int { return rand.IntN(100) }}
	if quarantineRejects {
		c.onReject = Quarantine
	}
	return c
}

// Check checks msg (size octets, as received) from the session in.
// It returns an error only when msg cannot be read; DNS trouble is a
// result.
func (c *Checker) Check(ctx context.Context, in Input, msg io.ReaderAt, size int64) (Verdict, error) {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	fields, end, whole, err := readHeader(io.NewSectionReader(msg, 0, size))
	if err != nil {
		return Verdict{}, fmt.Errorf("mailauth: reading the header: %w", err)
	}
	var v Verdict
	if kept, removed := c.withoutOwnResults(fields); removed {
		v.Header, v.HeaderEnd = kept, end
	}

	helo := strings.TrimSuffix(strings.ToLower(in.Helo), ".")
	ip := net.IP(in.IP.Unmap().AsSlice())
	var results []authres.Result

	// SPF (RFC 7208 §2.3, §2.4): HELO when it is a host name, MAIL FROM
	// unless null; for <> the HELO result is the MAIL FROM one.
	heloResult := spf.None
	if validDomain(helo) {
		heloResult = c.checkSPF(ctx, ip, helo, "postmaster@"+helo)
	}
	mailFromResult, spfDomain := heloResult, helo
	if in.MailFrom != "" {
		local, d, _ := envaddr.Split(in.MailFrom)
		spfDomain = strings.ToLower(d)
		mailFromResult = c.checkSPF(ctx, ip, helo, spfSender(local, d))
		results = append(results, &authres.SPFResult{Value: authres.ResultValue(mailFromResult), From: clean(in.MailFrom)})
		v.SPFFailed = mailFromResult == spf.Fail || mailFromResult == spf.SoftFail
	}
	if validDomain(helo) {
		results = append(results, &authres.SPFResult{Value: authres.ResultValue(heloResult), Helo: clean(helo)})
	}

	// DKIM: every signature (up to maxSignatures).
	var dkimPass []string
	dkimTemp := false
	var verifs []*dkim.Verification
	if whole {
		verifs, err = dkim.VerifyWithOptions(io.NewSectionReader(msg, 0, size), &dkim.VerifyOptions{
			LookupTXT:        func(name string) ([]string, error) { return c.resolver.LookupTXT(ctx, name) },
			MaxVerifications: maxSignatures,
		})
	}
	if !whole {
		results = append(results, &authres.DKIMResult{Value: authres.ResultPermError, Reason: "header over 1 MiB or 5,000 fields"})
	} else if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// The message could not be parsed as a whole (e.g. a malformed
		// header): no signature of it can pass.
		results = append(results, &authres.DKIMResult{Value: authres.ResultPermError, Reason: "unparsable message"})
	}
	for _, vf := range verifs {
		r := &authres.DKIMResult{Value: authres.ResultPass, Domain: clean(vf.Domain), Identifier: clean(vf.Identifier)}
		switch {
		case vf.Err == nil:
			dkimPass = append(dkimPass, strings.ToLower(vf.Domain))
		case dkim.IsTempFail(vf.Err):
			r.Value, dkimTemp = authres.ResultTempError, true
		case dkim.IsPermFail(vf.Err):
			r.Value = authres.ResultPermError
		case strings.Contains(vf.Err.Error(), "body length tag"):
			// l=: go-msgauth verifies no such signature, because anything
			// appended after the signed length would pass. Not a forgery,
			// so RFC 8601 §2.7.1's "policy", not "fail"; it aligns nothing.
			r.Value, r.Reason = authres.ResultPolicy, "l= (body length) not accepted"
		default:
			r.Value = authres.ResultFail
		}
		results = append(results, r)
	}
	if len(verifs) == 0 && err == nil && whole {
		results = append(results, &authres.DKIMResult{Value: authres.ResultNone})
	}

	// ARC, where present: reported, not used in the decision.
	arc := authres.ResultNone
	if whole {
		arc, _ = c.verifyARC(ctx, fields, msg, size, end)
	}
	if arc != authres.ResultNone {
		// authres v0.7.0 formats an ARCResult without its method name.
		results = append(results, &authres.GenericResult{Method: "arc", Value: arc})
	}
	v.ARC, v.ARCInstances = arc, -1
	if sets, err := arcSets(fields); err == nil {
		v.ARCInstances = len(sets)
	}

	// DMARC.
	d := c.dmarc(ctx, fields, spfDomain, mailFromResult, dkimPass, dkimTemp)
	results = append(results, &authres.DMARCResult{Value: d.value, From: clean(d.from), Reason: d.reason})
	v.Action = d.action
	if d.action != Accept {
		v.Reason = d.why
	}
	v.Fields = formatResults(c.authservID, results)
	return v, nil
}

// formatResults is the Authentication-Results field, one result per line.
func formatResults(id string, results []authres.Result) []byte {
	b := []byte("Authentication-Results: " + id)
	for _, r := range results {
		one := authres.Format(id, []authres.Result{r}) // "id; method=value params"
		b = append(b, ";\r\n\t"...)
		b = append(b, strings.TrimSpace(strings.TrimPrefix(one, id+";"))...)
	}
	return append(b, "\r\n"...)
}

// checkSPF is check_host() (RFC 7208 §4) for sender from ip, through our
// resolver: the library does the mechanisms, macros and the lookup limits
// (10 DNS mechanisms, 2 void lookups).
func (c *Checker) checkSPF(ctx context.Context, ip net.IP, helo, sender string) spf.Result {
	r, _ := spf.CheckHostWithSender(ip, helo, sender, spf.WithResolver(c.resolver), spf.WithContext(ctx))
	return r
}

// spfSender is the sender as the SPF library must be given it: the library
// cuts it at its first '@' (blitiri.com.ar/go/spf's split), so a local
// part holding one ("x@y"@example.net, RFC 5321 §4.1.2) would have it
// check "y"@example.net" for a domain. Such a local part becomes
// "postmaster", RFC 7208 §4.3's stand-in for a local part there is none
// of; it only feeds the %{l} and %{s} macros, which few policies use.
func spfSender(local, domain string) string {
	if strings.ContainsRune(local, '@') {
		local = "postmaster"
	}
	return local + "@" + domain
}

// withoutOwnResults returns the header fields without the
// Authentication-Results claiming our authserv-id, and whether there were
// any.
func (c *Checker) withoutOwnResults(fields []field) ([]byte, bool) {
	var kept []byte
	removed := false
	for _, f := range fields {
		if strings.EqualFold(f.Name, "Authentication-Results") && strings.EqualFold(authservIDOf(f.value()), c.authservID) {
			removed = true
			continue
		}
		kept = append(kept, f.Raw...)
	}
	return kept, removed
}

// authservIDOf is the authserv-id of an Authentication-Results value: the
// first token, comments skipped (RFC 8601 §2.2). A value authres.Parse
// refuses is still ours to remove if it starts with our id.
func authservIDOf(v string) string {
	for {
		v = strings.TrimLeft(v, " \t")
		if !strings.HasPrefix(v, "(") {
			break
		}
		i := strings.IndexByte(v, ')')
		if i < 0 {
			return ""
		}
		v = v[i+1:]
	}
	if q, ok := strings.CutPrefix(v, `"`); ok {
		// RFC 8601 §2.2: the authserv-id is a value, so a quoted-string
		// too; a forged "ours" in quotes must be recognised as ours.
		if i := strings.IndexByte(q, '"'); i >= 0 {
			return strings.TrimSuffix(q[:i], ".")
		}
		return ""
	}
	if i := strings.IndexAny(v, "; \t("); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSuffix(v, ".")
}

// dmarcOutcome is DMARC's result for the message.
type dmarcOutcome struct {
	value  authres.ResultValue
	from   string
	reason string // in the header
	action Action
	why    string // in the reply
}

// dmarc applies RFC 7489 §6.6 to the author domain of fields, given the
// SPF result for spfDomain and the domains of the passing DKIM signatures.
func (c *Checker) dmarc(ctx context.Context, fields []field, spfDomain string, spfResult spf.Result, dkimPass []string, dkimTemp bool) dmarcOutcome {
	froms := fromDomains(fields)
	if len(froms) == 0 {
		// No author domain at all: nothing to align with (§6.6.1).
		return dmarcOutcome{value: authres.ResultPermError, reason: "no From domain"}
	}
	// Several From fields or addresses (RFC 7489 §6.6.1): each domain is
	// checked and the strictest outcome applies, so that a second
	// address, or a From that net/mail cannot parse, cannot slip a domain
	// with p=reject past its policy.
	var worst dmarcOutcome
	for i, from := range froms {
		o := c.dmarcFor(ctx, from, spfDomain, spfResult, dkimPass, dkimTemp)
		if i == 0 || stricter(o, worst) {
			worst = o
		}
	}
	return worst
}

// stricter reports whether a is a harsher outcome than b: by action
// (reject, defer, quarantine, accept), then by result (a failure over
// the rest, a pass last).
func stricter(a, b dmarcOutcome) bool {
	rank := func(o dmarcOutcome) int {
		switch o.action {
		case Reject:
			return 40
		case Defer:
			return 30
		case Quarantine:
			return 20
		}
		switch o.value {
		case authres.ResultFail:
			return 3
		case authres.ResultPass:
			return 0
		}
		return 1
	}
	return rank(a) > rank(b)
}

// dmarcFor is DMARC for one author domain.
func (c *Checker) dmarcFor(ctx context.Context, from, spfDomain string, spfResult spf.Result, dkimPass []string, dkimTemp bool) dmarcOutcome {
	o := dmarcOutcome{from: from}
	org := orgDomain(from)
	rec, err := c.lookupDMARC(ctx, from)
	atOrg := false
	if errors.Is(err, dmarc.ErrNoPolicy) && org != from {
		rec, err = c.lookupDMARC(ctx, org)
		atOrg = true
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		o.value = authres.ResultNone
		return o
	case errors.Is(err, errSeveralPolicies):
		o.value, o.reason = authres.ResultNone, "several DMARC records"
		return o
	case errors.Is(err, errPolicyTemp) || errors.Is(err, context.DeadlineExceeded):
		o.value, o.reason = authres.ResultTempError, "policy lookup failed"
		return o
	case err != nil:
		o.value, o.reason = authres.ResultPermError, "bad policy record"
		return o
	}
	aligned := func(d string, mode dmarc.AlignmentMode) bool {
		if mode == dmarc.AlignmentStrict {
			return d == from
		}
		return d != "" && orgDomain(d) == org
	}
	if spfResult == spf.Pass && aligned(spfDomain, rec.SPFAlignment) {
		o.value = authres.ResultPass
		return o
	}
	for _, d := range dkimPass {
		if aligned(d, rec.DKIMAlignment) {
			o.value = authres.ResultPass
			return o
		}
	}
	policy := rec.Policy
	if atOrg && from != org && rec.SubdomainPolicy != "" {
		policy = rec.SubdomainPolicy
	}
	if spfResult == spf.TempError || dkimTemp {
		// An identifier that might have passed could not be checked.
		o.value, o.reason = authres.ResultTempError, "SPF or DKIM check failed temporarily"
		if policy == dmarc.PolicyReject || policy == dmarc.PolicyQuarantine {
			o.action, o.why = Defer, "DMARC policy of "+from+" needs SPF or DKIM, and DNS failed"
		}
		return o
	}
	o.value = authres.ResultFail
	// pct (§6.6.4): messages outside the sample get the next policy down.
	if rec.Percent != nil && *rec.Percent < 100 && c.sample() >= *rec.Percent {
		switch policy {
		case dmarc.PolicyReject:
			policy = dmarc.PolicyQuarantine
		case dmarc.PolicyQuarantine:
			policy = dmarc.PolicyNone
		}
	}
	o.reason = "p=" + string(policy)
	switch policy {
	case dmarc.PolicyReject:
		o.action, o.why = c.onReject, "DMARC policy of "+from+" (reject): neither SPF nor DKIM aligned"
	case dmarc.PolicyQuarantine:
		o.action, o.why = Quarantine, "DMARC policy of "+from+" (quarantine): neither SPF nor DKIM aligned"
	}
	return o
}

// orgDomain is the organisational domain of d (RFC 7489 §3.2): the
// public suffix plus one label, from the Public Suffix List; d itself when
// the list has no answer (a bare suffix, an unknown name).
func orgDomain(d string) string {
	o, err := publicsuffix.EffectiveTLDPlusOne(d)
	if err != nil {
		return d
	}
	return o
}

// clean makes a hostile value safe inside a header field: printable ASCII
// without backslashes, at most 255 octets. Quotes stay, so that a quoted
// local part reads as sent: authres quotes such a value and escapes its
// quotes, and only a backslash could undo that.
func clean(s string) string {
	if len(s) > 255 {
		s = s[:255]
	}
	b := []byte(s)
	for i, c := range b {
		if c <= ' ' || c >= 0x7f || c == '\\' {
			b[i] = '?'
		}
	}
	return string(b)
}
