package mailauth

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/authres"
)

// Sealer adds an ARC set (RFC 8617 §5.2) to what we forward: our
// Authentication-Results as ARC-Authentication-Results, an
// ARC-Message-Signature over the message, and an ARC-Seal over the chain,
// so that the next hop can see what we saw (SPF and DKIM of the original
// sender) when our forward breaks SPF or the original signature. It is safe
// for concurrent use.
type Sealer struct {
	domain, selector string // d= and s= (the DNS selector of the key)
	key              crypto.Signer
	alg              string
	now              func() time.Time
}

// arcSignedFields are the fields the ARC-Message-Signature covers where
// present (each once: the last of its name, as DKIM picks from the bottom): what a reader
// sees, and the original DKIM signatures.
var arcSignedFields = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "DKIM-Signature",
}

// NewSealer seals as dk's domain with its RSA key (what every ARC verifier
// knows; RFC 8617 §4.1.3 follows DKIM's algorithms), or its Ed25519 key
// when it has no RSA one.
func NewSealer(dk DomainKeys) (*Sealer, error) {
	s := &Sealer{domain: strings.ToLower(dk.Domain), now: time.Now}
	if !validDomain(s.domain) || !validLabel(dk.Selector) {
		return nil, fmt.Errorf("arc seal: domain %q selector %q: invalid name", dk.Domain, dk.Selector)
	}
	if k, ok := dk.Keys[RSA]; ok {
		s.key, s.alg, s.selector = k, "rsa-sha256", DNSSelector(dk.Selector, RSA)
	} else if k, ok := dk.Keys[Ed25519]; ok {
		s.key, s.alg, s.selector = k, "ed25519-sha256", DNSSelector(dk.Selector, Ed25519)
	} else {
		return nil, fmt.Errorf("arc seal: domain %s has no key", s.domain)
	}
	return s, nil
}

// ErrNoSeal: the message is not sealed (its chain failed validation
// temporarily, or already has RFC 8617's 50 instances).
var ErrNoSeal = errors.New("arc seal: not sealed")

// Seal returns the ARC set to put on top of msg (size octets, CRLF line
// ends, our Authentication-Results field on top). chain is the result of
// verifying the message's existing chain (none, pass, fail), instances how
// many sets it has, results our Authentication-Results field, whose value
// becomes the ARC-Authentication-Results'.
func (s *Sealer) Seal(msg io.ReaderAt, size int64, chain authres.ResultValue, instances int, results []byte) ([]byte, error) {
	var cv string
	switch {
	case instances < 0:
		return nil, ErrNoSeal // a malformed chain: no instance number to take
	case instances == 0:
		cv = "none"
	case chain == authres.ResultPass:
		cv = "pass"
	case chain == authres.ResultFail:
		// RFC 8617 §5.2: a failed chain is sealed with cv=fail, which
		// ends it for every later hop.
		cv = "fail"
	default:
		return nil, ErrNoSeal
	}
	i := instances + 1
	if i > maxARCInstances {
		return nil, ErrNoSeal
	}
	fields, headerEnd, whole, err := readHeader(io.NewSectionReader(msg, 0, size))
	if err != nil {
		return nil, fmt.Errorf("arc seal: %w", err)
	}
	if !whole {
		return nil, ErrNoSeal
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	inst := strconv.Itoa(i)

	// ARC-Authentication-Results: our results under the instance.
	_, arValue, ok := bytes.Cut(results, []byte(":"))
	if !ok {
		return nil, errors.New("arc seal: no Authentication-Results")
	}
	aar := "ARC-Authentication-Results: i=" + inst + ";" + strings.TrimRight(string(arValue), "\r\n") + "\r\n"

	// ARC-Message-Signature: DKIM's algorithm, relaxed/relaxed.
	bodyStart := headerEnd
	var two [2]byte
	if n, _ := msg.ReadAt(two[:], headerEnd); n >= 1 && two[0] == '\n' {
		bodyStart++
	} else if n == 2 && two[0] == '\r' && two[1] == '\n' {
		bodyStart += 2
	}
	bh := sha256.New()
	if err := canonicalBody(bh, io.NewSectionReader(msg, bodyStart, size-bodyStart), true); err != nil {
		return nil, fmt.Errorf("arc seal: %w", err)
	}
	var names []string
	h := sha256.New()
	for _, want := range arcSignedFields {
		for j := len(fields) - 1; j >= 0; j-- {
			if strings.EqualFold(fields[j].Name, want) {
				h.Write(canonicalHeader(fields[j].Raw, true))
				names = append(names, strings.ToLower(want))
				break
			}
		}
	}
	ams := "ARC-Message-Signature: i=" + inst + "; a=" + s.alg + "; c=relaxed/relaxed;\r\n\td=" + s.domain + "; s=" + s.selector +
		"; t=" + ts + ";\r\n\th=" + strings.Join(names, ":") + ";\r\n\tbh=" + base64.StdEncoding.EncodeToString(bh.Sum(nil)) + ";\r\n\tb="
	h.Write(bytes.TrimSuffix(canonicalHeader([]byte(ams), true), []byte("\r\n")))
	sig, err := s.sign(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	ams += fold(sig) + "\r\n"

	// ARC-Seal over the earlier sets and this one (RFC 8617 §5.1.1).
	sets, err := arcSets(fields)
	if err != nil {
		return nil, err
	}
	if len(sets) != instances {
		return nil, fmt.Errorf("arc seal: %d ARC sets found, %d expected", len(sets), instances)
	}
	h = sha256.New()
	for j := 1; j <= instances; j++ {
		set := sets[j]
		h.Write(canonicalHeader(set.aar.Raw, true))
		h.Write(canonicalHeader(set.ams.Raw, true))
		h.Write(canonicalHeader(set.as.Raw, true))
	}
	h.Write(canonicalHeader([]byte(aar), true))
	h.Write(canonicalHeader([]byte(ams), true))
	as := "ARC-Seal: i=" + inst + "; a=" + s.alg + "; t=" + ts + "; cv=" + cv + ";\r\n\td=" + s.domain + "; s=" + s.selector + "; b="
	h.Write(bytes.TrimSuffix(canonicalHeader([]byte(as), true), []byte("\r\n")))
	sig, err = s.sign(h.Sum(nil))
	if err != nil {
		return nil, err
	}
	as += fold(sig) + "\r\n"
	return []byte(as + ams + aar), nil
}

func (s *Sealer) sign(digest []byte) (string, error) {
	var sig []byte
	var err error
	switch k := s.key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, digest) // RFC 8463: Ed25519 over the SHA-256 digest
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, digest)
	default:
		sig, err = s.key.Sign(rand.Reader, digest, crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("arc seal: %w", err)
	}
	return base64.StdEncoding.EncodeToString(sig), nil
}

// fold splits a base64 value over continuation lines (b= ignores
// whitespace).
func fold(b64 string) string {
	var sb strings.Builder
	for len(b64) > 72 {
		sb.WriteString(b64[:72] + "\r\n\t ")
		b64 = b64[72:]
	}
	sb.WriteString(b64)
	return sb.String()
}

// arcSets collects the complete ARC sets of a header, by instance.
func arcSets(fields []field) (map[int]*arcSet, error) {
	sets := map[int]*arcSet{}
	for k := range fields {
		f := &fields[k]
		var v string
		switch strings.ToLower(f.Name) {
		case "arc-authentication-results":
			v, _, _ = strings.Cut(f.value(), ";")
		case "arc-message-signature", "arc-seal":
			v = f.value()
		default:
			continue
		}
		i, err := strconv.Atoi(parseTags(v)["i"])
		if err != nil || i < 1 || i > maxARCInstances {
			return nil, errors.New("arc seal: bad instance")
		}
		if sets[i] == nil {
			sets[i] = &arcSet{}
		}
		switch strings.ToLower(f.Name) {
		case "arc-authentication-results":
			sets[i].aar = f
		case "arc-message-signature":
			sets[i].ams = f
		case "arc-seal":
			sets[i].as = f
		}
	}
	for i, s := range sets {
		if s.aar == nil || s.ams == nil || s.as == nil {
			return nil, fmt.Errorf("arc seal: incomplete set i=%d", i)
		}
	}
	return sets, nil
}
