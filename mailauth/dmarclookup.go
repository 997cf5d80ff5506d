package mailauth

import (
	"context"
	"errors"
	"net"
	"net/mail"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"

	"courriel/internal/envaddr"
)

var (
	// errSeveralPolicies: more than one DMARC record at a name, where RFC
	// 7489 §6.6.3 says DMARC is not applied.
	errSeveralPolicies = errors.New("mailauth: several DMARC records")
	// errPolicyTemp: the policy lookup failed for now (SERVFAIL, timeout).
	errPolicyTemp = errors.New("mailauth: DMARC policy lookup failed")
)

// lookupDMARC finds the DMARC record of domain, as RFC 7489 §6.6.3 reads
// it, where go-msgauth's own lookup joins every TXT record at the name
// into one: only records that start with "v=DMARC1" count, none is
// dmarc.ErrNoPolicy (the caller then asks the organisational domain), and
// more than one is errSeveralPolicies.
func (c *Checker) lookupDMARC(ctx context.Context, domain string) (*dmarc.Record, error) {
	txts, err := c.resolver.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, dmarc.ErrNoPolicy
		}
		return nil, errors.Join(errPolicyTemp, err)
	}
	var recs []string
	for _, t := range txts {
		if t = strings.TrimSpace(t); isDMARCRecord(t) {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return nil, dmarc.ErrNoPolicy
	case 1:
		return dmarc.Parse(normalizeDMARC(recs[0]))
	}
	return nil, errSeveralPolicies
}

// isDMARCRecord: the record's first tag is v=DMARC1 (its value is
// case-sensitive in RFC 7489's grammar, %x44 %x4d ...).
func isDMARCRecord(t string) bool {
	name, rest, ok := strings.Cut(t, "=")
	if !ok || strings.TrimSpace(name) != "v" {
		return false
	}
	v, _, _ := strings.Cut(rest, ";")
	return strings.TrimSpace(v) == "DMARC1"
}

// normalizeDMARC lower-cases the tag names and the values RFC 7489 spells
// as quoted strings (case-insensitive in ABNF): "p=Reject" is p=reject,
// which go-msgauth's parser would refuse, and an unparsable record is
// treated as none. Report addresses (rua, ruf) are left alone.
func normalizeDMARC(t string) string {
	tags := strings.Split(t, ";")
	for i, tag := range tags {
		name, value, ok := strings.Cut(tag, "=")
		if !ok {
			continue
		}
		name = strings.ToLower(strings.TrimSpace(name))
		switch name {
		case "p", "sp", "adkim", "aspf", "fo", "rf":
			value = strings.ToLower(value)
		}
		tags[i] = name + "=" + strings.TrimSpace(value)
	}
	return strings.Join(tags, ";")
}

// fromDomains returns the author domains of the message: the domain of
// every address of every From field, lower-cased, without duplicates. A
// field net/mail cannot parse (an unquoted address as display name, an
// unclosed comment, a trailing ';') still names its domains, as mail
// readers still show them: they are taken from what follows each '@'.
func fromDomains(fields []field) []string {
	var out []string
	add := func(d string) {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if validDomain(d) && !slices.Contains(out, d) && len(out) < maxFromDomains {
			out = append(out, d)
		}
	}
	for _, f := range fields {
		if !strings.EqualFold(f.Name, "From") {
			continue
		}
		if addrs, err := mail.ParseAddressList(f.value()); err == nil {
			for _, a := range addrs {
				// Internal form: x@y@example.org for "x@y"@example.org.
				if _, d, ok := envaddr.Split(a.Address); ok {
					add(d)
				}
			}
			continue
		}
		v := f.value()
		for {
			i := strings.IndexByte(v, '@')
			if i < 0 {
				break
			}
			v = v[i+1:]
			end := strings.IndexFunc(v, func(r rune) bool {
				return !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80)
			})
			if end < 0 {
				end = len(v)
			}
			add(v[:end])
		}
	}
	return out
}

// maxFromDomains bounds the policy lookups one message can cause.
const maxFromDomains = 10
