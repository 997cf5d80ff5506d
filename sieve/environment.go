package sieve

import (
	"runtime/debug"
	"strings"
)

// environment (RFC 5183): the environment test matches an item of what
// the interpreter knows of where it runs. An item that is unknown or has
// no value makes the test false whatever the match type, :count included,
// as in Pigeonhole; names are matched as written (Pigeonhole finds "HOST"
// nowhere).

var environmentTests = map[string]spec{
	"environment": {ext: "environment", pos: []valueKind{vString, vStrings}, tags: tags(matchTags)},
}

// Environment is what the environment test reads beside the fixed items
// "name" ("courriel") and "version". An empty field is an unknown item.
type Environment struct {
	Domain string // "domain": the domain of this server (RFC 5183 §4.1)
	Host   string // "host": this server's fully-qualified host name
	// Location is "MDA" when empty: the run is the delivery agent's
	// (RFC 5183 §4.1: "MTA", "MDA", "MS", "MUA").
	Location string
	// Phase is "during" when empty: the script runs while the message is
	// delivered ("pre", "during", "post").
	Phase      string
	RemoteHost string // "remote-host": the host name of the client that sent the message
	RemoteIP   string // "remote-ip": its IP address
	// Remote, when set, gives RemoteHost and RemoteIP on first use
	// instead: most scripts never ask, and finding out costs a parse.
	Remote func() (host, ip string)
	// Version is courriel's version; empty takes the main module's
	// version from the build information (or the commit of a development
	// build), when it has one.
	Version string
}

// environmentName is the "name" item: the product, not Pigeonhole's.
const environmentName = "courriel"

func (e Environment) item(name string) (string, bool) {
	var v string
	switch name {
	case "domain":
		v = e.Domain
	case "host":
		v = e.Host
	case "location":
		v = e.Location
		if v == "" {
			v = "MDA"
		}
	case "phase":
		v = e.Phase
		if v == "" {
			v = "during"
		}
	case "name":
		v = environmentName
	case "version":
		v = e.Version
		if v == "" {
			v = buildVersion()
		}
	case "remote-host", "remote-ip":
		host, ip := e.RemoteHost, e.RemoteIP
		if e.Remote != nil {
			host, ip = e.Remote()
		}
		v = ip
		if name == "remote-host" {
			v = host
		}
	}
	return v, v != ""
}

// buildVersion is the main module's version; for a development build the
// commit it was built from, "" when the build does not say.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return s.Value[:12]
		}
	}
	return ""
}

func (r *runner) environmentTest(n *node) bool {
	v, ok := r.opts.Environment.item(r.expand(n.pos[0].Strings[0]))
	if !ok {
		return false
	}
	return r.matchValues(n, []string{v}, r.strs(n.pos[1]))
}
