package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// installScript makes src user's active script as Pigeonhole and
// ManageSieve leave it: ~/sieve/NAME.sieve and the ~/.dovecot.sieve
// symlink ("sieve/NAME.sieve").
func installScript(t *testing.T, s *server, user, name, src string) {
	installScriptTB(t, s, user, name, src)
}

func mkdirAll(p string) error { return os.MkdirAll(p, 0o755) }

func writeFile(p, data string) error { return os.WriteFile(p, []byte(data), 0o644) }

// symlink replaces link by a symlink to target.
func symlink(target, link string) error {
	os.Remove(link)
	return os.Symlink(target, link)
}

func mustTB(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

const aliceScript = `require ["fileinto", "mailbox", "imap4flags", "reject"];
if header :contains "subject" "work" {
  addflag "\\Flagged";
  addflag "$Important";
  fileinto :create "Work.Été";
  stop;
}
if header :contains "subject" "twice" {
  fileinto :create "A";
  fileinto :create "B";
  stop;
}
if header :contains "subject" "missing" {
  fileinto "Nowhere";
  stop;
}
if header :contains "subject" "badname" {
  fileinto :create "x/../../y";
  stop;
}
if header :contains "subject" "rejectme" {
  reject "Go away, I am busy";
  stop;
}
if header :contains "subject" "fwd" {
  redirect "friend@foreign.example";
  stop;
}
if header :contains "subject" "dropme" {
  discard;
  stop;
}
`

// TestSieveDelivery: swaks delivers, alice's script decides: the folder
// it chose (created with :create, modified UTF-7, flags in the file name,
// read back by imaplib), several fileinto, a missing or bad folder keeps
// to INBOX, reject answers 550 at DATA and bounces in the queued case,
// redirect leaves through the queue and a loop stops; bob's broken script
// keeps to INBOX and says why in ~/.dovecot.sieve.log.
func TestSieveDelivery(t *testing.T) {
	requireTool(t, "swaks")
	python := requireTool(t, "python3")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n\"example.net\" = %q\n", k.addr, k.addr)))
	installScript(t, s, "alice", "main", aliceScript)
	installScript(t, s, "bob", "broken", "require \"fileinto\";\nif header :is \"subject\" \"x\" {\n  fileinto \"A\"\n}\n")

	send := func(to, subject string, args ...string) string {
		t.Helper()
		return swaksMsg(t, s, to, subject, "body of "+subject, args...)
	}
	mustAccept := func(out string) {
		t.Helper()
		if !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
	}

	// fileinto :create with flags: .Work.&AMk-t&AOk- (Dovecot's name for
	// "Work/Été"), in cur/ with F and the keyword's letter.
	mustAccept(send("alice@xoyize.xyz", "work report"))
	folder := ".Work.&AMk-t&AOk-"
	cur := s.maildirFiles(t, "alice", folder+"/cur")
	if len(cur) != 1 || !strings.HasSuffix(cur[0], ":2,Fa") {
		t.Fatalf("%s/cur holds %v, want one file ending :2,Fa", folder, cur)
	}
	kw, err := os.ReadFile(filepath.Join(s.vmail, "alice", "mailbox", folder, "dovecot-keywords"))
	if err != nil || string(kw) != "0 $Important\n" {
		t.Errorf("dovecot-keywords %q (%v), want \"0 $Important\\n\"", kw, err)
	}
	if _, err := os.Stat(filepath.Join(s.vmail, "alice", "mailbox", folder, "maildirfolder")); err != nil {
		t.Errorf("maildirfolder marker: %v", err)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 0 {
		t.Errorf("INBOX holds %d messages, want 0 (the script filed it)", n)
	}

	// Several fileinto: one copy in each folder, none in INBOX.
	mustAccept(send("alice@xoyize.xyz", "twice"))
	if countWith(t, s, "alice", ".A/new", "body of twice") != 1 || countWith(t, s, "alice", ".B/new", "body of twice") != 1 ||
		countWith(t, s, "alice", "new", "body of twice") != 0 {
		t.Error("two fileinto: want one copy in .A and one in .B, none in INBOX")
	}

	// A folder missing without :create, or a bad name: INBOX.
	mustAccept(send("alice@xoyize.xyz", "missing folder"))
	findMessage(t, s, "alice", "new", "body of missing folder")
	if _, err := os.Stat(filepath.Join(s.vmail, "alice", "mailbox", ".Nowhere")); !os.IsNotExist(err) {
		t.Errorf(".Nowhere was created: %v", err)
	}
	mustAccept(send("alice@xoyize.xyz", "badname"))
	findMessage(t, s, "alice", "new", "body of badname")
	if !waitLog(s, "folder does not exist") && !strings.Contains(s.logs(), "does not exist") {
		t.Error("no log line for the missing folder")
	}

	// discard: accepted, stored nowhere.
	mustAccept(send("alice@xoyize.xyz", "dropme"))

	// reject, the only copy at DATA: 550 5.7.1 with the script's text.
	out := send("alice@xoyize.xyz", "rejectme")
	if !regexp.MustCompile(`<\*\* +550 5\.7\.1 Go away, I am busy`).MatchString(out) {
		t.Errorf("reject at DATA: want 550 5.7.1 with the reason:\n%s", out)
	}
	if countWith(t, s, "alice", "new", "body of rejectme") != 0 {
		t.Error("a rejected message was stored")
	}

	// reject among several copies (queued): 250, bob's copy stored, and a
	// DSN to the sender (example.net: the sink) with the reason.
	mustAccept(send("alice@xoyize.xyz,bob@xoyize.xyz", "rejectme queued"))
	findMessage(t, s, "bob", "new", "body of rejectme queued")
	waitFor(t, "the rejection DSN", func() bool {
		for _, m := range k.messages() {
			if m.from == "" && strings.Contains(m.data, "Go away, I am busy") && strings.Contains(m.data, "multipart/report") {
				return true
			}
		}
		return false
	})

	// redirect through the queue, marked; the same message coming back
	// marked for alice is not redirected again but kept.
	before := len(k.messages())
	mustAccept(send("alice@xoyize.xyz", "fwd me"))
	var fwd sunk
	waitFor(t, "the redirect", func() bool {
		for _, m := range k.messages() {
			if strings.Contains(m.data, "body of fwd me") {
				fwd = m
				return true
			}
		}
		return false
	})
	if len(fwd.to) != 1 || fwd.to[0] != "friend@foreign.example" || fwd.from != "someone@example.net" ||
		!strings.Contains(fwd.data, "X-Sieve-Redirected-From: alice@xoyize.xyz") {
		t.Errorf("redirect: %+v", fwd)
	}
	if countWith(t, s, "alice", "new", "body of fwd me") != 0 {
		t.Error("a redirected message was also kept")
	}
	mustAccept(send("alice@xoyize.xyz", "fwd loop", "--add-header", "X-Sieve-Redirected-From: alice@xoyize.xyz"))
	findMessage(t, s, "alice", "new", "body of fwd loop")
	for _, m := range k.messages()[before:] {
		if strings.Contains(m.data, "body of fwd loop") {
			t.Error("a looping message was redirected again")
		}
	}

	// bob's script does not compile: INBOX, and the line in his log.
	mustAccept(send("bob@xoyize.xyz", "x"))
	findMessage(t, s, "bob", "new", "body of x")
	blog, err := os.ReadFile(filepath.Join(s.vmail, "bob", ".dovecot.sieve.log"))
	if err != nil || !strings.Contains(string(blog), "~/sieve/broken.sieve") || !strings.Contains(string(blog), "line 4") {
		t.Errorf("~bob/.dovecot.sieve.log: %q (%v), want the script and its line 4", blog, err)
	}

	// What an IMAP client reads back: the folder, its flags.
	script := fmt.Sprintf(`
import imaplib, ssl
ctx = ssl.create_default_context(cafile=%q)
m = imaplib.IMAP4_SSL("localhost", %s, ssl_context=ctx)
m.login("alice", %q)
for l in m.list()[1]: print("LIST", l.decode())
typ, data = m.select('"Work.&AMk-t&AOk-"')
print("SELECT", typ, data[0].decode())
typ, data = m.fetch("1", "(FLAGS BODY.PEEK[TEXT])")
print("FETCH", data[0][0].decode())
m.logout()
`, s.ca.CertFile(), port(s.IMAPS), testenv.AlicePassword)
	out, err = run(t, script, python, "-")
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	for _, want := range []string{`"Work.&AMk-t&AOk-"`, "SELECT OK 1", `\Flagged`, "$Important"} {
		if !strings.Contains(out, want) {
			t.Errorf("imaplib output lacks %q:\n%s", want, out)
		}
	}

	// And Dovecot itself, on the same maildir (last: it takes the files).
	testenv.NeedDovecot(t)
	out = testenv.RunDovecot(t, filepath.Join(s.vmail, "alice", "mailbox"), "",
		"a LIST \"\" *\r\nb SELECT \"Work.&AMk-t&AOk-\"\r\nc FETCH 1 (FLAGS)\r\nd STATUS A (MESSAGES)\r\ne LOGOUT\r\n")
	for _, want := range []string{`"." Work.&AMk-t&AOk-`, "* 1 EXISTS", `* 1 FETCH (FLAGS (\Flagged $Important))`, "STATUS A (MESSAGES 1)", `"." B`} {
		if !strings.Contains(out, want) {
			t.Errorf("Dovecot's answer lacks %q:\n%s", want, out)
		}
	}
}

// TestSieveVacation: a vacation reply goes out once per sender within
// :days, never to a list, an auto-reply or the null sender.
func TestSieveVacation(t *testing.T) {
	const script = `require ["vacation"];
vacation :days 7 :subject "Away" "I am away until Monday.";
`
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"example.net\" = %q\n", k.addr)))
	installScript(t, s, "alice", "away", script)
	replies := func() int {
		n := 0
		for _, m := range k.messages() {
			if strings.Contains(m.data, "I am away until Monday") {
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		subject string
		args    []string
	}{
		{"first", []string{"--header", "To: alice@xoyize.xyz"}},
		{"second", []string{"--header", "To: alice@xoyize.xyz"}},
		{"list", []string{"--from", "other@example.net", "--header", "To: alice@xoyize.xyz", "--add-header", "List-Id: <l.example.net>"}},
		{"auto", []string{"--from", "third@example.net", "--header", "To: alice@xoyize.xyz", "--add-header", "Auto-Submitted: auto-replied"}},
		{"null", []string{"--from", "<>", "--header", "To: alice@xoyize.xyz"}},
		{"bcc", []string{"--from", "fourth@example.net", "--header", "To: someone@else.example"}},
	} {
		out := swaksMsg(t, s, "alice@xoyize.xyz", c.subject, "body "+c.subject, c.args...)
		if !accepted(out) {
			t.Fatalf("%s refused:\n%s", c.subject, out)
		}
		findMessage(t, s, "alice", "new", "body "+c.subject)
	}
	// Every message's decision is logged (queued or not sent, and why);
	// then every queued reply reaches the sink.
	waitFor(t, "a vacation decision for each message", func() bool { return strings.Count(s.logs(), `msg="sieve: vacation `) >= 6 })
	queued := strings.Count(s.logs(), `msg="sieve: vacation reply queued"`)
	waitFor(t, "the queued replies", func() bool { return replies() >= queued })
	if queued != 1 || replies() != 1 {
		t.Errorf("%d vacation replies queued, %d received; want 1 (once per sender per :days; none to a list, an auto-reply, <> or a Bcc)", queued, replies())
	}
	for _, m := range k.messages() {
		if strings.Contains(m.data, "I am away") && (m.from != "" || len(m.to) != 1 || m.to[0] != "someone@example.net" ||
			!strings.Contains(m.data, "Auto-Submitted: auto-replied") || !strings.Contains(m.data, "Subject: Away")) {
			t.Errorf("vacation reply: %+v", m)
		}
	}
}

// TestSieveAdminScripts: [sieve] before and after run around the user's
// script as Pigeonhole's sieve_before/sieve_after: a before script that
// files the message ends the sequence; otherwise the user's script and the
// after script run, the after script's flag landing on the kept copy.
func TestSieveAdminScripts(t *testing.T) {
	requireTool(t, "swaks")
	dir := t.TempDir()
	before, after := filepath.Join(dir, "before.sieve"), filepath.Join(dir, "after.sieve")
	mustTB(t, writeFile(before, `require ["fileinto", "mailbox"];
if header :contains "X-Spam" "Yes" { fileinto :create "Spam"; }
`))
	mustTB(t, writeFile(after, `require ["imap4flags"];
addflag "$Checked";
`))
	s := startServer(t, withTOML(fmt.Sprintf("[sieve]\nbefore = [%q]\nafter = [%q]\n", before, after)))
	installScript(t, s, "alice", "main", `require ["fileinto", "mailbox"];
if header :contains "subject" "user" { fileinto :create "Mine"; }
`)
	for _, c := range []struct{ subject, header string }{
		{"spam user", "X-Spam: Yes"}, {"user mail", "X-Other: 1"}, {"plain", "X-Other: 1"},
	} {
		if out := swaksMsg(t, s, "alice@xoyize.xyz", c.subject, "body "+c.subject, "--add-header", c.header); !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
	}
	findMessage(t, s, "alice", ".Spam/new", "body spam user")
	if countWith(t, s, "alice", ".Mine/new", "body spam user") != 0 {
		t.Error("the user's script ran after a before script filed the message")
	}
	findMessage(t, s, "alice", ".Mine/new", "body user mail")
	if cur := s.maildirFiles(t, "alice", "cur"); len(cur) != 1 || !strings.HasSuffix(cur[0], ":2,a") {
		t.Errorf("INBOX cur/ %v, want the plain message with the after script's keyword", cur)
	}
}

// TestCrashSafetySieve is TestCrashSafetyMixed with a script for alice
// filing each message into two folders (one copy with \Seen, in cur/):
// SIGKILL at random moments, also between the keyed copies and the
// queue's record of them; after the restarts and the queue's retries every
// acknowledged message is in each of alice's folders exactly once, and in
// bob's INBOX once.
func TestCrashSafetySieve(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca) // the foreign member of mixed@
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	installScript(t, s, "alice", "two", `require ["fileinto", "mailbox", "imap4flags"];
fileinto :create "A";
addflag "\\Seen";
fileinto :create "B";
`)
	acked := sendWhileKilling(t, s, "s", 6, sendMixed)
	waitFor(t, "an empty queue", func() bool {
		out, _ := run(t, "", binary, "queue", "-config", s.config, "list")
		return !strings.Contains(out, "@")
	})
	subj := regexp.MustCompile(`(?m)^Subject: (s\d{5})$`)
	count := func(user string, subs ...string) map[string]int {
		seen := map[string]int{}
		for _, sub := range subs {
			for _, f := range s.maildirFiles(t, user, sub) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				m := subj.FindSubmatch(b)
				if m == nil || !strings.HasSuffix(string(b), "END-"+string(m[1])+"\n") {
					t.Errorf("%s: half-written or truncated:\n%.200s", f, b)
					continue
				}
				seen[string(m[1])]++
			}
		}
		return seen
	}
	for _, c := range []struct {
		user string
		subs []string
	}{
		{"alice", []string{".A/new", ".A/cur"}}, {"alice", []string{".B/cur"}}, {"bob", []string{"new", "cur"}},
	} {
		seen := count(c.user, c.subs...)
		for id := range acked {
			if seen[id] != 1 {
				t.Errorf("%s %v: acknowledged message %s is there %d times", c.user, c.subs, id, seen[id])
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("%s %v: message %s is there %d times", c.user, c.subs, id, n)
			}
		}
	}
	if n := len(count("alice", "new", "cur")); n != 0 {
		t.Errorf("alice's INBOX has %d messages, want none (the script files them all)", n)
	}
	t.Logf("%d acknowledged", len(acked))
}

// TestSieveRedirectLocal: a redirect to one of our addresses is stored
// here (the target's own script runs on it), and two users redirecting to
// each other stop at the first one, who keeps it.
func TestSieveRedirectLocal(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t)
	installScript(t, s, "alice", "fwd", `if header :contains "subject" ["tobob", "pingpong"] { redirect "bob@example.org"; }`)
	installScript(t, s, "bob", "fwd", `if header :contains "subject" "pingpong" { redirect "alice@example.org"; }`)
	for _, subj := range []string{"tobob", "pingpong"} {
		if out := swaksMsg(t, s, "alice@xoyize.xyz", subj, "body "+subj); !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
	}
	waitFor(t, "the redirected copy in bob's INBOX", func() bool { return countWith(t, s, "bob", "new", "body tobob") == 1 })
	got := findMessage(t, s, "bob", "new", "body tobob")
	if !strings.Contains(got, "X-Sieve-Redirected-From: alice@xoyize.xyz") || !strings.Contains(got, "Return-Path: <someone@example.net>") {
		t.Errorf("bob's copy:\n%s", got)
	}
	if countWith(t, s, "alice", "new", "body tobob") != 0 {
		t.Error("alice kept a message her script redirected")
	}
	waitFor(t, "the loop to end in alice's INBOX", func() bool { return countWith(t, s, "alice", "new", "body pingpong") == 1 })
	if countWith(t, s, "bob", "new", "body pingpong") != 0 {
		t.Error("bob kept a message his script redirected")
	}
	if !strings.Contains(s.logs(), "loop: the message was already redirected by this user") {
		t.Error("no log line for the loop")
	}
}

// TestSieveNotify: an enotify notification leaves through the queue as a
// vacation reply does (from <>, Auto-Submitted: auto-notified), none for an
// auto-submitted message; the environment test knows the client from the
// Received field smtp wrote, and a mime test guards it.
func TestSieveNotify(t *testing.T) {
	const script = `require ["enotify", "environment", "mime", "variables", "ihave"];
if header :matches "subject" "*" { set "s" "${1}"; }
if environment :matches "remote-ip" "*" { set "ip" "${1}"; }
if allof(ihave "x-not-here", header :mime :anychild :type "content-type" "application") { xnothere; }
elsif not header :mime :anychild :type "content-type" "application" {
	notify :message "from ${ip}: ${s}" "mailto:pager@example.net";
}
`
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"example.net\" = %q\n", k.addr)))
	installScript(t, s, "alice", "pager", script)
	for _, c := range []struct {
		subject string
		args    []string
	}{
		{"first", []string{"--header", "To: alice@xoyize.xyz"}},
		{"auto", []string{"--from", "third@example.net", "--header", "To: alice@xoyize.xyz", "--add-header", "Auto-Submitted: auto-replied"}},
	} {
		out := swaksMsg(t, s, "alice@xoyize.xyz", c.subject, "body "+c.subject, c.args...)
		if !accepted(out) {
			t.Fatalf("%s refused:\n%s", c.subject, out)
		}
		findMessage(t, s, "alice", "new", "body "+c.subject)
	}
	waitFor(t, "a notification decision for each message", func() bool {
		return strings.Count(s.logs(), `msg="sieve: notification `) >= 2
	})
	queued := strings.Count(s.logs(), `msg="sieve: notification queued"`)
	notes := func() []sunk {
		var out []sunk
		for _, m := range k.messages() {
			if strings.Contains(m.data, "Auto-Submitted: auto-notified") {
				out = append(out, m)
			}
		}
		return out
	}
	waitFor(t, "the queued notification", func() bool { return len(notes()) >= queued })
	if queued != 1 || len(notes()) != 1 {
		t.Fatalf("%d notifications queued, %d received; want 1 (none for the auto-submitted message)", queued, len(notes()))
	}
	m := notes()[0]
	if m.from != "" || len(m.to) != 1 || m.to[0] != "pager@example.net" ||
		!strings.Contains(m.data, "Subject: from 127.0.0.1: first\r\n") || !strings.Contains(m.data, "To: <pager@example.net>\r\n") ||
		!strings.Contains(m.data, `owner-email="alice@xoyize.xyz"`) {
		t.Errorf("notification: %+v", m)
	}
}

// TestSieveExtensionsSetting: [sieve] extensions, Pigeonhole's
// sieve_extensions, is the set ManageSieve announces and checks and the
// set delivery compiles with: "+editheader" lets alice's script edit the
// header; bob's script requiring spamtest, still off, keeps his mail in
// INBOX with Pigeonhole's words in ~/.dovecot.sieve.log, and ManageSieve
// refuses it in the same words.
func TestSieveExtensionsSetting(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t, withManageSieve(), withTOML("[sieve]\nextensions = \"+editheader\"\n"))
	installScript(t, s, "alice", "main", "require \"editheader\";\naddheader \"X-Edited\" \"yes\";\n")
	spamScript := "require [\"spamtest\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\n" +
		"if spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"5\" { fileinto \"Junk\"; }\n"
	installScript(t, s, "bob", "spam", spamScript)
	for _, to := range []string{"alice@xoyize.xyz", "bob@xoyize.xyz"} {
		if out := swaksMsg(t, s, to, "ext", "body ext"); !accepted(out) {
			t.Fatalf("refused:\n%s", out)
		}
	}
	if m := findMessage(t, s, "alice", "new", "body ext"); !strings.Contains(m, "X-Edited: yes") {
		t.Errorf("alice's copy lacks the header her script added:\n%s", m)
	}
	findMessage(t, s, "bob", "new", "body ext")
	blog, err := os.ReadFile(filepath.Join(s.vmail, "bob", ".dovecot.sieve.log"))
	if err != nil || !strings.Contains(string(blog), "require command: unknown Sieve capability `spamtest'") {
		t.Errorf("~bob/.dovecot.sieve.log: %q (%v), want Pigeonhole's unknown capability", blog, err)
	}

	// ManageSieve: the capability, and the same script refused.
	c := dialManageSieve(t, s)
	caps := c.until(`OK`)
	if !strings.Contains(caps, "\"SIEVE\" \"fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext editheader\"\r\n") {
		t.Errorf("capabilities after STARTTLS:\n%s", caps)
	}
	c.send(`AUTHENTICATE "PLAIN" "` + base64.StdEncoding.EncodeToString([]byte("\x00bob\x00"+testenv.BobPassword)) + `"`)
	if r := c.until(`OK`); !strings.HasPrefix(r, "OK") {
		t.Fatalf("login: %s", r)
	}
	c.send(fmt.Sprintf("CHECKSCRIPT {%d+}\r\n%s", len(spamScript), spamScript))
	if r := c.until(`NO`); !strings.Contains(r, "line 1: error: require command: unknown Sieve capability `spamtest'.") {
		t.Errorf("CHECKSCRIPT of bob's script: %q", r)
	}
}

// TestSieveGlobalExtensionsSetting: [sieve] global_extensions (Pigeonhole's
// sieve_global_extensions) lets the admin's before script use editheader
// and spamtest while the users' scripts may not, even with editheader in
// [sieve] extensions too; ManageSieve neither lists nor takes them.
func TestSieveGlobalExtensionsSetting(t *testing.T) {
	requireTool(t, "swaks")
	before := filepath.Join(t.TempDir(), "before.sieve")
	mustTB(t, writeFile(before, `require ["editheader", "spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
deleteheader "X-Strip";
addheader "X-Global" "yes";
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto "Junk"; }
`))
	s := startServer(t, withManageSieve(), withTOML(fmt.Sprintf("[sieve]\nextensions = \"+editheader\"\nglobal_extensions = \"editheader spamtest\"\nbefore = [%q]\n", before)))
	userScript := "require \"editheader\";\naddheader \"X-User\" \"yes\";\n"
	installScript(t, s, "alice", "main", userScript)
	if out := swaksMsg(t, s, "alice@xoyize.xyz", "glob", "body glob", "--add-header", "X-Strip: me"); !accepted(out) {
		t.Fatalf("refused:\n%s", out)
	}
	m := findMessage(t, s, "alice", "new", "body glob")
	if !strings.Contains(m, "X-Global: yes") || strings.Contains(m, "X-Strip") || strings.Contains(m, "X-User") {
		t.Errorf("alice's copy: the before script's edits and not her script's wanted:\n%s", m)
	}
	log, err := os.ReadFile(filepath.Join(s.vmail, "alice", ".dovecot.sieve.log"))
	if err != nil || !strings.Contains(string(log), "require command: failed to load Sieve capability `editheader': its use is restricted to global scripts") {
		t.Errorf("~alice/.dovecot.sieve.log: %q (%v), want Pigeonhole's restricted to global scripts", log, err)
	}

	c := dialManageSieve(t, s)
	caps := c.until(`OK`)
	if !strings.Contains(caps, "\"SIEVE\" \"fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext\"\r\n") {
		t.Errorf("capabilities after STARTTLS:\n%s", caps)
	}
	c.send(`AUTHENTICATE "PLAIN" "` + base64.StdEncoding.EncodeToString([]byte("\x00bob\x00"+testenv.BobPassword)) + `"`)
	if r := c.until(`OK`); !strings.HasPrefix(r, "OK") {
		t.Fatalf("login: %s", r)
	}
	c.send(fmt.Sprintf("CHECKSCRIPT {%d+}\r\n%s", len(userScript), userScript))
	if r := c.until(`NO`); !strings.Contains(r, "line 1: error: require command: failed to load Sieve capability `editheader': its use is restricted to global scripts.") {
		t.Errorf("CHECKSCRIPT of alice's script: %q", r)
	}
}

// msClient is a bare ManageSieve client (greeting, STARTTLS done).
type msClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialManageSieve(t *testing.T, s *server) *msClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Sieve, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	c := &msClient{t: t, c: conn, r: bufio.NewReader(conn)}
	c.until("OK")
	c.send("STARTTLS")
	c.until("OK")
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(s.ca.CertFile())
	if err != nil || !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("CA: %v", err)
	}
	tc := tls.Client(conn, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	c.c, c.r = tc, bufio.NewReader(tc)
	return c
}

func (c *msClient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

// until reads lines (a literal's octets with its line) up to one starting
// with OK, NO or BYE, and returns them all.
func (c *msClient) until(want string) string {
	c.t.Helper()
	var b strings.Builder
	for range 1000 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (so far %q, waiting for %s)", err, b.String(), want)
		}
		b.WriteString(line)
		if strings.HasPrefix(line, "OK") || strings.HasPrefix(line, "NO") || strings.HasPrefix(line, "BYE") {
			if i := strings.LastIndexByte(line, '{'); i >= 0 && strings.HasSuffix(line, "}\r\n") {
				n, _ := strconv.Atoi(strings.TrimSuffix(line[i+1:len(line)-3], "+"))
				buf := make([]byte, n)
				if _, err := io.ReadFull(c.r, buf); err != nil {
					c.t.Fatal(err)
				}
				b.Write(buf)
			}
			return b.String()
		}
	}
	c.t.Fatal("no end of response")
	return ""
}
