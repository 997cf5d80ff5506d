package cluster

import (
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// ClusterLogin is the authentication identity of the internal hops. A
// node accepts it only with the shared secret, and only then trusts the
// client address and hop counter the front node sent.
const ClusterLogin = "courriel-cluster"

// The ID keys (RFC 2971) a front node sends the home node before logging
// in, as Dovecot's proxy does.
const (
	IDOriginatingIP   = "x-originating-ip"
	IDOriginatingPort = "x-originating-port"
	IDProxyTTL        = "x-proxy-ttl"
	IDSessionID       = "x-session-id"
)

// DefaultHopTTL is the hop counter a front node starts with: a session
// passed on more often (nodes that disagree about a home while the
// directory replicates) is refused instead of looping.
const DefaultHopTTL = 5

// DefaultConnectTimeout bounds the dial of a home node.
const DefaultConnectTimeout = 3 * time.Second

// MinSecretLen is the shortest shared secret accepted.
const MinSecretLen = 16

// Node is one member of the cluster and its internal listeners.
type Node struct {
	Name        string
	SMTP        string // host:port of its listen.cluster (mail hop)
	IMAP        string // host:port of its IMAP listener (plain, STARTTLS when TLS is on)
	ManageSieve string // host:port of its ManageSieve listener
}

// Options configure a Cluster.
type Options struct {
	Self  string          // this node's name
	Nodes map[string]Node // every node, this one included or not
	// Secret authenticates the internal hops; the same on every node.
	Secret []byte
	// TLS, when not nil, is the client configuration of the internal hops
	// (STARTTLS on IMAP, ManageSieve and SMTP); nil is plain TCP, for a
	// private network.
	TLS            *tls.Config
	ConnectTimeout time.Duration // default DefaultConnectTimeout
	// DeadNodeMemory: how long a node that did not answer is not dialled
	// again; default DefaultDeadNodeMemory.
	DeadNodeMemory time.Duration
}

// Cluster is the node map of a running node. The nil *Cluster is a single
// node: every user is at home here.
type Cluster struct {
	o Options
	// source is the address of this node's own entry when it is one of
	// this machine's: hops leave from it, so that a node with several
	// addresses (or a floating one) is known to its peers by the address
	// they have for it. Invalid: the system chooses.
	source netip.Addr
}

// New checks o and returns the cluster it describes.
func New(o Options) (*Cluster, error) {
	if err := CheckNodeName(o.Self); err != nil {
		return nil, fmt.Errorf("cluster: this node: %w", err)
	}
	if len(o.Secret) < MinSecretLen {
		return nil, fmt.Errorf("cluster: the shared secret has %d bytes, at least %d needed", len(o.Secret), MinSecretLen)
	}
	nodes := make(map[string]Node, len(o.Nodes))
	for name, n := range o.Nodes {
		if err := CheckNodeName(name); err != nil {
			return nil, fmt.Errorf("cluster: node %q: %w", name, err)
		}
		n.Name = strings.ToLower(name)
		for what, addr := range map[string]string{"smtp": n.SMTP, "imap": n.IMAP, "managesieve": n.ManageSieve} {
			if addr == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, fmt.Errorf("cluster: node %s: %s address %q: %w", name, what, addr, err)
			}
		}
		nodes[n.Name] = n
	}
	o.Self = strings.ToLower(o.Self)
	o.Nodes = nodes
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.DeadNodeMemory <= 0 {
		o.DeadNodeMemory = DefaultDeadNodeMemory
	}
	return &Cluster{o: o, source: localSource(nodes[o.Self])}, nil
}

// localSource is the first address of n's listeners that is an IP
// address of this machine.
func localSource(n Node) netip.Addr {
	var local []netip.Prefix
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				local = append(local, p)
			}
		}
	}
	for _, hp := range []string{n.SMTP, n.IMAP, n.ManageSieve} {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			continue
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.IsUnspecified() {
			continue
		}
		ip = ip.Unmap()
		for _, p := range local {
			// Any of 127/8 is this machine's; elsewhere the address itself.
			if p.Addr().Unmap() == ip || ip.IsLoopback() && p.Contains(ip) {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// Dialer is a dialer for hops: the connect timeout, and this node's own
// address as the source when it is one of this machine's.
func (c *Cluster) Dialer() *net.Dialer {
	d := &net.Dialer{Timeout: c.ConnectTimeout()}
	if c != nil && c.source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: c.source.AsSlice()}
	}
	return d
}

// Self is this node's name; "" for a single node.
func (c *Cluster) Self() string {
	if c == nil {
		return ""
	}
	return c.o.Self
}

// ErrUnknownNode is a home attribute naming a node the configuration does
// not list: mail waits (4xx) and logins fail temporarily until an admin
// fixes one or the other.
var ErrUnknownNode = errors.New("cluster: unknown home node")

// Home returns the node a user whose home attribute is name lives on, and
// whether that is another node. "" and this node's name are here.
func (c *Cluster) Home(name string) (n Node, remote bool, err error) {
	name = strings.ToLower(name)
	if c == nil || name == "" || name == c.o.Self {
		return Node{Name: c.Self()}, false, nil
	}
	n, ok := c.o.Nodes[name]
	if !ok {
		return Node{}, false, fmt.Errorf("%w %q", ErrUnknownNode, name)
	}
	return n, true, nil
}

// CheckSecret says whether s is the shared secret, in constant time.
func (c *Cluster) CheckSecret(s string) bool {
	if c == nil || len(c.o.Secret) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(s), c.o.Secret) == 1
}

// Secret is the shared secret the hops present.
func (c *Cluster) Secret() string {
	if c == nil {
		return ""
	}
	return string(c.o.Secret)
}

// HopsTLS reports whether the internal hops use TLS.
func (c *Cluster) HopsTLS() bool { return c != nil && c.o.TLS != nil }

// TLS is the client configuration of the internal hops, nil for plain
// TCP; a copy with ServerName set to host.
func (c *Cluster) TLS(host string) *tls.Config {
	if c == nil || c.o.TLS == nil {
		return nil
	}
	t := c.o.TLS.Clone()
	if t.ServerName == "" {
		t.ServerName = host
	}
	return t
}

// ConnectTimeout bounds the dial of a home node.
func (c *Cluster) ConnectTimeout() time.Duration {
	if c == nil {
		return DefaultConnectTimeout
	}
	return c.o.ConnectTimeout
}

// CheckNodeName accepts what a node name may be: 1 to 63 of a-z, 0-9, '.',
// '-' and '_', starting with a letter or digit (case is ignored). The value
// comes from the directory, so it is checked before it names anything.
func CheckNodeName(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("node name %q: 1 to 63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		ch := s[i] | 0x20
		switch {
		case ch >= 'a' && ch <= 'z', s[i] >= '0' && s[i] <= '9':
		case i > 0 && (s[i] == '.' || s[i] == '-' || s[i] == '_'):
		default:
			return fmt.Errorf("node name %q: only letters, digits, '.', '-', '_'", s)
		}
	}
	return nil
}

// ReadSecret reads a shared secret file: its first line, trimmed.
func ReadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return []byte(strings.TrimSpace(line)), nil
}
