package queue

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"

	"courriel/cluster"
	"courriel/delivery"
	"courriel/internal/xtext"
)

// HomeFinder says where the user of a local copy lives now: the home
// node's name as the directory gives it ("" = this node) and whether the
// user is held here (cluster.Holds: being moved away). cmd builds it from
// the directory's Mailbox and the holds. ErrNoHome when the maildrop is
// gone from the directory (the copy keeps the route it has); any other
// error is temporary.
type HomeFinder interface {
	Home(ctx context.Context, maildrop string) (node string, held bool, err error)
}

// ErrNoHome is HomeFinder's answer for a maildrop the directory no longer
// knows.
var ErrNoHome = errors.New("queue: maildrop not in the directory")

// userHome is a HomeFinder answer: the home node ("" = this node) and
// whether the user is held here.
type userHome struct {
	node string
	held bool
}

// defaultNodeRetry is how long a node copy waits after a failed attempt
// (issue 18: every 30–60 s, never the usual backoff): a node is down for
// minutes at most, and its users' mail should not wait an hour after it.
const defaultNodeRetry = 45 * time.Second

// placement is where one local copy goes on this attempt.
type placement int

const (
	placeHere placement = iota // stored in the maildir here
	placeNode                  // handed to Recipient.Node
	placeWait                  // neither now (held, lookup failed): retried at NodeRetry
)

// place decides, before an attempt, where a local copy goes, from the
// directory's current answer: a copy follows a user who moved (a node copy
// of a user now homed here is stored here, a local copy of a user now
// homed elsewhere becomes a node copy), and a held user's copy waits. It
// updates r.Node, which the envelope records with the attempt. wait is the
// reason when it waits. known, when set, is the directory's answer already
// in hand (reresolve's, or the caller's: carried), and Homes is not asked
// again.
func (q *Queue) place(ctx context.Context, r *Recipient, known *userHome) (p placement, wait *failure) {
	if r.Local == nil {
		return placeHere, nil // not a local copy: never asked
	}
	node, held := r.Node, false
	switch {
	case known != nil:
		node, held = strings.ToLower(known.node), known.held
	case q.o.Homes != nil:
		n, h, err := q.o.Homes.Home(ctx, r.Addr)
		switch {
		case errors.Is(err, ErrNoHome):
			// Gone from the directory: the recorded route, where the
			// delivery's own checks decide.
		case err != nil:
			return placeWait, tempFailure("4.4.3", "looking up the home node of "+r.Addr+": "+err.Error())
		default:
			node, held = strings.ToLower(n), h
		}
	}
	home, remote, err := q.o.Cluster.Home(node)
	switch {
	case err != nil:
		return placeWait, tempFailure("4.3.5", "the home node of "+r.Addr+" is not in the configuration: "+err.Error())
	case remote:
		r.Node = home.Name
		return placeNode, nil
	}
	r.Node = ""
	if held {
		return placeWait, tempFailure("4.2.0", "mailbox of "+r.Addr+" is being moved to another node; will retry")
	}
	return placeHere, nil
}

// placeFirst places the local copies of a message being accepted, local
// as its caller gave them (the last of m.Recipients), and returns those
// to try at once (at home here, not held). The others wait for the
// runner: node copies are sent by it, the rest are placed again.
func (q *Queue) placeFirst(ctx context.Context, m *Message, local []delivery.Recipient) []int {
	var here []int
	first := len(m.Recipients) - len(local)
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.Local == nil {
			continue
		}
		if p, _ := q.place(ctx, r, q.carried(&local[i-first])); p == placeHere {
			here = append(here, i)
		}
	}
	return here
}

// carried is the home of a local copy as its caller resolved it for this
// delivery (Entry set: smtp's RCPT, Node and Held from the same directory
// answer as the maildir, the hold checked again before the queue), for
// place at the first attempt: the directory is not asked again a moment
// later. nil when nothing is carried, or without Homes (place asks
// nothing then).
func (q *Queue) carried(r *delivery.Recipient) *userHome {
	if r.Entry == nil || q.o.Homes == nil {
		return nil
	}
	return &userHome{node: r.Node, held: r.Held}
}

// placeDue resolves (reresolve) and places every due local copy of a
// message before an attempt, and returns the group of those that are not
// tried this time, with their results, to record: a copy whose user the
// directory no longer knows bounces, one whose lookup failed is retried
// with the usual backoff, one that waits for its user or node at
// NodeRetry.
func (q *Queue) placeDue(ctx context.Context, m *Message, now time.Time) (group, []result) {
	var g group
	var res []result
	for i := range m.Recipients {
		r := &m.Recipients[i]
		if r.Local == nil || r.State != StatePending || r.NextAttempt.After(now) {
			continue
		}
		x, home, ok := q.reresolve(ctx, m, r)
		if !ok {
			g.rcpts = append(g.rcpts, i)
			res = append(res, x)
			continue
		}
		if p, f := q.place(ctx, r, home); p == placeWait {
			g.rcpts = append(g.rcpts, i)
			x := failResult(f)
			x.relay, x.soon = "none", true
			res = append(res, x)
		}
	}
	g.rt = localRoute
	return g, interrupted(ctx, res) // a lookup cut short by shutdown is no attempt
}

// nodeRoute is the route of the node copies for one node: its cluster
// listener. The key keeps its sessions and its dead period apart from any
// other destination.
func (q *Queue) nodeRoute(name string) route {
	n, remote, err := q.o.Cluster.Home(name)
	if err != nil || !remote || n.SMTP == "" {
		return route{key: "node:" + name, node: name} // resolve fails it
	}
	return route{key: "node:" + name, node: name, addr: n.SMTP}
}

// nodeDeadTime is how long a node that did not answer is left alone:
// shorter than NodeRetry, so the first copy retried after it probes the
// node again, while copies arriving meanwhile wait without a dial each.
func (o *Options) nodeDeadTime() time.Duration { return o.NodeRetry / 2 }

// dialNode opens a session to a node's cluster listener: STARTTLS when
// the cluster's hops use TLS (verified against the cluster's roots, never
// retried in clear), then AUTH PLAIN as cluster.ClusterLogin with the
// shared secret.
func (q *Queue) dialNode(ctx context.Context, h hop, ip netip.Addr) (*session, *failure) {
	addr := net.JoinHostPort(ip.String(), h.port)
	relay := "node " + h.node + "[" + addr + "]"
	timeout := min(q.o.ConnectTimeout, q.o.Cluster.ConnectTimeout())
	dctx, cancel := context.WithTimeout(ctx, timeout)
	raw, err := q.o.nodeDialer(dctx, "tcp", addr)
	cancel()
	if err != nil {
		f := tempFailure("4.4.1", "connect to "+relay+": "+err.Error())
		f.relay, f.dead = relay, true
		return nil, f
	}
	s := &session{relay: relay, remoteMTA: h.name, conn: raw, raw: raw, tlsWhy: "cluster hop"}
	stop := context.AfterFunc(ctx, s.interrupt) // as dial's
	s.stop = stop
	fail := func(f *failure) (*session, *failure) {
		stop()
		raw.Close()
		f.relay, f.remoteMTA = relay, h.name
		return nil, f
	}
	s.c, _ = q.newClient(s.conn)
	if err := s.c.Hello(q.o.Hostname); err != nil {
		f := replyFailure(err, "greeting from "+relay, "4.4.2")
		f.dead = !isReply(err) || f.code == 421
		f.perm = false // a node's refusal is its configuration's: wait for the admin
		return fail(f)
	}
	if cfg := q.o.Cluster.TLS(h.name); cfg != nil {
		if ok, _ := s.c.Extension("STARTTLS"); !ok {
			return fail(tempFailure("4.7.4", "the cluster hops use TLS, but "+relay+" does not offer STARTTLS"))
		}
		tc, err := q.startTLSWith(ctx, raw, cfg)
		if err != nil {
			f := tempFailure("4.7.5", "STARTTLS with "+relay+" failed: "+err.Error())
			f.dead = isTimeout(err)
			return fail(f)
		}
		s.conn, s.tls = tc, true
		s.c, _ = q.newClient(&greetedConn{Conn: tc, r: io.MultiReader(strings.NewReader("220 TLS\r\n"), tc)})
		if err := s.c.Hello(q.o.Hostname); err != nil {
			f := replyFailure(err, "EHLO after STARTTLS with "+relay, "4.4.2")
			f.dead = isTimeout(err)
			return fail(f)
		}
	}
	if err := s.c.Auth(sasl.NewPlainClient("", cluster.ClusterLogin, q.o.Cluster.Secret())); err != nil {
		f := replyFailure(err, "AUTH with "+relay, "4.7.0")
		f.perm, f.status = false, "4"+f.status[1:]
		f.dead = isTimeout(err)
		return fail(f)
	}
	q.ready(s)
	return s, nil
}

// nodeRcpt is the RCPT command of a node copy: the final maildrop, the
// original recipient in ORCPT (RFC 3461, for Delivered-To and Sieve on the
// home node) and, for a copy a milter or DMARC filed as junk here, XJUNK
// (honoured only by a cluster listener, after the cluster login).
//
// key names the copy on the home node (XKEY, delivery.Recipient.CopyKey:
// the queue id and the recipient's index), so that a retry after a lost
// 250 finds the copy stored instead of storing it twice.
func nodeRcpt(r *Recipient, key string) string {
	line := "RCPT TO:<" + r.Addr + "> XKEY=" + key
	if orig := r.Local.OrigTo; orig != "" {
		line += " ORCPT=rfc822;" + xtext.Encode(orig)
	}
	if r.Local.Folder == JunkFolder {
		line += " XJUNK"
	}
	return line
}

// nodeDSNRcptParams are the DSN parameters of a node copy for a home node
// that offers XDSN (its cluster listener): NOTIFY without SUCCESS (a
// success is reported from here once the home node's 250 arrives, so the
// sender gets one, not two: NEVER when nothing else was asked), and the
// client's ORCPT as XORCPT (ORCPT names the original recipient on that
// hop). The home node's queue then reports a copy it fails to store as
// the client asked (NOTIFY=NEVER: nobody is told), with its ORCPT, the
// message's ENVID and RET (dsnMailParams on MAIL).
func nodeDSNRcptParams(r *Recipient) string {
	p := ""
	if r.Notify != "" {
		p = " NOTIFY=" + WithoutSuccess(r.Notify)
	}
	if r.ORcpt != "" {
		typ, addr, _ := strings.Cut(r.ORcpt, ";")
		p += " XORCPT=" + typ + ";" + xtext.Encode(addr)
	}
	return p
}

// nodeMailParams are the MAIL parameters of a transaction of node copies:
// XARRIVED, when the message was queued (Unix seconds; the keyed copies'
// names carry it, so every attempt names a copy alike) and, when an
// earlier attempt at one of them may have been stored without its 250
// arriving, XRETRY (the home node looks for the keyed copies first).
func nodeMailParams(m *Message, idx []int) string {
	p := " XARRIVED=" + strconv.FormatInt(m.Created.Unix(), 10)
	for _, i := range idx {
		if m.Recipients[i].Attempts > 0 {
			return p + " XRETRY"
		}
	}
	return p
}

// JunkFolder is the folder of a copy flagged as spam, the only one that
// crosses a node hop (as XJUNK): the home node's Sieve decides the rest.
const JunkFolder = "Junk"
