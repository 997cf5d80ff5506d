package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// Header is what a PROXY header says about the connection.
type Header struct {
	Version int // 1 or 2
	// Local: the balancer's own connection (v2 LOCAL, v1 UNKNOWN); the
	// addresses are unset and the connection's own stand.
	Local bool
	// Source is the client, Destination the address it connected to.
	Source, Destination netip.AddrPort
}

// Errors of Parse and ReadHeader.
var (
	// ErrNotProxy: the bytes are not the start of a PROXY header.
	ErrNotProxy = errors.New("proxyproto: no PROXY header")
	// ErrInvalid: a PROXY header, but malformed.
	ErrInvalid = errors.New("proxyproto: invalid PROXY header")
	// ErrUnsupported: a well-formed header for something other than TCP
	// (UNIX sockets, UDP, an unspecified family).
	ErrUnsupported = errors.New("proxyproto: unsupported PROXY address family")
	// ErrShort: more bytes are needed (Parse only).
	ErrShort = errors.New("proxyproto: header incomplete")
)

// Sizes of the two versions' headers.
const (
	// maxV1 is the longest version 1 line, CRLF included (spec §2.1).
	maxV1 = 107
	// v2Fixed is the signature, version/command, family and length.
	v2Fixed = 16
	// MaxHeader bounds a version 2 header, TLVs included: the spec
	// allows 64 KiB, balancers send addresses and a few short TLVs.
	MaxHeader = 4096
)

var (
	v1Prefix    = []byte("PROXY ")
	v2Signature = []byte("\r\n\r\n\x00\r\nQUIT\n")
)

// Parse reads one header at the start of b and returns it with its length.
// ErrShort means b is a header's beginning: read more and call again.
func Parse(b []byte) (Header, int, error) {
	switch {
	case len(b) == 0:
		return Header{}, 0, ErrShort
	case b[0] == 'P':
		return parseV1(b)
	case b[0] == '\r':
		return parseV2(b)
	}
	return Header{}, 0, ErrNotProxy
}

// LooksLikeHeader says whether b starts with a header's signature
// (decided), or could still turn out to (undecided: read more).
func LooksLikeHeader(b []byte) (isHeader, decided bool) {
	for _, sig := range [][]byte{v1Prefix, v2Signature} {
		n := min(len(b), len(sig))
		if bytes.Equal(b[:n], sig[:n]) {
			if n == len(sig) {
				return true, true
			}
			return false, false
		}
	}
	return false, true
}

func parseV1(b []byte) (Header, int, error) {
	n := min(len(b), len(v1Prefix))
	if !bytes.Equal(b[:n], v1Prefix[:n]) {
		return Header{}, 0, ErrNotProxy
	}
	end := bytes.Index(b[:min(len(b), maxV1)], []byte("\r\n"))
	if end < 0 {
		if len(b) >= maxV1 {
			return Header{}, 0, fmt.Errorf("%w: version 1 line longer than %d bytes", ErrInvalid, maxV1)
		}
		// A bare LF or a control character will not become valid.
		for _, c := range b {
			if c != '\r' && (c < 0x20 || c > 0x7e) {
				return Header{}, 0, fmt.Errorf("%w: version 1 line with a control character", ErrInvalid)
			}
		}
		return Header{}, 0, ErrShort
	}
	line := string(b[len(v1Prefix):end])
	// Single spaces: an empty field (two spaces) fails the count.
	fields := strings.Split(line, " ")
	h := Header{Version: 1}
	if len(fields) > 0 && fields[0] == "UNKNOWN" {
		// The rest of the line is to be ignored (spec §2.1).
		h.Local = true
		return h, end + 2, nil
	}
	if len(fields) != 5 {
		return Header{}, 0, fmt.Errorf("%w: version 1 line %q", ErrInvalid, line)
	}
	var want4 bool
	switch fields[0] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return Header{}, 0, fmt.Errorf("%w: version 1 protocol %q", ErrUnsupported, fields[0])
	}
	src, err1 := netip.ParseAddr(fields[1])
	dst, err2 := netip.ParseAddr(fields[2])
	sport, err3 := parsePort(fields[3])
	dport, err4 := parsePort(fields[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Header{}, 0, fmt.Errorf("%w: version 1 line %q", ErrInvalid, line)
	}
	if src.Is4() != want4 || dst.Is4() != want4 || src.Zone() != "" || dst.Zone() != "" {
		return Header{}, 0, fmt.Errorf("%w: version 1 addresses do not match %s", ErrInvalid, fields[0])
	}
	h.Source, h.Destination = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	return h, end + 2, nil
}

// parsePort accepts 0..65535 in decimal, without sign or leading zero.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || s[0] < '0' || s[0] > '9' || len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("port %q", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

func parseV2(b []byte) (Header, int, error) {
	n := min(len(b), len(v2Signature))
	if !bytes.Equal(b[:n], v2Signature[:n]) {
		return Header{}, 0, ErrNotProxy
	}
	if len(b) < v2Fixed {
		return Header{}, 0, ErrShort
	}
	verCmd, fam := b[12], b[13]
	bodyLen := int(binary.BigEndian.Uint16(b[14:16]))
	total := v2Fixed + bodyLen
	if verCmd>>4 != 2 {
		return Header{}, 0, fmt.Errorf("%w: version %d", ErrInvalid, verCmd>>4)
	}
	if total > MaxHeader {
		return Header{}, 0, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, total, MaxHeader)
	}
	local := false
	switch verCmd & 0xf {
	case 0:
		local = true
	case 1:
	default:
		return Header{}, 0, fmt.Errorf("%w: command %d", ErrInvalid, verCmd&0xf)
	}
	if len(b) < total {
		return Header{}, 0, ErrShort
	}
	h := Header{Version: 2, Local: local}
	if local {
		// The addresses, if any, describe the balancer's own connection.
		return h, total, nil
	}
	body := b[v2Fixed:total]
	switch fam {
	case 0x11: // TCP over IPv4
		if len(body) < 12 {
			return Header{}, 0, fmt.Errorf("%w: IPv4 address block of %d bytes", ErrInvalid, len(body))
		}
		src, dst := netip.AddrFrom4([4]byte(body[0:4])), netip.AddrFrom4([4]byte(body[4:8]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
	case 0x21: // TCP over IPv6
		if len(body) < 36 {
			return Header{}, 0, fmt.Errorf("%w: IPv6 address block of %d bytes", ErrInvalid, len(body))
		}
		src, dst := netip.AddrFrom16([16]byte(body[0:16])), netip.AddrFrom16([16]byte(body[16:32]))
		h.Source = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.Destination = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
	case 0x00, 0x12, 0x22, 0x31, 0x32:
		return Header{}, 0, fmt.Errorf("%w: family/transport 0x%02x", ErrUnsupported, fam)
	default:
		return Header{}, 0, fmt.Errorf("%w: family/transport 0x%02x", ErrInvalid, fam)
	}
	// What follows the addresses is TLVs: skipped.
	return h, total, nil
}

// ReadHeader reads one header from r, which must start with it. It
// returns the header and the bytes read after it (the client's first
// bytes, which the caller must serve before reading r again). It reads at
// most MaxHeader bytes; the caller bounds the time (a deadline on the
// connection).
func ReadHeader(r io.Reader) (Header, []byte, error) {
	buf := make([]byte, 0, 256) // a v1 line, or a v2 header without TLVs
	for {
		h, n, err := Parse(buf)
		if err == nil {
			var rest []byte
			if n < len(buf) {
				rest = append([]byte(nil), buf[n:]...)
			}
			return h, rest, nil
		}
		if err != ErrShort {
			return Header{}, nil, err
		}
		if len(buf) == cap(buf) {
			// Only a v2 header with TLVs gets here: Parse checked the
			// length it declares against MaxHeader.
			need := v2Fixed + int(binary.BigEndian.Uint16(buf[14:16]))
			buf = append(make([]byte, 0, need), buf...)
		}
		m, rerr := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+m]
		if rerr != nil && m == 0 {
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			if len(buf) == 0 {
				return Header{}, nil, fmt.Errorf("%w: %w", ErrNotProxy, rerr)
			}
			return Header{}, nil, fmt.Errorf("%w: %d bytes, then %w", ErrInvalid, len(buf), rerr)
		}
	}
}
