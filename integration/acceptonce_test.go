package integration

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/internal/testenv"
)

// TestAcceptOnceMixedAlias is the reproduction: a message just
// under message_size_limit (4,036 bytes, limit 4,096) to an alias with two
// local maildrops and one foreign member. It used to get 451 after the
// local copies were stored (the queue checked header + body against the
// limit SMTP had applied to the body), so every retry stored them again.
// Now swaks gets 250 once, each maildrop has one copy, and the foreign
// member gets its copy through the queue.
func TestAcceptOnceMixedAlias(t *testing.T) {
	requireTool(t, "swaks")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca,
		withTopTOML("message_size_limit = 4096\n"),
		withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	// swaks adds its own headers (about 300 bytes) to the body.
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n", 58)
	out, _ := run(t, "", "swaks", "--server", s.SMTP, "--from", "someone@example.net",
		"--to", "mixed@hosted-domain.com", "--ehlo", "client.example.net", "--body", body)
	if !accepted(out) {
		t.Fatalf("swaks:\n%s", out)
	}
	waitFor(t, "the foreign member's copy", func() bool { return len(k.messages()) == 1 })
	for _, u := range []string{"alice", "bob"} {
		if n := len(s.maildirFiles(t, u, "new")); n != 1 {
			t.Errorf("%s has %d copies, want 1", u, n)
		}
	}
	if got := k.messages()[0]; len(got.to) != 1 || got.to[0] != "someone@foreign.example" {
		t.Errorf("the sink got %+v", got.to)
	}
	waitFor(t, "an empty queue", func() bool {
		out, _ := run(t, "", binary, "queue", "-config", s.config, "list")
		return !strings.Contains(out, "@")
	})
	// One grep follows the message: its msg_id is on the smtp and queue
	// lines alike, from its arrival to the foreign copy's 250, with one
	// delivery line per copy (the queue's, which stored the local ones).
	id := regexp.MustCompile(`msg="message accepted" .*msg_id=(\w+)`).FindStringSubmatch(s.logs())
	if id == nil {
		t.Fatalf("no accepted message in the log:\n%s", s.logs())
	}
	seen, deliveries := map[string]int{}, map[string]int{}
	for _, line := range strings.Split(s.logs(), "\n") {
		if strings.Contains(line, "msg_id="+id[1]) {
			if c := regexp.MustCompile(`component=(\w+)`).FindStringSubmatch(line); c != nil {
				seen[c[1]]++
			}
			if to := regexp.MustCompile(`msg=delivery .*? to=<?([^ >]+)`).FindStringSubmatch(line); to != nil {
				deliveries[to[1]]++
			}
		}
	}
	want := map[string]int{"alice@xoyize.xyz": 1, "bob@xoyize.xyz": 1, "someone@foreign.example": 1}
	if seen["smtp"] == 0 || seen["queue"] < 3 || !maps.Equal(deliveries, want) {
		t.Errorf("lines with msg_id=%s by component: %v, delivery lines by recipient %v; want smtp and queue lines, one delivery line for each of %v", id[1], seen, deliveries, want)
	}
}

// sendMixed sends one message to the list with a foreign member and to
// another list, over a fresh connection; nil means 250.
func sendMixed(addr, id string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout = 10 * time.Second
	c.SubmissionTimeout = 10 * time.Second
	body := fmt.Sprintf("From: crash@example.net\r\nTo: mixed@hosted-domain.com\r\nSubject: %s\r\n\r\n%sEND-%s\r\n",
		id, strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 32), id)
	return c.SendMail("crash@example.net", []string{"mixed@hosted-domain.com", "test0@hosted-domain.com"}, strings.NewReader(body))
}

// TestCrashSafetyMixed: SIGKILL at random moments while messages with three
// local copies (alice, bob, xomail) and one foreign copy arrive; the kill
// lands, among other places, between the local copies and the record of
// their outcome in the queue. After the restarts, every acknowledged message
// is in each maildir exactly once and reached the sink, and no message is
// in a maildir twice. (The sink may see a copy twice: remote delivery is at
// least once, a kill between the remote 250 and its record sends it again.)
func TestCrashSafetyMixed(t *testing.T) {
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	s := startServerWithCA(t, ca, withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n", k.addr)))
	acked := sendWhileKilling(t, s, "x", 6, sendMixed)
	// The foreign copies of everything acknowledged reach the sink.
	waitFor(t, "the foreign copies", func() bool {
		n := 0
		for _, m := range k.messages() {
			if id := regexp.MustCompile(`(?m)^Subject: (x\d{5})\r$`).FindStringSubmatch(m.data); id != nil && acked[id[1]] {
				n++
			}
		}
		return n >= len(acked)
	})
	subj := regexp.MustCompile(`(?m)^Subject: (x\d{5})$`)
	for _, user := range []string{"alice", "bob", "xomail"} {
		seen := map[string]int{}
		for _, sub := range []string{"new", "cur"} {
			for _, f := range s.maildirFiles(t, user, sub) {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				m := subj.FindSubmatch(b)
				if m == nil {
					t.Errorf("%s: no Subject: half-written?\n%.200s", f, b)
					continue
				}
				if !strings.HasSuffix(string(b), "END-"+string(m[1])+"\n") {
					t.Errorf("%s: message %s is truncated", f, m[1])
				}
				seen[string(m[1])]++
			}
		}
		for id := range acked {
			if seen[id] != 1 {
				t.Errorf("%s: acknowledged message %s is there %d times", user, id, seen[id])
			}
		}
		for id, n := range seen {
			if n > 1 {
				t.Errorf("%s: message %s is there %d times", user, id, n)
			}
		}
	}
	t.Logf("%d acknowledged", len(acked))
}
