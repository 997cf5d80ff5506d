package integration

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The demo, started as the README says, answers swaks, curl and ldapsearch
// exactly as it prints.
func TestDemo(t *testing.T) {
	requireTool(t, "swaks")
	requireTool(t, "curl")
	dir := filepath.Join(t.TempDir(), "demo")
	cmd := exec.Command(binary, "demo", "-dir", dir)
	var mu sync.Mutex
	var out bytes.Buffer
	w := lockedWriter{&mu, &out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("demo did not stop cleanly on Ctrl-C: %v", err)
			}
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
			t.Error("demo did not stop on Ctrl-C")
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("demo output:\n%s", out.String())
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for _, p := range []string{"2525", "2587", "2465", "2993", "3389", "8025", "14190"} {
		for {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("demo not listening on %s", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The printed commands, run as printed.
	mu.Lock()
	printed := out.String()
	mu.Unlock()
	for _, want := range []string{"swaks --server 127.0.0.1:2525", "imaps://127.0.0.1:2993", "ldap://127.0.0.1:3389"} {
		if !strings.Contains(printed, want) {
			t.Errorf("the demo does not print %q", want)
		}
	}
	o, _ := run(t, "", "swaks", "--server", "127.0.0.1:2525", "--to", "test0@hosted-domain.com", "--from", "someone@example.net")
	if !accepted(o) {
		t.Fatalf("swaks:\n%s", o)
	}
	o, _ = run(t, "", "swaks", "--server", "127.0.0.1:2587", "--tls", "-au", "xomail", "-ap", "demo",
		"--from", "test0@hosted-domain.com", "--to", "alice@example.org")
	if !accepted(o) {
		t.Fatalf("swaks submission:\n%s", o)
	}
	// Submitted mail is signed with the keys the demo generated, whose
	// records it printed.
	if files, _ := filepath.Glob(filepath.Join(dir, "vmail", "alice", "mailbox", "new", "*")); len(files) != 1 {
		t.Errorf("alice has %d messages", len(files))
	} else if b, _ := os.ReadFile(files[0]); bytes.Count(b, []byte("DKIM-Signature:")) != 2 || !bytes.Contains(b, []byte("d=hosted-domain.com")) {
		t.Errorf("submission not signed:\n%s", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, "dkim", "hosted-domain.com", "demo-rsa.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("demo DKIM key: %v %v", fi, err)
	}
	// Every user's queued mail: the server's alone.
	if fi, err := os.Stat(filepath.Join(dir, "queue")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("demo queue directory: %v %v", fi, err)
	}
	mu.Lock()
	printed = out.String()
	mu.Unlock()
	if !strings.Contains(printed, "demo-ed25519._domainkey.hosted-domain.com. IN TXT \"v=DKIM1; k=ed25519; p=") {
		t.Errorf("the demo does not print its DKIM records")
	}
	// alice's sample Sieve script files "[list]" mail into Lists.
	o, _ = run(t, "", "swaks", "--server", "127.0.0.1:2525", "--to", "alice@example.org", "--from", "someone@example.net",
		"--header", "Subject: [list] weekly news")
	if !accepted(o) {
		t.Fatalf("swaks to alice's script:\n%s", o)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "vmail", "alice", "mailbox", ".Lists", "new", "*")); len(files) != 1 {
		t.Errorf("alice's Lists has %d messages, want 1 (the demo's Sieve script)", len(files))
	}
	// Her home and script are hers, as Pigeonhole leaves them: a home of
	// root would be trusted as the administrator's layout.
	if os.Geteuid() == 0 {
		for _, p := range []string{"", "sieve", "sieve/demo.sieve", ".dovecot.sieve"} {
			fi, err := os.Lstat(filepath.Join(dir, "vmail", "alice", p))
			if err != nil {
				t.Fatal(err)
			}
			if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != aliceUID || fi.Mode().Perm()&0o077 != 0 && fi.Mode()&fs.ModeSymlink == 0 {
				t.Errorf("alice's %q: owner %d, mode %v; want %d and no access for others", p, uid, fi.Mode(), aliceUID)
			}
		}
	}
	o, err := run(t, "", "curl", "-sSk", "--user", "xomail:demo", "imaps://127.0.0.1:2993/INBOX?ALL")
	if err != nil || !regexp.MustCompile(`\* SEARCH 1`).MatchString(o) {
		t.Errorf("curl imaps: %v\n%s", err, o)
	}
	o, err = run(t, "", "curl", "-sS", "http://127.0.0.1:8025/healthz")
	if err != nil || strings.TrimSpace(o) != "ok" {
		t.Errorf("healthz: %v %q", err, o)
	}
	o, err = run(t, "", "curl", "-sS", "http://127.0.0.1:8025/mail/config-v1.1.xml?emailaddress=test0@hosted-domain.com")
	if err != nil || !strings.Contains(o, "<port>2993</port>") || !strings.Contains(o, "<port>2587</port>") {
		t.Errorf("autoconfig: %v\n%s", err, o)
	}
	o, err = run(t, "", "curl", "-sS", "http://127.0.0.1:8025/metrics")
	for _, want := range []string{
		"courriel_ldap_searches_total",
		`courriel_smtp_transactions_total{listener="smtp",result="accepted"} 2`,
		`courriel_smtp_transactions_total{listener="submission",result="accepted"} 1`,
		`courriel_deliveries_total{status="sent"} 3`,
		"courriel_imap_sessions_total ", // the readiness probe above opens one too
		"courriel_imap_sessions_active 0",
		"courriel_imap_kept_folders 0", // the demo's folders are small
		"courriel_imap_kept_folder_bytes 0",
	} {
		if err != nil || !strings.Contains(o, want) {
			t.Errorf("metrics lack %s: %v\n%.3000s", want, err, o)
		}
	}
	// The demo's self-signed certificate, valid for a year or more.
	if m := regexp.MustCompile(`courriel_tls_certificate_not_after_seconds\{file="[^"]+"\} ([0-9.e+]+)`).FindStringSubmatch(o); m == nil {
		t.Errorf("metrics lack the certificate's expiry\n%.3000s", o)
	} else if v, _ := strconv.ParseFloat(m[1], 64); time.Unix(int64(v), 0).Before(time.Now().AddDate(0, 6, 0)) {
		t.Errorf("certificate expiry metric %s, want a date a year or so ahead", m[1])
	}
	if _, err := exec.LookPath("ldapsearch"); err == nil {
		o, err := run(t, "", "ldapsearch", "-x", "-H", "ldap://127.0.0.1:3389", "-b", "dc=xoyize,dc=xyz", "(uid=xomail)")
		if err != nil || !strings.Contains(o, "mailacceptinggeneralid: test0@hosted-domain.com") {
			t.Errorf("ldapsearch: %v\n%s", err, o)
		}
	}
	// ManageSieve on 14190: STARTTLS with the demo's certificate, the demo
	// users; the script lands where Pigeonhole keeps it.
	if _, err := exec.LookPath("sieve-connect"); err == nil || os.Getenv("CI") == "true" {
		script := filepath.Join(t.TempDir(), "f.sieve")
		os.WriteFile(script, []byte("require [\"fileinto\", \"mailbox\"];\nfileinto :create \"Demo\";\n"), 0o644)
		for _, args := range [][]string{{"--upload", "--localsieve", script, "--remotesieve", "demo"}, {"--activate", "--remotesieve", "demo"}} {
			c := exec.Command("sieve-connect", append([]string{"--server", "127.0.0.1", "--port", "14190", "--user", "alice",
				"--passwordfd", "0", "--notlsverify"}, args...)...)
			c.Stdin = strings.NewReader("demo\n")
			if o, err := c.CombinedOutput(); err != nil {
				t.Errorf("sieve-connect %v: %v\n%s", args, err, o)
			}
		}
		if l, err := os.Readlink(filepath.Join(dir, "vmail", "alice", ".dovecot.sieve")); err != nil || l != "sieve/demo.sieve" {
			t.Errorf("alice's active script link: %q %v", l, err)
		}
		// The script stored through ManageSieve filters alice's next delivery.
		o, _ := run(t, "", "swaks", "--server", "127.0.0.1:2525", "--to", "alice@example.org", "--from", "someone@example.net",
			"--header", "Subject: after ManageSieve")
		if !accepted(o) {
			t.Fatalf("swaks to alice after ManageSieve:\n%s", o)
		}
		if files, _ := filepath.Glob(filepath.Join(dir, "vmail", "alice", "mailbox", ".Demo", "new", "*")); len(files) != 1 {
			t.Errorf("alice's Demo has %d messages, want 1 (the script stored through ManageSieve)", len(files))
		}
	}
	// IMAP moved it from new/ to cur/, as Dovecot does.
	if files, _ := filepath.Glob(filepath.Join(dir, "vmail", "xomail", "mailbox", "[nc][eu][wr]", "*")); len(files) != 1 {
		t.Errorf("%d messages in the demo's xomail maildir", len(files))
	}
	// RFC 5321 §4.5.1: the demo has a postmaster (xomail), reached with or
	// without a domain.
	for _, rcpt := range []string{"postmaster", "postmaster@example.org"} {
		if o, _ := run(t, "", "swaks", "--server", "127.0.0.1:2525", "--to", rcpt, "--from", "someone@example.net"); !accepted(o) {
			t.Fatalf("swaks to %s:\n%s", rcpt, o)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "vmail", "xomail", "mailbox", "new", "*")); len(files) != 2 {
		t.Errorf("xomail has %d new messages, want 2 (to postmaster, with and without a domain)", len(files))
	}
}
