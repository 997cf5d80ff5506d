package mailauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"courriel/internal/envaddr"
)

// SRS rewrites the envelope sender of mail we forward (the Sender Rewriting
// Scheme): the forward leaves from SRS0=HASH=TT=domain=local@ours, which
// passes SPF for our domain at the next hop, and a bounce to it comes back
// to us, where Reverse gives the original sender. HASH authenticates the
// rest (HMAC-SHA256 with the configured secret), so that nobody can use the
// scheme to relay through us; TT is the day of the rewriting, so that an
// address stops working after MaxAge.
//
// A sender that is already another forwarder's SRS address (a forward of a
// forward) gets the scheme's second form instead, SRS1=HASH=fwd.example=
// followed by the rest of that SRS0 address after "SRS0": it stays short
// (no SRS0 inside an SRS0), and a bounce to it goes straight back to the
// first forwarder, whose own hash and timestamp decide; only it can. An
// SRS1 address of another forwarder keeps its first forwarder and gets our
// hash.
//
// The hash is 8 base32 characters (40 bits) rather than the 4 base64 ones
// of other implementations: base32 survives MTAs that change the case of
// a local part. Only we read our SRS addresses, so the format is ours;
// the SRS0 and SRS1 addresses of others are read in the common format
// (SRS0, a separator among "=+-", then fields separated by "=").
type SRS struct {
	secret []byte
	domain string
	now    func() time.Time
}

// SRSMaxAge is how long a rewritten address accepts bounces: past the
// retry time of any sane MTA (Postfix: 5 days), as postsrsd's 21 days.
const SRSMaxAge = 21 * 24 * time.Hour

// srsPrefix starts the addresses we write for an original sender,
// srs1Prefix those for another forwarder's SRS address.
const (
	srsPrefix  = "SRS0="
	srs1Prefix = "SRS1="
)

var srsEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewSRS returns the scheme for addresses @domain with secret (at least 16
// octets); now may be nil.
func NewSRS(secret, domain string, now func() time.Time) (*SRS, error) {
	if len(secret) < 16 {
		return nil, errors.New("srs: the secret must be at least 16 characters")
	}
	if !validDomain(domain) {
		return nil, fmt.Errorf("srs: domain %q is not a host name", domain)
	}
	if now == nil {
		now = time.Now
	}
	return &SRS{secret: []byte(secret), domain: strings.ToLower(domain), now: now}, nil
}

// Domain is the domain of the rewritten addresses.
func (s *SRS) Domain() string { return s.domain }

// day is the SRS timestamp: days since the epoch, modulo 1024, in two
// base32 characters.
func srsDay(t time.Time) int { return int(t.Unix()/86400) % 1024 }

func srsStamp(day int) string {
	const digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	return string([]byte{digits[day>>5&31], digits[day&31]})
}

func (s *SRS) hash(stamp, domain, local string) string {
	m := hmac.New(sha256.New, s.secret)
	// Lower case throughout: an MTA on the way may change the case.
	m.Write([]byte(strings.ToUpper(stamp) + "=" + strings.ToLower(domain) + "=" + strings.ToLower(local)))
	return srsEncoding.EncodeToString(m.Sum(nil))[:8]
}

// hash1 authenticates an SRS1 address: the first forwarder's domain and
// the rest of its SRS0 address. The input starts differently from hash's,
// so that no SRS0 hash is a valid SRS1 one.
func (s *SRS) hash1(domain, rest string) string {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte("SRS1=" + strings.ToLower(domain) + "=" + strings.ToLower(rest)))
	return srsEncoding.EncodeToString(m.Sum(nil))[:8]
}

// otherSRS reads another forwarder's SRS address (SRS0 or SRS1 at domain)
// as the first forwarder's domain and the rest of its SRS0 address after
// "SRS0" (starting with its separator); ok is false for other addresses.
func otherSRS(local, domain string) (first, rest string, ok bool) {
	switch {
	case len(local) > 5 && hasPrefixFold(local, "SRS0") && strings.IndexByte("=+-", local[4]) >= 0:
		return domain, local[4:], validDomain(domain)
	case len(local) > 5 && hasPrefixFold(local, "SRS1") && strings.IndexByte("=+-", local[4]) >= 0:
		// SRS1=HASH=first.example=REST: the hash is the other
		// forwarder's, kept out; REST starts with SRS0's separator.
		f := strings.SplitN(local[5:], "=", 3)
		if len(f) != 3 || f[2] == "" || strings.IndexByte("=+-", f[2][0]) < 0 || !validDomain(f[1]) {
			return "", "", false
		}
		return f[1], f[2], true
	}
	return "", "", false
}

// Forward rewrites sender (local@domain) into an address of ours: SRS0
// for an original sender, SRS1 for another forwarder's SRS address. An
// address already ours (one of our SRS addresses, bounced back through
// another forward) is kept as it is. A quoted local part ("x@y"@example.net,
// "john doe"@example.net) is not rewritten: inside ours it would need
// quoting again, and a bounce to "SRS0=…=x@y"@ours would be refused at
// RCPT as a relay trick, by us as by Postfix with postsrsd.
func (s *SRS) Forward(sender string) (string, error) {
	local, domain, ok := cutAddress(sender)
	if !ok {
		return "", fmt.Errorf("srs: %q is not an address", sender)
	}
	if !envaddr.DotAtom(local, true) {
		return "", fmt.Errorf("srs: %q has a quoted local part", sender)
	}
	if s.IsSRS(sender) {
		return sender, nil
	}
	var rewritten string
	if first, rest, ok := otherSRS(local, domain); ok {
		rewritten = srs1Prefix + s.hash1(first, rest) + "=" + first + "=" + rest
	} else {
		stamp := srsStamp(srsDay(s.now()))
		rewritten = srsPrefix + s.hash(stamp, domain, local) + "=" + stamp + "=" + domain + "=" + local
	}
	if len(rewritten)+1+len(s.domain) > envaddr.MaxAddrLen {
		// Past RFC 5321's path (§4.5.3.1.3), which courriel's RCPT
		// enforces: the bounce would be refused. No local-part limit (a
		// long SRS0 address is what forwarders send; smtp takes it).
		return "", fmt.Errorf("srs: %q is too long to rewrite", sender)
	}
	return rewritten + "@" + s.domain, nil
}

// ErrNotSRS: the address is not one of our SRS addresses.
var ErrNotSRS = errors.New("srs: not an SRS address of ours")

// IsSRS says whether addr looks like one of our SRS addresses (Reverse
// decides whether it is valid).
func (s *SRS) IsSRS(addr string) bool {
	local, domain, ok := cutAddress(addr)
	return ok && strings.EqualFold(domain, s.domain) && (hasPrefixFold(local, srsPrefix) || hasPrefixFold(local, srs1Prefix))
}

// Reverse gives the original sender of one of our SRS0 addresses, or the
// first forwarder's SRS0 address for one of our SRS1 addresses; an
// address with a wrong hash, or an SRS0 older than SRSMaxAge, is refused.
func (s *SRS) Reverse(addr string) (string, error) {
	if !s.IsSRS(addr) {
		return "", ErrNotSRS
	}
	local, _, _ := cutAddress(addr)
	if hasPrefixFold(local, srs1Prefix) {
		// SRS1 carries no timestamp of ours: the first forwarder checks
		// its own when the bounce reaches it.
		f := strings.SplitN(local[len(srs1Prefix):], "=", 3)
		if len(f) != 3 || f[2] == "" || strings.IndexByte("=+-", f[2][0]) < 0 {
			return "", errors.New("srs: malformed address")
		}
		if !hmac.Equal([]byte(strings.ToUpper(f[0])), []byte(s.hash1(f[1], f[2]))) {
			return "", errors.New("srs: bad hash")
		}
		if !validDomain(f[1]) {
			return "", errors.New("srs: bad domain")
		}
		return "SRS0" + f[2] + "@" + f[1], nil
	}
	parts := strings.SplitN(local[len(srsPrefix):], "=", 4)
	if len(parts) != 4 || parts[2] == "" || parts[3] == "" {
		return "", errors.New("srs: malformed address")
	}
	hash, stamp, domain, orig := parts[0], strings.ToUpper(parts[1]), parts[2], parts[3]
	if !hmac.Equal([]byte(strings.ToUpper(hash)), []byte(s.hash(stamp, domain, orig))) {
		return "", errors.New("srs: bad hash")
	}
	day, ok := stampDay(stamp)
	if !ok {
		return "", errors.New("srs: bad timestamp")
	}
	age := (srsDay(s.now()) - day + 1024) % 1024
	if time.Duration(age)*24*time.Hour > SRSMaxAge {
		return "", errors.New("srs: address expired")
	}
	if !validDomain(domain) {
		return "", errors.New("srs: bad domain")
	}
	return orig + "@" + domain, nil
}

func stampDay(stamp string) (int, bool) {
	if len(stamp) != 2 {
		return 0, false
	}
	d := 0
	for i := 0; i < 2; i++ {
		c := stamp[i]
		var v int
		switch {
		case c >= 'A' && c <= 'Z':
			v = int(c - 'A')
		case c >= '2' && c <= '7':
			v = int(c-'2') + 26
		default:
			return 0, false
		}
		d = d<<5 | v
	}
	return d, true
}

func cutAddress(a string) (local, domain string, ok bool) {
	local, domain, ok = envaddr.Split(a)
	if !ok || local == "" || domain == "" {
		return "", "", false
	}
	return local, domain, true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
