package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/emersion/go-msgauth/authres"
)

// ARC (RFC 8617): the chain of custody intermediaries (mailing lists,
// forwarders) add to a message. go-msgauth has no ARC; this file verifies
// a chain: structure, the newest ARC-Message-Signature, and every
// ARC-Seal. The result goes into Authentication-Results (arc=); it does
// not change the DMARC decision (RFC 8617 §7.2 leaves local policy to the
// receiver, and courriel trusts no sealer).

// maxARCInstances is RFC 8617 §4.2.1's limit.
const maxARCInstances = 50

type arcSet struct {
	aar, ams, as *field
	amsTags      map[string]string
	asTags       map[string]string
}

// verifyARC returns arc=none/pass/fail (temperror when a key could not be
// fetched now) and what failed. header.oldest-pass is not computed.
func (c *Checker) verifyARC(ctx context.Context, fields []field, msg io.ReaderAt, size, headerEnd int64) (authres.ResultValue, string) {
	sets := map[int]*arcSet{}
	get := func(i int) *arcSet {
		if sets[i] == nil {
			sets[i] = &arcSet{}
		}
		return sets[i]
	}
	for k := range fields {
		f := &fields[k]
		var i int
		var err error
		switch strings.ToLower(f.Name) {
		case "arc-authentication-results":
			v, _, _ := strings.Cut(f.value(), ";")
			t := parseTags(v)
			i, err = strconv.Atoi(t["i"])
			if err == nil && get(i).aar != nil {
				return authres.ResultFail, "duplicate ARC-Authentication-Results"
			}
			if err == nil {
				get(i).aar = f
			}
		case "arc-message-signature":
			t := parseTags(f.value())
			i, err = strconv.Atoi(t["i"])
			if err == nil && get(i).ams != nil {
				return authres.ResultFail, "duplicate ARC-Message-Signature"
			}
			if err == nil {
				get(i).ams, get(i).amsTags = f, t
			}
		case "arc-seal":
			t := parseTags(f.value())
			i, err = strconv.Atoi(t["i"])
			if err == nil && get(i).as != nil {
				return authres.ResultFail, "duplicate ARC-Seal"
			}
			if err == nil {
				get(i).as, get(i).asTags = f, t
			}
		default:
			continue
		}
		if err != nil || i < 1 || i > maxARCInstances {
			return authres.ResultFail, "bad instance"
		}
	}
	n := len(sets)
	if n == 0 {
		return authres.ResultNone, ""
	}
	for i := 1; i <= n; i++ {
		s := sets[i]
		if s == nil || s.aar == nil || s.ams == nil || s.as == nil || s.amsTags == nil || s.asTags == nil {
			return authres.ResultFail, "incomplete chain"
		}
		want := "pass"
		if i == 1 {
			want = "none"
		}
		if strings.ToLower(s.asTags["cv"]) != want {
			return authres.ResultFail, "chain validation status " + s.asTags["cv"] + " at i=" + strconv.Itoa(i)
		}
	}
	newest := sets[n]
	if err := c.verifyAMS(ctx, fields, newest, msg, size, headerEnd); err != nil {
		return arcResult(err), "ARC-Message-Signature i=" + strconv.Itoa(n)
	}
	for i := n; i >= 1; i-- {
		if err := c.verifySeal(ctx, sets, i); err != nil {
			return arcResult(err), "ARC-Seal i=" + strconv.Itoa(i)
		}
	}
	return authres.ResultPass, ""
}

// errKeyTemp: the key could not be fetched now.
var errKeyTemp = errors.New("arc: key unavailable")

func arcResult(err error) authres.ResultValue {
	if errors.Is(err, errKeyTemp) {
		return authres.ResultTempError
	}
	return authres.ResultFail
}

// verifyAMS checks the newest ARC-Message-Signature as a DKIM signature
// (RFC 8617 §4.1.2): body hash, then the signature over the fields of h=.
func (c *Checker) verifyAMS(ctx context.Context, fields []field, s *arcSet, msg io.ReaderAt, size, headerEnd int64) error {
	t := s.amsTags
	if t["l"] != "" {
		return errors.New("arc: l= is not supported")
	}
	hc, bc, _ := strings.Cut(t["c"], "/")
	if hc == "" {
		hc = "simple"
	}
	if bc == "" {
		bc = "simple"
	}
	if (hc != "simple" && hc != "relaxed") || (bc != "simple" && bc != "relaxed") {
		return errors.New("arc: unknown canonicalization")
	}
	// Body: after the empty line that ends the header.
	bodyStart := headerEnd
	var two [2]byte
	if n, _ := msg.ReadAt(two[:], headerEnd); n >= 1 && two[0] == '\n' {
		bodyStart++
	} else if n == 2 && two[0] == '\r' && two[1] == '\n' {
		bodyStart += 2
	}
	bh := sha256.New()
	if err := canonicalBody(bh, io.NewSectionReader(msg, bodyStart, size-bodyStart), bc == "relaxed"); err != nil {
		return err
	}
	want, err := base64.StdEncoding.DecodeString(stripWSP(t["bh"]))
	if err != nil || !bytes.Equal(want, bh.Sum(nil)) {
		return errors.New("arc: body hash mismatch")
	}
	h := sha256.New()
	picked := map[string]int{}
	for _, k := range strings.Split(t["h"], ":") {
		k = strings.ToLower(strings.TrimSpace(k))
		if k == "" || k == "arc-seal" {
			continue
		}
		// Bottom-up, as DKIM (RFC 6376 §5.4.2).
		seen := 0
		for j := len(fields) - 1; j >= 0; j-- {
			if strings.ToLower(fields[j].Name) != k {
				continue
			}
			if seen == picked[k] {
				h.Write(canonicalHeader(fields[j].Raw, hc == "relaxed"))
				break
			}
			seen++
		}
		picked[k]++
	}
	h.Write(bytes.TrimSuffix(canonicalHeader(withoutB(s.ams.Raw), hc == "relaxed"), []byte("\r\n")))
	return c.verifySig(ctx, t, h.Sum(nil))
}

// verifySeal checks the ARC-Seal of instance i over the ARC sets 1..i
// (RFC 8617 §5.1.1), relaxed header canonicalization.
func (c *Checker) verifySeal(ctx context.Context, sets map[int]*arcSet, i int) error {
	h := sha256.New()
	for j := 1; j <= i; j++ {
		s := sets[j]
		h.Write(canonicalHeader(s.aar.Raw, true))
		h.Write(canonicalHeader(s.ams.Raw, true))
		if j < i {
			h.Write(canonicalHeader(s.as.Raw, true))
		}
	}
	h.Write(bytes.TrimSuffix(canonicalHeader(withoutB(sets[i].as.Raw), true), []byte("\r\n")))
	return c.verifySig(ctx, sets[i].asTags, h.Sum(nil))
}

// verifySig checks b= over hashed with the key named by d= and s=.
func (c *Checker) verifySig(ctx context.Context, t map[string]string, hashed []byte) error {
	sig, err := base64.StdEncoding.DecodeString(stripWSP(t["b"]))
	if err != nil || len(sig) == 0 {
		return errors.New("arc: bad b=")
	}
	d, sel := strings.ToLower(t["d"]), t["s"]
	if !validDomain(d) || !validLabel(strings.ReplaceAll(sel, ".", "-")) {
		return errors.New("arc: bad d= or s=")
	}
	txts, err := c.resolver.LookupTXT(ctx, sel+"._domainkey."+d)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return errors.New("arc: no key")
		}
		return errKeyTemp
	}
	var pub crypto.PublicKey
	for _, txt := range txts {
		kt := parseTags(txt)
		p, err := base64.StdEncoding.DecodeString(stripWSP(kt["p"]))
		if kt == nil || err != nil || len(p) == 0 {
			continue
		}
		switch kt["k"] {
		case "", "rsa":
			if k, err := x509.ParsePKIXPublicKey(p); err == nil {
				pub = k
			} else if k, err := x509.ParsePKCS1PublicKey(p); err == nil {
				pub = k
			}
		case "ed25519":
			if len(p) == ed25519.PublicKeySize {
				pub = ed25519.PublicKey(p)
			}
		}
		if pub != nil {
			break
		}
	}
	switch a := strings.ToLower(t["a"]); {
	case a == "rsa-sha256":
		k, ok := pub.(*rsa.PublicKey)
		if !ok || k.N.BitLen() < 1024 {
			return errors.New("arc: no usable RSA key")
		}
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, hashed, sig)
	case a == "ed25519-sha256":
		k, ok := pub.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(k, hashed, sig) {
			return errors.New("arc: bad Ed25519 signature")
		}
		return nil
	default:
		return fmt.Errorf("arc: algorithm %q", a)
	}
}

// withoutB empties the b= tag's value of a signature field (RFC 6376
// §3.7), leaving every other byte.
func withoutB(raw []byte) []byte {
	name, value, _ := bytes.Cut(raw, []byte(":"))
	v := bTagRe.ReplaceAll(value, []byte("${1}"))
	return append(append(append([]byte(nil), name...), ':'), v...)
}

var bTagRe = regexp.MustCompile(`((?:^|;)[ \t\r\n]*b[ \t\r\n]*=)[^;]*`)

// canonicalHeader is RFC 6376 §3.4.1 (simple) or §3.4.2 (relaxed).
func canonicalHeader(raw []byte, relaxed bool) []byte {
	if !relaxed {
		return raw
	}
	name, value, _ := bytes.Cut(raw, []byte(":"))
	v := strings.NewReplacer("\r\n", "", "\n", "").Replace(string(value))
	v = strings.Join(strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return []byte(strings.ToLower(strings.TrimRight(string(name), " \t")) + ":" + v + "\r\n")
}

// canonicalBody writes the body canonicalized (RFC 6376 §3.4.3, §3.4.4)
// to h; line ends are taken as CRLF whether or not the CR is there.
func canonicalBody(h hash.Hash, r io.Reader, relaxed bool) error {
	br := bufio.NewReaderSize(r, 32<<10)
	empty := 0 // empty lines held back: only written if more text follows
	wrote := false
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
			if relaxed {
				line = compressWSP(line)
			}
			if len(line) == 0 {
				empty++
			} else {
				for ; empty > 0; empty-- {
					h.Write([]byte("\r\n"))
				}
				h.Write(line)
				h.Write([]byte("\r\n"))
				wrote = true
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if !wrote && !relaxed {
		h.Write([]byte("\r\n"))
	}
	return nil
}

func stripWSP(s string) string {
	return strings.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}

// compressWSP is the relaxed body rule for one line: every run of WSP
// becomes one SP, and WSP at the end goes.
func compressWSP(line []byte) []byte {
	out := make([]byte, 0, len(line))
	inWSP := false
	for _, c := range line {
		if c == ' ' || c == '\t' {
			inWSP = true
			continue
		}
		if inWSP {
			out = append(out, ' ')
			inWSP = false
		}
		out = append(out, c)
	}
	return out
}
