package filter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/quotedprintable"
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
		from      string // the message's From, "bob@z.z" when ""
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
		{name: "sender's display name", from: "Bob Martin <bob@z.z>", header: "To: alice@x.y\r\n"},
		{name: "sender's name encoded", from: "=?utf-8?q?Andr=C3=A9_B=C3=A9zier?= <Bob@Z.z>", header: "To: alice@x.y\r\n"},
		{name: "From not the sender", from: "Carol <carol@z.z>", header: "To: alice@x.y\r\n"},
		{name: "Sender before From", from: "Bob Martin <bob@z.z>", header: "Sender: \"Martin, Bob\" <bob@z.z>\r\nTo: alice@x.y\r\n"},
		{name: "Resent-From", from: "Carol <carol@z.z>", header: "Resent-From: Bob the Resender <bob@z.z>\r\nTo: alice@x.y\r\n"},
		{name: "sender in a list", from: "Carol <carol@z.z>, Bob M <bob@z.z>", header: "To: alice@x.y\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			script := "require \"vacation\";\nvacation "
			if c.addresses != "" {
				script += `:addresses ["` + c.addresses + `"] `
			}
			script += "\"Absent — de retour lundi.\r\nÀ bientôt\";\n"
			msg := "From: " + cmpOr(c.from, "bob@z.z") + "\r\n" + c.header + "Subject: hi\r\nMessage-ID: <m1@z.z>\r\n\r\nbody\r\n"

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
				// The log (stderr, in the same output) follows it.
				theirs, _, _ = strings.Cut(reply, "\nsieve-test: ")
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
			for _, field := range []string{"From", "To", "X-Auto-Response-Suppress", "Auto-Submitted", "Precedence", "In-Reply-To", "References"} {
				if o, th := replyField(t, ours, field), replyField(t, theirs, field); o != th {
					t.Errorf("%s: ours %q, sieve-test's %q\nours:\n%s\nsieve-test:\n%s", field, o, th, ours, out)
				}
			}
			if o, th := replyField(t, ours, "X-Sieve") != "", replyField(t, theirs, "X-Sieve") != ""; o != th {
				t.Errorf("an X-Sieve field: ours %v, sieve-test's %v", o, th)
			}
			// What the reader sees: the reason as text, whichever
			// transfer encoding carries it (ours quoted-printable,
			// Pigeonhole's 8bit).
			if o, th := replyText(t, ours), replyText(t, theirs); o != th {
				t.Errorf("text: ours %q, sieve-test's %q", o, th)
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
	switch name {
	case "From":
		a, err := mail.ParseAddress(v)
		if err != nil {
			t.Fatalf("From %q: %v", v, err)
		}
		return a.Address
	case "To":
		// The display name decoded, the address as written: Pigeonhole
		// keeps the name as the message had it, encoded words
		// included, and writes no angle brackets for a bare address.
		a, err := mail.ParseAddress(v)
		if err != nil {
			t.Fatalf("To %q: %v", v, err)
		}
		return a.Name + " <" + a.Address + ">"
	}
	return v
}

// replyText is a reply's body decoded as a mail reader decodes it.
func replyText(t *testing.T, reply string) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(strings.ReplaceAll(reply, "\r\n", "\n")))
	if err != nil {
		t.Fatalf("reply: %v\n%s", err, reply)
	}
	var body io.Reader = m.Body
	if strings.EqualFold(m.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	if ct := m.Header.Get("Content-Type"); !strings.Contains(strings.ToLower(ct), "charset=utf-8") {
		t.Errorf("Content-Type %q: not UTF-8 text", ct)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimRight(strings.ReplaceAll(string(text), "\r\n", "\n"), "\r\n")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
