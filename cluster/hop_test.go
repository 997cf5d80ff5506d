package cluster

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"courriel/internal/testenv"
)

func TestOriginSet(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		ok         bool
		check      func(Origin) bool
	}{
		{IDOriginatingIP, "192.0.2.1", true, func(o Origin) bool { return o.IP == netip.MustParseAddr("192.0.2.1") }},
		{"ADDR", "2001:db8::1", true, func(o Origin) bool { return o.IP == netip.MustParseAddr("2001:db8::1") }},
		{"addr", "[2001:db8::2]", true, func(o Origin) bool { return o.IP == netip.MustParseAddr("2001:db8::2") }},
		{IDOriginatingIP, "::ffff:192.0.2.3", true, func(o Origin) bool { return o.IP == netip.MustParseAddr("192.0.2.3") }},
		{IDOriginatingIP, "fe80::1%eth0", false, nil},
		{IDOriginatingIP, "not-an-ip", false, nil},
		{IDOriginatingIP, "", false, nil},
		{IDOriginatingPort, "993", true, func(o Origin) bool { return o.Port == 993 }},
		{"PORT", "65536", false, nil},
		{IDOriginatingPort, "-1", false, nil},
		{IDProxyTTL, "5", true, func(o Origin) bool { return o.TTL == 5 }},
		{"TTL", "101", false, nil},
		{IDProxyTTL, "x", false, nil},
		{IDSessionID, "abc-123", true, func(o Origin) bool { return o.Session == "abc-123" }},
		{"SESSION", "with space", false, nil},
		{IDSessionID, "new\r\nline", false, nil},
		{IDSessionID, string(make([]byte, 65)), false, nil},
		{"name", "Thunderbird", true, func(o Origin) bool { return o == Origin{} }},
	} {
		var o Origin
		err := o.Set(tc.key, tc.value)
		if (err == nil) != tc.ok {
			t.Errorf("Set(%q, %q) = %v, want ok=%v", tc.key, tc.value, err, tc.ok)
			continue
		}
		if tc.ok && !tc.check(o) {
			t.Errorf("Set(%q, %q) gave %+v", tc.key, tc.value, o)
		}
		if !tc.ok && o != (Origin{}) {
			t.Errorf("refused Set(%q, %q) changed the origin: %+v", tc.key, tc.value, o)
		}
	}
}

func TestNextTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl     int
		proxied bool
		want    int
	}{
		{0, false, DefaultHopTTL}, {3, false, DefaultHopTTL}, // a client's ID is not a hop
		{5, true, 4}, {2, true, 1}, {1, true, 0}, {0, true, 0},
	} {
		o := Origin{TTL: tc.ttl}
		if got := o.NextTTL(tc.proxied); got != tc.want {
			t.Errorf("TTL %d proxied %v: next %d, want %d", tc.ttl, tc.proxied, got, tc.want)
		}
	}
}

func TestPlainLogin(t *testing.T) {
	raw, err := base64.StdEncoding.DecodeString(PlainLogin("alice", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	authz, authc, pw, err := ParsePlain(raw)
	if err != nil || authz != "alice" || authc != ClusterLogin || pw != "s3cret" {
		t.Fatalf("ParsePlain(PlainLogin) = %q %q %q %v", authz, authc, pw, err)
	}
	for _, bad := range []string{"", "a\x00b", "a\x00b\x00c\x00d"} {
		if _, _, _, err := ParsePlain([]byte(bad)); !errors.Is(err, ErrMalformedPlain) {
			t.Errorf("ParsePlain(%q) = %v", bad, err)
		}
	}
}

// A node that refused a connection is not dialled again for a while;
// another node is.
func TestHopsDeadNodeMemory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := ln.Addr().String()
	defer ln.Close()
	down := testenv.RefusingAddr(t)
	c, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
		"b": {IMAP: down}, "c": {IMAP: up, SMTP: "node-c.invalid:25"},
	}, ConnectTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHops(c)
	b, _, _ := c.Home("b")
	cn, _, _ := c.Home("c")
	if _, err := h.Dial(context.Background(), b, b.IMAP); !errors.Is(err, ErrNodeDown) {
		t.Fatalf("dial of a stopped node: %v", err)
	}
	// Remembered as down by name: even at an address that listens, b is
	// not dialled again within the memory.
	if _, err := h.Dial(context.Background(), b, up); !errors.Is(err, ErrNodeDown) {
		t.Fatalf("second dial within the memory: %v", err)
	}
	conn, err := h.Dial(context.Background(), cn, cn.IMAP)
	if err != nil {
		t.Fatalf("dial of a live node: %v", err)
	}
	conn.Close()
	if !h.FromNode(netip.MustParseAddr("127.0.0.1")) || h.FromNode(netip.MustParseAddr("192.0.2.1")) {
		t.Error("FromNode: the nodes' address is 127.0.0.1 only")
	}
	var none *Hops
	if none.FromNode(netip.MustParseAddr("127.0.0.1")) || NewHops(nil) != nil {
		t.Error("a single node has no hops")
	}
}

// The cluster login needs the secret, and in clear a node's own address.
func TestCheckLogin(t *testing.T) {
	c, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
		"a": {SMTP: "192.0.2.1:2525"}, "b": {IMAP: "[2001:db8::2]:143"}}})
	if err != nil {
		t.Fatal(err)
	}
	withTLS, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), TLS: &tls.Config{}, Nodes: map[string]Node{
		"a": {SMTP: "192.0.2.1:2525"}, "b": {IMAP: "[2001:db8::2]:143"}}})
	if err != nil {
		t.Fatal(err)
	}
	h, ht := NewHops(c), NewHops(withTLS)
	node, other := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.9")
	for _, tc := range []struct {
		name    string
		hopsTLS bool
		secret  string
		tls     bool
		peer    netip.Addr
		want    bool
	}{
		{"in clear from a node", false, "0123456789abcdef", false, node, true},
		{"in clear from a v6 node", false, "0123456789abcdef", false, netip.MustParseAddr("2001:db8::2"), true},
		{"in clear from a v4-mapped node", false, "0123456789abcdef", false, netip.MustParseAddr("::ffff:192.0.2.1"), true},
		{"in clear from elsewhere", false, "0123456789abcdef", false, other, false},
		{"in clear, no address", false, "0123456789abcdef", false, netip.Addr{}, false},
		// Hops in clear: the public IMAPS port's TLS is no node's.
		{"over TLS from elsewhere, hops in clear", false, "0123456789abcdef", true, other, false},
		{"over TLS from a node, hops in clear", false, "0123456789abcdef", true, node, true},
		{"over TLS from elsewhere, hops over TLS", true, "0123456789abcdef", true, other, true},
		{"in clear from elsewhere, hops over TLS", true, "0123456789abcdef", false, other, false},
		{"wrong secret from a node", false, "0123456789abcdeX", false, node, false},
		{"wrong secret over TLS", true, "", true, other, false},
	} {
		hops := h
		if tc.hopsTLS {
			hops = ht
		}
		if got := hops.CheckLogin(tc.secret, tc.tls, tc.peer) == ""; got != tc.want {
			t.Errorf("%s: taken %v, want %v", tc.name, got, tc.want)
		}
	}
	if why := (*Hops)(nil).CheckLogin("0123456789abcdef", true, node); why == "" {
		t.Error("a single node took a cluster login")
	}
}

// Hops leave from this node's own address when it is one of this
// machine's, so that a peer checking "from a node" (hops in clear) knows
// it whichever address the system would have chosen; otherwise the system
// chooses.
func TestHopSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		self, want string
	}{
		{"127.0.0.2:2525", "127.0.0.2"},
		{"192.0.2.1:2525", ""}, // not this machine's: the system chooses
		{"[::]:2525", ""},
	} {
		c, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
			"a": {SMTP: tc.self}, "b": {IMAP: ln.Addr().String()}}})
		if err != nil {
			t.Fatal(err)
		}
		conn, err := NewHops(c).Dial(context.Background(), Node{Name: "b"}, ln.Addr().String())
		if err != nil {
			t.Fatalf("%s: %v", tc.self, err)
		}
		peer, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		from := PeerAddr(peer).String()
		conn.Close()
		peer.Close()
		if tc.want != "" && from != tc.want {
			t.Errorf("self %s: the hop came from %s, want %s", tc.self, from, tc.want)
		}
		if tc.want == "" && from != "127.0.0.1" {
			t.Errorf("self %s: the hop came from %s, want the system's choice", tc.self, from)
		}
	}
}
