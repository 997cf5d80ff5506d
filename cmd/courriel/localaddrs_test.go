package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// The queue knows this host by the addresses its port-25 listener binds,
// and by every interface's when it binds the wildcard (Postfix's
// inet_interfaces = all).
func TestLocalAddrs(t *testing.T) {
	t.Parallel()
	ifaces := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.ParseIP("192.0.2.7"), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::7"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	broken := func() ([]net.Addr, error) { return nil, errors.New("no interfaces") }
	log := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name   string
		listen string
		ifaces func() ([]net.Addr, error)
		want   []string
	}{
		{"an address", "192.0.2.1:25", broken, []string{"192.0.2.1"}},
		{"an IPv6 address", "[2001:db8::1]:25", broken, []string{"2001:db8::1"}},
		{"an empty host is every interface", ":25", ifaces, []string{"127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"0.0.0.0 is every interface", "0.0.0.0:25", ifaces, []string{"127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"[::] is every interface", "[::]:25", ifaces, []string{"127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"a wildcard without interfaces", ":25", broken, nil},
		{"no smtp listener", "", ifaces, nil},
	} {
		var want []netip.Addr
		for _, s := range tc.want {
			want = append(want, netip.MustParseAddr(s))
		}
		if got := localAddrs(tc.listen, tc.ifaces, log); !slices.Equal(got, want) {
			t.Errorf("%s: localAddrs(%q) = %v, want %v", tc.name, tc.listen, got, want)
		}
	}
}

// queue.proxy_interfaces count as this host beside listen.smtp's
// addresses (Postfix's proxy_interfaces).
func TestSelfAddrs(t *testing.T) {
	t.Parallel()
	cfg := &Config{Listen: ListenConfig{SMTP: "192.0.2.1:25"}, Queue: QueueConfig{ProxyInterfaces: []string{"203.0.113.5", "192.0.2.1", "::ffff:198.51.100.9"}}}
	got := selfAddrs(cfg, nil, slog.New(slog.DiscardHandler))
	want := []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("198.51.100.9")}
	if !slices.Equal(got, want) {
		t.Errorf("selfAddrs = %v, want %v", got, want)
	}
}
