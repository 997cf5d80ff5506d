package filter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// A user's script requiring an extension Pigeonhole leaves off by default
// (spamtest) does not compile under the default set, as it would not
// under Dovecot: the message is kept in INBOX and ~/.dovecot.sieve.log
// says why in Pigeonhole's words. Enabled as sieve_extensions would
// (Options.Extensions), the same script reads rspamd's verdict. Made
// global (Pigeonhole's sieve_global_extensions, the common admin script
// filing rspamd's spam into Junk), it runs as sieve_before, and the same
// script as the user's does not compile ("restricted to global scripts",
// as dovecot-lda says).
func TestExtensionSets(t *testing.T) {
	src := `require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto", "mailbox"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto :create "Junk"; }`
	msg := "From: a@z.z\r\nSubject: offer\r\nX-Spamd-Result: default: False [12.00 / 15.00]; BAYES_SPAM(5.00)\r\n\r\nbuy\r\n"
	enabled, warns := sieve.ParseExtensions("+spamtest")
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	global, warns := sieve.ParseGlobalExtensions("spamtest")
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	for _, tc := range []struct {
		name        string
		exts        sieve.Extensions
		global      sieve.GlobalExtensions
		admin       bool // the script is sieve_before, not the user's
		inbox, junk int
		log         string
	}{
		{"default", sieve.Extensions{}, sieve.GlobalExtensions{}, false, 1, 0,
			"msg_id=m1: ~/.dovecot.sieve: compile error: line 1, column 9: require command: unknown Sieve capability `spamtest': message kept in INBOX\n" +
				"msg_id=m1: ~/.dovecot.sieve: compile error: line 2, column 4: test spamtest needs require \"spamtest\"\n"},
		{"+spamtest", enabled, sieve.GlobalExtensions{}, false, 0, 1, ""},
		{"global spamtest, before", sieve.Extensions{}, global, true, 0, 1, ""},
		{"global spamtest, user", sieve.Extensions{}, global, false, 1, 0,
			"msg_id=m1: ~/.dovecot.sieve: compile error: line 1, column 9: require command: failed to load Sieve capability `spamtest': its use is restricted to global scripts: message kept in INBOX\n" +
				"msg_id=m1: ~/.dovecot.sieve: compile error: line 2, column 4: test spamtest needs require \"spamtest\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			home := filepath.Join(base, "u")
			if err := os.MkdirAll(home, 0o755); err != nil {
				t.Fatal(err)
			}
			o := Options{Extensions: tc.exts, GlobalExtensions: tc.global, Directory: fakeDir{"u@x.y": {Home: home}}}
			script := filepath.Join(home, ".dovecot.sieve")
			if tc.admin {
				script = filepath.Join(base, "before.sieve")
				o.Before = []string{script}
			}
			if err := os.WriteFile(script, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			var err error
			if o.Store, err = delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base}); err != nil {
				t.Fatal(err)
			}
			f, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			m := &delivery.Message{ID: "m1", From: "a@z.z", Body: bytes.NewReader([]byte(msg)), Arrived: time.Now()}
			r := delivery.Recipient{Address: "u@x.y", Maildir: home + "/mailbox/"}
			if err := f.Deliver(context.Background(), m, []delivery.Recipient{r})[0]; err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if in, junk := stored(home, ""), stored(home, ".Junk"); in != tc.inbox || junk != tc.junk {
				t.Errorf("INBOX %d, Junk %d; want %d, %d", in, junk, tc.inbox, tc.junk)
			}
			log, err := os.ReadFile(filepath.Join(home, UserLogName))
			if tc.log == "" {
				if err == nil {
					t.Errorf("user log %q, want none", log)
				}
			} else if !strings.HasSuffix(regexp.MustCompile(`(?m)^\S+ msg_id=`).ReplaceAllString(string(log), "msg_id="), tc.log) {
				t.Errorf("user log %q (%v), want %q", log, err, tc.log)
			}
		})
	}
}

// A file compiled as the admin's script is compiled again when it is a
// user's: the cache does not hand the user the global compile.
func TestGlobalExtensionsCacheKeepsApart(t *testing.T) {
	home := t.TempDir()
	p := filepath.Join(home, ActiveScriptName)
	if err := os.WriteFile(p, []byte(`require "editheader"; addheader "X-A" "b";`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newScriptCache(sieve.Limits{}, sieve.Extensions{}, 1<<20, "", 100)
	c.gexts, _ = sieve.ParseGlobalExtensions("editheader")
	if s := c.adminScript(p); s.err != nil {
		t.Fatalf("admin: %v", s.err)
	}
	s, err := c.userScript(home)
	if err != nil || s == nil || s.err == nil || !strings.Contains(s.err.Error(), "restricted to global scripts") {
		t.Fatalf("user: %v, %v", s, err)
	}
	if s := c.adminScript(p); s.err != nil {
		t.Fatalf("admin again: %v", s.err)
	}
}
