package connset

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// sess is a session of the tests: kicked is closed by the set's kick.
type sess struct {
	name   string
	kicked chan struct{}
}

func newSess(name string) *sess { return &sess{name: name, kicked: make(chan struct{})} }

func newSet(lim Limits, exempt ...string) *Set[*sess] {
	ex := map[netip.Addr]bool{}
	for _, a := range exempt {
		ex[netip.MustParseAddr(a)] = true
	}
	return New(lim, func(a netip.Addr) bool { return ex[a] }, func(s *sess) { close(s.kicked) })
}

func TestAdmitCaps(t *testing.T) {
	lim := Limits{MaxConns: 4, MaxConnsPerIP: 2, MaxUserIPConns: 10}
	tests := []struct {
		name   string
		exempt []string
		peers  []string // admitted in order
		want   []error  // per peer
	}{
		{"per address cap", nil,
			[]string{"192.0.2.1", "192.0.2.1", "192.0.2.1", "192.0.2.2"},
			[]error{nil, nil, ErrTooManyFromIP, nil}},
		{"total cap", nil,
			[]string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"},
			[]error{nil, nil, nil, nil, ErrTooMany}},
		{"exempt node address", []string{"192.0.2.9"},
			[]string{"192.0.2.9", "192.0.2.9", "192.0.2.9", "192.0.2.9", "192.0.2.9"},
			[]error{nil, nil, nil, nil, ErrTooMany}},
		{"exemption is per address", []string{"192.0.2.9"},
			[]string{"192.0.2.8", "192.0.2.8", "192.0.2.8"},
			[]error{nil, nil, ErrTooManyFromIP}},
		// IPv6 is counted per /64, as smtp and loginguard count: one
		// machine often holds a whole /64.
		{"IPv6 per /64", nil,
			[]string{"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8:0:1::1", "2001:db8:0:1::1"},
			[]error{nil, nil, ErrTooManyFromIP, nil, nil}},
		{"IPv4-mapped IPv6 per address", nil,
			[]string{"::ffff:192.0.2.1", "::ffff:192.0.2.1", "::ffff:192.0.2.1", "::ffff:192.0.2.2"},
			[]error{nil, nil, ErrTooManyFromIP, nil}},
		{"IPv6 exempt", []string{"2001:db8::9"},
			[]string{"2001:db8::9", "2001:db8::9", "2001:db8::9"},
			[]error{nil, nil, nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(lim, tc.exempt...)
			for i, p := range tc.peers {
				made := false
				_, err := s.Admit(p, func() *sess { made = true; return newSess(p) })
				if !errors.Is(err, tc.want[i]) || (err == nil) != made {
					t.Fatalf("connection %d from %s: err %v, made %v; want %v", i, p, err, made, tc.want[i])
				}
			}
		})
	}
}

func TestLoginMovesCount(t *testing.T) {
	s := newSet(Limits{MaxConns: 100, MaxConnsPerIP: 1, MaxUserIPConns: 2})
	admit := func(peer string) (*sess, error) {
		return s.Admit(peer, func() *sess { return newSess(peer) })
	}
	a, err := admit("192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admit("192.0.2.1"); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("second connection before login: %v", err)
	}
	// Logged in, a counts against its user, not its address.
	if !s.LoggedIn(a, "alice", "192.0.2.1") {
		t.Fatal("login refused")
	}
	b, err := admit("192.0.2.1")
	if err != nil {
		t.Fatalf("connection after the first logged in: %v", err)
	}
	// LoggedOut puts a back under the address's cap.
	s.LoggedOut(a)
	if _, err := admit("192.0.2.1"); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("after logout: %v", err)
	}
	s.LoggedOut(a) // not logged in: nothing
	if !s.LoggedIn(b, "alice", "192.0.2.1") {
		t.Fatal("login of b refused")
	}
	if s.Drop(b) != true || s.Drop(b) != false {
		t.Fatal("Drop: want true, then false")
	}
	if s.Len() != 1 {
		t.Fatalf("Len %d, want 1", s.Len())
	}
}

func TestUserIPCap(t *testing.T) {
	type login struct {
		user, ip string
		want     bool
	}
	tests := []struct {
		name   string
		logins []login
	}{
		{"cap of one user from one address", []login{
			{"alice", "192.0.2.1", true}, {"alice", "192.0.2.1", true}, {"alice", "192.0.2.1", false}}},
		{"another address has its own", []login{
			{"alice", "192.0.2.1", true}, {"alice", "192.0.2.1", true}, {"alice", "192.0.2.2", true}}},
		{"another user has its own", []login{
			{"alice", "192.0.2.1", true}, {"alice", "192.0.2.1", true}, {"bob", "192.0.2.1", true}}},
		// ip is the client's address as the session knows it (a front
		// node's word), not the peer's.
		{"the client's address, not the peer's", []login{
			{"alice", "198.51.100.1", true}, {"alice", "198.51.100.2", true}, {"alice", "198.51.100.1", true}, {"alice", "198.51.100.1", false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSet(Limits{MaxConns: 100, MaxConnsPerIP: 100, MaxUserIPConns: 2})
			for i, l := range tc.logins {
				se, err := s.Admit("203.0.113.7", func() *sess { return newSess(l.user) })
				if err != nil {
					t.Fatal(err)
				}
				if got := s.LoggedIn(se, l.user, l.ip); got != l.want {
					t.Fatalf("login %d (%s from %s): %v, want %v", i, l.user, l.ip, got, l.want)
				}
			}
		})
	}
	// A refused login leaves the session under its address's cap.
	s := newSet(Limits{MaxConns: 100, MaxConnsPerIP: 1, MaxUserIPConns: 1})
	a, _ := s.Admit("192.0.2.1", func() *sess { return newSess("a") })
	b, _ := s.Admit("192.0.2.2", func() *sess { return newSess("b") })
	if !s.LoggedIn(a, "alice", "192.0.2.9") || s.LoggedIn(b, "alice", "192.0.2.9") {
		t.Fatal("want the first login admitted, the second refused")
	}
	if _, err := s.Admit("192.0.2.2", func() *sess { return newSess("c") }); !errors.Is(err, ErrTooManyFromIP) {
		t.Fatalf("the refused session no longer counts for its address: %v", err)
	}
}

func TestEndUser(t *testing.T) {
	s := newSet(Limits{MaxConns: 100, MaxConnsPerIP: 100, MaxUserIPConns: 100})
	login := func(user string) *sess {
		se, err := s.Admit("192.0.2.1", func() *sess { return newSess(user) })
		if err != nil || !s.LoggedIn(se, user, "192.0.2.1") {
			t.Fatalf("login of %s: %v", user, err)
		}
		return se
	}
	a1, a2, bob := login("alice"), login("alice"), login("bob")
	// A prefix of another login is another user.
	al := login("al")
	notLogged, _ := s.Admit("192.0.2.1", func() *sess { return newSess("") })
	// The sessions end a while after they are kicked, as a real one
	// closing its files does; EndUser waits for them.
	dropped := make(chan *sess, 2)
	for _, se := range []*sess{a1, a2} {
		go func() {
			<-se.kicked
			time.Sleep(20 * time.Millisecond)
			dropped <- se
			s.Drop(se)
		}()
	}
	// Bounded: a session kicked by mistake is never dropped here.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ended, release, err := s.EndUser(ctx, "alice")
	if err != nil || ended != 2 {
		t.Fatalf("EndUser: %d, %v; want 2, nil", ended, err)
	}
	if len(dropped) != 2 {
		t.Fatalf("EndUser returned with %d of 2 sessions dropped", len(dropped))
	}
	for _, se := range []*sess{bob, al, notLogged} {
		select {
		case <-se.kicked:
			t.Fatalf("session %q kicked", se.name)
		default:
		}
	}
	if s.Len() != 3 {
		t.Fatalf("Len %d, want 3", s.Len())
	}
	// Barred until released, a second move's bar outlasting the first's.
	_, release2, _ := s.EndUser(ctx, "alice")
	try := func() bool {
		se, _ := s.Admit("192.0.2.1", func() *sess { return newSess("alice") })
		ok := s.LoggedIn(se, "alice", "192.0.2.1")
		s.Drop(se)
		return ok
	}
	if try() {
		t.Fatal("alice logged in while moved")
	}
	login("al") // not barred with alice: login fails the test otherwise
	release()
	release() // once only
	if try() {
		t.Fatal("alice logged in while the second move holds her")
	}
	release2()
	if !try() {
		t.Fatal("alice still barred after release")
	}
}

func TestEndUserContext(t *testing.T) {
	s := newSet(Limits{MaxConns: 10, MaxConnsPerIP: 10, MaxUserIPConns: 10})
	se, _ := s.Admit("192.0.2.1", func() *sess { return newSess("alice") })
	s.LoggedIn(se, "alice", "192.0.2.1")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-se.kicked; cancel() }() // kicked, never dropped
	ended, release, err := s.EndUser(ctx, "alice")
	if ended != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("EndUser: %d, %v; want 1, context.Canceled", ended, err)
	}
	release()
}

func TestClose(t *testing.T) {
	s := newSet(Limits{MaxConns: 10, MaxConnsPerIP: 10, MaxUserIPConns: 10})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !s.AddListener(ln) {
		t.Fatal("AddListener refused before Close")
	}
	var ses []*sess
	for range 3 {
		se, _ := s.Admit("192.0.2.1", func() *sess { return newSess("") })
		ses = append(ses, se)
		go func() { <-se.kicked; s.Drop(se) }()
	}
	first, err := s.Close()
	if !first || err != nil {
		t.Fatalf("Close: %v, %v", first, err)
	}
	if s.Len() != 0 || !s.Closed() {
		t.Fatalf("after Close: Len %d, Closed %v", s.Len(), s.Closed())
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("listener still accepts after Close")
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed")
	}
	if first, _ := s.Close(); first {
		t.Fatal("second Close says first")
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if s.AddListener(ln2) {
		t.Fatal("AddListener after Close")
	}
	if _, err := ln2.Accept(); err == nil {
		t.Fatal("listener refused by a closed set still accepts")
	}
}

// Sessions come and go while Drain waits, as connections accepted during a
// shutdown's drain do: nothing panics (a WaitGroup reused while its Wait
// returned did), Drain returns once the set is empty, and after
// CloseListeners no session is taken on.
func TestDrainWhileSessionsComeAndGo(t *testing.T) {
	s := newSet(Limits{MaxConns: 10, MaxConnsPerIP: 10, MaxUserIPConns: 10})
	for range 2000 {
		a, _ := s.Admit("192.0.2.1", func() *sess { return newSess("a") })
		drained := make(chan struct{})
		go func() { s.Drain(context.Background(), time.Minute); close(drained) }()
		s.Drop(a)
		b, err := s.Admit("192.0.2.1", func() *sess { return newSess("b") })
		if err != nil {
			t.Fatal(err)
		}
		s.Drop(b)
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			t.Fatal("Drain still waits on an empty set")
		}
	}
	s.CloseListeners()
	if _, err := s.Admit("192.0.2.1", func() *sess { return newSess("c") }); !errors.Is(err, ErrClosing) {
		t.Fatalf("Admit after CloseListeners: %v, want ErrClosing", err)
	}
	if s.Len() != 0 {
		t.Fatalf("Len %d after a refused Admit", s.Len())
	}
}
