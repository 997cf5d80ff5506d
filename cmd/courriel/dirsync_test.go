package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"courriel/directory"
	"courriel/internal/testenv"
)

// replicaConfig writes a configuration reading r's consumer, writing as
// the provider's rootdn (write_urls unset: the referral is followed),
// plus extra TOML lines at the end of [ldap].
func replicaConfig(t *testing.T, r *testenv.Replicated, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "write-password")
	if err := os.WriteFile(pwFile, []byte(r.Provider.AdminPassword()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := r.Consumer
	cfg := fmt.Sprintf(`myhostname = "xoyize.xyz"
[listen]
local = ""
smtp = ""
submission = ""
submissions = ""
imaps = ""
managesieve = ""
[ldap]
urls = [%q]
start_tls = true
ca_file = %q
bind_dn = %q
bind_password = %q
search_base = %q
auth_bind_userdn = "uid=%%u,%s"
write_bind_dn = %q
write_bind_password_file = %q
%s
[queue]
dir = %q
`, c.URL(), c.CAFile(), c.ReaderDN(), c.ReaderPassword(), c.MailBase(), c.MailBase(),
		r.Provider.AdminDN(), pwFile, extra, filepath.Join(dir, "queue"))
	p := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func bindAs(url, dn, pw string) error {
	c, err := ldap.DialURL(url, ldap.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(10 * time.Second)
	return c.Bind(dn, pw)
}

// `courriel passwd -user` on a node whose directory is a replica: the new
// hash is written on the provider and the user binds with it on both.
func TestPasswdUserCommand(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	cfg := replicaConfig(t, r, "")
	const pw = "alice's new passphrase"
	code, out, errOut := runCmd(t, pw+"\n", "passwd", "-config", cfg, "-user", "alice@hosted-domain.com")
	if code != 0 || !strings.Contains(out, "set in the directory") {
		t.Fatalf("passwd -user: %d %q %q", code, out, errOut)
	}
	alice := "uid=alice," + testenv.MailBase
	if err := bindAs(r.Provider.URL(), alice, pw); err != nil {
		t.Errorf("new password on the provider: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for err := bindAs(r.Consumer.URL(), alice, pw); err != nil; err = bindAs(r.Consumer.URL(), alice, pw) {
		if time.Now().After(deadline) {
			t.Fatalf("new password not on the consumer: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, _, errOut := runCmd(t, "x-secret\n", "passwd", "-config", cfg, "-user", "nobody"); code != 1 || !strings.Contains(errOut, "no user") {
		t.Errorf("unknown user: %d %q", code, errOut)
	}
	// Without -user, the hash is printed as before (TestPasswdCommand).
	if code, out, _ := runCmd(t, pw+"\n", "passwd"); code != 0 || !strings.HasPrefix(out, "{SSHA}") {
		t.Errorf("hash mode: %d %q", code, out)
	}
}

func TestConfigWatchAndWrites(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("0123456789abcdef-shared\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("writer-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"dc=x\"\nca_file = \"" + ca + "\"\n"
	cluster := "[cluster]\nnode = \"a\"\nsecret_file = \"" + secret + "\"\n"
	for _, tc := range []struct {
		name, ldap, tail string
		watch            bool
	}{
		{"single node", "", "", false},
		{"cluster", "", cluster, true},
		{"single node, asked", "watch_changes = true\n", "", true},
		{"cluster, refused", "watch_changes = false\n", cluster, false},
	} {
		cfg, err := ParseConfig("t.toml", []byte(base+tc.ldap+tc.tail))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := cfg.watchChanges(); got != tc.watch {
			t.Errorf("%s: watch %v, want %v", tc.name, got, tc.watch)
		}
	}

	cfg, err := ParseConfig("t.toml", []byte(base+"write_urls = [\"ldaps://provider.example:636\"]\nwrite_bind_dn = \"cn=writer,dc=x\"\nwrite_bind_password_file = \""+pwFile+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.directoryOptions()
	if len(o.WriteURLs) != 1 || o.WriteBindDN != "cn=writer,dc=x" || o.WriteBindPassword != "writer-secret" {
		t.Errorf("write options %q %q %q", o.WriteURLs, o.WriteBindDN, o.WriteBindPassword)
	}

	for _, tc := range []struct{ name, data, key string }{
		{"dn without file", base + "write_bind_dn = \"cn=w,dc=x\"\n", "ldap.write_bind_dn"},
		{"file without dn", base + "write_bind_password_file = \"" + pwFile + "\"\n", "ldap.write_bind_dn"},
		{"bad dn", base + "write_bind_dn = \"not a dn\"\nwrite_bind_password_file = \"" + pwFile + "\"\n", "ldap.write_bind_dn"},
		{"bad url", base + "write_urls = [\"http://provider\"]\n", "ldap.write_urls"},
		{"url with credentials", base + "write_urls = [\"ldap://u:p@provider\"]\n", "ldap.write_urls"},
		{"missing file", base + "write_bind_dn = \"cn=w,dc=x\"\nwrite_bind_password_file = \"" + dir + "/none\"\n", "ldap.write_bind_password_file"},
	} {
		_, err := ParseConfig("t.toml", []byte(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.key)
		}
	}
}

// `courriel serve` with watch_changes runs the watcher on the replica and
// says so in /metrics; a change on the provider is counted.
func TestServeWatcherMetrics(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := replicaConfig(t, r, "watch_changes = true\ncache_ttl = \"1h\"")
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "managesieve = \"\"\n", "managesieve = \"\"\nhttp = \""+httpAddr+"\"\n", 1))
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-config", cfg}, strings.NewReader(""), io.Discard, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("serve did not stop")
		}
	})
	metric := func(name string) string {
		resp, err := http.Get("http://" + httpAddr + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, name+" "); ok {
				return v
			}
		}
		return ""
	}
	waitMetric := func(name string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for v := metric(name); !ok(v); v = metric(name) {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %q", name, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitMetric("courriel_directory_watch_connected", func(v string) bool { return v == "1" })
	if v := metric("courriel_directory_watch_changes_total"); v != "0" {
		t.Errorf("changes before any: %q", v)
	}
	r.Provider.Modify(t, "dn: uid=bob,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: bobby@example.org\n")
	waitMetric("courriel_directory_watch_changes_total", func(v string) bool { return v != "" && v != "0" })
	if v := metric("courriel_directory_watch_last_change_timestamp_seconds"); v == "" || v == "0" {
		t.Errorf("last change timestamp %q", v)
	}
}

// check-config on a cluster node checks the change watch on the replica
// and the write account on write_urls.
func TestCheckConfigClusterDirectory(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	cfg := replicaConfig(t, r, fmt.Sprintf("watch_changes = true\nwrite_urls = [%q]", r.Provider.URL()))
	_, out, _ := runCmd(t, "", "check-config", "-q", "-config", cfg)
	for _, want := range []string{
		"ok   ldap: change watch (sync search, RFC 4533) on " + r.Consumer.URL(),
		"ok   ldap: connect and bind as \"" + testenv.AdminDN + "\" to write_urls",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config lacks %q:\n%s", want, out)
		}
	}
	// A write account whose password is wrong is caught.
	bad := replicaConfig(t, r, fmt.Sprintf("write_urls = [%q]", r.Provider.URL()))
	pwFile := filepath.Join(filepath.Dir(bad), "write-password")
	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, out, _ := runCmd(t, "", "check-config", "-q", "-config", bad); !strings.Contains(out, "FAIL ldap: connect and bind as") {
		t.Errorf("wrong write password not reported:\n%s", out)
	}
}

// A SIGHUP that replaces the directory client (here: the reader's password
// rotated) replaces the watcher too, which could not reconnect with the
// old password.
func TestReloadRestartsWatcher(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	cfgPath := replicaConfig(t, r, "watch_changes = true")
	cfg, err := LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a.cfgPath = cfgPath
	t.Cleanup(a.close)
	if err := a.listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Error("run did not stop")
		}
	})
	wait := func(what string, cond func(directory.WatchStatus) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for st := a.watch.Status(); !cond(st); st = a.watch.Status() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %+v", what, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("connected", func(st directory.WatchStatus) bool { return st.Connected })

	// The reader's password changes on the provider; the watcher's
	// connection breaks (the replica restarts) and cannot bind again.
	const rotated = "rotated-reader-secret"
	r.Provider.Modify(t, "dn: "+testenv.ReaderDN+"\nchangetype: modify\nreplace: userPassword\nuserPassword: "+rotated+"\n")
	r.WaitInSync(t)
	r.Consumer.Kill(t)
	wait("disconnected", func(st directory.WatchStatus) bool { return !st.Connected })
	r.Consumer.Start(t)
	time.Sleep(2 * time.Second) // several retries, all refused
	if st := a.watch.Status(); st.Connected {
		t.Fatalf("connected with the old password: %+v", st)
	}

	data, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), fmt.Sprintf("bind_password = %q", testenv.ReaderPassword), fmt.Sprintf("bind_password = %q", rotated), 1))
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a.reload()
	wait("connected after the reload", func(st directory.WatchStatus) bool { return st.Connected })

	// watch_changes = false in a reload stops it.
	data = []byte(strings.Replace(string(data), "watch_changes = true", "watch_changes = false", 1))
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a.reload()
	if st := a.watch.Status(); st.Connected || st.URL != "" {
		t.Errorf("after watch_changes = false: %+v", st)
	}
}
