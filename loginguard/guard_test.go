package loginguard

import (
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// 100 wrong passwords for one login, each from another address: the login
// slows down to the cap, other logins and the addresses are unaffected.
func TestManyAddressesSlowOneLogin(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now})
	var last time.Duration
	for i := range 100 {
		ip := netip.AddrFrom4([4]byte{10, 0, byte(i / 250), byte(i%250 + 1)})
		if g.Blocked(ip) {
			t.Fatalf("address %v blocked after one failure", ip)
		}
		last = g.Failed("alice", ip)
		c.t = c.t.Add(time.Second)
	}
	if last != 16*time.Second {
		t.Errorf("100th failure of alice waits %v, want 16s", last)
	}
	fresh := netip.MustParseAddr("192.0.2.7")
	if d := g.Delay("alice", fresh); d != 16*time.Second {
		t.Errorf("alice from a new address would wait %v", d)
	}
	if d := g.Failed("bob", fresh); d != 0 {
		t.Errorf("bob's first failure waits %v", d)
	}
	c.t = c.t.Add(15*time.Minute + time.Second)
	if d := g.Delay("alice", fresh); d != 0 {
		t.Errorf("after the window alice waits %v", d)
	}
}

// A login is counted as the directory matches it: its spellings with
// other case or white space share one count.
func TestLoginSpellingsShareACount(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now})
	for i, login := range []string{" bob", "BOB ", "\tbob  "} {
		ip := netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})
		g.Failed(login, ip)
	}
	if d := g.Delay("bob", netip.MustParseAddr("192.0.2.7")); d == 0 {
		t.Error("three failures of bob's spellings: bob is not slowed down")
	}
	if d := g.Delay("b ob", netip.MustParseAddr("192.0.2.7")); d != 0 {
		t.Errorf("b ob (another login) waits %v", d)
	}
}

func TestDelaysAndBlocking(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now})
	ip := netip.MustParseAddr("2001:db8:1:2::10")
	same64 := netip.MustParseAddr("2001:db8:1:2:ffff::1")
	other := netip.MustParseAddr("2001:db8:1:3::1")
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second}
	for i, w := range want {
		if d := g.Failed("user", ip); d != w {
			t.Errorf("failure %d: %v, want %v", i+1, d, w)
		}
	}
	if g.Blocked(same64) {
		t.Error("blocked before NetLimit")
	}
	g.Failed("x", same64)
	g.Failed("y", same64)
	if !g.Blocked(ip) || !g.Blocked(same64) {
		t.Error("the /64 is not blocked after 10 failures")
	}
	if g.Blocked(other) {
		t.Error("another /64 is blocked")
	}
	// A success clears the login, not the network.
	g.Succeeded("user", ip)
	if !g.Blocked(ip) {
		t.Error("a success unblocked the network")
	}
	if d := g.Delay("user", other); d != 0 {
		t.Errorf("user after success waits %v from another network", d)
	}
}

func TestTableBounded(t *testing.T) {
	c := &fakeClock{t: time.Unix(1e9, 0)}
	g := New(Options{Now: c.now, MaxEntries: 1000})
	for i := range 5000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.Failed(string(rune('a'+i%26))+string(rune(i)), ip)
		c.t = c.t.Add(time.Millisecond)
	}
	if n := g.Len(); n > 2000 {
		t.Errorf("%d entries, bound 1000 per table", n)
	}
}
