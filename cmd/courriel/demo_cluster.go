package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"

	"courriel/cluster"
	"courriel/directory/embedded"
	"courriel/tlsconf"
)

// The two nodes of `courriel demo -cluster`, each on its own loopback
// address with the demo's usual ports, plus the internal listeners a
// cluster node has: plain IMAP (the IMAP hop; STARTTLS) and the SMTP hop.
const (
	demoNodeA           = "a"
	demoNodeB           = "b"
	demoHostA           = "127.0.0.2"
	demoHostB           = "127.0.0.3"
	demoIMAPPort        = "2143"
	demoClusterSMTPPort = "12525"
)

func demoNodeHost(node string) string {
	if node == demoNodeB {
		return demoHostB
	}
	return demoHostA
}

// demoClusterConfig is node's configuration in `courriel demo -cluster`:
// the demo's, on the node's address, with its own maildir base and queue
// under DIR/NODE, the directory of node A, and [cluster] naming both.
func demoClusterConfig(dir, node string) Config {
	host := demoNodeHost(node)
	cfg := demoConfig(dir, host)
	at := func(port string) string { return net.JoinHostPort(host, port) }
	cfg.Listen.IMAP = at(demoIMAPPort)
	cfg.Listen.Cluster = at(demoClusterSMTPPort)
	cfg.LDAP.URLs = []string{"ldap://" + net.JoinHostPort(demoHostA, demoLDAPPort)}
	cfg.Delivery.MaildirBase = filepath.Join(dir, node, "vmail")
	cfg.Queue.Dir = filepath.Join(dir, node, "queue")
	cfg.Cluster = ClusterConfig{
		Node: node, SecretFile: filepath.Join(dir, "cluster-secret"),
		// The hops use STARTTLS, verified against the demo's own
		// self-signed certificate (it names both addresses).
		TLS: true, CAFile: cfg.TLS.CertFile,
		Nodes: map[string]ClusterNodeConfig{},
	}
	for _, n := range []string{demoNodeA, demoNodeB} {
		h := demoNodeHost(n)
		cfg.Cluster.Nodes[n] = ClusterNodeConfig{SMTP: net.JoinHostPort(h, demoClusterSMTPPort),
			IMAP: net.JoinHostPort(h, demoIMAPPort), ManageSieve: net.JoinHostPort(h, demoManageSievePort)}
	}
	return cfg
}

// demoClusterSecret makes the secret the nodes share on the first start
// and reads it afterwards.
func demoClusterSecret(file string) ([]byte, error) {
	if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		rand.Read(b)
		if err := os.WriteFile(file, []byte(base64.StdEncoding.EncodeToString(b)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("demo cluster secret: %w", err)
		}
	}
	return cluster.ReadSecret(file)
}

// demoClusterEntries puts each user's home under the base of the node its
// mailHost names (node A's when it names none): one file system, two
// mail stores, as two machines would have.
func demoClusterEntries(ldif []byte, dir string) ([]embedded.Entry, error) {
	entries, err := embedded.ParseLDIF(bytes.NewReader(ldif))
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		node := demoNodeA
		if h := e.Get("mailHost"); len(h) > 0 && strings.EqualFold(h[0], demoNodeB) {
			node = demoNodeB
		}
		entries[i] = embedded.RewriteHomes([]embedded.Entry{e}, embedded.DemoHomeBase, filepath.Join(dir, node, "vmail"))[0]
	}
	return entries, nil
}

// demoClusterOptions are the flags of `courriel demo` that apply to both
// nodes.
type demoClusterOptions struct {
	dir         string
	ldif        []byte
	printConfig bool
	dns         string
	milters     []MilterConfig
}

func runDemoCluster(ctx context.Context, o demoClusterOptions, stdout, stderr io.Writer) error {
	var cfgs []Config
	for _, node := range []string{demoNodeA, demoNodeB} {
		cfg := demoClusterConfig(o.dir, node)
		cfg.Milters = o.milters
		cfg.MailAuth.DNSServer = o.dns
		cfgs = append(cfgs, cfg)
	}
	if o.printConfig {
		for _, cfg := range cfgs {
			fmt.Fprintf(stdout, "# courriel demo -cluster: node %s (%s)\n", cfg.Cluster.Node, demoNodeHost(cfg.Cluster.Node))
			if err := toml.NewEncoder(stdout).Encode(cfg); err != nil {
				return err
			}
			fmt.Fprintln(stdout)
		}
		return nil
	}
	entries, err := demoClusterEntries(o.ldif, o.dir)
	if err != nil {
		return fmt.Errorf("embedded directory: %w", err)
	}
	for _, cfg := range cfgs {
		for _, d := range []string{cfg.Delivery.MaildirBase, cfg.Queue.Dir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("demo directory: %w", err)
			}
			if d == cfg.Queue.Dir {
				if err := os.Chmod(d, 0o700); err != nil {
					return fmt.Errorf("demo directory: %w", err)
				}
			}
		}
		if err := os.Chmod(cfg.Delivery.MaildirBase, 0o711); err != nil {
			return err
		}
	}
	if err := demoSieveScripts(entries); err != nil {
		return err
	}
	if _, _, err := tlsconf.SelfSigned(filepath.Join(o.dir, "tls"), []string{"localhost", demoHostA, demoHostB, cfgs[0].MyHostname}); err != nil {
		return fmt.Errorf("demo certificate: %w", err)
	}
	secret, err := demoClusterSecret(cfgs[0].Cluster.SecretFile)
	if err != nil {
		return err
	}
	log, flushLog := newLogger(stderr, cfgs[0].LogLevel, new(slog.LevelVar))
	defer flushLog()
	ldapSrv, err := embedded.Start(ctx, embedded.Options{
		Addr: net.JoinHostPort(demoHostA, demoLDAPPort), Entries: entries, Logger: log,
	})
	if err != nil {
		return fmt.Errorf("embedded directory: %w", err)
	}
	defer ldapSrv.Close()

	var apps []*app
	defer func() {
		for _, a := range apps {
			a.close()
		}
	}()
	var records string
	for i := range cfgs {
		cfg := &cfgs[i]
		if records, err = demoMailAuth(cfg, o.dir); err != nil {
			return err
		}
		cfg.Cluster.secret = secret
		if err := cfg.validate(); err != nil {
			return fmt.Errorf("node %s: %w", cfg.Cluster.Node, err)
		}
		a, err := newApp(cfg, log.With("node", cfg.Cluster.Node))
		if err != nil {
			return fmt.Errorf("node %s: %w", cfg.Cluster.Node, err)
		}
		apps = append(apps, a)
		if err := a.listen(); err != nil {
			return fmt.Errorf("node %s: %w", cfg.Cluster.Node, err)
		}
	}
	printDemoClusterHelp(stdout, o.dir)
	fmt.Fprintf(stdout, "\nDKIM: mail submitted on %s and %s is signed; the records to publish (keys in %s):\n%s",
		demoSubmissionPort, demoSubmissionsPort, filepath.Join(o.dir, "dkim"), records)

	// Both nodes run until Ctrl-C; one failing stops the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(apps))
	for _, a := range apps {
		go func() {
			err := a.run(ctx)
			if err != nil {
				err = fmt.Errorf("node %s: %w", a.cfg.Cluster.Node, err)
			}
			cancel()
			errc <- err
		}()
	}
	var errs []error
	for range apps {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

func printDemoClusterHelp(w io.Writer, dir string) {
	fmt.Fprintf(w, `
courriel demo -cluster is running (Ctrl-C stops it): two nodes in one process
sharing the embedded directory (ldap://%[1]s:%[7]s), each user at home on one
node (the mailHost attribute): xomail on node a (%[1]s), alice and bob on
node b (%[2]s). Password "demo". Data in %[3]s: a/ and b/ hold each node's
maildirs and queue.

Both nodes have the demo's usual ports: SMTP %[4]s, submission %[5]s, IMAPS %[6]s,
ManageSieve %[8]s; and the internal ones: IMAP %[9]s (STARTTLS), the SMTP hop %[10]s.

Try it:
  # mail for alice handed to node a is delivered on node b, her home
  swaks --server %[1]s:%[4]s --to alice@example.org --from someone@example.net
  ls %[3]s/b/vmail/alice/mailbox/new/

  # mail for xomail at node b lands on node a
  swaks --server %[2]s:%[4]s --to test0@hosted-domain.com --from someone@example.net
  ls %[3]s/a/vmail/xomail/mailbox/new/

  # alice reads her mailbox through node a (proxied to node b)
  curl -k --user alice:demo 'imaps://%[1]s:%[6]s/INBOX?ALL'

  # and directly on node b
  curl -k --user alice:demo 'imaps://%[2]s:%[6]s/INBOX?ALL'

  # which node is whose home
  ldapsearch -x -H ldap://%[1]s:%[7]s -b dc=xoyize,dc=xyz '(mailHost=*)' uid mailHost

  # each node's configuration
  courriel demo -cluster -print-config
`, demoHostA, demoHostB, dir, demoSMTPPort, demoSubmissionPort, demoIMAPSPort, demoLDAPPort, demoManageSievePort, demoIMAPPort, demoClusterSMTPPort)
}
