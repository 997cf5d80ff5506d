package queue

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/delivery"
)

// Envelopes from before clusters (no node) load as local copies; a node
// on a copy that is not local, or a bad name, is a damaged envelope.
func TestEnvelopeNode(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("A", idLen)
	local := `"local":{"maildir":"/var/vmail/alice/mailbox","uid":2000,"gid":2000}`
	env := func(rcpt string) []byte {
		return []byte(`{"v":1,"id":"` + id + `","from":"","created":"2025-01-01T00:00:00Z","rcpts":[` + rcpt + `]}`)
	}
	m, err := decodeEnvelope(id, env(`{"addr":"alice@x.test","state":"pending",`+local+`}`), 10)
	if err != nil || m.Recipients[0].Node != "" || m.Recipients[0].Local == nil {
		t.Fatalf("old local copy: %+v, %v", m, err)
	}
	m, err = decodeEnvelope(id, env(`{"addr":"alice@x.test","state":"pending",`+local+`,"node":"b"}`), 10)
	if err != nil || m.Recipients[0].Node != "b" {
		t.Fatalf("node copy: %+v, %v", m, err)
	}
	for name, rcpt := range map[string]string{
		"node without local": `{"addr":"alice@x.test","state":"pending","node":"b"}`,
		"bad node":           `{"addr":"alice@x.test","state":"pending",` + local + `,"node":"../b"}`,
	} {
		if _, err := decodeEnvelope(id, env(rcpt), 10); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", name, err)
		}
	}
}

type fakeHomes map[string]struct {
	node string
	held bool
	err  error
}

func (h fakeHomes) Home(_ context.Context, addr string) (string, bool, error) {
	a := h[addr]
	return a.node, a.held, a.err
}

// place follows the directory's answer before every attempt.
func TestPlace(t *testing.T) {
	t.Parallel()
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"),
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: "127.0.0.1:2"}}})
	if err != nil {
		t.Fatal(err)
	}
	homes := fakeHomes{
		"here@x.test":     {node: ""},
		"self@x.test":     {node: "A"},
		"there@x.test":    {node: "b"},
		"held@x.test":     {node: "a", held: true},
		"heldgone@x.test": {node: "b", held: true}, // the move is done: follows
		"unknown@x.test":  {node: "c"},
		"gone@x.test":     {err: ErrNoHome},
		"down@x.test":     {err: errors.New("directory unavailable")},
	}
	q := &Queue{o: Options{Cluster: cl, Homes: homes}}
	for _, tc := range []struct {
		addr, recorded string
		want           placement
		node, status   string
	}{
		{"here@x.test", "b", placeHere, "", ""},
		{"self@x.test", "", placeHere, "", ""},
		{"there@x.test", "", placeNode, "b", ""},
		{"held@x.test", "", placeWait, "", "4.2.0"},
		{"heldgone@x.test", "", placeNode, "b", ""},
		{"unknown@x.test", "", placeWait, "", "4.3.5"},
		{"gone@x.test", "b", placeNode, "b", ""},
		{"gone@x.test", "", placeHere, "", ""},
		{"down@x.test", "b", placeWait, "b", "4.4.3"},
	} {
		r := &Recipient{Addr: tc.addr, Local: &LocalTarget{Maildir: "/m"}, Node: tc.recorded}
		p, f := q.place(context.Background(), r, nil)
		status := ""
		if f != nil {
			status = f.status
		}
		if p != tc.want || r.Node != tc.node || status != tc.status {
			t.Errorf("%s (recorded %q): %v node %q status %q, want %v %q %q", tc.addr, tc.recorded, p, r.Node, status, tc.want, tc.node, tc.status)
		}
	}
	if got := nodeRcpt(&Recipient{Addr: "alice@x.test", Local: &LocalTarget{OrigTo: "a+b=c@y.test", Folder: "Junk"}}, "Q-1"); got != "RCPT TO:<alice@x.test> XKEY=Q-1 ORCPT=rfc822;a+2Bb+3Dc@y.test XJUNK" {
		t.Errorf("nodeRcpt = %q", got)
	}
}

// countingHomes counts the directory lookups of a HomeFinder.
type countingHomes struct {
	h HomeFinder
	n atomic.Int32
}

func (c *countingHomes) Home(ctx context.Context, addr string) (string, bool, error) {
	c.n.Add(1)
	return c.h.Home(ctx, addr)
}

// TestFirstPlaceCarried: the first attempt (Accept's, HandOver's) places
// a local copy by the home and hold its caller resolved for this delivery
// (delivery.Recipient.Entry set, as smtp's RCPT does), without asking
// Homes again; a copy that carries nothing is looked up as before.
func TestFirstPlaceCarried(t *testing.T) {
	t.Parallel()
	node := newFakeNode(t, func(string) string { return "" }, false)
	cl, err := cluster.New(cluster.Options{Self: "a", Secret: []byte("0123456789abcdef"), ConnectTimeout: time.Second,
		Nodes: map[string]cluster.Node{"a": {SMTP: "127.0.0.1:1"}, "b": {SMTP: node.addr}}})
	if err != nil {
		t.Fatal(err)
	}
	ls := newLocalStore(t)
	// The directory says otherwise than the callers: a lookup would show.
	homes := &countingHomes{h: fakeHomes{
		"nodecopy@local.test": {node: ""}, "held@local.test": {node: ""},
		"here@local.test": {node: "b"}, "plain@local.test": {node: "b"},
	}}
	o := baseOptions(t, t.TempDir(), newClock())
	o.Cluster, o.Homes, o.Local = cl, homes, ls
	o.Dialer = (&net.Dialer{}).DialContext
	// Accept's on a queue without a runner, whose attempts would ask too.
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	entry := &delivery.Entry{Home: "/home/u"}
	rcpt := func(user, node string, held bool, e *delivery.Entry) delivery.Recipient {
		r := ls.rcpt(user)
		r.Node, r.Held, r.Entry = node, held, e
		return r
	}

	local := []delivery.Recipient{
		rcpt("nodecopy", "b", false, entry),
		rcpt("held", "", true, entry),
		rcpt("here", "", false, entry),
		rcpt("plain", "", false, nil),
	}
	_, errs, err := q.Accept(context.Background(), "m1", "s@remote.test", nil, local, delivery.MemContent(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{ErrNotHere, ErrNotHere, nil, ErrNotHere} {
		if !errors.Is(errs[i], want) || want == nil && errs[i] != nil {
			t.Errorf("Accept: copy %s: %v, want %v", local[i].Address, errs[i], want)
		}
	}
	if n := homes.n.Load(); n != 1 {
		t.Errorf("Accept asked Homes %d times, want once (the copy that carries nothing)", n)
	}

	handHomes := &countingHomes{h: fakeHomes{}}
	o = baseOptions(t, t.TempDir(), newClock())
	o.Cluster, o.Homes, o.Local = cl, handHomes, ls
	o.Dialer = (&net.Dialer{}).DialContext
	q = start(t, o).q
	waitRunning(t, q)
	local = []delivery.Recipient{rcpt("nodecopy", "b", false, entry), rcpt("other", "b", false, entry)}
	_, handed, _, err := q.HandOver(context.Background(), "m2", "s@remote.test", local, delivery.MemContent(testMessage))
	if err != nil || !handed {
		t.Fatalf("HandOver: handed %v, %v; want handed", handed, err)
	}
	if n := handHomes.n.Load(); n != 0 {
		t.Errorf("HandOver asked Homes %d times, want none (RCPT resolved both)", n)
	}
}
