package mailauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
)

// SRS rewrites the envelope sender of mail we forward (the Sender Rewriting
// Scheme): the forward leaves from SRS0=HASH=TT=domain=local@ours, which
// passes SPF for our domain at the next hop, and a bounce to it comes back
// to us, where Reverse gives the original sender. HASH authenticates the
// rest (HMAC-SHA256 with the configured secret), so that nobody can use the
// scheme to relay through us; TT is the day of the rewriting, so that an
// address stops working after MaxAge.
//
// The hash is 8 base32 characters (40 bits) rather than the 4 base64 ones
// of other implementations: base32 survives MTAs that change the case of
// a local part. Only we read our SRS addresses, so the format is ours.
type SRS struct {
	secret []byte
	domain string
	now    func() time.Time
}

// SRSMaxAge is how long a rewritten address accepts bounces: past the
// retry time of any sane MTA (Postfix: 5 days), as postsrsd's 21 days.
const SRSMaxAge = 21 * 24 * time.Hour

// srsPrefix starts every address we write. SRS1 (rewriting another
// forwarder's SRS0 address) is not done: such a sender is rewritten like
// any other, which keeps the bounce path through us.
const srsPrefix = "SRS0="

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

// Forward rewrites sender (local@domain) into an address of ours. An
// address already ours (one of our SRS addresses, bounced back through
// another forward) is kept as it is.
func (s *SRS) Forward(sender string) (string, error) {
	local, domain, ok := cutAddress(sender)
	if !ok {
		return "", fmt.Errorf("srs: %q is not an address", sender)
	}
	if strings.EqualFold(domain, s.domain) && hasPrefixFold(local, srsPrefix) {
		return sender, nil
	}
	stamp := srsStamp(srsDay(s.now()))
	rewritten := srsPrefix + s.hash(stamp, domain, local) + "=" + stamp + "=" + domain + "=" + local
	if len(rewritten) > maxLocalPart {
		// RFC 5321 §4.5.3.1.1: our own RCPT would refuse the bounce.
		return "", fmt.Errorf("srs: %q is too long to rewrite", sender)
	}
	return rewritten + "@" + s.domain, nil
}

// maxLocalPart is RFC 5321's limit, which courriel's RCPT enforces.
const maxLocalPart = 64

// ErrNotSRS: the address is not one of our SRS addresses.
var ErrNotSRS = errors.New("srs: not an SRS address of ours")

// IsSRS says whether addr looks like one of our SRS addresses (Reverse
// decides whether it is valid).
func (s *SRS) IsSRS(addr string) bool {
	local, domain, ok := cutAddress(addr)
	return ok && strings.EqualFold(domain, s.domain) && hasPrefixFold(local, srsPrefix)
}

// Reverse gives the original sender of one of our SRS addresses; an
// address with a wrong hash, or older than SRSMaxAge, is refused.
func (s *SRS) Reverse(addr string) (string, error) {
	if !s.IsSRS(addr) {
		return "", ErrNotSRS
	}
	local, _, _ := cutAddress(addr)
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
	i := strings.LastIndexByte(a, '@')
	if i <= 0 || i == len(a)-1 {
		return "", "", false
	}
	return a[:i], a[i+1:], true
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
