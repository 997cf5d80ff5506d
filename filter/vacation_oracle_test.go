package filter

import (
	"bytes"
	"context"
	"fmt"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/directory"
)

// TestVacationReplyOracle compares the vacation reply a delivery queues
// with the one Pigeonhole's sieve-test would send (-e prints it): whether
// there is one, its From (the user's address the message came to: the
// recipient, the original recipient when configured, the :addresses,
// the entry's address as sieve_user_email, found in To, then Cc, Bcc,
// Resent-*) and its X-Auto-Response-Suppress.
func TestVacationReplyOracle(t *testing.T) {
	bin, err := exec.LookPath("sieve-test")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sieve-test (Debian package dovecot-sieve) is missing; CI must have it")
		}
		t.Skip("sieve-test (Debian package dovecot-sieve) is not installed")
	}
	const rcpt = "alice@x.y"
	for _, c := range []struct {
		name      string
		addresses string // the script's :addresses, "" for none
		entry     string // the entry's address (sieve_user_email), "" for none
		origTo    string
		useOrig   bool
		header    string
	}{
		{name: "to the recipient", header: "To: alice@x.y\r\n"},
		{name: "to an :addresses", addresses: "sales@hosted-domain.com", header: "To: sales@hosted-domain.com\r\n"},
		{name: ":addresses in another case", addresses: "sales@hosted-domain.com", header: "To: Sales <SALES@Hosted-Domain.COM>\r\n"},
		{name: "to the entry's address", entry: "bob@example.org", header: "To: bob@example.org\r\n"},
		{name: "To before Cc", entry: "bob@example.org", header: "To: bob@example.org\r\nCc: alice@x.y\r\n"},
		{name: "recipient before :addresses", addresses: "sales@hosted-domain.com", header: "To: sales@hosted-domain.com, alice@x.y\r\n"},
		{name: ":addresses before the entry's", addresses: "sales@hosted-domain.com", entry: "bob@example.org", header: "To: bob@example.org, sales@hosted-domain.com\r\n"},
		{name: "cc", addresses: "sales@hosted-domain.com", header: "To: x@z.z\r\nCc: sales@hosted-domain.com\r\n"},
		{name: "resent-to", addresses: "sales@hosted-domain.com", header: "To: x@z.z\r\nResent-To: sales@hosted-domain.com\r\n"},
		{name: "original recipient used", origTo: "team@x.y", useOrig: true, header: "To: team@x.y\r\n"},
		{name: "original recipient not used", origTo: "team@x.y", header: "To: team@x.y\r\n"},
		{name: "none of them", addresses: "sales@hosted-domain.com", header: "To: x@z.z\r\n"},
		{name: "suppress OOF", header: "To: alice@x.y\r\nX-Auto-Response-Suppress: DR,  oof \r\n"},
		{name: "suppress All", header: "To: alice@x.y\r\nX-Auto-Response-Suppress: all\r\n"},
		{name: "suppress in a second field", header: "To: alice@x.y\r\nX-Auto-Response-Suppress: RN\r\nX-Auto-Response-Suppress: NRN, OOF\r\n"},
		{name: "suppress others", header: "To: alice@x.y\r\nX-Auto-Response-Suppress: DR, RN, NRN, AutoReply\r\n"},
		{name: "suppress no token", header: "To: alice@x.y\r\nX-Auto-Response-Suppress: NoOOF, All OOF\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			script := "require \"vacation\";\nvacation "
			if c.addresses != "" {
				script += `:addresses ["` + c.addresses + `"] `
			}
			script += `"away";` + "\n"
			msg := "From: bob@z.z\r\n" + c.header + "Subject: hi\r\nMessage-ID: <m1@z.z>\r\n\r\nbody\r\n"

			// theirs
			dir, err := os.MkdirTemp("", "vacation-oracle")
			if err != nil {
				t.Fatal(err)
			}
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o777)
			uid, gid := os.Getuid(), os.Getgid()
			if uid == 0 {
				uid, gid = 65534, 65534
			}
			conf := fmt.Sprintf("mail_uid = %d\nmail_gid = %d\nfirst_valid_uid = 0\nfirst_valid_gid = 0\nmail_location = maildir:%s/mail\npostmaster_address = postmaster@example.org\nplugin {\n", uid, gid, dir)
			if c.entry != "" {
				conf += "  sieve_user_email = " + c.entry + "\n"
			}
			if c.useOrig {
				conf += "  sieve_vacation_use_original_recipient = yes\n"
			}
			conf += "}\n"
			for name, data := range map[string]string{"dovecot.conf": conf, "v.sieve": script, "m.eml": msg} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			orig := cmpOr(c.origTo, rcpt)
			out, _ := exec.Command(bin, "-c", filepath.Join(dir, "dovecot.conf"), "-e", "-f", "bob@z.z", "-a", orig, "-r", rcpt,
				filepath.Join(dir, "v.sieve"), filepath.Join(dir, "m.eml")).CombinedOutput()
			theirs := ""
			if _, reply, ok := strings.Cut(string(out), "sending message from <>:\n"); ok {
				theirs = reply
			}

			// ours
			home := t.TempDir()
			os.WriteFile(home+"/.dovecot.sieve", []byte(script), 0o644)
			mb := &directory.Mailbox{Home: home}
			if c.entry != "" {
				mb.Addresses = []string{c.entry}
			}
			q := &recordingQueue{}
			store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: home})
			f, err := New(Options{Store: store, Directory: fakeDir{rcpt: mb}, Outbound: q, Hostname: "mx.x.y", VacationUseOriginalRecipient: c.useOrig})
			if err != nil {
				t.Fatal(err)
			}
			m := &delivery.Message{ID: "m", From: "bob@z.z", Arrived: time.Now(), Body: bytes.NewReader([]byte(msg))}
			if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: rcpt, OrigTo: c.origTo, Maildir: home + "/mailbox/"}}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			ours := ""
			if len(q.data) > 0 {
				ours = q.data[0]
			}

			if (ours == "") != (theirs == "") {
				t.Fatalf("a reply: ours %v, sieve-test's %v\nours:\n%s\nsieve-test:\n%s", ours != "", theirs != "", ours, out)
			}
			if ours == "" {
				return
			}
			for _, field := range []string{"From", "X-Auto-Response-Suppress"} {
				if o, th := replyField(t, ours, field), replyField(t, theirs, field); o != th {
					t.Errorf("%s: ours %q, sieve-test's %q\nours:\n%s\nsieve-test:\n%s", field, o, th, ours, out)
				}
			}
		})
	}
}

// replyField is a reply's field, an address field by its address.
func replyField(t *testing.T, reply, name string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(strings.ReplaceAll(reply, "\r\n", "\n")))
	if err != nil {
		t.Fatalf("reply: %v\n%s", err, reply)
	}
	v := m.Header.Get(name)
	if name == "From" {
		a, err := mail.ParseAddress(v)
		if err != nil {
			t.Fatalf("From %q: %v", v, err)
		}
		return a.Address
	}
	return v
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
