package mtasts

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is a policy's mode (RFC 8461 §3.2).
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeTesting Mode = "testing"
	ModeNone    Mode = "none"
)

// Limits on what a policy may hold. RFC 8461 §3.3 lets a sender cap the
// body at 64 KiB; max_age is at most 31557600 s (§3.2).
const (
	MaxPolicyBytes = 64 << 10
	MaxAgeLimit    = 31557600 * time.Second
	maxMXPatterns  = 100
	maxLines       = 1000
)

// Policy is one domain's MTA-STS policy.
type Policy struct {
	Mode   Mode
	MX     []string      // patterns, lower case: "mx.example.org" or "*.example.org"
	MaxAge time.Duration // how long the policy may be cached
	// ID is the id of the TXT record the policy was fetched under; Fetched
	// when. Both are set by the cache, not by Parse.
	ID      string
	Fetched time.Time
}

// Expires is when the cached policy stops applying.
func (p *Policy) Expires() time.Time { return p.Fetched.Add(p.MaxAge) }

// Strings are the policy's lines as a TLSRPT report quotes them
// (RFC 8460 §4.4 policy-string).
func (p *Policy) Strings() []string {
	out := []string{"version: STSv1", "mode: " + string(p.Mode)}
	for _, mx := range p.MX {
		out = append(out, "mx: "+mx)
	}
	return append(out, "max_age: "+strconv.FormatInt(int64(p.MaxAge/time.Second), 10))
}

// Parse reads a policy body strictly: each line "key: value", version
// STSv1 first-class and once, mode once and one of the three, max_age once
// as at most 10 digits and at most one year, mx patterns valid host names
// with an optional leading "*." and at least one unless mode is none.
// Unknown keys are ignored (RFC 8461 §3.2: extensions).
func Parse(body []byte) (*Policy, error) {
	if len(body) > MaxPolicyBytes {
		return nil, fmt.Errorf("mta-sts: policy larger than %d bytes", MaxPolicyBytes)
	}
	text := strings.ReplaceAll(string(body), "\r\n", "\n")
	lines := strings.Split(text, "\n")
	if len(lines) > maxLines {
		return nil, fmt.Errorf("mta-sts: policy of more than %d lines", maxLines)
	}
	p := &Policy{}
	var sawVersion, sawMaxAge bool
	for i, line := range lines {
		if line == "" {
			continue // RFC 8461 ABNF allows a trailing line break
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("mta-sts: line %d: no colon", i+1)
		}
		key = strings.TrimSpace(key)
		val = strings.Trim(val, " \t")
		if key == "" || !isFieldName(key) {
			return nil, fmt.Errorf("mta-sts: line %d: bad field name", i+1)
		}
		switch key {
		case "version":
			if sawVersion {
				return nil, errors.New("mta-sts: version given twice")
			}
			if val != "STSv1" {
				return nil, fmt.Errorf("mta-sts: version %q is not STSv1", clip(val))
			}
			sawVersion = true
		case "mode":
			if p.Mode != "" {
				return nil, errors.New("mta-sts: mode given twice")
			}
			switch m := Mode(val); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return nil, fmt.Errorf("mta-sts: unknown mode %q", clip(val))
			}
		case "max_age":
			if sawMaxAge {
				return nil, errors.New("mta-sts: max_age given twice")
			}
			if val == "" || len(val) > 10 || strings.Trim(val, "0123456789") != "" {
				return nil, fmt.Errorf("mta-sts: max_age %q is not 1 to 10 digits", clip(val))
			}
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || time.Duration(n)*time.Second > MaxAgeLimit {
				return nil, fmt.Errorf("mta-sts: max_age %s is more than %d", clip(val), int64(MaxAgeLimit/time.Second))
			}
			p.MaxAge = time.Duration(n) * time.Second
			sawMaxAge = true
		case "mx":
			if len(p.MX) == maxMXPatterns {
				return nil, fmt.Errorf("mta-sts: more than %d mx patterns", maxMXPatterns)
			}
			pat := strings.ToLower(strings.TrimSuffix(val, "."))
			if !validPattern(pat) {
				return nil, fmt.Errorf("mta-sts: mx %q is not a host name pattern", clip(val))
			}
			p.MX = append(p.MX, pat)
		}
	}
	switch {
	case !sawVersion:
		return nil, errors.New("mta-sts: no version field")
	case p.Mode == "":
		return nil, errors.New("mta-sts: no mode field")
	case !sawMaxAge:
		return nil, errors.New("mta-sts: no max_age field")
	case len(p.MX) == 0 && p.Mode != ModeNone:
		return nil, errors.New("mta-sts: no mx field")
	}
	return p, nil
}

// Match reports whether an MX host name is allowed by the policy's
// patterns (RFC 8461 §4.1): "*.example.org" stands for exactly one label,
// so it matches mx.example.org but neither example.org nor a.b.example.org.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		if rest, ok := strings.CutPrefix(pat, "*."); ok {
			label, parent, found := strings.Cut(host, ".")
			if found && label != "" && parent == rest {
				return true
			}
			continue
		}
		if host == pat {
			return true
		}
	}
	return false
}

// ParseRecord returns the id of a `_mta-sts` TXT RRset (RFC 8461 §3.1):
// exactly one record starting "v=STSv1" (others are ignored), whose id is
// 1 to 32 letters and digits.
func ParseRecord(txts []string) (string, error) {
	id, found := "", 0
	for _, t := range txts {
		if !strings.HasPrefix(t, "v=STSv1") {
			continue
		}
		found++
		var sawV bool
		id = ""
		for f := range strings.SplitSeq(t, ";") {
			f = strings.Trim(f, " \t")
			if f == "" {
				continue
			}
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				return "", fmt.Errorf("mta-sts: TXT field %q has no '='", clip(f))
			}
			switch k {
			case "v":
				if sawV || v != "STSv1" {
					return "", errors.New("mta-sts: TXT record's v= is not one STSv1")
				}
				sawV = true
			case "id":
				if id != "" || len(v) < 1 || len(v) > 32 || strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != "" {
					return "", fmt.Errorf("mta-sts: TXT id %q is not 1 to 32 letters and digits", clip(v))
				}
				id = v
			}
		}
		if id == "" {
			return "", errors.New("mta-sts: TXT record has no id")
		}
	}
	switch found {
	case 0:
		return "", ErrNoRecord
	case 1:
		return id, nil
	}
	return "", errors.New("mta-sts: more than one STSv1 TXT record")
}

// ErrNoRecord: the domain publishes no MTA-STS TXT record.
var ErrNoRecord = errors.New("mta-sts: no STSv1 TXT record")

func isFieldName(s string) bool {
	if len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// validPattern: a host name of at least two labels, optionally "*." first.
func validPattern(p string) bool {
	p = strings.TrimPrefix(p, "*.")
	if len(p) > 253 || !strings.Contains(p, ".") {
		return false
	}
	for label := range strings.SplitSeq(p, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// ValidDomain reports whether d is a host name safe to use in a URL and a
// file name: lower-case letters, digits, hyphens, dots between labels.
func ValidDomain(d string) bool { return !strings.HasPrefix(d, "*") && validPattern(d) }

func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
