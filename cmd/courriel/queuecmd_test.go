package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"courriel/delivery"
	"courriel/delivery/queue"
)

// queueConfig writes a configuration whose queue.dir is spool (not
// created), with no directory reachable: the queue commands need none.
func queueConfig(t *testing.T, spool string) string {
	t.Helper()
	cfg := fmt.Sprintf(`myhostname = "xoyize.xyz"
[listen]
smtp = ""
submission = ""
submissions = ""
imaps = ""
managesieve = ""
[ldap]
urls = ["ldap://127.0.0.1:1"]
bind_dn = "cn=reader,dc=example,dc=org"
bind_password = "x"
search_base = "ou=mail,dc=example,dc=org"
[queue]
dir = %q
`, spool)
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// queueSpool makes a spool as a server leaves it, with one message for
// each msg_id given (in that order), each to rcpt<i>@foreign.example;
// it returns the configuration and the queue ids.
func queueSpool(t *testing.T, msgIDs ...string) (cfg string, ids []string) {
	t.Helper()
	spool := filepath.Join(t.TempDir(), "queue")
	q, err := queue.Open(queue.Options{Dir: spool, Hostname: "xoyize.xyz"})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for i, m := range msgIDs {
		id, _, err := q.Accept(context.Background(), m, "alice@xoyize.xyz", []string{fmt.Sprintf("rcpt%d@foreign.example", i)}, nil,
			delivery.MemContent("Subject: t\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return queueConfig(t, spool), ids
}

// D5: the id of "250 2.0.0 OK: queued as ID", the msg_id, is what an
// admin has; every queue command takes it as it takes the queue id.
func TestQueueCommandsTakeMsgID(t *testing.T) {
	t.Parallel()
	cfg, ids := queueSpool(t, "AGRFC7TVPMAAFWZT", "BQ4MZ2TVPMAAFWZT", "CQ4MZ2TVPMAAFWZT")

	code, out, errOut := runCmd(t, "", "queue", "list", "-config", cfg)
	if code != 0 || !regexp.MustCompile(`(?m)^`+ids[0]+` .* alice@xoyize.xyz  msg_id=AGRFC7TVPMAAFWZT$`).MatchString(out) {
		t.Errorf("queue list: %d %q\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(t, "", "queue", "show", "-config", cfg, "agrfc7tvpmaafwzt")
	if code != 0 || !strings.HasPrefix(out, "id: "+ids[0]+"\nmsg_id: AGRFC7TVPMAAFWZT\n") || !strings.Contains(out, "rcpt0@") {
		t.Errorf("queue show MSGID: %d %q\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(t, "", "queue", "hold", "-config", cfg, "AGRFC7TVPMAAFWZT")
	if code != 0 || out != ids[0]+": placed on hold\nPlaced on hold: 1 message(s)\n" {
		t.Errorf("queue hold MSGID: %d %q\n%s", code, errOut, out)
	}
	code, out, errOut = runCmd(t, "", "queue", "release", "-config", cfg, "AGRFC7TVPMAAFWZT!")
	if code != 0 || !strings.Contains(out, ids[0]+": released from hold") {
		t.Errorf("queue release MSGID: %d %q\n%s", code, errOut, out)
	}
	code, _, errOut = runCmd(t, "", "queue", "flush", "-config", cfg)
	if code != 69 || !strings.Contains(errOut, "no server runs the queue") {
		t.Errorf("queue flush: %d %q", code, errOut)
	}
	// Standard input takes msg_ids too; a queue id and a msg_id of one
	// message delete it once.
	code, out, errOut = runCmd(t, "BQ4MZ2TVPMAAFWZT\n", "queue", "delete", "-config", cfg, "-", ids[1], "AGRFC7TVPMAAFWZT")
	if code != 0 || out != ids[0]+": removed\n"+ids[1]+": removed\nDeleted: 2 message(s)\n" && out != ids[1]+": removed\n"+ids[0]+": removed\nDeleted: 2 message(s)\n" {
		t.Errorf("queue delete MSGID: %d %q\n%s", code, errOut, out)
	}
	// Nothing by that id: the error names it, without "queue: queue:".
	for _, args := range [][]string{{"show", "AGRFC7TVPMAAFWZT"}, {"delete", "NOSUCHID"}, {"hold", ids[0]}} {
		code, _, errOut = runCmd(t, "", append([]string{"queue", "-config", cfg}, args...)...)
		if code != 1 || !strings.Contains(errOut, args[1]+": no queued message has this queue id or msg_id") || strings.Contains(errOut, "queue: queue:") {
			t.Errorf("queue %s: %d %q", args, code, errOut)
		}
	}
	for _, w := range []string{"ALL", "-"} {
		if code, out, errOut := runCmd(t, ids[2]+"\n", "queue", "show", "-config", cfg, w); code != 2 || out != "" {
			t.Errorf("queue show %s: %d %q %q", w, code, out, errOut)
		}
	}
	code, _, errOut = runCmd(t, "", "queue", "delete", "-config", cfg, "../x")
	if code != 2 || !strings.Contains(errOut, `"../x" is neither a queue id nor a msg_id`) || strings.Contains(errOut, "queue: queue:") {
		t.Errorf("queue delete ../x: %d %q", code, errOut)
	}
	if code, out, _ := runCmd(t, "", "queue", "list", "-config", cfg); code != 0 || !strings.Contains(out, ids[2]) || strings.Contains(out, ids[0]) {
		t.Errorf("queue list after the deletes:\n%s", out)
	}
}

// A msg_id several messages carry (a message and the DSN or Sieve reply
// made of it) is refused: the messages are listed by queue id and
// nothing is done, so that delete never drops what the admin did not see.
func TestQueueAmbiguousMsgID(t *testing.T) {
	t.Parallel()
	cfg, ids := queueSpool(t, "AGRFC7TVPMAAFWZT", "AGRFC7TVPMAAFWZT", "BQ4MZ2TVPMAAFWZT")
	for _, cmd := range []string{"delete", "hold", "show"} {
		args := []string{"queue", cmd, "-config", cfg, "AGRFC7TVPMAAFWZT"}
		if cmd != "show" {
			args = append(args, "BQ4MZ2TVPMAAFWZT")
		}
		code, out, errOut := runCmd(t, "", args...)
		if code != 1 || out != "" || !strings.Contains(errOut, "AGRFC7TVPMAAFWZT is the msg_id of 2 queued messages") ||
			!strings.Contains(errOut, ids[0]) || !strings.Contains(errOut, ids[1]) || !strings.Contains(errOut, "nothing done") {
			t.Errorf("queue %s of a shared msg_id: %d %q %q", cmd, code, out, errOut)
		}
	}
	code, out, _ := runCmd(t, "", "queue", "list", "-config", cfg)
	if code != 0 || !strings.Contains(out, " Kbytes in 3 Requests.\n") || strings.Contains(out, "!") {
		t.Errorf("something was done:\n%s", out)
	}
	// By queue id, one of them goes.
	if code, out, errOut := runCmd(t, "", "queue", "delete", "-config", cfg, ids[1]); code != 0 || !strings.Contains(out, "Deleted: 1") {
		t.Errorf("delete by queue id: %d %q %q", code, out, errOut)
	}
}

// queue list ends as Postfix's mailq, which monitoring reads ("-- K
// Kbytes in N Requests.", check_mailq), and lists one paragraph per
// message, which scripts read (awk's RS="" to pick a recipient's ids).
func TestQueueListAsMailq(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 3000)
	spool := filepath.Join(t.TempDir(), "queue")
	q, err := queue.Open(queue.Options{Dir: spool, Hostname: "xoyize.xyz"})
	must(t, err)
	var ids []string
	for i := range 3 {
		id, _, err := q.Accept(context.Background(), "", "alice@xoyize.xyz", []string{fmt.Sprintf("rcpt%d@foreign.example", i)}, nil,
			delivery.MemContent("Subject: t\r\n\r\n"+big+"\r\n"))
		must(t, err)
		ids = append(ids, id)
	}
	q.Close()
	cfg := queueConfig(t, spool)
	_, out, _ := runCmd(t, "", "queue", "list", "-config", cfg)
	paragraphs := strings.Split(strings.TrimSuffix(out, "\n"), "\n\n")
	if len(paragraphs) != 4 {
		t.Fatalf("%d paragraphs, want 3 messages and the summary:\n%s", len(paragraphs), out)
	}
	var size int
	var listed []string
	for i := range ids {
		m := regexp.MustCompile(`^(?:Queue ID .*\n)?(\S+) +(\d+) .*\n +<rcpt\d@foreign.example> [^\n]*$`).FindStringSubmatch(paragraphs[i])
		if m == nil {
			t.Fatalf("paragraph %d is not one message: %q", i, paragraphs[i])
		}
		listed = append(listed, m[1])
		n, _ := strconv.Atoi(m[2])
		size += n
	}
	if !slices.Equal(slices.Sorted(slices.Values(listed)), slices.Sorted(slices.Values(ids))) {
		t.Errorf("listed %v, queued %v", listed, ids)
	}
	if want := fmt.Sprintf("-- %d Kbytes in 3 Requests.", size/1024); paragraphs[3] != want || size < 9000 {
		t.Errorf("summary %q, want %q", paragraphs[3], want)
	}
	_, out, _ = runCmd(t, "", "queue", "delete", "-config", cfg, ids[0], ids[1])
	if _, out, _ = runCmd(t, "", "queue", "list", "-config", cfg); !strings.HasSuffix(out, "\n\n-- 2 Kbytes in 1 Request.\n") {
		t.Errorf("one message left:\n%s", out)
	}
}

// queue show says that a message is held.
func TestQueueShowHeld(t *testing.T) {
	t.Parallel()
	cfg, ids := queueSpool(t, "AGRFC7TVPMAAFWZT")
	if _, out, _ := runCmd(t, "", "queue", "show", "-config", cfg, ids[0]); strings.Contains(out, "held") {
		t.Errorf("a message not held said held:\n%s", out)
	}
	if code, _, errOut := runCmd(t, "", "queue", "hold", "-config", cfg, ids[0]); code != 0 {
		t.Fatalf("hold: %q", errOut)
	}
	code, out, errOut := runCmd(t, "", "queue", "show", "-config", cfg, ids[0])
	if code != 0 || !strings.Contains(out, "\nheld: yes") {
		t.Errorf("queue show of a held message: %d %q\n%s", code, errOut, out)
	}
}

// D13: a queue.dir that does not exist is an error, never an empty queue.
// mailq and sendmail -bp list the queue as `courriel queue list` does
// (monitoring scripts run mailq); newaliases and sendmail -bi do nothing
// and say why.
func TestMailqNames(t *testing.T) {
	t.Parallel()
	cfg, ids := queueSpool(t, "M1")
	_, want, _ := runCmd(t, "", "queue", "-config", cfg, "list")
	if !strings.Contains(want, ids[0]) {
		t.Fatalf("queue list: %q lacks %s", want, ids[0])
	}
	for _, argv := range [][]string{{"/usr/bin/mailq", "-config", cfg}, {"/usr/sbin/sendmail", "-bp", "-config", cfg}} {
		code, out, errOut := runCmd(t, "", argsOf(argv)...)
		if code != 0 || out != want {
			t.Errorf("%q: exit %d, %q (stderr %q); want queue list's %q", argv, code, out, errOut, want)
		}
	}
	for _, argv := range [][]string{{"/usr/bin/newaliases"}, {"/usr/sbin/sendmail", "-bi"}} {
		if code, _, errOut := runCmd(t, "", argsOf(argv)...); code != 0 || !strings.Contains(errOut, "nothing to rebuild") {
			t.Errorf("%q: exit %d, stderr %q", argv, code, errOut)
		}
	}
}

func TestQueueMissingSpool(t *testing.T) {
	t.Parallel()
	spool := filepath.Join(t.TempDir(), "no-such-queue")
	cfg := queueConfig(t, spool)
	for _, args := range [][]string{{"list"}, {"show", "AGRFC7TVPMAAFWZT"}, {"delete", "ALL"}, {"flush"}} {
		code, out, errOut := runCmd(t, "", append([]string{"queue", "-config", cfg}, args...)...)
		if code != 1 || strings.Contains(out, "empty") || !strings.Contains(errOut, "spool directory "+spool+" does not exist (queue.dir in "+cfg+")") {
			t.Errorf("queue %s on a missing spool: %d %q %q", args, code, out, errOut)
		}
	}
	// A directory without the lock every server makes is no server's
	// spool either: a new installation's (contrib/README.md makes it)
	// before the first serve, or a queue.dir that names another
	// directory. Its status, 69 (EX_UNAVAILABLE, postqueue's "mail
	// system is down"), is neither an empty queue's nor a failure's.
	if err := os.Mkdir(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"show", "AGRFC7TVPMAAFWZT"}} {
		code, out, errOut := runCmd(t, "", append([]string{"queue", "-config", cfg}, args...)...)
		if code != 69 || strings.Contains(out, "empty") || !strings.Contains(errOut, "spool directory "+spool+" has no lock file: courriel serve has not run on it yet (a new installation), or queue.dir names another directory (queue.dir in "+cfg+")") {
			t.Errorf("queue %s on a directory no server ran on: %d %q %q", args, code, out, errOut)
		}
	}
}

// A user who may not open the spool (not root, where the server runs as
// root) is told so, exit 1 as postsuper's "reserved for the
// superuser"; the message asked whether a server had run on the spool.
// Root ignores file modes: an immutable lock file (chattr +i) makes the
// same EPERM.
func TestQueueSpoolNotPermitted(t *testing.T) {
	t.Parallel()
	cfg, _ := queueSpool(t, "AGRFC7TVPMAAFWZT")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	spool := regexp.MustCompile(`dir = "([^"]+)"`).FindStringSubmatch(string(b))[1]
	lock := filepath.Join(spool, ".lock")
	if out, err := exec.Command("chattr", "+i", lock).CombinedOutput(); err != nil {
		t.Skipf("chattr +i: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", lock).Run() })
	if f, err := os.OpenFile(lock, os.O_RDWR, 0); err == nil {
		f.Close()
		t.Skip("an immutable file opens for writing here")
	}
	// The listing is then asked of the running server (mailq.go), as
	// any user's mailq: none here, so "down" (69), the cause said.
	for _, args := range [][]string{{"list"}, {"delete", "ALL"}, {"flush"}} {
		code, out, errOut := runCmd(t, "", append([]string{"queue", "-config", cfg}, args...)...)
		want := 1
		if args[0] == "list" {
			want = exQueueDown
		}
		if code != want || out != "" || !strings.Contains(errOut, "spool directory "+spool+": permission denied: courriel queue needs the rights of the server that runs it (root)") ||
			strings.Contains(errOut, "has a server run") {
			t.Errorf("queue %s: %d %q %q", args, code, out, errOut)
		}
	}
}
