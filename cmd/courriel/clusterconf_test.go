package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/internal/testenv"
)

func TestConfigCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-shared\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("tooshort\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"dc=x\"\nca_file = \"" + ca + "\"\n"
	good := base + "[cluster]\nnode = \"A\"\nsecret_file = \"" + secret + "\"\n[cluster.nodes.b]\naddress = \"10.0.0.3\"\n[cluster.nodes.c]\nsmtp = \"10.0.0.4:25\"\nimap = \"10.0.0.4:1143\"\n"
	cfg, err := ParseConfig("t.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.directoryOptions().HomeAttribute; got != "mailHost" {
		t.Errorf("home attribute %q, want mailHost", got)
	}
	c, err := cfg.newCluster()
	if err != nil {
		t.Fatal(err)
	}
	if c.Self() != "a" || !c.CheckSecret("0123456789abcdef-shared") {
		t.Errorf("self %q or secret wrong", c.Self())
	}
	b, remote, err := c.Home("B")
	if err != nil || !remote || b.SMTP != "10.0.0.3:2525" || b.IMAP != "10.0.0.3:143" || b.ManageSieve != "10.0.0.3:4190" {
		t.Errorf("node b: %+v %v %v", b, remote, err)
	}
	if n, _, _ := c.Home("c"); n.SMTP != "10.0.0.4:25" || n.IMAP != "10.0.0.4:1143" || n.ManageSieve != "" {
		t.Errorf("node c: %+v", n)
	}

	single, err := ParseConfig("t.toml", []byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if single.directoryOptions().HomeAttribute != "" {
		t.Error("a single node reads a home attribute")
	}
	if c, err := single.newCluster(); c != nil || err != nil {
		t.Errorf("single node: %v %v", c, err)
	}

	for _, tc := range []struct{ name, data, key string }{
		{"nodes without node", base + "[cluster.nodes.b]\naddress = \"10.0.0.3\"\n", "cluster.node"},
		{"listen without node", base + "[listen]\ncluster = \"127.0.0.1:2525\"\n", "cluster.node"},
		{"bad node name", base + "[cluster]\nnode = \"a/b\"\nsecret_file = \"" + secret + "\"\n", "cluster.node"},
		{"no secret", base + "[cluster]\nnode = \"a\"\n", "cluster.secret_file"},
		{"short secret", base + "[cluster]\nnode = \"a\"\nsecret_file = \"" + short + "\"\n", "cluster.secret_file"},
		{"missing secret", base + "[cluster]\nnode = \"a\"\nsecret_file = \"" + dir + "/none\"\n", "cluster.secret_file"},
		{"node without address", base + "[cluster]\nnode = \"a\"\nsecret_file = \"" + secret + "\"\n[cluster.nodes.b]\nmanagesieve = \"10.0.0.3:4190\"\n", "cluster.nodes.b"},
		{"bad attribute", base + "[cluster]\nnode = \"a\"\nhome_attribute = \"mail host\"\nsecret_file = \"" + secret + "\"\n", "cluster.home_attribute"},
	} {
		_, err := ParseConfig("t.toml", []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.key)
		}
	}
}
