package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/directory/embedded"
	"courriel/tlsconf"
)

// `courriel demo -cluster -print-config` prints each node's configuration,
// one serve accepts as is: its own node, addresses, mail store and queue,
// the one directory, both nodes' internal listeners.
func TestDemoClusterPrintConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cluster-secret"), []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// What the demo makes on its first start.
	if err := os.WriteFile(filepath.Join(dir, "srs-secret"), []byte("demo-srs-secret-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tlsconf.SelfSigned(filepath.Join(dir, "tls"), []string{"127.0.0.2", "127.0.0.3"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "demo", "-cluster", "-dir", dir, "-print-config")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	docs := strings.Split(out, "# courriel demo -cluster: node ")[1:]
	if len(docs) != 2 {
		t.Fatalf("%d configurations printed, want 2:\n%s", len(docs), out)
	}
	for i, tc := range []struct{ node, host, other, otherHost string }{{"a", "127.0.0.2", "b", "127.0.0.3"}, {"b", "127.0.0.3", "a", "127.0.0.2"}} {
		cfg, err := ParseConfig("node.toml", []byte("# node "+docs[i]))
		if err != nil {
			t.Fatalf("node %s: printed config does not load: %v\n%s", tc.node, err, docs[i])
		}
		if cfg.Cluster.Node != tc.node {
			t.Errorf("config %d is node %q, want %q", i, cfg.Cluster.Node, tc.node)
		}
		l := cfg.Listen
		for _, addr := range []string{l.SMTP, l.Submission, l.Submissions, l.IMAPS, l.IMAP, l.ManageSieve, l.HTTP, l.Cluster} {
			if !strings.HasPrefix(addr, tc.host+":") {
				t.Errorf("node %s listens on %s, want %s", tc.node, addr, tc.host)
			}
		}
		if l.SMTP != tc.host+":2525" || l.IMAPS != tc.host+":2993" {
			t.Errorf("node %s: not the demo's usual ports: %+v", tc.node, l)
		}
		if cfg.LDAP.URLs[0] != "ldap://127.0.0.2:3389" {
			t.Errorf("node %s reads %v, want node a's embedded directory", tc.node, cfg.LDAP.URLs)
		}
		if cfg.Delivery.MaildirBase != filepath.Join(dir, tc.node, "vmail") || cfg.Queue.Dir != filepath.Join(dir, tc.node, "queue") {
			t.Errorf("node %s: maildirs %s, queue %s", tc.node, cfg.Delivery.MaildirBase, cfg.Queue.Dir)
		}
		c, err := cfg.newCluster()
		if err != nil {
			t.Fatal(err)
		}
		if c.Self() != tc.node {
			t.Errorf("cluster self %q, want %q", c.Self(), tc.node)
		}
		other, remote, err := c.Home(tc.other)
		if err != nil || !remote || other.SMTP != tc.otherHost+":12525" || other.IMAP != tc.otherHost+":2143" || other.ManageSieve != tc.otherHost+":14190" {
			t.Errorf("node %s sees node %s at %+v (remote %v, %v)", tc.node, tc.other, other, remote, err)
		}
		if c.TLS(tc.otherHost) == nil {
			t.Errorf("node %s: the hops are not over TLS", tc.node)
		}
	}
}

func TestDemoClusterRefusesListen(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCmd(t, "", "demo", "-cluster", "-listen", "127.0.0.1", "-dir", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "-listen does not apply to -cluster") {
		t.Errorf("%d %q", code, errOut)
	}
}

// Each demo user's home is under the mail store of the node its mailHost
// names.
func TestDemoClusterHomes(t *testing.T) {
	t.Parallel()
	entries, err := demoClusterEntries(embedded.DemoLDIF, "/tmp/dc")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"xomail": "/tmp/dc/a/vmail/xomail", "alice": "/tmp/dc/b/vmail/alice", "bob": "/tmp/dc/b/vmail/bob"}
	for _, e := range entries {
		uid := e.Get("uid")
		if len(uid) != 1 || want[uid[0]] == "" {
			continue
		}
		if home := e.Get("homeDirectory"); len(home) != 1 || home[0] != want[uid[0]] {
			t.Errorf("%s: home %v, want %s", uid[0], home, want[uid[0]])
		}
		delete(want, uid[0])
	}
	if len(want) > 0 {
		t.Errorf("users missing: %v", want)
	}
}
