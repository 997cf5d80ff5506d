package move

import (
	"context"
	"crypto/tls"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/cluster"
	"courriel/internal/testenv"
)

// The dialogue with the new node: STARTTLS when the cluster's hops use
// TLS, the secret, and the node's refusals as ReplyError.
func TestSendImport(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	_, d := startDirectory(t, filepath.Join(base, "b"))
	if err := os.Mkdir(filepath.Join(base, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(base, "a", "xomail")
	makeHome(t, src)
	a, err := Scan("xomail", src, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t)
	hop := startHop(t, NewImporter(ImportOptions{Directory: d, Chown: os.Geteuid() == 0}))
	hop.tls = &tls.Config{Certificates: []tls.Certificate{ca.IssueCertificate(t, "127.0.0.1")}}
	node := cluster.Node{Name: "b", SMTP: hop.ln.Addr().String()}
	newCluster := func(secret string, tlsConf *tls.Config) *cluster.Cluster {
		c, err := cluster.New(cluster.Options{Self: "a", Secret: []byte(secret), TLS: tlsConf, Nodes: map[string]cluster.Node{"b": node}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	withTLS := &tls.Config{RootCAs: ca.Pool()}

	var re *ReplyError
	err = SendImport(ctx, newCluster("wrong-secret-0123456789", withTLS), node, "xomail", a)
	if !errors.As(err, &re) || re.Code != 535 || re.Temporary() {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(base, "b", "xomail")); !os.IsNotExist(err) {
		t.Fatal("imported without authentication")
	}
	if err := SendImport(ctx, newCluster(testSecret, withTLS), node, "xomail", a); err != nil {
		t.Fatalf("over STARTTLS: %v", err)
	}
	hop.mu.Lock()
	dialogue := strings.Join(hop.log, " ")
	hop.mu.Unlock()
	if !strings.Contains(dialogue, "EHLO STARTTLS EHLO AUTH XIMPORT QUIT") {
		t.Errorf("dialogue %q", dialogue)
	}
	if b, err := os.ReadFile(filepath.Join(base, "b", "xomail", "sieve", "main.sieve")); err != nil || !strings.Contains(string(b), "fileinto") {
		t.Errorf("imported script: %q, %v", b, err)
	}
	// Again: the node now has the user's mail and refuses for good.
	err = SendImport(ctx, newCluster(testSecret, withTLS), node, "xomail", a)
	if !errors.As(err, &re) || re.Code != 554 || re.Temporary() {
		t.Errorf("second import: %v", err)
	}
	// TLS on, but a node whose certificate is not from the cluster's CA.
	err = SendImport(ctx, newCluster(testSecret, &tls.Config{RootCAs: testenv.NewCA(t).Pool()}), node, "xomail", a)
	if err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Errorf("untrusted certificate: %v", err)
	}
}
