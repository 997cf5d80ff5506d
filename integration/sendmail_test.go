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
// (local), the Bcc field removed from both; with the server stopped,
// sendmail exits 75 and says the mail was not sent.
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
	if !regexp.MustCompile(`msg="message accepted".*uid=0 user=root`).MatchString(s.logs()) &&
		!regexp.MustCompile(`uid=0 user=root.*msg="message accepted"`).MatchString(s.logs()) {
		t.Errorf("the accepted message's log line lacks the uid and user:\n%s", s.logs())
	}

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

	// An unknown recipient: refused, nothing sent, the caller told.
	if out, code := sendmail(t, link, "Subject: x\n\nb\n", "-config", s.config, "nobody-here"); code != 67 || !strings.Contains(out, "mail NOT sent") {
		t.Errorf("unknown recipient: exit %d\n%s", code, out)
	}

	// The server stopped: nothing takes the mail (no maildrop queue).
	s.stop(syscall.SIGTERM)
	if _, err := os.Stat(s.Local); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after the stop: %v", err)
	}
	out, code := sendmail(t, link, "Subject: lost\n\nb\n", "-config", s.config, "root")
	if code != 75 || !strings.Contains(out, "mail NOT sent") {
		t.Errorf("server stopped: exit %d, want 75 (EX_TEMPFAIL)\n%s", code, out)
	}
	// courriel sendmail as a command says the same.
	if out, code := courriel(t, "sendmail", "-config", s.config, "root"); code != 75 || !strings.Contains(out, "mail NOT sent") {
		t.Errorf("courriel sendmail, server stopped: exit %d\n%s", code, out)
	}
}
