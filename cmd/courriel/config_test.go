package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// The example must decode as is, so it cannot drift from the code.
func TestConfigExample(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	// The example names a CA file of the real deployment; point it at one
	// that exists here.
	ca := testenv.NewCA(t).CertFile()
	data = []byte(strings.Replace(string(data), `"/etc/ldap/tls/CA.pem"`, `"`+ca+`"`, 1))
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("secret\n"), 0o600)
	data = []byte(strings.Replace(string(data), `"/etc/courriel/ldap-password"`, `"`+pw+`"`, 1))
	cfg, err := ParseConfig("config.example.toml", data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MyHostname != "xoyize.xyz" || cfg.LDAP.SearchBase != "ou=mail,dc=xoyize,dc=xyz" ||
		cfg.LDAP.BindDN != "cn=mailAccountReader,ou=Manager,dc=xoyize,dc=xyz" || !cfg.LDAP.StartTLS ||
		!cfg.LDAP.RequireCert || cfg.Delivery.MaildirBase != "/var/vmail" || cfg.LDAP.BindPassword != "secret" ||
		cfg.Queue.MaxLifetime != 120*time.Hour || cfg.LDAP.Query.Mailbox.ResultFormat != "%s/mailbox/" ||
		cfg.SMTP.ConnectionLimitPerIP != 50 || cfg.SMTP.ConnectionLimit != 1000 || cfg.SMTP.BareNewline != "normalize" ||
		!cfg.SMTP.RejectUnauthSenderLoginMismatch {
		t.Errorf("example decoded to %+v", cfg)
	}
	if !cfg.SMTP.ForbidUnauthPipelining {
		t.Error("example: smtp.forbid_unauth_pipelining is not on")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n"
	tests := []struct {
		name, data string
		line       int
		key, msg   string
	}{
		{"unknown key", base + "bogus = 1\n", 8, "ldap.bogus", "unknown key"},
		{"unknown top key", "myhostnam = \"x\"\n", 1, "myhostnam", "unknown key"},
		{"wrong type", base + "pool_size = \"four\"\n", 8, "ldap.pool_size", "incompatible types"},
		{"syntax", base + "timeout = \n", 8, "", ""},
		{"missing myhostname", "[ldap]\nsearch_base = \"dc=x\"\n", 0, "myhostname", "required"},
		{"bad duration", base + "timeout = \"ten\"\n", 8, "ldap.timeout", "invalid duration"},
		{"bad scope", base + "scope = \"deep\"\n", 8, "ldap.scope", "scope"},
		{"negative LDAP timeout", base + "timeout = \"-1s\"\n", 8, "ldap.timeout", "out of range"},
		{"negative dial timeout", base + "dial_timeout = \"-2s\"\n", 8, "ldap.dial_timeout", "out of range"},
		{"negative cache TTL", base + "cache_ttl = \"-1m\"\n", 8, "ldap.cache_ttl", "out of range"},
		{"negative min_uid", base + "min_uid = -1\n", 8, "ldap.min_uid", "out of range"},
		// Not the default 100, as the directory took a zero: root.
		{"zero min_uid", base + "min_uid = 0\n", 8, "ldap.min_uid", "written as root"},
		{"negative delay warning", base + "[queue]\ndelay_warning = \"-4h\"\n", 9, "queue.delay_warning", "out of range"},
		{"proxy_interfaces not an address", base + "[queue]\nproxy_interfaces = [\"203.0.113.5\", \"nat.example\"]\n", 9, "queue.proxy_interfaces", "want an IP address"},
		{"bad filter", base + "[ldap.query.aliases]\nfilter = \"(mail=%s\"\n", 0, "ldap.query.aliases", "filter"},
		{"bad template", base + "[ldap.query.aliases]\nfilter = \"(mail=%x)\"\n", 0, "ldap.query.aliases", "%x"},
		{"bad url", base + "urls = [\"http://x\"]\n", 8, "ldap.urls", "scheme"},
		{"no tls", "myhostname = \"x.org\"\n[ldap]\nsearch_base = \"dc=x\"\n", 0, "tls.cert_file", "required"},
		{"bad listen", base + "[listen]\nsmtp = \"25\"\n", 9, "listen.smtp", "host:port"},
		{"bad per-IP limit", base + "[smtp]\nconnection_limit_per_ip = 0\n", 9, "smtp.connection_limit_per_ip", "out of range"},
		{"total under per-IP", base + "[smtp]\nconnection_limit_per_ip = 50\nconnection_limit = 20\n", 10, "smtp.connection_limit", "out of range"},
		{"bad IMAP per-user limit", base + "[imap]\nuser_ip_connection_limit = 0\n", 9, "imap.user_ip_connection_limit", "out of range"},
		{"IMAP total under per-IP", base + "[imap]\nconnection_limit_per_ip = 50\nconnection_limit = 20\n", 10, "imap.connection_limit", "out of range"},
		{"bad bare newline", base + "[smtp]\nbare_newline = \"strip\"\n", 9, "smtp.bare_newline", "normalize or reject"},
		{"bad policy", base + "[queue]\ntls_policy = \"maybe\"\n", 9, "queue.tls_policy", "verify"},
		{"bad domain policy", base + "[queue.tls_policies]\n\"example.net\" = \"dane\"\n", 0, "queue.tls_policies", "example.net"},
		{"DANE without resolver", base + "[queue]\ndane = true\n", 0, "queue.dnssec_resolver", "required"},
		{"dane_routes without dane", base + "[queue]\ndane_routes = true\n", 0, "queue.dane_routes", "needs dane"},
		{"ARC seal without a key", base + "[mailauth]\ninbound_checks = true\narc_seal_domain = \"x.org\"\n", 0, "mailauth.arc_seal_domain", "no active selector"},
		{"bad DNSSEC resolver", base + "[queue]\ndane = true\ndnssec_resolver = \"127.0.0.1\"\n", 0, "queue.dnssec_resolver", "host:port"},
		{"bad mynetworks", "mynetworks = [\"10.0.0.0/33\"]\n" + base, 1, "mynetworks", "not an address"},
		{"missing CA", strings.Replace(base, ca, "/nonexistent/CA.pem", 1), 7, "ldap.ca_file", "CA file"},
		{"unknown TLS listener", base + "[tls.listeners.pop3]\nmin_version = \"1.3\"\n", 8, "tls.listeners.pop3", "unknown listener"},
		{"TLS listener cert without key", base + "[tls.listeners.imaps]\ncert_file = \"/x\"\n", 0, "tls.listeners.imaps.cert_file", "together"},
		{"bad TLS min version", base + "[tls.listeners.imaps]\nmin_version = \"1.1\"\n", 0, "tls.listeners.imaps.min_version", "never offered"},
		{"ACME over http", "myhostname = \"x.org\"\n[ldap]\nsearch_base = \"dc=x\"\n[tls.acme]\ndirectory_url = \"http://ca/dir\"\ncache_dir = \"/var/lib/c\"\n", 0, "tls.acme.directory_url", "https"},
		{"ACME without cache", "myhostname = \"x.org\"\n[ldap]\nsearch_base = \"dc=x\"\n[tls.acme]\ndirectory_url = \"https://ca/dir\"\n", 0, "tls.acme.cache_dir", "required"},
		{"ACME and files", base + "[tls.acme]\ndirectory_url = \"https://ca/dir\"\ncache_dir = \"/var/lib/c\"\n", 0, "tls.cert_file", "not both"},
		// check-config in /etc/courriel found them, serve under systemd
		// (in /) did not.
		{"relative certificate", strings.Replace(base, `cert_file = "/c"`, `cert_file = "tls/fullchain.pem"`, 1), 3, "tls.cert_file", "absolute"},
		{"relative key", strings.Replace(base, `key_file = "/k"`, `key_file = "privkey.pem"`, 1), 4, "tls.key_file", "absolute"},
		{"relative listener key", base + "[tls.listeners.imaps]\ncert_file = \"/x\"\nkey_file = \"x.key\"\n", 0, "tls.listeners.imaps.key_file", "absolute"},
		{"relative maildir base", base + "[delivery]\nmaildir_base = \"vmail\"\n", 9, "delivery.maildir_base", "absolute"},
		{"bad trusted network", base + "[monitor]\ntrusted_networks = [\"localhost\"]\n", 9, "monitor.trusted_networks", "not an address"},
		{"unknown sync mode", base + "[delivery]\nsync = \"fsync\"\n", 9, "delivery.sync", "auto, file, filesystem or journal"},
		{"milter address", base + "[[milter]]\naddress = \"tcp:127.0.0.1:11332\"\n", 0, "milter[0].address", "inet:host:port"},
		{"milter unix relative", base + "[[milter]]\naddress = \"unix:milter.sock\"\n", 0, "milter[0].address", "absolute"},
		{"milter listener", base + "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\nlisteners = [\"imaps\"]\n", 0, "milter[0].listeners", "smtp, submission or submissions"},
		{"milter action", base + "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\ndefault_action = \"discard\"\n", 0, "milter[0].default_action", "tempfail, accept or reject"},
		{"milter timeout", base + "[[milter]]\naddress = \"inet:127.0.0.1:11332\"\ncommand_timeout = \"-1s\"\n", 0, "milter[0].command_timeout", "out of range"},
	}
	for _, tt := range tests {
		_, err := ParseConfig("/etc/courriel/config.toml", []byte(tt.data))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want a ConfigError", tt.name, err)
			continue
		}
		if ce.File != "/etc/courriel/config.toml" || (tt.line != 0 && ce.Line != tt.line) ||
			(tt.key != "" && ce.Key != tt.key) || !strings.Contains(ce.Error(), tt.msg) {
			t.Errorf("%s: %q (line %d key %q); want line %d key %q containing %q", tt.name, ce.Error(), ce.Line, ce.Key, tt.line, tt.key, tt.msg)
		}
	}
	// ACME instead of certificate files is a complete TLS configuration.
	if _, err := ParseConfig("c.toml", []byte("myhostname = \"x.org\"\n[ldap]\nsearch_base = \"dc=x\"\n[tls.acme]\ndirectory_url = \"https://ca/dir\"\ncache_dir = \"/var/lib/c\"\n")); err != nil {
		t.Errorf("ACME config refused: %v", err)
	}
	if _, err := LoadConfig("/nonexistent/config.toml"); err == nil || !strings.Contains(err.Error(), "/nonexistent/config.toml") {
		t.Errorf("unreadable file: %v", err)
	}
}

// monitor.trusted_networks: loopback when absent, exactly the list when set,
// nobody when set empty.
func TestTrustedNetworks(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n"
	for _, tc := range []struct {
		name, extra string
		want        string
	}{
		{"default", "", "[127.0.0.0/8 ::1/128]"},
		{"set", "[monitor]\ntrusted_networks = [\"192.0.2.7\", \"10.0.0.0/8\"]\n", "[192.0.2.7/32 10.0.0.0/8]"},
		{"empty", "[monitor]\ntrusted_networks = []\n", "[]"},
	} {
		cfg, err := ParseConfig("c.toml", []byte(base+tc.extra))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p, err := cfg.TrustedNetworks()
		if err != nil || p == nil || fmt.Sprint(p) != tc.want {
			t.Errorf("%s: %v (nil %v), %v; want %s", tc.name, p, p == nil, err, tc.want)
		}
	}
}

// ldap.min_uid: 100 when absent, as Postfix's virtual_minimum_uid, and
// the value when set; an explicit 0 is refused (TestConfigErrors), never
// taken for the default.
func TestConfigMinUID(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n"
	for extra, want := range map[string]int{"": 100, "min_uid = 1\n": 1, "min_uid = 5000\n": 5000} {
		cfg, err := ParseConfig("c.toml", []byte(base+extra))
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := cfg.LDAP.MinUID; got != want {
			t.Errorf("%q: min_uid %d, want %d", extra, got, want)
		}
	}
}

// smtp.reject_unauth_sender_login_mismatch is on unless turned off, as
// the seed's reject_sender_login_mismatch.
func TestConfigUnauthSenderLoginMismatch(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n"
	for extra, want := range map[string]bool{
		"": true,
		"[smtp]\nreject_unauth_sender_login_mismatch = false\n": false,
		"[smtp]\nreject_unauth_sender_login_mismatch = true\n":  true,
	} {
		cfg, err := ParseConfig("c.toml", []byte(base+extra))
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := cfg.SMTP.RejectUnauthSenderLoginMismatch; got != want {
			t.Errorf("%q: %v, want %v", extra, got, want)
		}
	}
}

// sieve.extensions: Pigeonhole's default set when absent, its
// sieve_extensions syntax and meaning when set (relative, absolute, none).
func TestConfigSieveExtensions(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	base := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n"
	for extra, want := range map[string]struct {
		editheader, fileinto, spamtest bool
	}{
		"": {false, true, false},
		"[sieve]\nextensions = \"+editheader +spamtest\"\n": {true, true, true},
		"[sieve]\nextensions = \"-fileinto\"\n":             {false, false, false},
		"[sieve]\nextensions = \"fileinto editheader\"\n":   {true, true, false},
		"[sieve]\nextensions = \"\"\n":                      {false, false, false},
	} {
		cfg, err := ParseConfig("c.toml", []byte(base+extra))
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		x := cfg.Sieve.exts
		if got := (struct{ editheader, fileinto, spamtest bool }{x.Enabled("editheader"), x.Enabled("fileinto"), x.Enabled("spamtest")}); got != want {
			t.Errorf("%q: editheader, fileinto, spamtest = %v, want %v", extra, got, want)
		}
	}
	// global_extensions: Pigeonhole's sieve_global_extensions, relative
	// to none (not to the default set); unset, none.
	for extra, want := range map[string]string{
		"": "",
		"[sieve]\nglobal_extensions = \"+spamtest +editheader\"\n": "spamtest editheader",
		"[sieve]\nglobal_extensions = \"editheader -fileinto\"\n":  "editheader",
	} {
		cfg, err := ParseConfig("c.toml", []byte(base+extra))
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		if got := cfg.Sieve.gexts.String(); got != want {
			t.Errorf("%q: global extensions %q, want %q", extra, got, want)
		}
	}
	// A name courriel does not know, or does not implement, is ignored
	// with Pigeonhole's warning (logged at start, shown by check-config),
	// never a refused start.
	cfg, err := ParseConfig("c.toml", []byte(base+"[sieve]\nextensions = \"+editheadr +notify +spamtest\"\nglobal_extensions = \"spamtets editheader\"\n"))
	if err != nil {
		t.Fatalf("unknown names refused: %v", err)
	}
	if x := cfg.Sieve.exts; !x.Enabled("spamtest") || x.Enabled("editheader") || !x.Enabled("fileinto") {
		t.Errorf("extensions with unknown names: %s", x)
	}
	if got := cfg.Sieve.gexts.String(); got != "editheader" {
		t.Errorf("global extensions with an unknown name: %q, want \"editheader\"", got)
	}
	want := []keyWarning{
		{"sieve.extensions", "ignored unknown extension 'editheadr' while configuring available extensions"},
		{"sieve.extensions", "ignored extension 'notify' while configuring available extensions: Pigeonhole implements it, courriel does not (scripts requiring it do not compile)"},
		{"sieve.global_extensions", "ignored unknown extension 'spamtets' while configuring available extensions"},
	}
	if !slices.Equal(cfg.Sieve.warnings, want) {
		t.Errorf("warnings %q, want %q", cfg.Sieve.warnings, want)
	}
}

// [[milter]] tables go to the listeners they name, in order; a listener
// without any gets no chain.
func TestConfigMilters(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t).CertFile()
	data := "myhostname = \"mx.example.org\"\n[tls]\ncert_file = \"/c\"\nkey_file = \"/k\"\n[ldap]\nsearch_base = \"ou=mail,dc=example,dc=org\"\nca_file = \"" + ca + "\"\n" +
		"[[milter]]\naddress = \"inet:127.0.0.1:11332\"\n" +
		"[[milter]]\naddress = \"unix:/run/clamav/clamav-milter.ctl\"\nlisteners = [\"smtp\", \"submission\"]\ndefault_action = \"accept\"\ncontent_timeout = \"2m\"\n"
	cfg, err := ParseConfig("c.toml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	for listener, want := range map[string]int{"smtp": 2, "submission": 1, "submissions": 0} {
		c, err := cfg.milterChain(listener, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if c.Len() != want {
			t.Errorf("%s: %d milters, want %d", listener, c.Len(), want)
		}
	}
	if m := cfg.Milters[1]; m.ContentTimeout != 2*time.Minute || m.DefaultAction != "accept" {
		t.Errorf("second milter %+v", m)
	}
}

// A change of any [[milter]] is seen by SIGHUP (and applies at restart).
func TestConfigDiffMilters(t *testing.T) {
	t.Parallel()
	a := defaultConfig()
	a.Milters = []MilterConfig{{Address: "inet:127.0.0.1:11332"}, {Address: "unix:/run/clamav/clamav-milter.ctl"}}
	b := a
	b.Milters = []MilterConfig{{Address: "inet:127.0.0.1:11333"}, a.Milters[1]}
	if got := configDiff(&a, &b); !slices.Equal(got, []string{"milter[0].address"}) {
		t.Errorf("diff %v", got)
	}
}
