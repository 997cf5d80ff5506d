package mailauth

import (
	"crypto"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// signedFields is the h= list of our signatures: the fields RFC 6376
// §5.4.1 recommends. Those a changed copy would mislead with are listed
// twice (oversigned, §8.15): a field of that name added later, even where
// the message had none, breaks the signature. From, above all.
var signedFields = []string{
	"From", "From", "Reply-To", "Reply-To", "Subject", "Subject", "Date", "Date",
	"To", "To", "Cc", "Cc", "Message-ID", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding", "Content-Disposition", "Content-Language",
	"List-Id", "List-Help", "List-Unsubscribe", "List-Unsubscribe-Post",
	"List-Subscribe", "List-Post", "List-Owner", "List-Archive",
	"Sender", "Resent-Date", "Resent-From", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"Autocrypt", "OpenPGP",
}

// DomainKeys is the active selector of one sending domain and its keys,
// one per Algorithm.
type DomainKeys struct {
	Domain   string
	Selector string // configuration selector; DNS names from DNSSelector
	Keys     map[Algorithm]crypto.Signer
}

// Signer adds DKIM signatures to what our users send (RFC 6376, RFC 8463).
// It is safe for concurrent use.
type Signer struct {
	domains map[string]DomainKeys // by lower-case domain
}

// NewSigner returns a Signer for these domains.
func NewSigner(keys []DomainKeys) (*Signer, error) {
	s := &Signer{domains: map[string]DomainKeys{}}
	for _, k := range keys {
		d := strings.ToLower(k.Domain)
		if !validDomain(d) || !validLabel(k.Selector) {
			return nil, fmt.Errorf("dkim: domain %q selector %q: invalid name", k.Domain, k.Selector)
		}
		if len(k.Keys) == 0 {
			return nil, fmt.Errorf("dkim: domain %s: no key", d)
		}
		if _, dup := s.domains[d]; dup {
			return nil, fmt.Errorf("dkim: domain %s given twice", d)
		}
		s.domains[d] = k
	}
	return s, nil
}

// Sign returns the DKIM-Signature fields to put on top of msg (size octets,
// CRLF line endings), one per key of the author's domain (the From field's:
// what DMARC aligns with), Ed25519 first; nil when we hold no key for it.
func (s *Signer) Sign(msg io.ReaderAt, size int64) ([]byte, error) {
	fields, _, whole, err := readHeader(io.NewSectionReader(msg, 0, size))
	if err != nil {
		return nil, fmt.Errorf("dkim sign: %w", err)
	}
	if !whole {
		return nil, nil // see maxHeaderBytes
	}
	dk, ok := s.domains[fromDomain(fields)]
	if !ok {
		return nil, nil
	}
	var signers []*dkim.Signer
	var ws []io.Writer
	for _, a := range algorithms {
		key, ok := dk.Keys[a]
		if !ok {
			continue
		}
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain: dk.Domain, Selector: DNSSelector(dk.Selector, a), Signer: key,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             signedFields,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim sign %s: %w", dk.Domain, err)
		}
		signers = append(signers, sg)
		ws = append(ws, sg)
	}
	_, err = io.Copy(io.MultiWriter(ws...), io.NewSectionReader(msg, 0, size))
	var out []byte
	for _, sg := range signers {
		if cerr := sg.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			out = append(out, sg.Signature()...)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dkim sign %s: %w", dk.Domain, err)
	}
	return out, nil
}
