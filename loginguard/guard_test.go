package loginguard

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestManyAddressesSlowOneLogin(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now})
	for i := range 100 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)})
		g.Failed("alice", ip)
		c.t = c.t.Add(time.Second)
	}
	fresh := netip.MustParseAddr("192.0.2.7")
	if d := g.Delay("alice", fresh); d != DefaultMaxDelay {
		t.Errorf("alice from a new address waits %v, want %v", d, DefaultMaxDelay)
	}
	if d := g.Delay("bob", fresh); d != 0 {
		t.Errorf("bob from a new address waits %v, want 0", d)
	}
	c.t = c.t.Add(DefaultWindow + time.Second)
	if d := g.Delay("alice", fresh); d != 0 {
		t.Errorf("after the window alice waits %v, want 0", d)
	}
}

func TestNetworkCountsAndSuccess(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now})
	a := netip.MustParseAddr("2001:db8:1:2::10")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::1") // same /64
	other := netip.MustParseAddr("2001:db8:1:3::1")
	for i := range 8 {
		g.Failed("user"+string(rune('a'+i)), a)
	}
	if d := g.Delay("newname", b); d == 0 {
		t.Error("same /64 not slowed down after 8 failures")
	}
	if d := g.Delay("newname", other); d != 0 {
		t.Errorf("another /64 waits %v", d)
	}
	// A success clears the login, not the network: an attacker logging
	// into his own account does not reset his guesses against others.
	g.Failed("mallory", a)
	before := g.Delay("x", a)
	g.Succeeded("mallory", a)
	if d := g.Delay("x", a); d != before {
		t.Errorf("network delay %v after a success, was %v", d, before)
	}
	if d := g.Delay("mallory", other); d != 0 {
		t.Errorf("mallory after success waits %v", d)
	}
}

func TestTableBounded(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now, MaxEntries: 1000})
	for i := range 5000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Failed("l"+string(rune(i)), ip)
		c.t = c.t.Add(time.Millisecond)
	}
	if n := g.Len(); n > 1002 {
		t.Errorf("%d entries, bound 1000", n)
	}
}
