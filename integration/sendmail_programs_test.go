package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSendmailMailx: bsd-mailx, Debian's mail(1), which scripts and
// smartd's mail hook (mail -s SUBJECT ADDRESS) run, and which runs
// "sendmail -i -t" with a header of its own (To, Cc, Bcc, Subject; no
// Date, Message-ID nor From). With the server up the recipients of To, Cc
// and Bcc get the message, the Bcc field told to nobody, its 8-bit text
// as it was; with the server stopped it waits in the maildrop and, once
// the server is back, is dated when it was sent, as Postfix dates it by
// postdrop's time record: not when it was picked up (cron's mail of 3:00
// would read as sent when the server came back).
func TestSendmailMailx(t *testing.T) {
	mailx := requireTool(t, "bsd-mailx")
	s := startServer(t, withLocalSocket())
	dir := t.TempDir()
	// mailx runs $sendmail with its arguments only: the configuration's
	// path is the wrapper's.
	wrapper := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec "+binary+" sendmail -config "+s.config+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	rc := filepath.Join(dir, "mailrc")
	if err := os.WriteFile(rc, []byte("set sendmail="+wrapper+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mail := func(subject, body string) {
		t.Helper()
		cmd := exec.Command(mailx, "-s", subject, "-b", "bob@xoyize.xyz", "zoe@example.org")
		cmd.Env = append(os.Environ(), "MAILRC="+rc, "HOME="+dir)
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(out) != 0 {
			t.Fatalf("mail -s %q: %v\n%s", subject, err, out)
		}
	}
	find := func(user, subject string) string {
		t.Helper()
		for _, f := range s.maildirFiles(t, user, "new") {
			if b, _ := os.ReadFile(f); strings.Contains(string(b), "\nSubject: "+subject+"\n") {
				return string(b)
			}
		}
		return ""
	}

	mail("disk space", "/var à 91%\n")
	got := find("zoe", "disk space")
	for _, re := range []string{
		`\AReturn-Path: <root@xoyize\.xyz>\n`,
		`(?m)^Received: from local \(uid 0, user root\)\n`,
		`(?m)^Date: `, `(?m)^Message-ID: <`, `(?m)^From: .*<root@xoyize\.xyz>\n`,
		`(?m)^To: zoe@example\.org\n`,
		"\n\n/var à 91%\n\\z",
	} {
		if !regexp.MustCompile(re).MatchString(got) {
			t.Errorf("zoe's copy lacks %s:\n%s", re, got)
		}
	}
	if strings.Contains(got, "Bcc") {
		t.Errorf("zoe's copy names the Bcc:\n%s", got)
	}
	if b := find("bob", "disk space"); b == "" || strings.Contains(b, "Bcc") {
		t.Errorf("bob's (Bcc) copy:\n%s", b)
	}

	// Stopped: in the maildrop, sent (as far as its file says) an hour
	// before the server is back.
	s.stop(syscall.SIGTERM)
	mail("while stopped", "b\n")
	drop := filepath.Join(filepath.Dir(s.config), "queue", "maildrop")
	files := dropFiles(t, drop)
	if len(files) != 1 {
		t.Fatalf("maildrop holds %v", files)
	}
	sent := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(filepath.Join(drop, files[0]), sent, sent); err != nil {
		t.Fatal(err)
	}
	s.start()
	waitFor(t, "the maildrop's message", func() bool { return find("zoe", "while stopped") != "" && find("bob", "while stopped") != "" })
	for _, user := range []string{"zoe", "bob"} {
		got := find(user, "while stopped")
		want := "\nDate: " + sent.Format("Mon, 02 Jan 2006 15:04:05 -0700 (MST)") + "\n"
		if !strings.Contains(got, want) || strings.Count(got, "\nDate: ") != 1 {
			t.Errorf("%s's copy is not dated when it was sent (%q):\n%s", user, want, got)
		}
		if strings.Contains(got, "Bcc") {
			t.Errorf("%s's copy names the Bcc:\n%s", user, got)
		}
	}
}
