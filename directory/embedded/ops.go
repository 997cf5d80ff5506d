package embedded

import (
	"errors"
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"courriel/directory/password"
)

const (
	tagAuthSimple = 0 // RFC 4511 §4.2 AuthenticationChoice simple [0]
	tagAuthSASL   = 3 // sasl [3]
)

// bind serves a BindRequest (RFC 4511 §4.2, RFC 4513 §5.1).
func (c *conn) bind(id int64, op *ber.Packet) error {
	const tag = ldap.ApplicationBindResponse
	// RFC 4511 §4.2.1: a bind, whatever its outcome, first drops the
	// previous authentication.
	c.boundDN = ""
	if len(op.Children) != 3 || op.Children[0].Tag != ber.TagInteger || !isOctetString(op.Children[1]) {
		return fmt.Errorf("%w: malformed bind request", errProtocol)
	}
	if v, _ := op.Children[0].Value.(int64); v != 3 {
		return c.writeResult(id, tag, resultProtocolError, "", "only LDAPv3 is supported")
	}
	name := octets(op.Children[1])
	auth := op.Children[2]
	if auth.ClassType != ber.ClassContext || auth.Tag != tagAuthSimple || auth.TagType != ber.TypePrimitive {
		if auth.ClassType == ber.ClassContext && auth.Tag == tagAuthSASL {
			return c.writeResult(id, tag, resultAuthMethodNotSupported, "", "SASL is not supported: use a simple bind")
		}
		return c.writeResult(id, tag, resultAuthMethodNotSupported, "", "unknown authentication method")
	}
	pw := auth.Data.Bytes()
	switch {
	case name == "" && len(pw) == 0: // RFC 4513 §5.1.1 anonymous
		return c.writeResult(id, tag, resultSuccess, "", "")
	case name == "":
		// What slapd answers to a password without a name.
		return c.writeResult(id, tag, resultInvalidCredentials, "", "")
	case len(pw) == 0:
		// RFC 4513 §5.1.2: an unauthenticated bind (a DN, no password)
		// must fail by default, or a client that trusts "success" would
		// let anyone in. slapd says exactly this.
		return c.writeResult(id, tag, resultUnwillingToPerform, "", "unauthenticated bind (DN with no password) disallowed")
	}
	rdns, err := normalizeRDNs(name)
	if err != nil {
		return c.writeResult(id, tag, resultInvalidDNSyntax, "", "invalid DN")
	}
	e := c.s.dir.find(strings.Join(rdns, ","))
	if e == nil || !c.checkPassword(e, pw) {
		c.log.Info("bind failed", "dn", truncate(name))
		// Same answer for an unknown DN and a wrong password: no oracle.
		return c.writeResult(id, tag, resultInvalidCredentials, "", "")
	}
	c.boundDN = e.dn
	c.log.Debug("bind", "dn", e.dn)
	return c.writeResult(id, tag, resultSuccess, "", "")
}

func (c *conn) checkPassword(e *storedEntry, pw []byte) bool {
	a := e.attr(userPasswordAttr)
	if a == nil {
		return false
	}
	for _, stored := range a.values {
		ok, err := password.Verify(stored, pw)
		if err != nil {
			c.log.Warn("unusable userPassword value", "dn", e.dn, "err", err)
			continue
		}
		if ok {
			return true
		}
	}
	return false
}

// searchRequest is a decoded SearchRequest (RFC 4511 §4.5.1).
type searchRequest struct {
	base      string
	scope     int
	sizeLimit int64
	typesOnly bool
	filter    *filter
	attrs     attrSelector
}

func parseSearch(op *ber.Packet) (*searchRequest, int, error) {
	ch := op.Children
	if len(ch) != 8 || !isOctetString(ch[0]) || ch[1].Tag != ber.TagEnumerated || ch[2].Tag != ber.TagEnumerated ||
		ch[3].Tag != ber.TagInteger || ch[4].Tag != ber.TagInteger || ch[5].Tag != ber.TagBoolean ||
		ch[7].TagType != ber.TypeConstructed {
		return nil, 0, fmt.Errorf("%w: malformed search request", errProtocol)
	}
	scope, _ := ch[1].Value.(int64)
	size, _ := ch[3].Value.(int64)
	typesOnly, _ := ch[5].Value.(bool)
	if scope < ldap.ScopeBaseObject || scope > ldap.ScopeWholeSubtree {
		return nil, resultProtocolError, fmt.Errorf("unknown scope %d", scope)
	}
	if size < 0 {
		return nil, resultProtocolError, fmt.Errorf("negative size limit")
	}
	f, err := compileFilter(ch[6])
	if err != nil {
		if errors.Is(err, errFilterLimit) {
			return nil, resultAdminLimitExceeded, err
		}
		return nil, resultProtocolError, fmt.Errorf("bad filter: %w", err)
	}
	req := &searchRequest{base: octets(ch[0]), scope: int(scope), sizeLimit: size, typesOnly: typesOnly, filter: f}
	var names []string
	for _, a := range ch[7].Children {
		if !isOctetString(a) {
			return nil, 0, fmt.Errorf("%w: malformed attribute list", errProtocol)
		}
		names = append(names, octets(a))
	}
	req.attrs = newAttrSelector(names)
	return req, 0, nil
}

// search serves a SearchRequest.
func (c *conn) search(id int64, op *ber.Packet) error {
	const done = ldap.ApplicationSearchResultDone
	req, code, err := parseSearch(op)
	if err != nil {
		if code == 0 {
			return err
		}
		return c.writeResult(id, done, code, "", err.Error())
	}
	d := c.s.dir
	var base []string
	if req.base != "" {
		if base, err = normalizeRDNs(req.base); err != nil {
			return c.writeResult(id, done, resultInvalidDNSyntax, "", "invalid base DN")
		}
		if d.find(strings.Join(base, ",")) == nil {
			return c.writeResult(id, done, resultNoSuchObject, d.matchedDN(base), "")
		}
	} else if req.scope == ldap.ScopeBaseObject {
		// The root DSE (RFC 4512 §5.1), so "ldapsearch -s base -b ''"
		// finds the naming contexts.
		if req.filter.eval(d.rootDSE()) == triTrue {
			if err := c.write(c.entryPacket(id, d.rootDSE(), req)); err != nil {
				return err
			}
		}
		return c.writeResult(id, done, resultSuccess, "", "")
	}
	limit := int64(c.s.opts.SizeLimit)
	if req.sizeLimit > 0 && req.sizeLimit < limit {
		limit = req.sizeLimit
	}
	var sent int64
	for _, e := range d.entries {
		if !inScope(e, base, req.scope) || req.filter.eval(e) != triTrue {
			continue
		}
		if sent == limit {
			return c.writeResult(id, done, resultSizeLimitExceeded, "", "")
		}
		if err := c.write(c.entryPacket(id, e, req)); err != nil {
			return err
		}
		sent++
	}
	c.log.Debug("search", "base", truncate(req.base), "scope", req.scope, "entries", sent)
	return c.writeResult(id, done, resultSuccess, "", "")
}

// entryPacket builds a SearchResultEntry (RFC 4511 §4.5.2).
func (c *conn) entryPacket(id int64, e *storedEntry, req *searchRequest) *ber.Packet {
	env := envelope(id)
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "entry")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, e.dn, "objectName"))
	attrs := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "attributes")
	for _, a := range e.attrs {
		if a.lname == userPasswordAttr || !req.attrs.wants(a.lname) {
			continue // userPassword goes to nobody: Bind is the only way to use it
		}
		pa := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "partialAttribute")
		pa.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.name, "type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		if !req.typesOnly {
			for _, v := range a.values {
				vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "value"))
			}
		}
		pa.AppendChild(vals)
		attrs.AppendChild(pa)
	}
	p.AppendChild(attrs)
	env.AppendChild(p)
	return env
}

// attrSelector is the requested attribute list (RFC 4511 §4.5.1.8).
type attrSelector struct {
	all   bool
	names map[string]bool // lower-case
}

func newAttrSelector(names []string) attrSelector {
	if len(names) == 0 {
		return attrSelector{all: true}
	}
	s := attrSelector{names: map[string]bool{}}
	for _, n := range names {
		switch n {
		case "*":
			s.all = true
		case "1.1", "+":
			// "1.1" alone means no attributes; with others it is ignored.
			// "+" asks for operational attributes; we keep none.
		default:
			s.names[strings.ToLower(n)] = true
		}
	}
	return s
}

func (s attrSelector) wants(lname string) bool { return s.all || s.names[lname] }

// extended serves an ExtendedRequest (RFC 4511 §4.12).
func (c *conn) extended(id int64, op *ber.Packet) error {
	if len(op.Children) < 1 || op.Children[0].ClassType != ber.ClassContext || op.Children[0].Tag != tagExtendedRequestName {
		return fmt.Errorf("%w: malformed extended request", errProtocol)
	}
	name := octets(op.Children[0])
	env := envelope(id)
	var r *ber.Packet
	switch name {
	case oidWhoAmI: // RFC 4532
		r = ldapResult(ldap.ApplicationExtendedResponse, resultSuccess, "", "")
		authz := ""
		if c.boundDN != "" {
			authz = "dn:" + c.boundDN
		}
		r.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, tagExtendedResponseValue, authz, "authzId"))
	case oidStartTLS:
		// RFC 4511 §4.14.2: refused, the session goes on in clear. The
		// demo listens on loopback only.
		r = ldapResult(ldap.ApplicationExtendedResponse, resultUnavailable, "", "StartTLS is not supported by the embedded demo directory")
		r.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, tagExtendedResponseName, oidStartTLS, "responseName"))
	default:
		// RFC 4511 §4.12: an unrecognized requestName gets protocolError.
		r = ldapResult(ldap.ApplicationExtendedResponse, resultProtocolError, "", "unsupported extended operation")
	}
	env.AppendChild(r)
	return c.write(env)
}
