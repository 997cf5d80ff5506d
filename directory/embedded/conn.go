package embedded

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// Result codes we send (RFC 4511 §4.1.9, Appendix A).
const (
	resultSuccess                = ldap.LDAPResultSuccess
	resultProtocolError          = ldap.LDAPResultProtocolError
	resultSizeLimitExceeded      = ldap.LDAPResultSizeLimitExceeded
	resultAuthMethodNotSupported = ldap.LDAPResultAuthMethodNotSupported
	resultAdminLimitExceeded     = ldap.LDAPResultAdminLimitExceeded
	resultUnavailableCriticalExt = ldap.LDAPResultUnavailableCriticalExtension
	resultNoSuchObject           = ldap.LDAPResultNoSuchObject
	resultInvalidDNSyntax        = ldap.LDAPResultInvalidDNSyntax
	resultInvalidCredentials     = ldap.LDAPResultInvalidCredentials
	resultBusy                   = ldap.LDAPResultBusy
	resultUnavailable            = ldap.LDAPResultUnavailable
	resultUnwillingToPerform     = ldap.LDAPResultUnwillingToPerform
	oidNoticeOfDisconnection     = "1.3.6.1.4.1.1466.20036"
	oidStartTLS                  = "1.3.6.1.4.1.1466.20037"
	oidWhoAmI                    = "1.3.6.1.4.1.4203.1.11.3"
	tagExtendedRequestName       = 0  // RFC 4511 §4.12 requestName [0]
	tagExtendedResponseName      = 10 // responseName [10]
	tagExtendedResponseValue     = 11 // responseValue [11]
	tagControls                  = 0  // LDAPMessage controls [0]
	maxMessageID                 = 1<<31 - 1
)

// errProtocol: the client sent something that is not LDAP; the session ends
// with a Notice of Disconnection (RFC 4511 §4.1.1).
var errProtocol = errors.New("protocol error")

// conn is one client connection. Requests are served one at a time, in
// order; the go-ldap client and the OpenLDAP tools wait for each answer.
type conn struct {
	s   *Server
	nc  net.Conn
	log *slog.Logger
	br  *bufio.Reader
	bw  *bufio.Writer

	boundDN string // "" when anonymous; only touched by serve's goroutine
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	return &conn{
		s:   s,
		nc:  nc,
		log: s.log.With("conn_id", id, "remote", nc.RemoteAddr().String()),
		br:  bufio.NewReader(nc),
		bw:  bufio.NewWriter(nc),
	}
}

func (c *conn) serve() {
	defer c.nc.Close()
	c.log.Debug("connection opened")
	defer c.log.Debug("connection closed")
	for {
		if err := c.nc.SetReadDeadline(time.Now().Add(c.s.opts.IdleTimeout)); err != nil {
			return
		}
		msg, err := readMessage(c.br, c.s.opts.MaxMessageSize)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.log.Info("closing connection", "err", err)
				if errors.Is(err, errProtocol) {
					_ = c.write(noticeOfDisconnection(resultProtocolError, "malformed LDAP message"))
				}
			}
			return
		}
		if !c.handle(msg) {
			return
		}
	}
}

// handle serves one LDAPMessage and reports whether to keep the session.
func (c *conn) handle(msg *ber.Packet) bool {
	id, op, controls, err := parseEnvelope(msg)
	if err != nil {
		c.log.Info("closing connection", "err", err)
		_ = c.write(noticeOfDisconnection(resultProtocolError, "malformed LDAP message"))
		return false
	}
	if op.Tag == ldap.ApplicationUnbindRequest {
		return false
	}
	if op.Tag == ldap.ApplicationAbandonRequest {
		return true // RFC 4511 §4.11: no response; nothing runs concurrently
	}
	respTag, ok := responseTag(op.Tag)
	if !ok {
		c.log.Info("closing connection: unknown operation", "tag", op.Tag)
		_ = c.write(noticeOfDisconnection(resultProtocolError, "unknown operation"))
		return false
	}
	if critical := criticalControl(controls); critical != "" {
		// RFC 4511 §4.1.11: an unrecognized critical control fails the
		// operation.
		return c.writeResult(id, respTag, resultUnavailableCriticalExt, "", "unsupported critical control "+critical) == nil
	}
	switch op.Tag {
	case ldap.ApplicationBindRequest:
		err = c.bind(id, op)
	case ldap.ApplicationSearchRequest:
		err = c.search(id, op)
	case ldap.ApplicationExtendedRequest:
		err = c.extended(id, op)
	default: // add, modify, delete, modifyDN, compare
		err = c.writeResult(id, respTag, resultUnwillingToPerform, "", "the embedded demo directory is read-only")
	}
	if err != nil {
		if errors.Is(err, errProtocol) {
			c.log.Info("closing connection", "err", err)
			_ = c.write(noticeOfDisconnection(resultProtocolError, "malformed LDAP message"))
		} else {
			c.log.Debug("closing connection", "err", err)
		}
		return false
	}
	return true
}

// responseTag gives the tag of the response to each request we answer.
func responseTag(req ber.Tag) (ber.Tag, bool) {
	switch req {
	case ldap.ApplicationBindRequest:
		return ldap.ApplicationBindResponse, true
	case ldap.ApplicationSearchRequest:
		return ldap.ApplicationSearchResultDone, true
	case ldap.ApplicationModifyRequest:
		return ldap.ApplicationModifyResponse, true
	case ldap.ApplicationAddRequest:
		return ldap.ApplicationAddResponse, true
	case ldap.ApplicationDelRequest:
		return ldap.ApplicationDelResponse, true
	case ldap.ApplicationModifyDNRequest:
		return ldap.ApplicationModifyDNResponse, true
	case ldap.ApplicationCompareRequest:
		return ldap.ApplicationCompareResponse, true
	case ldap.ApplicationExtendedRequest:
		return ldap.ApplicationExtendedResponse, true
	}
	return 0, false
}

// readMessage reads one BER LDAPMessage, refusing the indefinite length
// form (RFC 4511 §5.1) and anything larger than limit before reading it.
func readMessage(r *bufio.Reader, limit int) (*ber.Packet, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if tag != 0x30 { // universal constructed SEQUENCE
		return nil, fmt.Errorf("%w: message starts with 0x%02x, not a SEQUENCE", errProtocol, tag)
	}
	header := []byte{tag}
	l, err := r.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	header = append(header, l)
	var length int
	switch {
	case l < 0x80:
		length = int(l)
	case l == 0x80:
		return nil, fmt.Errorf("%w: indefinite length", errProtocol)
	default:
		n := int(l & 0x7f)
		if n > 4 {
			return nil, fmt.Errorf("%w: message length field of %d bytes", errProtocol, n)
		}
		for range n {
			b, err := r.ReadByte()
			if err != nil {
				return nil, unexpected(err)
			}
			header = append(header, b)
			length = length<<8 | int(b)
		}
	}
	if length > limit {
		return nil, fmt.Errorf("%w: message of %d bytes exceeds %d", errProtocol, length, limit)
	}
	buf := make([]byte, len(header)+length)
	copy(buf, header)
	if _, err := io.ReadFull(r, buf[len(header):]); err != nil {
		return nil, unexpected(err)
	}
	p, err := ber.DecodePacketErr(buf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errProtocol, err)
	}
	return p, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// parseEnvelope splits an LDAPMessage (RFC 4511 §4.1.1) into its parts.
func parseEnvelope(p *ber.Packet) (id int64, op *ber.Packet, controls []*ber.Packet, err error) {
	if len(p.Children) < 2 || len(p.Children) > 3 {
		return 0, nil, nil, fmt.Errorf("%w: LDAPMessage with %d parts", errProtocol, len(p.Children))
	}
	idp := p.Children[0]
	if idp.ClassType != ber.ClassUniversal || idp.Tag != ber.TagInteger {
		return 0, nil, nil, fmt.Errorf("%w: messageID is not an INTEGER", errProtocol)
	}
	id, ok := idp.Value.(int64)
	if !ok || id <= 0 || id > maxMessageID {
		return 0, nil, nil, fmt.Errorf("%w: bad messageID", errProtocol)
	}
	op = p.Children[1]
	if op.ClassType != ber.ClassApplication {
		return 0, nil, nil, fmt.Errorf("%w: protocolOp is not an APPLICATION tag", errProtocol)
	}
	if len(p.Children) == 3 {
		cp := p.Children[2]
		if cp.ClassType != ber.ClassContext || cp.Tag != tagControls || cp.TagType != ber.TypeConstructed {
			return 0, nil, nil, fmt.Errorf("%w: malformed controls", errProtocol)
		}
		controls = cp.Children
	}
	return id, op, controls, nil
}

// criticalControl returns the OID of the first control marked critical;
// we implement none (RFC 4511 §4.1.11).
func criticalControl(controls []*ber.Packet) string {
	for _, c := range controls {
		if len(c.Children) >= 2 && c.Children[1].ClassType == ber.ClassUniversal && c.Children[1].Tag == ber.TagBoolean {
			if b, ok := c.Children[1].Value.(bool); ok && b {
				oid := octets(c.Children[0])
				return truncate(oid)
			}
		}
	}
	return ""
}

// write sends one response packet.
func (c *conn) write(p *ber.Packet) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout)); err != nil {
		return err
	}
	if _, err := c.bw.Write(p.Bytes()); err != nil {
		return err
	}
	return c.bw.Flush()
}

// writeResult sends an LDAPResult-shaped response.
func (c *conn) writeResult(id int64, tag ber.Tag, code int, matchedDN, diag string) error {
	env := envelope(id)
	env.AppendChild(ldapResult(tag, code, matchedDN, diag))
	return c.write(env)
}

func envelope(id int64) *ber.Packet {
	p := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	return p
}

// ldapResult builds the RFC 4511 §4.1.9 LDAPResult fields under tag.
func ldapResult(tag ber.Tag, code int, matchedDN, diag string) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, tag, nil, "response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "resultCode"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, matchedDN, "matchedDN"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, diag, "diagnosticMessage"))
	return p
}

// noticeOfDisconnection is the unsolicited notification of RFC 4511 §4.4.1.
func noticeOfDisconnection(code int, diag string) *ber.Packet {
	env := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "LDAPMessage")
	env.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, int64(0), "messageID"))
	r := ldapResult(ldap.ApplicationExtendedResponse, code, "", diag)
	r.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, tagExtendedResponseName, oidNoticeOfDisconnection, "responseName"))
	env.AppendChild(r)
	return env
}
