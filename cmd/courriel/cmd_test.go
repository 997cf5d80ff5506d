package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/sys/unix"

	"courriel/directory/password"
	"courriel/internal/testenv"
)

// runCmd runs the courriel command line in-process.
func runCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// slapdConfig writes a configuration pointing at s.
func slapdConfig(t *testing.T, s *testenv.Slapd) string {
	t.Helper()
	dir := t.TempDir()
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
[queue]
dir = %q
`, s.URL(), s.CAFile(), s.ReaderDN(), s.ReaderPassword(), s.MailBase(), s.MailBase(), filepath.Join(dir, "queue"))
	p := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The seed's postmap -q examples (SPEC §10), through `courriel lookup`.
func TestLookupCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	cfg := slapdConfig(t, s)
	tests := []struct {
		m, key, want string
		code         int
	}{
		{"aliases", "test0@hosted-domain.com", "xomail@xoyize.xyz\n", 0},
		{"mailbox", "xomail@xoyize.xyz", "/var/vmail/xomail/mailbox/\n", 0},
		{"uid", "xomail@xoyize.xyz", "20000\n", 0},
		{"gid", "xomail@xoyize.xyz", "20000\n", 0},
		{"senders", "test0@hosted-domain.com", "xomail\n", 0},
		{"user", "xomail", "xomail dn=uid=xomail,ou=mail,dc=xoyize,dc=xyz home=/var/vmail/xomail mailbox=/var/vmail/xomail/mailbox/ uid=20000 gid=20000\n", 0},
		{"resolve", "team@hosted-domain.com", "alice@xoyize.xyz maildir=/var/vmail/alice/mailbox/ uid=20001 gid=20001\nbob@xoyize.xyz maildir=/var/vmail/bob/mailbox/ uid=20002 gid=20002\n", 0},
		{"aliases", "nobody@hosted-domain.com", "", 1},
		{"aliases", "*", "", 1},
		{"domains", "foreign.example", "", 1},
		{"bogus", "x", "", 2},
	}
	for _, tt := range tests {
		code, out, errOut := runCmd(t, "", "lookup", "-config", cfg, tt.m, tt.key)
		if code != tt.code || out != tt.want {
			t.Errorf("lookup %s %s: exit %d, stdout %q, stderr %q; want exit %d, %q", tt.m, tt.key, code, out, errOut, tt.code, tt.want)
		}
		if code != 0 && errOut == "" {
			t.Errorf("lookup %s %s: exit %d without a reason on stderr", tt.m, tt.key, code)
		}
	}
	// postmap prints every value of one key joined with ", ".
	code, out, _ := runCmd(t, "", "lookup", "-config", cfg, "aliases", "team@hosted-domain.com")
	if code != 0 || out != "alice@xoyize.xyz, bob@xoyize.xyz\n" {
		t.Errorf("lookup aliases team: %d %q", code, out)
	}
	// The domains map answers as the hosted-domain check asks: any entry
	// is a hit, said once, however many entries there are.
	code, out, _ = runCmd(t, "", "lookup", "-config", cfg, "domains", "hosted-domain.com")
	if code != 0 || out != "hosted-domain.com\n" {
		t.Errorf("lookup domains: %d %q", code, out)
	}
	// Flags anywhere among the words, as queue takes them.
	for _, args := range [][]string{{"aliases", "test0@hosted-domain.com", "-config", cfg}, {"aliases", "-config", cfg, "test0@hosted-domain.com"}} {
		if code, out, errOut := runCmd(t, "", append([]string{"lookup"}, args...)...); code != 0 || out != "xomail@xoyize.xyz\n" {
			t.Errorf("lookup %q: %d %q %q", args, code, out, errOut)
		}
	}
	s.Stop(t)
	if code, _, errOut := runCmd(t, "", "lookup", "-config", cfg, "aliases", "test0@hosted-domain.com"); code != 2 || !strings.Contains(errOut, "unavailable") {
		t.Errorf("slapd down: exit %d, %q; want 2", code, errOut)
	}
}

// D10: passwd -user on a directory set up as documented, write_bind_dn
// unset: the reader may not write userPassword (the seed's ACL), and the
// refusal says what to configure.
func TestPasswdUserAsReader(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	cfg := slapdConfig(t, s)
	code, out, errOut := runCmd(t, "a new passphrase\n", "passwd", "-config", cfg, "-user", "xomail")
	if code != 2 || out != "" || !strings.Contains(errOut, "Insufficient Access Rights") ||
		!strings.Contains(errOut, "bind_dn "+s.ReaderDN()+", the reader, as [ldap] write_bind_dn is unset") ||
		!strings.Contains(errOut, "set write_bind_dn and write_bind_password_file to an identity allowed to write userPassword") {
		t.Errorf("passwd -user as the reader: exit %d, %q, %q", code, out, errOut)
	}
}

// A hash from `courriel passwd` is accepted by a real slapd for a bind.
func TestPasswdCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t)
	const pw = "correct horse battery staple"
	code, out, errOut := runCmd(t, pw+"\n", "passwd")
	if code != 0 || !strings.HasPrefix(out, "{SSHA}") {
		t.Fatalf("passwd: %d %q %q", code, out, errOut)
	}
	hash := strings.TrimSpace(out)
	if ok, err := password.Verify(hash, []byte(pw)); !ok || err != nil {
		t.Fatalf("Verify: %v %v", ok, err)
	}
	s.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nreplace: userPassword\nuserPassword: "+hash+"\n")
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind("uid=alice,"+testenv.MailBase, pw); err != nil {
		t.Errorf("slapd refused the hash: %v", err)
	}
	if err := c.Bind("uid=alice,"+testenv.MailBase, pw+"x"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Errorf("wrong password: %v", err)
	}
	if code, _, _ := runCmd(t, "\n", "passwd"); code == 0 {
		t.Error("an empty password was hashed")
	}
}

// `courriel ldap-schema` output loads into a slapd that lacks the schema,
// and the schema then works.
func TestLDAPSchemaCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithoutPostfixSchema())
	code, out, errOut := runCmd(t, "", "ldap-schema")
	if code != 0 {
		t.Fatalf("ldap-schema: %d %s", code, errOut)
	}
	s.ModifyConfig(t, out)
	s.Add(t, `dn: uid=new,ou=mail,dc=xoyize,dc=xyz
objectClass: account
objectClass: postfixUser
uid: new
mailacceptinggeneralid: new@hosted-domain.com
maildrop: new@xoyize.xyz
`)
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.ReaderDN(), s.ReaderPassword()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(s.MailBase(), ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(mailacceptinggeneralid=*@hosted-domain.com)", []string{"maildrop"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("maildrop") != "new@xoyize.xyz" {
		t.Errorf("search with the loaded schema: %v %+v", err, res)
	}
	if code, _, _ := runCmd(t, "", "ldap-schema", "-suffix", "not a dn"); code == 0 {
		t.Error("a bad suffix was accepted")
	}
}

// `courriel ldap-schema -cluster provider` loads after the base output into
// a slapd without misc.schema or syncprov: mailHost is usable and indexed,
// the overlay is there. (directory's TestClusterSchemaLDIFLoads builds a
// provider and a consumer from this output and replicates.)
func TestLDAPSchemaClusterCommand(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithoutPostfixSchema(), testenv.WithoutMiscSchema())
	_, base, _ := runCmd(t, "", "ldap-schema")
	code, out, errOut := runCmd(t, "", "ldap-schema", "-cluster", "provider")
	if code != 0 || !strings.Contains(out, "olcSpSessionLog") {
		t.Fatalf("ldap-schema -cluster provider: %d %s", code, errOut)
	}
	s.ModifyConfig(t, base)
	s.ModifyConfig(t, out)
	s.Add(t, "dn: uid=new,ou=mail,dc=xoyize,dc=xyz\nobjectClass: account\nobjectClass: inetLocalMailRecipient\nuid: new\nmailHost: node-b\n")
	c, err := ldap.DialURL(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Bind(s.ConfigDN(), s.ConfigPassword()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest("olcDatabase={1}mdb,cn=config", ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(objectClass=*)", []string{"olcDbIndex", "olcOverlay"}, nil))
	if err != nil || len(res.Entries) != 2 || !slices.Contains(res.Entries[0].GetAttributeValues("olcDbIndex"), "mailHost eq") ||
		res.Entries[1].GetAttributeValue("olcOverlay") != "{0}syncprov" {
		t.Errorf("index and overlay: %v", err)
		for _, e := range res.Entries {
			e.Print()
		}
	}
	if err := c.Bind(s.AdminDN(), s.AdminPassword()); err != nil {
		t.Fatal(err)
	}
	res, err = c.Search(ldap.NewSearchRequest(s.MailBase(), ldap.ScopeWholeSubtree, 0, 0, 0, false,
		"(mailHost=NODE-B)", []string{"uid"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Errorf("(mailHost=NODE-B): %v %+v", err, res)
	}

	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("repl-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCmd(t, "", "ldap-schema", "-cluster", "consumer", "-provider", "ldaps://ldap1.example.org", "-replicator-password-file", pwFile)
	if code != 0 || !strings.Contains(out, `credentials="repl-secret"`) || !strings.Contains(out, `retry="5 5 60 +"`) ||
		!strings.Contains(out, "olcUpdateRef: ldaps://ldap1.example.org") || !strings.Contains(out, "type=refreshAndPersist") {
		t.Errorf("consumer: %d %q\n%s", code, errOut, out)
	}
	for _, bad := range [][]string{
		{"-cluster", "consumer"},
		{"-cluster", "primary"},
		{"-cluster", "consumer", "-provider", "ldap://x", "-replicator-password-file", dir + "/none"},
	} {
		if code, _, _ := runCmd(t, "", append([]string{"ldap-schema"}, bad...)...); code != 2 {
			t.Errorf("ldap-schema %q: exit %d, want 2", bad, code)
		}
	}
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	if code, _, errOut := runCmd(t, "", "frobnicate"); code != 2 || !strings.Contains(errOut, "unknown command") {
		t.Errorf("%d %q", code, errOut)
	}
}

// `courriel demo -print-config` is a configuration serve accepts as is.
func TestDemoPrintConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, out, errOut := runCmd(t, "", "demo", "-dir", dir, "-print-config")
	if code != 0 {
		t.Fatalf("%d %s", code, errOut)
	}
	// The SRS secret the demo made on its first start, which it runs with.
	const secret = "demo-srs-secret-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "srs-secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig("demo.toml", []byte(out))
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out)
	}
	want := demoConfig(dir, "127.0.0.1")
	if cfg.Listen != want.Listen || cfg.LDAP.URLs[0] != "ldap://127.0.0.1:3389" || cfg.Delivery.MaildirBase != dir+"/vmail" ||
		cfg.Queue.Dir != dir+"/queue" || cfg.LDAP.CacheTTL != want.LDAP.CacheTTL {
		t.Errorf("printed config differs: %+v", cfg)
	}
	if _, err := demoMailAuth(&want, dir); err != nil {
		t.Fatal(err)
	}
	if cfg.MailAuth.SRSSecret != secret || want.MailAuth.SRSSecret != secret {
		t.Errorf("SRS secret: printed config %q, demo %q, want %q", cfg.MailAuth.SRSSecret, want.MailAuth.SRSSecret, secret)
	}
}

// openPTY returns the two ends of a new pseudo-terminal. Without one the
// test skips, except in CI (CI=true), where every machine has /dev/ptmx.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") == "true" {
		skip = t.Fatalf
	}
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		skip("no pseudo-terminal: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		skip("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		skip("ptsname: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		skip("open pts: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// On a terminal, `courriel passwd` prompts twice without echo, like
// slappasswd, and refuses two different answers.
func TestPasswdPrompt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		second string
		ok     bool
	}{{"s3cret-pw", true}, {"other", false}} {
		master, slave := openPTY(t)
		var out bytes.Buffer
		errb := &syncBuffer{}
		done := make(chan int, 1)
		go func() { done <- run(context.Background(), []string{"passwd"}, slave, &out, errb) }()
		// Type each answer once its prompt is shown, as a person would.
		waitText(t, errb, "New password: ")
		master.Write([]byte("s3cret-pw\n"))
		waitText(t, errb, "Re-enter new password: ")
		master.Write([]byte(tc.second + "\n"))
		var code int
		select {
		case code = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("passwd did not finish")
		}
		// Whatever the terminal echoed must not contain the password: with
		// the slave closed, the master reads what is left, then EIO.
		slave.Close()
		echoed, _ := io.ReadAll(master)
		if strings.Contains(string(echoed), "s3cret") {
			t.Errorf("the terminal echoed the password: %q", echoed)
		}
		if tc.ok {
			hash := strings.TrimSpace(out.String())
			if ok, err := password.Verify(hash, []byte("s3cret-pw")); code != 0 || !ok || err != nil {
				t.Errorf("prompt: exit %d, hash %q (%v %v), stderr %q", code, hash, ok, err, errb.String())
			}
			if !strings.Contains(errb.String(), "New password:") || !strings.Contains(errb.String(), "Re-enter new password:") {
				t.Errorf("prompts: %q", errb.String())
			}
		} else if code == 0 || !strings.Contains(errb.String(), "do not match") {
			t.Errorf("mismatch: exit %d, stderr %q", code, errb.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitText(t *testing.T, b *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in %q", text, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
