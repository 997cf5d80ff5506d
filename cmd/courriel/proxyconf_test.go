package main

import (
	"strings"
	"testing"

	"courriel/internal/testenv"
)

func TestConfigProxyProtocol(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"dc=x\"\nca_file = \"" + ca + "\"\n"
	for _, tc := range []struct {
		name, data string
		behind     []string // listeners that take headers
		err        string   // the key an error names
	}{
		{"absent", base, nil, ""},
		{"default listeners", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.10\", \"fd00::/64\"]\n",
			[]string{"smtp", "submission", "submissions", "imaps", "imap", "managesieve"}, ""},
		{"some listeners", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.10\"]\nlisteners = [\"smtp\", \"imaps\"]\nheader_timeout = \"2s\"\n",
			[]string{"smtp", "imaps"}, ""},
		{"listeners without networks", base + "[proxy_protocol]\nlisteners = [\"smtp\"]\n", nil, "proxy_protocol.trusted_networks"},
		{"bad network", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.300\"]\n", nil, "proxy_protocol.trusted_networks"},
		{"cluster listener", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.10\"]\nlisteners = [\"cluster\"]\n", nil, "proxy_protocol.listeners"},
		{"http listener", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.10\"]\nlisteners = [\"http\"]\n", nil, "proxy_protocol.listeners"},
		{"long timeout", base + "[proxy_protocol]\ntrusted_networks = [\"10.0.0.10\"]\nheader_timeout = \"2m\"\n", nil, "proxy_protocol.header_timeout"},
	} {
		cfg, err := ParseConfig("t.toml", []byte(tc.data))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var behind []string
		for _, l := range append(proxyListenerNames, "cluster", "http") {
			if cfg.ProxyProtocol.behindProxy(l) {
				behind = append(behind, l)
			}
		}
		if strings.Join(behind, " ") != strings.Join(tc.behind, " ") {
			t.Errorf("%s: behind the balancer: %v, want %v", tc.name, behind, tc.behind)
		}
	}
}
