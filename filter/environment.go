package filter

import (
	"net/netip"
	"strings"

	"courriel/sieve"
)

// environment is what the environment test (RFC 5183) learns of this
// server and of the client that sent the message. The client is read
// from the topmost Received field when it is ours (smtp's "from helo
// (rdns [ip]) by host (courriel)"): delivery.Message carries no session,
// and that field is written before the milters, for every copy, and kept
// in the queue. A field from elsewhere, or one that does not parse,
// leaves remote-ip and remote-host unknown.
func (f *Filter) environment(msg *sieve.Message) sieve.Environment {
	e := sieve.Environment{Host: f.o.Hostname, Domain: f.o.Hostname}
	if _, d, ok := strings.Cut(f.o.Hostname, "."); ok {
		e.Domain = d
	}
	if msg != nil && f.o.Hostname != "" {
		e.Remote = func() (string, string) { return receivedClient(msg.Header.Get("Received"), f.o.Hostname) }
	}
	return e
}

// receivedClient parses smtp's own Received value (unfolded): the
// client's reverse name ("" when "unknown") and IP address.
func receivedClient(v, hostname string) (host, ip string) {
	v = strings.Join(strings.Fields(v), " ")
	if !strings.Contains(v, " by "+hostname+" (courriel) ") {
		return "", ""
	}
	rest, ok := strings.CutPrefix(v, "from ")
	if !ok {
		return "", ""
	}
	_, rest, ok = strings.Cut(rest, " (")
	if !ok {
		return "", ""
	}
	inside, _, ok := strings.Cut(rest, ")")
	if !ok {
		return "", ""
	}
	name, bracket, ok := strings.Cut(inside, " [")
	if !ok || !strings.HasSuffix(bracket, "]") {
		return "", ""
	}
	addr, err := netip.ParseAddr(strings.TrimPrefix(strings.TrimSuffix(bracket, "]"), "IPv6:"))
	if err != nil {
		return "", ""
	}
	if name == "unknown" {
		name = ""
	}
	return name, addr.String()
}
