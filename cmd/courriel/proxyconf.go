package main

import (
	"net"
	"slices"
	"strings"
	"time"

	"courriel/internal/proxyproto"
)

// ProxyProtocolConfig is [proxy_protocol]: the load balancers (HAProxy
// send-proxy-v2) in front of the client listeners, whose PROXY header
// gives the client's address to limits, throttles, logs and Received.
type ProxyProtocolConfig struct {
	// TrustedNetworks are the balancers: their connections to the
	// listeners below must start with a header; a header from any other
	// address closes the connection. Empty: no PROXY protocol anywhere.
	// List the balancers only, not the other cluster nodes, whose
	// IMAP/ManageSieve hops send no header.
	TrustedNetworks []string `toml:"trusted_networks"`
	// Listeners are the listeners behind the balancers (default: every
	// client listener). Never listen.cluster or listen.http.
	Listeners []string `toml:"listeners"`
	// HeaderTimeout bounds the wait for a balancer's header (default 5s).
	HeaderTimeout time.Duration `toml:"header_timeout"`
}

// proxyListenerNames are the listeners that may sit behind a balancer.
var proxyListenerNames = []string{"smtp", "submission", "submissions", "imaps", "imap", "managesieve"}

func (p *ProxyProtocolConfig) validate() error {
	if _, err := parsePrefixes(p.TrustedNetworks); err != nil {
		return keyErr("proxy_protocol.trusted_networks", "%v", err)
	}
	if len(p.TrustedNetworks) == 0 && len(p.Listeners) > 0 {
		return keyErr("proxy_protocol.trusted_networks", "required with proxy_protocol.listeners: the balancers' addresses")
	}
	for _, l := range p.Listeners {
		if !slices.Contains(proxyListenerNames, l) {
			return keyErr("proxy_protocol.listeners", "%q: want some of %s", l, strings.Join(proxyListenerNames, ", "))
		}
	}
	if p.HeaderTimeout < 0 || p.HeaderTimeout > time.Minute {
		return keyErr("proxy_protocol.header_timeout", "%v is out of range (0 .. 1m; 0 is 5s)", p.HeaderTimeout)
	}
	return nil
}

// behindProxy says whether the named listener takes PROXY headers.
func (p *ProxyProtocolConfig) behindProxy(listener string) bool {
	if len(p.TrustedNetworks) == 0 {
		return false
	}
	if len(p.Listeners) == 0 {
		return slices.Contains(proxyListenerNames, listener)
	}
	return slices.Contains(p.Listeners, listener)
}

// proxyListener wraps a client listener in the PROXY protocol when the
// configuration puts it behind a balancer; ln itself otherwise.
func (a *app) proxyListener(name string, ln net.Listener) net.Listener {
	p := &a.cfg.ProxyProtocol
	if !p.behindProxy(name) {
		return ln
	}
	trusted, _ := parsePrefixes(p.TrustedNetworks) // checked with the configuration
	return proxyproto.NewListener(ln, proxyproto.Options{Trusted: trusted, HeaderTimeout: p.HeaderTimeout,
		Logger: a.log.With("component", name)})
}
