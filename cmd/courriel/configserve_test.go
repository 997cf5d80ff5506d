package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"courriel/internal/testenv"
)

// serveConfig is a configuration serve can open without a directory or
// listeners (the directory unreachable only warns), plus extra.
func serveConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"vmail", "queue"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`myhostname = "xoyize.xyz"
[listen]
smtp = ""
submission = ""
submissions = ""
imaps = ""
managesieve = ""
[ldap]
urls = ["ldap://127.0.0.1:1"]
start_tls = false
dial_timeout = "1s"
search_base = "ou=mail,dc=xoyize,dc=xyz"
[delivery]
maildir_base = %q
[queue]
dir = %q
`, filepath.Join(dir, "vmail"), filepath.Join(dir, "queue")) + extra
}

// Whatever the configuration takes, serve opens; whatever serve would
// refuse, the configuration refuses (so check-config and SIGHUP do), with
// the key and line.
func TestConfigAgreesWithServe(t *testing.T) {
	t.Parallel()
	// Postfix's relayhost forms: host, host:port, [host], [host]:port.
	for _, relay := range []string{"smtp.provider.net", "[smtp.provider.net]", "[smtp.provider.net]:587", "smtp.provider.net:587", "[192.0.2.1]", "[ipv6:2001:db8::1]:587"} {
		data := serveConfig(t, fmt.Sprintf("relayhost = %q\n[queue.routes]\n\"example.net\" = %q\n", relay, relay))
		cfg, err := ParseConfig("c.toml", []byte(data))
		if err != nil {
			t.Errorf("relayhost %q: %v", relay, err)
			continue
		}
		a, err := newApp(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Errorf("relayhost %q: serve refuses: %v", relay, err)
			continue
		}
		a.close()
	}
	caDir := t.TempDir()
	for _, tc := range []struct {
		name, extra string
		line        int
		key, msg    string
	}{
		{"bad relayhost", "relayhost = \"smtp.provider.net:\"\n", 17, "queue.relayhost", "port"},
		{"relayhost IPv6 without brackets", "relayhost = \"2001:db8::1\"\n", 17, "queue.relayhost", "brackets"},
		{"bad route host", "[queue.routes]\n\"example.net\" = \"smtp_relay!:25\"\n", 17, "queue.routes", "smtp_relay!"},
		{"bad route domain", "[queue.routes]\n\"exa mple\" = \"smtp.example.net:25\"\n", 17, "queue.routes", "exa mple"},
		{"missing ca_path", "tls_policy = \"verify\"\nca_path = \"/nonexistent/ca\"\n", 18, "queue.ca_path", "/nonexistent/ca"},
		{"ca_path without certificates", "ca_path = \"" + caDir + "\"\n", 17, "queue.ca_path", "no CERTIFICATE"},
		{"ca_path for a verify domain", "tls_policy = \"may\"\nca_path = \"/nonexistent/ca\"\n[queue.tls_policies]\n\"example.net\" = \"verify\"\n", 18, "queue.ca_path", "/nonexistent/ca"},
	} {
		data := serveConfig(t, tc.extra)
		_, err := ParseConfig("c.toml", []byte(data))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want a ConfigError", tc.name, err)
			continue
		}
		if ce.File != "c.toml" || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Error(), tc.msg) {
			t.Errorf("%s: %q (line %d key %q); want line %d key %q containing %q", tc.name, ce.Error(), ce.Line, ce.Key, tc.line, tc.key, tc.msg)
		}
		if tc.key == "queue.ca_path" {
			// serve does refuse it: the same file, with the check left out.
			path := strings.Split(strings.SplitN(tc.extra, "ca_path = \"", 2)[1], "\"")[0]
			cfg, _, err := parseConfig("c.toml", []byte(strings.Replace(data, path, "/etc/ssl/certs", 1)))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Queue.CAPath = path
			if a, err := newApp(cfg, slog.New(slog.DiscardHandler)); err == nil {
				a.close()
				t.Errorf("%s: serve starts", tc.name)
			}
		}
	}
	// A CA directory with a certificate is taken.
	ca := testenv.NewCA(t).CertFile()
	pem, _ := os.ReadFile(ca)
	os.WriteFile(filepath.Join(caDir, "ca.pem"), pem, 0o600)
	if _, err := ParseConfig("c.toml", []byte(serveConfig(t, "ca_path = \""+caDir+"\"\n"))); err != nil {
		t.Errorf("ca_path with a certificate: %v", err)
	}
}

// check-config lists every file it cannot read in one run, each with its
// key, not the first one alone.
func TestCheckConfigListsEveryMissingFile(t *testing.T) {
	t.Parallel()
	data := strings.Replace(serveConfig(t, "ca_path = \"/nonexistent/certs\"\n"), "start_tls = false\n",
		"start_tls = false\nca_file = \"/nonexistent/CA.pem\"\nbind_dn = \"cn=reader,dc=xoyize,dc=xyz\"\nbind_password_file = \"/nonexistent/ldap-password\"\n", 1)
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCmd(t, "", "check-config", "-q", "-config", p)
	for _, want := range []string{
		"FAIL ldap.ca_file (" + p + ":11): LDAP CA file: open /nonexistent/CA.pem",
		"FAIL ldap.bind_password_file (" + p + ":13): open /nonexistent/ldap-password",
		"FAIL queue.ca_path (" + p + ":20): tls: /nonexistent/certs",
		"3 problem(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q (exit %d):\n%s\n%s", want, code, out, errOut)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
}

// check-config and serve agree on the directories: a missing queue
// directory is created by serve (check-config says so, without failing), a
// missing maildir base is not (check-config fails, serve logs an error).
func TestCheckConfigDirectoriesAsServe(t *testing.T) {
	t.Parallel()
	data := serveConfig(t, "")
	top := t.TempDir()
	fresh := filepath.Join(top, "fresh", "q", "sub")
	vmail := filepath.Join(top, "vmail")
	data = regexpReplace(data, `(?m)^dir = .*$`, fmt.Sprintf("dir = %q", fresh))
	data = regexpReplace(data, `(?m)^maildir_base = .*$`, fmt.Sprintf("maildir_base = %q", vmail))
	p := filepath.Join(top, "config.toml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
	if want := "ok   queue directory " + fresh + " writable (missing: serve creates it, in " + top + ")"; !strings.Contains(out, want) {
		t.Errorf("missing queue directory: want %q in\n%s", want, out)
	}
	if want := "FAIL maildir base " + vmail + " writable: stat " + vmail + ": no such file or directory (serve does not create it"; !strings.Contains(out, want) {
		t.Errorf("missing maildir base: want %q in\n%s", want, out)
	}

	cfg, err := ParseConfig("c.toml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	lw := &syncWriter{w: &logBuf}
	a, err := newApp(cfg, slog.New(slog.NewTextHandler(lw, nil)))
	if err != nil {
		t.Fatalf("serve refuses the queue directory check-config takes: %v", err)
	}
	a.close()
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if want := `level=ERROR msg="delivery.maildir_base is not a directory`; !strings.Contains(logBuf.String(), want) {
		t.Errorf("serve's log lacks %q:\n%s", want, logBuf.String())
	}
}

// A spool file system with less room than the spool's reserve is warned of.
func TestCheckConfigSpoolSpace(t *testing.T) {
	t.Parallel()
	spool := t.TempDir()
	testenv.MountTmpfs(t, spool, "size=1m,mode=0700")
	data := regexpReplace(serveConfig(t, ""), `(?m)^dir = .*$`, fmt.Sprintf("dir = %q", spool))
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ := runCmd(t, "", "check-config", "-q", "-config", p)
	if want := "warn queue directory " + spool + ": 1024 KiB free on its file system, less than the 4096 KiB"; !strings.Contains(out, want) {
		t.Errorf("want %q in\n%s", want, out)
	}
}

func regexpReplace(s, re, repl string) string {
	return regexp.MustCompile(re).ReplaceAllLiteralString(s, repl)
}

// syncWriter is a writer for loggers of several goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// reloadApp is an app built, as serve builds it, from data written to a
// file that reload (SIGHUP's) reads again; reload returns what it
// logged.
func reloadApp(t *testing.T, data string) (a *app, path string, reload func() string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf strings.Builder
	lw := &syncWriter{w: &logBuf}
	a, err = newApp(cfg, slog.New(slog.NewTextHandler(lw, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.close)
	a.cfgPath = path
	return a, path, func() string {
		a.reload()
		lw.mu.Lock()
		defer lw.mu.Unlock()
		out := logBuf.String()
		logBuf.Reset()
		return out
	}
}

// SIGHUP refuses what serve would refuse, instead of taking it "for the
// next restart".
func TestReloadRefusesWhatServeRefuses(t *testing.T) {
	t.Parallel()
	data := serveConfig(t, "")
	_, p, reload := reloadApp(t, data)
	for _, extra := range []string{
		"relayhost = \"smtp.provider.net:\"\n",
		"[queue.routes]\n\"example.net\" = \"smtp_relay!:25\"\n",
		"ca_path = \"/nonexistent/ca\"\n",
	} {
		if err := os.WriteFile(p, []byte(data+extra), 0o600); err != nil {
			t.Fatal(err)
		}
		out := reload()
		if !strings.Contains(out, "new configuration refused") || strings.Contains(out, "next restart") {
			t.Errorf("SIGHUP with %q:\n%s", extra, out)
		}
	}
}
