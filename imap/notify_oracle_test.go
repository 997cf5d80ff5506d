package imap

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// burstSize messages are delivered burstGap apart in
// TestNotifyBurstAsDovecot: about one notify delay in all.
const (
	burstSize = 50
	burstGap  = 10 * time.Millisecond
)

// deliverBurst writes burstSize messages into maildir's new/ (through
// tmp/, as a delivery agent does), burstGap apart, handing each file name
// to before (in tmp/) and after (in new/).
func deliverBurst(t *testing.T, maildir string, before, after func(name string)) {
	t.Helper()
	for i := 1; i <= burstSize; i++ {
		name := fmt.Sprintf("17000012%02d.M1P1.test", i)
		tmp := filepath.Join(maildir, "tmp", name)
		if err := os.WriteFile(tmp, []byte(testMessage(i, "b@example.org", "burst")), 0o644); err != nil {
			t.Fatal(err)
		}
		before(name)
		if err := os.Rename(tmp, filepath.Join(maildir, "new", name)); err != nil {
			t.Fatal(err)
		}
		after(name)
		time.Sleep(burstGap)
	}
}

// existsLines is the EXISTS lines among lines.
func existsLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "* ") && strings.HasSuffix(l, " EXISTS") {
			out = append(out, l)
		}
	}
	return out
}

// TestNotifyBurstAsDovecot: a burst of deliveries to the selected INBOX
// of a session that waits between commands with NOTIFY SELECTED is
// reported in a few EXISTS, unasked, as Dovecot 2.3 reports it (its
// mailbox watch waits NOTIFY_DELAY_MSECS, 500 ms, after the first change:
// imap-notify.c, mailbox-watch.c), and every message of it before the
// next command. courriel sent one EXISTS a delivery. The counts depend
// on the machine's pace: at most maxBatches, where one a delivery is
// burstSize. (TestNotifyBatchesUpdates has exact counts, in a bubble.)
func TestNotifyBurstAsDovecot(t *testing.T) {
	t.Parallel()
	const maxBatches = 10
	const set = "NOTIFY SET (SELECTED (MessageNew MessageExpunge))"

	e := newEnv(t)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	if got := last(r.cmd("n", set)); !strings.HasPrefix(got, "n OK") {
		t.Fatalf("NOTIFY SET: %q", got)
	}
	r.c.SetReadDeadline(time.Time{})
	log := readAllLines(r, time.Now())
	deliverBurst(t, e.maildir, func(string) {}, func(name string) { e.srv.Delivered(e.maildir, "", name) })
	time.Sleep(3 * time.Second) // the delay, and room for a slow machine
	ours := existsLines(lineTexts(log.snapshot()))
	r.send("z NOOP\r\n")
	log.until("z")
	if len(ours) == 0 || len(ours) > maxBatches || ours[len(ours)-1] != fmt.Sprintf("* %d EXISTS", burstSize) {
		t.Errorf("%d deliveries: courriel sent %q before the next command", burstSize, ours)
	}

	testenv.NeedDovecot(t)
	dc := filepath.Join(t.TempDir(), "Maildir")
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dc, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cmd := testenv.DovecotCommand(t, dc, "")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	dr := &rawConn{t: t, br: bufio.NewReader(out)}
	dlog := readAllLines(dr, time.Now())
	fmt.Fprintf(in, "s SELECT INBOX\r\nn %s\r\n", set)
	dlog.wait("n")
	deliverBurst(t, dc, func(name string) { os.Chown(filepath.Join(dc, "tmp", name), 65534, 65534) }, func(string) {})
	time.Sleep(3 * time.Second)
	theirs := existsLines(lineTexts(dlog.snapshot()))
	fmt.Fprintf(in, "z LOGOUT\r\n")
	dlog.wait("z")

	// Dovecot may keep the end of the burst for the next command (its
	// watch is added again only after its own notification, and what
	// came meanwhile waits): courriel sends it unasked, a delay later.
	if len(theirs) == 0 || len(theirs) > maxBatches {
		t.Errorf("%d deliveries: Dovecot sent %q before the next command, courriel %q", burstSize, theirs, ours)
	}
}
