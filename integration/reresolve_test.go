package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// TestQueuedCopyFollowsDirectory is QA's case, through the binary and a
// real slapd: a copy whose homeDirectory is outside maildir_base is queued
// (the other copy of the message is stored, the answer is 250); the admin
// fixes the entry with ldapmodify, `courriel lookup` shows the new path,
// and after `courriel queue flush` the queued copy lands in the new
// maildir, owned by the user, mode 0600, the change logged once. A copy
// whose user is removed meanwhile bounces 5.1.1 to its (local) sender; one
// whose entry is fixed while slapd is down waits (no bounce) and lands
// once slapd is back.
func TestQueuedCopyFollowsDirectory(t *testing.T) {
	requireTool(t, "swaks")
	const dn = ",ou=mail,dc=xoyize,dc=xyz"
	qa := t.TempDir() // outside the server's maildir_base
	entry := func(uid, num string) string {
		return "dn: uid=" + uid + dn + "\ncn: " + uid + "\ngidnumber: " + num + "\nhomedirectory: " + filepath.Join(qa, uid, "o") +
			"\nmaildrop: " + uid + "@xoyize.xyz\nobjectclass: account\nobjectclass: posixAccount\nobjectclass: postfixUser\n" +
			"objectclass: top\nuid: " + uid + "\nuidnumber: " + num + "\n"
	}
	s := startServer(t, withSlapd(testenv.WithExtraLDIF(entry("outside", "20050")+"\n"+entry("gone", "20051")+"\n"+entry("later", "20052"))))
	// send sends from a foreign sender on port 25, or, with login, from
	// one of ours on submission (reject_sender_login_mismatch).
	send := func(from, to string, login ...string) {
		t.Helper()
		args := []string{"--server", s.SMTP}
		if len(login) == 2 {
			args = []string{"--server", s.Sub, "--tls", "--tls-verify", "--tls-ca-path", s.ca.CertFile(), "-au", login[0], "-ap", login[1]}
		}
		out, _ := run(t, "", "swaks", append(args, "--from", from, "--to", to+",test0@hosted-domain.com",
			"--ehlo", "client.example.net", "--body", "for "+to)...)
		if !accepted(out) {
			t.Fatalf("message to %s:\n%s", to, out)
		}
	}
	queue := func(verb string) string {
		t.Helper()
		out, err := run(t, "", binary, "queue", "-config", s.config, verb)
		if err != nil {
			t.Fatalf("queue %s: %v\n%s", verb, err, out)
		}
		return out
	}
	// flushUntil flushes the queue until cond holds: the server's cache
	// (2 s here) may still hold the entry as it was for the first flushes.
	flushUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for i := 0; !cond(); i++ {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; queue:\n%s", what, queue("list"))
			}
			if i%10 == 0 {
				queue("flush")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	send("someone@example.net", "outside@xoyize.xyz")
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Fatalf("xomail has %d copies, want 1", n)
	}
	if out := queue("list"); !strings.Contains(out, "<outside@xoyize.xyz> pending") || !strings.Contains(out, "outside the allowed base") {
		t.Fatalf("queue list does not show outside's copy waiting:\n%s", out)
	}

	// The admin fixes the entry.
	home := filepath.Join(s.vmail, "outside")
	s.slapd.Modify(t, "dn: uid=outside"+dn+"\nchangetype: modify\nreplace: homeDirectory\nhomeDirectory: "+home+"\n")
	if out, err := run(t, "", binary, "lookup", "-config", s.config, "mailbox", "outside@xoyize.xyz"); err != nil || strings.TrimSpace(out) != home+"/mailbox/" {
		t.Fatalf("lookup mailbox: %v\n%s", err, out)
	}
	newDir := filepath.Join(home, "mailbox", "new")
	files := func() []string { f, _ := filepath.Glob(filepath.Join(newDir, "*")); return f }
	flushUntil("outside's copy in its new maildir", func() bool { return len(files()) == 1 })
	waitFor(t, "the queue to empty", func() bool { return strings.Contains(queue("list"), "Mail queue is empty") })
	f := files()[0]
	b, err := os.ReadFile(f)
	if err != nil || !strings.Contains(string(b), "Delivered-To: outside@xoyize.xyz") || !strings.Contains(string(b), "for outside@xoyize.xyz") {
		t.Errorf("the copy %s: %v\n%s", f, err, b)
	}
	checkOwnerMode(t, f, 20050, 20050, 0o600)
	checkOwnerMode(t, filepath.Join(home, "mailbox"), 20050, 20050, 0o700)
	checkOwnerMode(t, newDir, 20050, 20050, 0o700)
	if _, err := os.Stat(filepath.Join(qa, "outside")); !os.IsNotExist(err) {
		t.Errorf("something was made at the old home: %v", err)
	}
	logs := s.logs()
	if n := strings.Count(logs, "local copy follows its mailbox"); n != 1 {
		t.Errorf("the change is logged %d times, want once", n)
	}
	if !strings.Contains(logs, filepath.Join(qa, "outside", "o")+"/mailbox/ → "+home+"/mailbox/") {
		t.Errorf("the log does not say old → new")
	}
	if n := len(s.maildirFiles(t, "xomail", "new")); n != 1 {
		t.Errorf("xomail has %d copies after the retry, want 1", n)
	}

	// A user removed while the copy waits: a bounce, 5.1.1, to the sender.
	send("alice@xoyize.xyz", "gone@xoyize.xyz", "alice", testenv.AlicePassword)
	s.slapd.Delete(t, "uid=gone"+dn)
	flushUntil("the DSN to alice", func() bool { return len(s.maildirFiles(t, "alice", "new")) == 1 })
	b, err = os.ReadFile(s.maildirFiles(t, "alice", "new")[0])
	if err != nil || !strings.Contains(string(b), "Status: 5.1.1") || !strings.Contains(string(b), `unknown user: "gone@xoyize.xyz"`) {
		t.Errorf("the DSN: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(qa, "gone")); !os.IsNotExist(err) {
		t.Errorf("something was made at the removed user's home: %v", err)
	}

	// The directory down while the copy waits: no bounce, no copy at the
	// old home; delivered once the directory answers again.
	send("alice@xoyize.xyz", "later@xoyize.xyz", "alice", testenv.AlicePassword)
	later := filepath.Join(s.vmail, "later")
	s.slapd.Modify(t, "dn: uid=later"+dn+"\nchangetype: modify\nreplace: homeDirectory\nhomeDirectory: "+later+"\n")
	s.slapd.Stop(t)
	flushUntil("a retry without the directory", func() bool {
		return strings.Contains(queue("list"), "looking up the mailbox of later@xoyize.xyz")
	})
	if out := queue("list"); !strings.Contains(out, "<later@xoyize.xyz> pending") {
		t.Errorf("later's copy is not pending:\n%s", out)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Errorf("alice has %d messages during the outage, want only the first DSN", n)
	}
	s.slapd.Start(t)
	laterNew := filepath.Join(later, "mailbox", "new")
	flushUntil("later's copy after the outage", func() bool { f, _ := filepath.Glob(filepath.Join(laterNew, "*")); return len(f) == 1 })
	if _, err := os.Stat(filepath.Join(qa, "later")); !os.IsNotExist(err) {
		t.Errorf("something was made at the old home: %v", err)
	}
	if n := len(s.maildirFiles(t, "alice", "new")); n != 1 {
		t.Errorf("alice has %d messages, want only the first DSN", n)
	}
}
