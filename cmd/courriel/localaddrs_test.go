package main

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// The queue knows this host by the addresses its SMTP listeners bind, and
// by every interface's when one binds the wildcard (Postfix's
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
		name    string
		listens []string
		ifaces  func() ([]net.Addr, error)
		want    []string
	}{
		{"addresses bound", []string{"192.0.2.1:25", "", "[2001:db8::1]:587", "192.0.2.1:465"}, broken,
			[]string{"192.0.2.1", "2001:db8::1"}},
		{"an empty host is every interface", []string{":25"}, ifaces,
			[]string{"127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"0.0.0.0 is every interface", []string{"0.0.0.0:25", "198.51.100.1:587"}, ifaces,
			[]string{"198.51.100.1", "127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"[::] is every interface", []string{"[::]:25"}, ifaces,
			[]string{"127.0.0.1", "192.0.2.7", "2001:db8::7"}},
		{"a wildcard without interfaces", []string{":25"}, broken, nil},
		{"nothing listens", []string{"", ""}, ifaces, nil},
	} {
		var want []netip.Addr
		for _, s := range tc.want {
			want = append(want, netip.MustParseAddr(s))
		}
		if got := localAddrs(tc.listens, tc.ifaces, log); !slices.Equal(got, want) {
			t.Errorf("%s: localAddrs(%q) = %v, want %v", tc.name, tc.listens, got, want)
		}
	}
}
