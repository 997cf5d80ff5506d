package imap

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// untagged is the untagged lines of lines that came before at, with
// "RECENT" counts blanked: which session holds a message \Recent is
// not the matter here.
func untagged(lines []lineAt, before time.Duration) []string {
	var out []string
	for _, l := range lines {
		if l.at >= before || !strings.HasPrefix(l.line, "* ") {
			continue
		}
		if strings.HasSuffix(l.line, " RECENT") {
			out = append(out, "* n RECENT")
			continue
		}
		out = append(out, l.line)
	}
	return out
}

// lineLog is the lines a client read, kept by a goroutine of its own
// (never blocking the server however many come), at most maxLogLines.
type lineLog struct {
	r     *rawConn
	mu    sync.Mutex
	lines []lineAt
	done  chan struct{}
}

const maxLogLines = 10000

func readAllLines(r *rawConn, start time.Time) *lineLog {
	g := &lineLog{r: r, done: make(chan struct{})}
	go func() {
		defer close(g.done)
		for range maxLogLines {
			l, err := r.br.ReadString('\n')
			if err != nil {
				return
			}
			g.mu.Lock()
			g.lines = append(g.lines, lineAt{strings.TrimRight(l, "\r\n"), time.Since(start)})
			g.mu.Unlock()
		}
	}()
	return g
}

// wait waits for the tagged reply tag (or the end of the connection), at
// most a minute.
func (g *lineLog) wait(tag string) {
	for range 60 {
		g.mu.Lock()
		got := slices.ContainsFunc(g.lines, func(l lineAt) bool { return strings.HasPrefix(l.line, tag+" ") })
		g.mu.Unlock()
		if got {
			return
		}
		select {
		case <-g.done:
			return
		case <-time.After(time.Second):
		}
	}
}

// until is wait, then the end of the connection and all the lines read.
func (g *lineLog) until(tag string) []lineAt {
	g.wait(tag)
	g.r.c.Close()
	<-g.done
	return g.lines
}

// snapshot is the lines read so far.
func (g *lineLog) snapshot() []lineAt {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.lines)
}

func lineTexts(l []lineAt) []string {
	out := make([]string, len(l))
	for i, x := range l {
		out[i] = x.line
	}
	return out
}

// TestNotifyBatchesUpdates: 50 messages delivered to the selected INBOX
// and 50 to Work, one pair every 10 ms, reach a session waiting between
// commands with a NOTIFY set as they reach one in IDLE with the same
// set: in one batch the notify delay after the first (one EXISTS, one
// STATUS), without any command, not as 50 EXISTS and 50 STATUS, each
// as it came.
func TestNotifyBatchesUpdates(t *testing.T) {
	base := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base)
		waiter, idler := p.dial(), p.dial()
		waiter.cmd("c", "CREATE Work")
		const set = "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew MessageExpunge))"
		for _, r := range []*rawConn{waiter, idler} {
			r.cmd("s", "SELECT INBOX")
			if got := last(r.cmd("n", set)); !strings.HasPrefix(got, "n OK") {
				t.Fatalf("NOTIFY SET: %q", got)
			}
		}
		idler.send("i IDLE\r\n")
		if got := idler.line(); got != "+ idling" {
			t.Fatalf("IDLE: %q", got)
		}
		for _, r := range []*rawConn{waiter, idler} {
			r.c.SetReadDeadline(time.Time{})
		}
		synctest.Wait() // both sessions wait: the burst comes after their last command
		start := time.Now()
		waitLines, idleLines := readAllLines(waiter, start), readAllLines(idler, start)
		for i := 1; i <= 50; i++ {
			for _, dir := range []string{"", ".Work"} {
				path := writeMaildirMsg(t, filepath.Join(p.maildir, dir), "new", fmt.Sprintf("17000010%02d.M1P1.test", i), testMessage(i, "b@example.org", "burst"))
				p.srv.Delivered(p.maildir, dir, filepath.Base(path))
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		asked := time.Since(start) // no command before: what came, came unasked
		waiter.send("n NOOP\r\n")
		idler.send("DONE\r\n")
		waited, idled := waitLines.until("n"), idleLines.until("i")
		gotWait, gotIdle := untagged(waited, asked), untagged(idled, asked)
		want := []string{"* 50 EXISTS", "* n RECENT", `* STATUS "Work" (MESSAGES 50 UIDNEXT 51 UNSEEN 50)`}
		if !slices.Equal(gotIdle, want) {
			t.Errorf("in IDLE:\n%s\nwant:\n%s", strings.Join(gotIdle, "\n"), strings.Join(want, "\n"))
		}
		if !slices.Equal(gotWait, gotIdle) {
			t.Errorf("between commands (%d lines):\n%s\nin IDLE:\n%s", len(gotWait), strings.Join(gotWait, "\n"), strings.Join(gotIdle, "\n"))
		}
	})
}

// TestNotifyPipelinedCommand: a client with NOTIFY SELECTED sends two
// commands at once, and another session expunges message 1 while the
// first one's reply is on its way. The expunge is not reported between
// the two (the second names message 1 as the client knew it: it hears
// EXPUNGEISSUED), but after the second, unasked, as Dovecot does: it
// sends NOTIFY updates only when no command is queued.
func TestNotifyPipelinedCommand(t *testing.T) {
	base := t.TempDir()
	synctest.Test(t, func(t *testing.T) {
		p := newPipeServer(t, base)
		for i := 1; i <= 2; i++ {
			writeMaildirMsg(t, p.maildir, "cur", fmt.Sprintf("17000011%02d.M1P1.test", i), testMessage(i, "a@example.org", "pipelined"))
		}
		waiter, other := p.dial(), p.dial()
		waiter.cmd("s", "SELECT INBOX")
		other.cmd("s", "SELECT INBOX")
		if got := last(waiter.cmd("n", "NOTIFY SET (SELECTED (MessageNew MessageExpunge))")); !strings.HasPrefix(got, "n OK") {
			t.Fatalf("NOTIFY SET: %q", got)
		}
		// net.Pipe: the write returns once the server has read both
		// commands; its reply to the first waits for the client to read
		// (synctest.Wait: it is blocked there).
		waiter.send("a NOOP\r\nb FETCH 1 (UID)\r\n")
		synctest.Wait()
		other.cmd("d", `STORE 1 +FLAGS.SILENT (\Deleted)`)
		if got := last(other.cmd("e", "EXPUNGE")); !strings.HasPrefix(got, "e OK") {
			t.Fatalf("EXPUNGE: %q", got)
		}
		waiter.c.SetReadDeadline(time.Time{})
		start := time.Now()
		log := readAllLines(waiter, start)
		time.Sleep(2 * time.Second)
		asked := time.Since(start)
		waiter.send("z NOOP\r\n")
		var got []string
		for _, l := range log.until("z") {
			if l.at < asked {
				got = append(got, l.line)
			}
		}
		want := []string{"a OK NOOP completed", "b OK [EXPUNGEISSUED] Some messages were expunged meanwhile", "* 1 EXPUNGE"}
		if !slices.Equal(got, want) {
			t.Errorf("pipelined:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}
