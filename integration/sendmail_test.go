package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// sendmail runs the binary as cron does, through a link named sendmail
// (argv[0]), with stdin; it returns the combined output and exit status.
func sendmail(t *testing.T, link, stdin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, link, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("sendmail %v: %v", args, err)
	return "", -1
}

// TestSendmailLocalMail: local system mail through courriel sendmail and
// the local submission socket, as cron, logwatch and scripts send it once
// Postfix is gone: a message to the unqualified "root" (an alias of the
// directory) lands in the maildir with its trace fields, a -t message
// goes to its To (a remote recipient, queued and delivered) and its Bcc
// (local), the Bcc field removed from both; an unknown recipient bounces
// while the others get the message; with the server stopped, sendmail
// leaves the message in the maildrop and the server delivers it when it
// is back, once.
func TestSendmailLocalMail(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withLocalSocket(),
		withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)),
		withSlapd(testenv.WithExtraLDIF("dn: uid=rootalias,ou=mail,dc=xoyize,dc=xyz\nobjectclass: account\nobjectclass: postfixUser\nobjectclass: top\n"+
			"uid: rootalias\nmailacceptinggeneralid: root@xoyize.xyz\nmaildrop: xomail@xoyize.xyz\n\n")))
	if fi, err := os.Stat(s.Local); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("local socket: %v %v", fi, err)
	}
	// For users who cannot read the configuration: where the socket and
	// the maildrop are, world-readable beside the socket.
	if b, err := os.ReadFile(filepath.Join(filepath.Dir(s.Local), "sendmail.paths")); err != nil ||
		!strings.Contains(string(b), "\nsocket "+s.Local+"\n") || !strings.Contains(string(b), "\nmaildrop "+filepath.Join(filepath.Dir(s.config), "queue", "maildrop")+"\n") {
		t.Errorf("sendmail.paths: %q, %v", b, err)
	}
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}

	// cron: echo "Subject: x" | sendmail root
	if out, code := sendmail(t, link, "Subject: cron job output\n\ndisk 91% full\n", "-config", s.config, "root"); code != 0 {
		t.Fatalf("sendmail root: exit %d\n%s", code, out)
	}
	files := s.maildirFiles(t, "xomail", "new")
	if len(files) != 1 {
		t.Fatalf("%d messages for root's alias, want 1", len(files))
	}
	b, _ := os.ReadFile(files[0])
	head, body, _ := strings.Cut(string(b), "\n\n")
	for _, re := range []string{
		`\AReturn-Path: <root@xoyize\.xyz>\n`,
		`(?m)^Delivered-To: xomail@xoyize\.xyz\n`,
		`(?m)^Received: from local \(uid 0, user root\)\n\tby xoyize\.xyz \(courriel\) id \S+\n\tfor <root@xoyize\.xyz>;`,
		`(?m)^Date: `, `(?m)^Message-ID: <`, `(?m)^From: .*<root@xoyize\.xyz>\n`,
		`(?m)^Subject: cron job output$`,
	} {
		if !regexp.MustCompile(re).MatchString(head) {
			t.Errorf("header lacks %s:\n%s", re, head)
		}
	}
	if body != "disk 91% full\n" {
		t.Errorf("body %q", body)
	}
	// (Logged once the 250 is on its way: waited for.)
	waitFor(t, "the accepted message's log line, with the uid and user", func() bool {
		return regexp.MustCompile(`msg="message accepted".*uid=0 user=root`).MatchString(s.logs())
	})

	// A script's -t message: To outside (relayed, as Postfix's pickup
	// relays), Bcc local, and the Bcc field told to nobody.
	msg := "To: Friend <friend@foreign.example>\nBcc: root\nSubject: report\n\n.\nlines after a lone dot (-i)\n"
	if out, code := sendmail(t, link, msg, "-t", "-i", "-f", "reports@xoyize.xyz", "-config", s.config); code != 0 {
		t.Fatalf("sendmail -t: exit %d\n%s", code, out)
	}
	waitFor(t, "the remote copy", func() bool { return len(k.messages()) == 1 })
	got := k.messages()[0]
	if got.from != "reports@xoyize.xyz" || len(got.to) != 1 || got.to[0] != "friend@foreign.example" {
		t.Errorf("remote copy: from %q to %q", got.from, got.to)
	}
	if strings.Contains(got.data, "Bcc:") || !strings.Contains(got.data, "Received: from local (uid 0, user root)") ||
		!strings.Contains(got.data, "\r\n.\r\nlines after a lone dot (-i)") {
		t.Errorf("remote copy:\n%s", got.data)
	}
	waitFor(t, "the Bcc copy", func() bool { return len(s.maildirFiles(t, "xomail", "new")) == 2 })
	for _, f := range s.maildirFiles(t, "xomail", "new") {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "Bcc:") {
			t.Errorf("a local copy keeps the Bcc field:\n%s", b)
		}
	}

	// An unknown recipient beside a known one: both accepted, as by
	// Postfix's pickup; the known one gets the message, the sender a
	// bounce for the unknown one.
	if out, code := sendmail(t, link, "Subject: to two\n\nb\n", "-f", "bob@xoyize.xyz", "-config", s.config, "zoe@example.org", "nobody-here"); code != 0 {
		t.Errorf("a known and an unknown recipient: exit %d\n%s", code, out)
	}
	waitFor(t, "zoe's copy", func() bool { return len(s.maildirFiles(t, "zoe", "new")) == 1 })
	waitFor(t, "bob's bounce", func() bool { return len(s.maildirFiles(t, "bob", "new")) == 1 })
	b, _ = os.ReadFile(s.maildirFiles(t, "bob", "new")[0])
	for _, want := range []string{"Final-Recipient: rfc822; nobody-here@xoyize.xyz", "Status: 5.1.1", "Subject: to two"} {
		if !strings.Contains(strings.ReplaceAll(string(b), "\r\n", "\n"), want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}

	// The server stopped: sendmail leaves the message in the maildrop,
	// exit 0, and the server delivers it once it is back, once, naming
	// the file's owner.
	s.stop(syscall.SIGTERM)
	if _, err := os.Stat(s.Local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after the stop: %v", err)
	}
	drop := filepath.Join(filepath.Dir(s.config), "queue", "maildrop")
	if fi, err := os.Stat(drop); err != nil || fi.Mode().Perm() != 0o733 || fi.Mode()&os.ModeSticky == 0 {
		t.Fatalf("maildrop %v %v, want sticky 0733", fi, err)
	}
	if out, code := sendmail(t, link, "Subject: waited\n\nb\n", "-config", s.config, "root"); code != 0 || out != "" {
		t.Fatalf("server stopped: exit %d, want 0 (in the maildrop)\n%s", code, out)
	}
	files = dropFiles(t, drop)
	if len(files) != 1 {
		t.Fatalf("maildrop holds %v", files)
	}
	// courriel queue list shows it waiting.
	first := filepath.Base(files[0])
	if files[0] != "0/"+first {
		t.Errorf("root's file is not in maildrop/0: %s", files[0])
	}
	if out, code := courriel(t, "queue", "-config", s.config, "list"); code != 0 || !strings.Contains(out, first) ||
		!strings.Contains(out, "maildrop: uid 0, from (the owner's login)") || !strings.Contains(out, " Kbytes in 1 Request.\n") {
		t.Errorf("queue list: exit %d\n%s", code, out)
	}
	// As if uid 4242 had written it: in its own subdirectory, its own
	// file; the server names the file's owner.
	if out, code := courriel(t, "sendmail", "-config", s.config, "root"); code != 0 {
		t.Fatalf("courriel sendmail, server stopped: exit %d\n%s", code, out)
	}
	sub4242 := filepath.Join(drop, "4242")
	if err := os.Mkdir(sub4242, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(sub4242, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	for _, f := range dropFiles(t, drop) {
		if f != files[0] {
			if err := os.Rename(filepath.Join(drop, f), filepath.Join(sub4242, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(filepath.Join(sub4242, filepath.Base(f)), 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A message that can never be sent (a sender with a space): set
	// aside when picked up, with the reason in the log, never retried.
	if _, code := sendmail(t, link, "Subject: bad\n\nb\n", "-f", "a b", "-config", s.config, "root"); code != 0 {
		t.Fatalf("bad sender, server stopped: exit %d", code)
	}
	var bad string
	for _, f := range dropFiles(t, drop) {
		if b, _ := os.ReadFile(filepath.Join(drop, f)); strings.Contains(string(b), "Subject: bad") {
			bad = f
		}
	}
	// A message the session refuses for good (past the hop limit): the
	// pickup bounces it to its sender.
	hops := strings.Repeat("Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\n", 51)
	if _, code := sendmail(t, link, hops+"Subject: looping\n\nb\n", "-f", "bob@xoyize.xyz", "-config", s.config, "root"); code != 0 {
		t.Fatalf("sendmail, server stopped: exit %d", code)
	}
	// Root's file renamed into uid 4242's subdirectory (a forged
	// identity, either way): set aside, never submitted.
	if _, code := sendmail(t, link, "Subject: forged\n\nb\n", "-config", s.config, "root"); code != 0 {
		t.Fatalf("sendmail, server stopped: exit %d", code)
	}
	var forged string
	for _, f := range dropFiles(t, drop) {
		if b, _ := os.ReadFile(filepath.Join(drop, f)); strings.Contains(string(b), "Subject: forged") {
			forged = filepath.Base(f)
			if err := os.Rename(filepath.Join(drop, f), filepath.Join(sub4242, forged)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Hostile entries at the top: removed, never read; a user's
	// "corrupt" does not stop the server.
	if err := os.Symlink("/etc/passwd", filepath.Join(drop, "1700000000000000000.1.0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(drop, "junk"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(drop, "corrupt"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(drop, "corrupt"), 4242, 4242); err != nil {
		t.Fatal(err)
	}
	s.start()
	waitFor(t, "the maildrop's messages", func() bool { return len(s.maildirFiles(t, "xomail", "new")) == 4 })
	waitFor(t, "an empty maildrop", func() bool { return len(dropFiles(t, drop)) == 0 })
	var waited, other string
	for _, f := range s.maildirFiles(t, "xomail", "new") {
		b, _ := os.ReadFile(f)
		switch {
		case strings.Contains(string(b), "Subject: waited"):
			waited = string(b)
		case strings.Contains(string(b), "Received: from local (uid 4242)"):
			other = string(b)
		}
	}
	if !regexp.MustCompile(`(?m)^Received: from local \(uid 0, user root\)\n\tby xoyize\.xyz \(courriel\) id \S+\n\tfor <root@xoyize\.xyz>;`).MatchString(waited) {
		t.Errorf("the maildrop's message:\n%s", waited)
	}
	if !strings.HasPrefix(other, "Return-Path: <4242@xoyize.xyz>\n") {
		t.Errorf("the message of uid 4242's file:\n%s", other)
	}
	logs := s.logs()
	if !regexp.MustCompile(`msg="maildrop: picked up" .*file=` + regexp.QuoteMeta(first) + ` uid=0`).MatchString(logs) {
		t.Errorf("no pickup line for %s:\n%s", first, logs)
	}
	if !regexp.MustCompile(`maildrop=` + regexp.QuoteMeta(first) + `.*msg="message accepted"|msg="message accepted".*maildrop=` + regexp.QuoteMeta(first)).MatchString(logs) {
		t.Errorf("the accepted line does not name the file:\n%s", logs)
	}
	if !regexp.MustCompile(`level=ERROR msg="maildrop: file set aside, not delivered nor bounced" .*file=` + regexp.QuoteMeta(filepath.Base(bad)) + ` .*why=.*bad address`).MatchString(logs) {
		t.Errorf("no set-aside line for the bad sender's file %s:\n%s", bad, logs)
	}
	if !regexp.MustCompile(`level=ERROR msg="maildrop: file set aside, not delivered nor bounced" .*file=` + regexp.QuoteMeta(forged) + ` uid=4242 .*owned by uid 0`).MatchString(logs) {
		t.Errorf("no set-aside line for root's file in 4242/ %s:\n%s", forged, logs)
	}
	if strings.Contains(strings.Join(s.maildirFiles(t, "xomail", "new"), ""), "forged") {
		t.Error("the forged file was delivered")
	}
	for _, f := range []string{"0/" + filepath.Base(bad), "4242/" + forged} {
		if m, _ := filepath.Glob(filepath.Join(drop+"-corrupt", f+".*")); len(m) != 1 {
			t.Errorf("%s not set aside in maildrop-corrupt: %v", f, m)
		}
	}
	waitFor(t, "bob's bounce of the looping message", func() bool { return len(s.maildirFiles(t, "bob", "new")) == 2 })
	var bounced bool
	for _, f := range s.maildirFiles(t, "bob", "new") {
		b, _ := os.ReadFile(f)
		bounced = bounced || strings.Contains(string(b), "Status: 5.4.6") && strings.Contains(string(b), "Subject: looping")
	}
	if !bounced || !strings.Contains(s.logs(), `msg="maildrop: not delivered; bounced to the sender"`) {
		t.Errorf("no bounce of the refused maildrop file:\n%s", logs)
	}
	if !strings.Contains(logs, "removed entries that are no user's subdirectory") {
		t.Errorf("no line for the hostile entries:\n%s", logs)
	}
	if ents, _ := os.ReadDir(drop); len(ents) != 2 { // 0/ and 4242/
		t.Errorf("the maildrop's top holds %v", ents)
	}
	// Once: a restart submits nothing again.
	s.stop(syscall.SIGTERM)
	s.start()
	if _, code := sendmail(t, link, "Subject: last\n\nb\n", "-config", s.config, "root"); code != 0 {
		t.Fatal("sendmail after the restart")
	}
	waitFor(t, "the last message", func() bool { return len(s.maildirFiles(t, "xomail", "new")) >= 5 })
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 5 {
		t.Errorf("%d messages after a restart, want 5: one was submitted twice", n)
	}
}

// dropFiles are the files in the maildrop's user subdirectories, as
// "uid/name".
func dropFiles(t *testing.T, dir string) []string {
	t.Helper()
	subs, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sub := range subs {
		if !sub.IsDir() {
			continue
		}
		ents, _ := os.ReadDir(filepath.Join(dir, sub.Name()))
		for _, e := range ents {
			out = append(out, sub.Name()+"/"+e.Name())
		}
	}
	return out
}

// TestSendmailStandaloneSwaks: sendmail -bs as PHP's mailers use it
// ("sendmail -bs -i"), driven by swaks through a pipe, pipelining: the
// message reaches the maildir through the server's local socket, from
// the sender MAIL gave, naming the invoking user, the DATA answered 250
// once it is stored.
func TestSendmailStandaloneSwaks(t *testing.T) {
	requireTool(t, "swaks")
	s := startServer(t, withLocalSocket())
	out, _ := run(t, "", "swaks", "--pipe", binary+" sendmail -bs -i -config "+s.config, "--pipeline",
		"--from", "app@example.net", "--to", "zoe@example.org", "--header", "Subject: from a web app", "--body", ".dot\nbody")
	if !regexp.MustCompile(`(?m)^<\*?\*?[ ~-]*250 2\.0\.0 Ok: queued`).MatchString(out) {
		t.Fatalf("swaks --pipe:\n%s", out)
	}
	files := s.maildirFiles(t, "zoe", "new")
	if len(files) != 1 {
		t.Fatalf("%d messages for zoe, want 1\n%s", len(files), out)
	}
	b, _ := os.ReadFile(files[0])
	for _, re := range []string{
		`\AReturn-Path: <app@example\.net>\n`,
		`(?m)^Received: from local \(uid 0, user root\)\n`,
		`(?m)^Subject: from a web app\n`,
		`\n\n\.dot\nbody\n+\z`,
	} {
		if !regexp.MustCompile(re).MatchString(string(b)) {
			t.Errorf("message lacks %s:\n%s", re, b)
		}
	}
}

// symfonyMailer sends one message with Symfony Mailer's SendmailTransport
// (Debian's php-symfony-mailer), whose command is argv[1]: "-bs", its
// default, or "-t -i".
const symfonyMailer = `<?php
require '/usr/share/php/Symfony/Component/Mailer/autoload.php';
require '/usr/share/php/Symfony/Component/Mime/autoload.php';
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;
$mailer = new Mailer(new SendmailTransport($argv[1]));
$mailer->send((new Email())->from('app@example.net')->to('zoe@example.org')
	->subject($argv[2])->text("hello\n.a line with a leading dot\n"));
echo "sent\n";
`

// TestSendmailSymfonyMailer: PHP applications (Symfony, Laravel) send
// through sendmail with Symfony Mailer, by default in -bs mode: the real
// library, both of its modes, against courriel's sendmail and server.
func TestSendmailSymfonyMailer(t *testing.T) {
	php := requireTool(t, "php")
	if _, err := os.Stat("/usr/share/php/Symfony/Component/Mailer/autoload.php"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("php-symfony-mailer is required in CI (scripts/test installs it): %v", err)
		}
		t.Skip("php-symfony-mailer not installed")
	}
	s := startServer(t, withLocalSocket())
	script := filepath.Join(t.TempDir(), "send.php")
	if err := os.WriteFile(script, []byte(symfonyMailer), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, mode := range []string{"-bs", "-t -i"} {
		subject := "symfony " + mode
		out, err := exec.Command(php, script, binary+" sendmail "+mode+" -config "+s.config, subject).CombinedOutput()
		if err != nil || string(out) != "sent\n" {
			t.Fatalf("%s: %v\n%s", mode, err, out)
		}
		files := s.maildirFiles(t, "zoe", "new")
		if len(files) != i+1 {
			t.Fatalf("%s: %d messages for zoe, want %d", mode, len(files), i+1)
		}
		var b []byte
		for _, f := range files {
			if c, _ := os.ReadFile(f); strings.Contains(string(c), "Subject: "+subject+"\n") {
				b = c
			}
		}
		for _, re := range []string{
			`\AReturn-Path: <app@example\.net>\n`,
			`(?m)^Received: from local \(uid 0, user root\)\n`,
			`\n\.a line with a leading dot\n`,
		} {
			if !regexp.MustCompile(re).Match(b) {
				t.Errorf("%s: message lacks %s:\n%s", mode, re, b)
			}
		}
	}
	// PHP's own mail() (WordPress's default): sendmail_path, -t -i.
	out, err := exec.Command(php, "-d", "sendmail_path="+binary+" sendmail -t -i -config "+s.config, "-r",
		`var_dump(mail("zoe@example.org", "php mail()", "body\n.\nafter a lone dot\n", "From: app@example.net"));`).CombinedOutput()
	if err != nil || string(out) != "bool(true)\n" {
		t.Fatalf("mail(): %v\n%s", err, out)
	}
	waitFor(t, "mail()'s copy", func() bool { return len(s.maildirFiles(t, "zoe", "new")) == 3 })
	for _, f := range s.maildirFiles(t, "zoe", "new") {
		if b, _ := os.ReadFile(f); strings.Contains(string(b), "Subject: php mail()") &&
			(!strings.HasPrefix(string(b), "Return-Path: <root@xoyize.xyz>\n") || !strings.Contains(string(b), "\n\nbody\n.\nafter a lone dot\n")) {
			t.Errorf("mail()'s copy:\n%s", b)
		}
	}
}
