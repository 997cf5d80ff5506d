package cluster

import (
	"errors"
	"testing"
)

func TestRoute(t *testing.T) {
	c, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
		"b": {IMAP: "127.0.0.1:1"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := NewHops(c)
	holds := NewHolds()
	defer holds.Hold("/home/moving")()
	tests := []struct {
		name       string
		hops       *Hops
		node, home string
		origin     Origin
		proxied    bool
		wantRemote bool
		wantTTL    int
		wantErr    error // nil; ErrUnknownNode, ErrHeld, ErrHopsExhausted
	}{
		{"here", h, "a", "/home/x", Origin{}, false, false, 0, nil},
		{"no node named: here", h, "", "/home/x", Origin{}, false, false, 0, nil},
		{"held here", h, "a", "/home/moving", Origin{}, false, false, 0, ErrHeld},
		{"single node: no holds checked", nil, "b", "/home/moving", Origin{}, false, false, 0, nil},
		{"elsewhere, from a client", h, "b", "/home/x", Origin{TTL: 1}, false, true, DefaultHopTTL, nil},
		{"elsewhere, from a front", h, "B", "/home/x", Origin{TTL: 3}, true, true, 2, nil},
		{"elsewhere, hops exhausted", h, "b", "/home/x", Origin{TTL: 1}, true, true, 0, ErrHopsExhausted},
		{"unknown node", h, "z", "/home/x", Origin{}, false, false, 0, ErrUnknownNode},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, ttl, remote, err := tc.hops.Route(tc.node, tc.home, holds, &tc.origin, tc.proxied)
			if !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if remote != tc.wantRemote || ttl != tc.wantTTL {
				t.Fatalf("remote %v ttl %d, want %v %d", remote, ttl, tc.wantRemote, tc.wantTTL)
			}
			if remote && n.Name != "b" {
				t.Fatalf("node %q, want b", n.Name)
			}
		})
	}
}
