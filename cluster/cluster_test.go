package cluster

import (
	"errors"
	"testing"
)

func TestCheckNodeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true}, {"node-b.internal", true}, {"B", true}, {"n_1", true}, {"0", true},
		{"", false}, {".a", false}, {"-a", false}, {"a b", false}, {"a/../b", false},
		{"a@b", false}, {"é", false}, {"a\x00", false}, {string(make([]byte, 64)), false},
	} {
		if err := CheckNodeName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckNodeName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestHome(t *testing.T) {
	c, err := New(Options{Self: "A", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
		"a": {SMTP: "127.0.0.2:2525"}, "B": {SMTP: "127.0.0.3:2525", IMAP: "127.0.0.3:143"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		attr   string
		remote bool
		node   string
		err    error
	}{
		{"", false, "a", nil}, {"a", false, "a", nil}, {"A", false, "a", nil},
		{"b", true, "b", nil}, {"c", false, "", ErrUnknownNode},
	} {
		n, remote, err := c.Home(tc.attr)
		if !errors.Is(err, tc.err) || remote != tc.remote || n.Name != tc.node {
			t.Errorf("Home(%q) = %+v, %v, %v", tc.attr, n, remote, err)
		}
	}
	if n, _, _ := c.Home("b"); n.IMAP != "127.0.0.3:143" {
		t.Errorf("node b: %+v", n)
	}
	var single *Cluster
	if _, remote, err := single.Home("b"); remote || err != nil {
		t.Errorf("single node: Home(b) = %v, %v", remote, err)
	}
	if !c.CheckSecret("0123456789abcdef") || c.CheckSecret("0123456789abcdeF") || c.CheckSecret("") || single.CheckSecret("") {
		t.Error("CheckSecret")
	}
}

func TestNewRefuses(t *testing.T) {
	for name, o := range map[string]Options{
		"short secret": {Self: "a", Secret: []byte("short")},
		"bad self":     {Self: "a b", Secret: []byte("0123456789abcdef")},
		"bad node":     {Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{"x/y": {}}},
		"bad address":  {Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{"b": {IMAP: "nohost"}}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestHolds(t *testing.T) {
	var none *Holds
	if none.Held("/var/vmail/x") {
		t.Error("nil Holds holds")
	}
	h := NewHolds()
	r1 := h.Hold("/var/vmail/x/")
	r2 := h.Hold("/var/vmail/x")
	if !h.Held("/var/vmail/x") || !h.Held("/var/vmail/x/") || h.Held("/var/vmail/y") || h.Held("") {
		t.Error("Held after Hold")
	}
	r1()
	r1()
	if !h.Held("/var/vmail/x") {
		t.Error("released by a second call of one release")
	}
	r2()
	if h.Held("/var/vmail/x") {
		t.Error("still held after every release")
	}
}
