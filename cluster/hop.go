package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultDeadNodeMemory is how long a home node that did not answer is
// not dialled again (Options.DeadNodeMemory): sessions for its users get
// their temporary failure at once instead of each waiting out the connect
// timeout.
const DefaultDeadNodeMemory = 5 * time.Second

// ErrNodeDown is a home node that did not answer within the connect
// timeout, now or a moment ago (Options.DeadNodeMemory).
var ErrNodeDown = errors.New("cluster: home node unreachable")

// Hops is what a proxying server keeps about the other nodes: the nodes
// that did not answer lately, and the addresses the nodes connect from
// (exempt from the cap on connections of one address that have not
// logged in). The nil *Hops belongs to a single node. Safe for
// concurrent use.
type Hops struct {
	c       *Cluster
	nodeIPs map[netip.Addr]bool

	mu   sync.Mutex
	dead map[string]time.Time // node name -> dialled again after; guarded by mu
}

// NewHops returns the hop state of c; nil when c is nil. The nodes'
// host names are resolved once, here, within the connect timeout; an
// address that does not resolve is only not exempt.
func NewHops(c *Cluster) *Hops {
	if c == nil {
		return nil
	}
	h := &Hops{c: c, nodeIPs: map[netip.Addr]bool{}, dead: map[string]time.Time{}}
	ctx, cancel := context.WithTimeout(context.Background(), c.ConnectTimeout())
	defer cancel()
	for _, n := range c.o.Nodes {
		for _, addr := range []string{n.SMTP, n.IMAP, n.ManageSieve} {
			host, _, err := net.SplitHostPort(addr)
			if err != nil || host == "" {
				continue
			}
			if ip, err := netip.ParseAddr(host); err == nil {
				h.nodeIPs[ip.Unmap()] = true
				continue
			}
			ips, _ := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
			for _, ip := range ips {
				h.nodeIPs[ip.Unmap()] = true
			}
		}
	}
	return h
}

// Cluster is the node map the hops belong to.
func (h *Hops) Cluster() *Cluster {
	if h == nil {
		return nil
	}
	return h.c
}

// PeerAddr is the address c comes from (its own, not one a front node
// reported); invalid when it is no IP address.
func PeerAddr(c net.Conn) netip.Addr {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// FromNode says whether ip is the address of a configured node.
func (h *Hops) FromNode(ip netip.Addr) bool {
	return h != nil && ip.IsValid() && h.nodeIPs[ip.Unmap()]
}

// Dial opens addr, an internal listener of node n, within the connect
// timeout; ErrNodeDown at once when n did not answer a moment ago.
func (h *Hops) Dial(ctx context.Context, n Node, addr string) (net.Conn, error) {
	if h == nil {
		return nil, errors.New("cluster: no cluster to dial in")
	}
	if addr == "" {
		return nil, fmt.Errorf("%w: node %s has no address for this service", ErrNodeDown, n.Name)
	}
	h.mu.Lock()
	until, down := h.dead[n.Name]
	if down && time.Now().After(until) {
		delete(h.dead, n.Name)
		down = false
	}
	h.mu.Unlock()
	if down {
		return nil, fmt.Errorf("%w: %s (%s) did not answer a moment ago", ErrNodeDown, n.Name, addr)
	}
	c, err := h.c.Dialer().DialContext(ctx, "tcp", addr)
	if err != nil {
		h.MarkDown(n)
		return nil, fmt.Errorf("%w: %s (%s): %v", ErrNodeDown, n.Name, addr, err)
	}
	return c, nil
}

// MarkDown remembers that n did not answer (a dial, or a greeting that
// never came), for Options.DeadNodeMemory.
func (h *Hops) MarkDown(n Node) {
	if h == nil {
		return
	}
	h.mu.Lock()
	h.dead[n.Name] = time.Now().Add(h.c.o.DeadNodeMemory)
	h.mu.Unlock()
}

// CheckLogin decides a cluster login (authcid ClusterLogin) with secret
// from peer, over TLS or not: "" when it is taken, else why not, for the
// log and the failed-login count. In clear, or in any way when the hops
// go in clear ([cluster] tls off: a private network, where no node logs
// in over TLS), it is taken only from a node's own address, so the secret
// is worth nothing from anywhere else: not even through the public IMAPS
// port, whose TLS says nothing of the peer.
func (h *Hops) CheckLogin(secret string, inTLS bool, peer netip.Addr) string {
	switch {
	case !h.Cluster().CheckSecret(secret):
		return "wrong cluster secret"
	case !inTLS && !h.FromNode(peer):
		return "cluster login in clear from outside the cluster"
	case !h.Cluster().HopsTLS() && !h.FromNode(peer):
		return "cluster login from outside the cluster, whose hops are in clear"
	}
	return ""
}

// PlainLogin is the SASL PLAIN response (RFC 4616) a front node logs in
// to a home node with, base64-encoded: authorization identity the user,
// authentication identity ClusterLogin, password the secret.
func PlainLogin(user, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + "\x00" + ClusterLogin + "\x00" + secret))
}

// ErrMalformedPlain is a SASL PLAIN response that is not three fields.
var ErrMalformedPlain = errors.New("malformed PLAIN response")

// ParsePlain splits a decoded SASL PLAIN response into its authorization
// identity, authentication identity and password.
func ParsePlain(raw []byte) (authz, authc, password string, err error) {
	parts := bytes.Split(raw, []byte{0})
	if len(parts) != 3 {
		return "", "", "", ErrMalformedPlain
	}
	return string(parts[0]), string(parts[1]), string(parts[2]), nil
}

// Origin is what a front node says about the client it proxies: its
// address and port, the hops left and the front's session id. The home
// node trusts it only after the front logged in with the secret.
type Origin struct {
	IP      netip.Addr
	Port    uint16
	TTL     int    // hops left; 0: not given
	Session string // the front node's session id, printable, at most 64 bytes
}

// Set takes one key of an IMAP ID (IDOriginatingIP, ...) or of a
// ManageSieve XCLIENT (ADDR, PORT, TTL, SESSION), case-insensitive.
// Values that do not parse are refused; unknown keys are ignored.
func (o *Origin) Set(key, value string) error {
	switch strings.ToLower(key) {
	case IDOriginatingIP, "addr":
		ip, err := netip.ParseAddr(strings.Trim(value, "[]"))
		if err != nil || ip.Zone() != "" {
			return fmt.Errorf("cluster: originating address %.64q", value)
		}
		o.IP = ip.Unmap()
	case IDOriginatingPort, "port":
		p, err := strconv.ParseUint(value, 10, 16)
		if err != nil {
			return fmt.Errorf("cluster: originating port %.64q", value)
		}
		o.Port = uint16(p)
	case IDProxyTTL, "ttl":
		n, err := strconv.Atoi(value)
		if err != nil || n < 0 || n > 100 {
			return fmt.Errorf("cluster: proxy ttl %.64q", value)
		}
		o.TTL = n
	case IDSessionID, "session":
		if len(value) > 64 || strings.IndexFunc(value, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			return fmt.Errorf("cluster: session id %.64q", value)
		}
		o.Session = value
	}
	return nil
}

// NextTTL is the hop counter to pass on when this node proxies the
// session further: DefaultHopTTL for a session that starts here, one
// less than received otherwise; 0 means no further hop is allowed.
func (o *Origin) NextTTL(proxied bool) int {
	if !proxied {
		return DefaultHopTTL
	}
	if o.TTL <= 1 {
		return 0
	}
	return o.TTL - 1
}

// AddrPort splits a connection's remote address, "" and 0 when it is no
// IP address.
func AddrPort(a net.Addr) (netip.Addr, uint16) {
	if a == nil {
		return netip.Addr{}, 0
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, 0
	}
	return ap.Addr().Unmap(), ap.Port()
}
