package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"courriel/cluster"
)

// ClusterConfig is [cluster]: this node's name, how the directory names a
// user's home node, and the other nodes' internal listeners.
type ClusterConfig struct {
	// Node is this node's name, as the directory's home attribute names
	// it; "" is a single node (the attribute is not read).
	Node string `toml:"node"`
	// HomeAttribute is the single-valued attribute of a user's entry that
	// names the home node (default mailHost, OpenLDAP misc.schema's
	// inetLocalMailRecipient). Absent on an entry: at home here.
	HomeAttribute string `toml:"home_attribute"`
	// SecretFile holds the secret every node shares (first line, at
	// least 16 bytes): the internal hops authenticate with it.
	SecretFile string `toml:"secret_file"`
	// TLS protects the internal hops (STARTTLS on IMAP, ManageSieve and
	// the SMTP hop), verified against CAFile (default: the system roots).
	// Off: plain TCP, for a private network only.
	TLS    bool   `toml:"tls"`
	CAFile string `toml:"ca_file"`
	// ConnectTimeout bounds the dial of a home node (default 3s).
	ConnectTimeout time.Duration `toml:"connect_timeout"`
	// Nodes are the members of the cluster by name ([cluster.nodes.NAME]).
	Nodes map[string]ClusterNodeConfig `toml:"nodes"`

	secret []byte // read from SecretFile by ParseConfig
}

// ClusterNodeConfig is one node's internal addresses: Address with the
// usual ports, or each listener given whole.
type ClusterNodeConfig struct {
	Address     string `toml:"address"`     // host or IP; the ports below default from it
	SMTP        string `toml:"smtp"`        // its listen.cluster; default Address:2525
	IMAP        string `toml:"imap"`        // its listen.imap; default Address:143
	ManageSieve string `toml:"managesieve"` // its listen.managesieve; default Address:4190
}

// Default ports of a node's internal listeners when only its address is given.
const (
	defaultClusterSMTPPort        = "2525"
	defaultClusterIMAPPort        = "143"
	defaultClusterManageSievePort = "4190"
)

func (cc *ClusterConfig) enabled() bool { return cc.Node != "" }

// homeAttribute is the directory's HomeAttribute: none on a single node.
func (cc *ClusterConfig) homeAttribute() string {
	if !cc.enabled() {
		return ""
	}
	if cc.HomeAttribute == "" {
		return "mailHost"
	}
	return cc.HomeAttribute
}

func (cc *ClusterConfig) validate(c *Config) error {
	if !cc.enabled() {
		if len(cc.Nodes) > 0 || cc.SecretFile != "" || c.Listen.Cluster != "" {
			return keyErr("cluster.node", "required with [cluster] settings or listen.cluster: this node's name")
		}
		return nil
	}
	if err := cluster.CheckNodeName(cc.Node); err != nil {
		return keyErr("cluster.node", "%v", err)
	}
	if cc.HomeAttribute != "" && !validAttributeName(cc.HomeAttribute) {
		return keyErr("cluster.home_attribute", "%q is not an attribute name", cc.HomeAttribute)
	}
	if cc.SecretFile == "" {
		return keyErr("cluster.secret_file", "required: the file with the secret every node shares")
	}
	for name, n := range cc.Nodes {
		key := "cluster.nodes." + name
		if err := cluster.CheckNodeName(name); err != nil {
			return keyErr(key, "%v", err)
		}
		if _, err := n.node(name); err != nil {
			return keyErr(key, "%v", err)
		}
	}
	return nil
}

// validAttributeName accepts an LDAP attribute description's name part.
func validAttributeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

// node is the cluster.Node a configuration entry describes.
func (n ClusterNodeConfig) node(name string) (cluster.Node, error) {
	def := func(addr, port string) (string, error) {
		switch {
		case addr != "":
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return "", fmt.Errorf("%q: want host:port", addr)
			}
			return addr, nil
		case n.Address != "":
			return net.JoinHostPort(n.Address, port), nil
		}
		return "", nil
	}
	var out cluster.Node
	var err error
	out.Name = strings.ToLower(name)
	if out.SMTP, err = def(n.SMTP, defaultClusterSMTPPort); err != nil {
		return out, err
	}
	if out.IMAP, err = def(n.IMAP, defaultClusterIMAPPort); err != nil {
		return out, err
	}
	if out.ManageSieve, err = def(n.ManageSieve, defaultClusterManageSievePort); err != nil {
		return out, err
	}
	if out.SMTP == "" || out.IMAP == "" {
		return out, fmt.Errorf("needs address, or smtp and imap")
	}
	return out, nil
}

// newCluster builds the node map; nil on a single node.
func (c *Config) newCluster() (*cluster.Cluster, error) {
	cc := &c.Cluster
	if !cc.enabled() {
		return nil, nil
	}
	o := cluster.Options{Self: cc.Node, Secret: cc.secret, ConnectTimeout: cc.ConnectTimeout, Nodes: map[string]cluster.Node{}}
	for name, n := range cc.Nodes {
		node, err := n.node(name)
		if err != nil {
			return nil, fmt.Errorf("cluster.nodes.%s: %w", name, err)
		}
		o.Nodes[node.Name] = node
	}
	if cc.TLS {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if cc.CAFile != "" {
			pem, err := os.ReadFile(cc.CAFile)
			if err != nil {
				return nil, fmt.Errorf("cluster.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("cluster.ca_file %s: no PEM certificate", cc.CAFile)
			}
			o.TLS.RootCAs = pool
		}
	}
	return cluster.New(o)
}
