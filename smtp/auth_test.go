package smtp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestAuthThrottle: 50 bad passwords in a row from one address are slowed
// down, then refused without asking the directory, then disconnected; the
// right password from another address still works at once.
func TestAuthThrottle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submissions, nil)
	lim := e.srv.o.AuthThrottle
	var c *raw
	codes := map[string]int{}
	for i := 0; i < 50; i++ {
		if c == nil {
			c = e.dialRaw(t)
			c.cmd("EHLO attacker.example", "250 ")
		}
		c.send("AUTH PLAIN " + plainAuth("alice", "guess") + "\r\n")
		r := c.reply()
		codes[r[:3]]++
		if strings.HasPrefix(r, "421 ") {
			if !c.closed() {
				t.Fatal("421 without closing")
			}
			c = nil
		}
	}
	if n := int(e.dir.authCalls.Load()); n != lim.IPLimit {
		t.Errorf("directory asked %d times, want %d (then the address is refused)", n, lim.IPLimit)
	}
	if codes["454"] == 0 || codes["421"] == 0 || codes["535"] == 0 {
		t.Errorf("replies %v: want 535s, then 454s, and 421 disconnects", codes)
	}
	if e.clock.totalSlept() < lim.BaseDelay {
		t.Errorf("no delay after repeated failures (slept %v)", e.clock.totalSlept())
	}

	// From another address, the right password works.
	before := e.clock.totalSlept()
	c = e.dialRawFrom(t, "127.0.0.2")
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	if e.clock.totalSlept() != before {
		t.Error("a successful login was delayed")
	}
	// The attacker's address is still refused, even with the right password.
	c = e.dialRaw(t)
	c.cmd("EHLO attacker.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "454 4.7.0")
}

func TestAuthLimiterDelays(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	o := ThrottleOptions{}
	o.setDefaults()
	l := newAuthLimiter(o, clk.Now)
	var got []time.Duration
	for range 8 {
		got = append(got, l.fail("192.0.2.1", "bob"))
	}
	want := []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	// Another address guessing the same login pays the login's count...
	if d := l.fail("192.0.2.2", "BOB"); d != 16*time.Second {
		t.Errorf("distributed guess delay %v", d)
	}
	// ...but is not refused; the first address is.
	if l.blocked("192.0.2.2") || l.blocked("192.0.2.1") {
		t.Error("blocked before IPLimit")
	}
	l.fail("192.0.2.1", "x")
	l.fail("192.0.2.1", "y")
	if !l.blocked("192.0.2.1") {
		t.Error("not blocked after IPLimit failures")
	}
	// Failures are forgotten after Window.
	clk.Sleep(nil, o.Window+time.Second)
	if l.blocked("192.0.2.1") || l.fail("192.0.2.1", "bob") != 0 {
		t.Error("old failures still counted")
	}
}

func TestAuthLimiterBounded(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	l := newAuthLimiter(ThrottleOptions{MaxEntries: 100, FreeFailures: 1, BaseDelay: 1, MaxDelay: 1, IPLimit: 1, Window: time.Hour, PerSession: 1}, clk.Now)
	for i := range 10000 {
		l.fail(strings.Repeat("a", i%50)+string(rune('a'+i%26))+time.Duration(i).String(), "u"+time.Duration(i).String())
	}
	if len(l.ips) > 100 || len(l.logins) > 100 {
		t.Fatalf("tables grew to %d and %d entries", len(l.ips), len(l.logins))
	}
}

func TestIPKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.1":               "192.0.2.1",
		"::ffff:192.0.2.1":        "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":    "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::ffff": "2001:db8:1:2::/64",
	} {
		if got := ipKey(mustAddr(in)); got != want {
			t.Errorf("ipKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
