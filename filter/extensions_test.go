package filter

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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
// (Options.Extensions), the same script reads rspamd's verdict.
func TestDisabledExtensionKeepsInInbox(t *testing.T) {
	src := `require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto", "mailbox"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto :create "Junk"; }`
	msg := "From: a@z.z\r\nSubject: offer\r\nX-Spamd-Result: default: False [12.00 / 15.00]; BAYES_SPAM(5.00)\r\n\r\nbuy\r\n"
	enabled, err := sieve.ParseExtensions("+spamtest")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		exts        sieve.Extensions
		inbox, junk int
		log         string
	}{
		{"default", sieve.Extensions{}, 1, 0,
			"msg_id=m1: ~/.dovecot.sieve: compile error: line 1, column 9: require command: unknown Sieve capability `spamtest': message kept in INBOX\n"},
		{"+spamtest", enabled, 0, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			home := filepath.Join(base, "u")
			if err := os.MkdirAll(home, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
			if err != nil {
				t.Fatal(err)
			}
			f, err := New(Options{Extensions: tc.exts, Store: store, Directory: fakeDir{"u@x.y": {Home: home}}})
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
			} else if !strings.HasSuffix(string(log), tc.log) {
				t.Errorf("user log %q (%v), want %q", log, err, tc.log)
			}
		})
	}
}
