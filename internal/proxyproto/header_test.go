package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"testing"
	"testing/iotest"
)

// v2 builds a version 2 header: command, family/transport, address block
// (and TLVs).
func v2(cmd, fam byte, body []byte) []byte {
	b := append([]byte(nil), v2Signature...)
	b = append(b, 0x20|cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

func v4Block(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func v6Block(src, dst string, sport, dport uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func TestParse(t *testing.T) {
	ap := netip.MustParseAddrPort
	tlv := []byte{0x04, 0x00, 0x03, 'a', 'b', 'c'} // PP2_TYPE_NOOP
	for _, tc := range []struct {
		name string
		in   []byte
		want Header
		n    int // header length; 0: the whole input
		err  error
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\nEHLO"), Header{Version: 1, Source: ap("192.0.2.7:56324"), Destination: ap("198.51.100.1:25")}, 44, nil},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 993\r\n"), Header{Version: 1, Source: ap("[2001:db8::7]:65535"), Destination: ap("[2001:db8::1]:993")}, 0, nil},
		{"v1 unknown", []byte("PROXY UNKNOWN ffff:f...f:ffff 1 2\r\n"), Header{Version: 1, Local: true}, 0, nil},
		{"v1 unknown bare", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}, 0, nil},
		{"v1 short", []byte("PROXY TCP4 192.0.2.7"), Header{}, 0, ErrShort},
		{"v1 prefix", []byte("PRO"), Header{}, 0, ErrShort},
		{"v1 tcp4 with v6 address", []byte("PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 tcp6 with v4 address", []byte("PROXY TCP6 192.0.2.7 192.0.2.1 1 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.7 192.0.2.1 1 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 port too big", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 65536 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 port leading zero", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 025 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 port signed", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 +25 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n"), Header{}, 0, ErrInvalid},
		{"v1 udp", []byte("PROXY UDP4 192.0.2.7 192.0.2.1 1 2\r\n"), Header{}, 0, ErrUnsupported},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 1 2\n"), Header{}, 0, ErrInvalid},
		{"v1 too long", append([]byte("PROXY TCP4 "), bytes.Repeat([]byte("1"), 200)...), Header{}, 0, ErrInvalid},
		{"v1 lower case", []byte("proxy TCP4 192.0.2.7 192.0.2.1 1 2\r\n"), Header{}, 0, ErrNotProxy},
		{"smtp command", []byte("EHLO client.example\r\n"), Header{}, 0, ErrNotProxy},
		{"tls client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00}, Header{}, 0, ErrNotProxy},
		{"empty", nil, Header{}, 0, ErrShort},
		{"v2 tcp4", v2(1, 0x11, v4Block("192.0.2.7", "198.51.100.1", 56324, 993)), Header{Version: 2, Source: ap("192.0.2.7:56324"), Destination: ap("198.51.100.1:993")}, 0, nil},
		{"v2 tcp6", v2(1, 0x21, v6Block("2001:db8::7", "2001:db8::1", 1, 25)), Header{Version: 2, Source: ap("[2001:db8::7]:1"), Destination: ap("[2001:db8::1]:25")}, 0, nil},
		{"v2 tcp4 with TLVs then data", append(v2(1, 0x11, append(v4Block("192.0.2.7", "198.51.100.1", 1, 2), tlv...)), "A1 LOGIN"...),
			Header{Version: 2, Source: ap("192.0.2.7:1"), Destination: ap("198.51.100.1:2")}, 16 + 12 + len(tlv), nil},
		{"v2 local", v2(0, 0x00, nil), Header{Version: 2, Local: true}, 0, nil},
		{"v2 local with addresses", v2(0, 0x11, v4Block("127.0.0.1", "127.0.0.1", 1, 2)), Header{Version: 2, Local: true}, 0, nil},
		{"v2 signature only", v2Signature, Header{}, 0, ErrShort},
		{"v2 body missing", v2(1, 0x11, v4Block("192.0.2.7", "198.51.100.1", 1, 2))[:20], Header{}, 0, ErrShort},
		{"v2 version 1", append(append([]byte(nil), v2Signature...), 0x11, 0x11, 0, 0), Header{}, 0, ErrInvalid},
		{"v2 command 2", v2(2, 0x11, v4Block("192.0.2.7", "198.51.100.1", 1, 2)), Header{}, 0, ErrInvalid},
		{"v2 short v4 block", v2(1, 0x11, make([]byte, 11)), Header{}, 0, ErrInvalid},
		{"v2 short v6 block", v2(1, 0x21, make([]byte, 35)), Header{}, 0, ErrInvalid},
		{"v2 udp4", v2(1, 0x12, v4Block("192.0.2.7", "198.51.100.1", 1, 2)), Header{}, 0, ErrUnsupported},
		{"v2 udp6", v2(1, 0x22, v6Block("2001:db8::7", "2001:db8::1", 1, 2)), Header{}, 0, ErrUnsupported},
		{"v2 unix stream", v2(1, 0x31, make([]byte, 216)), Header{}, 0, ErrUnsupported},
		{"v2 unspec proxy", v2(1, 0x00, nil), Header{}, 0, ErrUnsupported},
		{"v2 unknown family", v2(1, 0x41, make([]byte, 12)), Header{}, 0, ErrInvalid},
		{"v2 too long", v2(1, 0x11, make([]byte, MaxHeader)), Header{}, 0, ErrInvalid},
		{"v2 bad signature", []byte("\r\n\r\nQUIT\r\n"), Header{}, 0, ErrNotProxy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, n, err := Parse(tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Parse: %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			want := tc.n
			if want == 0 {
				want = len(tc.in)
			}
			if h != tc.want || n != want {
				t.Errorf("Parse = %+v, %d; want %+v, %d", h, n, tc.want, want)
			}
		})
	}
}

func TestLooksLikeHeader(t *testing.T) {
	for _, tc := range []struct {
		in              string
		header, decided bool
	}{
		{"", false, false},
		{"P", false, false},
		{"PROXY", false, false},
		{"PROXY ", true, true},
		{"PROXY TCP4 1.2.3.4", true, true},
		{"PROXZ", false, true},
		{"\r\n", false, false},
		{"\r\n\r\n\x00\r\nQUIT", false, false},
		{string(v2Signature), true, true},
		{"\r\nEHLO", false, true},
		{"EHLO x", false, true},
		{"a1 LOGIN", false, true},
		{"\x16\x03\x01", false, true},
	} {
		h, d := LooksLikeHeader([]byte(tc.in))
		if h != tc.header || d != tc.decided {
			t.Errorf("LooksLikeHeader(%q) = %v, %v; want %v, %v", tc.in, h, d, tc.header, tc.decided)
		}
	}
}

// ReadHeader takes the header however the bytes arrive, and gives back
// what followed it.
func TestReadHeader(t *testing.T) {
	tlvs := bytes.Repeat([]byte{0x04, 0x00, 0x01, 'x'}, 200) // beyond the first buffer
	for _, tc := range []struct {
		name string
		in   []byte
		rest string
		src  string
		err  error
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.7 192.0.2.1 40000 25\r\nEHLO x\r\n"), "EHLO x\r\n", "192.0.2.7:40000", nil},
		{"v2 with TLVs", append(v2(1, 0x11, append(v4Block("192.0.2.7", "192.0.2.1", 40000, 993), tlvs...)), 0x16, 0x03), "\x16\x03", "192.0.2.7:40000", nil},
		{"v2 local", v2(0, 0, nil), "", "invalid AddrPort", nil},
		{"nothing", nil, "", "", ErrNotProxy},
		{"truncated v2", v2(1, 0x11, v4Block("192.0.2.7", "192.0.2.1", 1, 2))[:20], "", "", ErrInvalid},
		{"truncated v1", []byte("PROXY TCP4 192.0.2.7"), "", "", ErrInvalid},
		{"garbage", []byte("EHLO x\r\n"), "", "", ErrNotProxy},
	} {
		for _, slow := range []bool{false, true} {
			r := io.Reader(bytes.NewReader(tc.in))
			if slow {
				r = iotest.OneByteReader(r)
			}
			h, rest, err := ReadHeader(r)
			if !errors.Is(err, tc.err) {
				t.Errorf("%s (one byte at a time %v): %v, want %v", tc.name, slow, err, tc.err)
				continue
			}
			if err != nil {
				continue
			}
			if h.Source.String() != tc.src {
				t.Errorf("%s: source %v, want %s", tc.name, h.Source, tc.src)
			}
			rest = append(rest, mustReadAll(t, r)...)
			if string(rest) != tc.rest {
				t.Errorf("%s: after the header %q, want %q", tc.name, rest, tc.rest)
			}
		}
	}
}

func mustReadAll(t *testing.T, r io.Reader) []byte {
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Parse never panics, never claims more bytes than it has, and agrees
// with ReadHeader.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 25\r\n"))
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 65535 993\r\nx"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(1, 0x11, v4Block("192.0.2.7", "198.51.100.1", 1, 2)))
	f.Add(v2(1, 0x21, append(v6Block("2001:db8::7", "2001:db8::1", 1, 2), 1, 0, 1, 'x')))
	f.Add(v2(0, 0, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			if h != (Header{}) || n != 0 {
				t.Fatalf("error %v with %+v, %d", err, h, n)
			}
		} else {
			if n <= 0 || n > len(b) || n > MaxHeader {
				t.Fatalf("header of %d bytes in %d", n, len(b))
			}
			if !h.Local && (!h.Source.IsValid() || !h.Destination.IsValid()) {
				t.Fatalf("header without addresses: %+v", h)
			}
			if isHeader, decided := LooksLikeHeader(b); !isHeader && decided && n >= 12 {
				t.Fatalf("a header LooksLikeHeader refuses: %q", b)
			}
		}
		rh, rest, rerr := ReadHeader(iotest.OneByteReader(bytes.NewReader(b)))
		if (err == nil) != (rerr == nil) || err == nil && (rh != h || len(rest) != 0) {
			t.Fatalf("ReadHeader one byte at a time: %+v %q %v; Parse: %+v %d %v", rh, rest, rerr, h, n, err)
		}
	})
}
