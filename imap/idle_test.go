package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func idleClient(t *testing.T, e *testEnv) (*imapclient.Client, chan uint32) {
	exists := make(chan uint32, 16)
	c := e.login(&imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c, exists
}

func waitExists(t *testing.T, ch chan uint32, want uint32, bound time.Duration) {
	t.Helper()
	timeout := time.After(bound)
	for {
		select {
		case n := <-ch:
			if n == want {
				return
			}
		case <-timeout:
			t.Fatalf("no EXISTS %d within %v", want, bound)
		}
	}
}

func TestIdleSeesNotifiedDelivery(t *testing.T) {
	t.Parallel()
	// A long IdleCheck: only Notify can explain a prompt EXISTS.
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	c, exists := idleClient(t, e)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	e.deliver("1700000100.M1P1.test", testMessage(1, "a@example.org", "pushed"))
	e.srv.Notify(e.maildir)
	waitExists(t, exists, 1, 5*time.Second)
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// Another program's delivery, flag change and expunge reach a session in
// IDLE: at once through inotify (with an hour between polls, nothing else
// can explain it), or at the next poll when inotify is off, as on a
// network file system.
func TestIdleSeesOtherProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts func(*Options)
	}{
		{"inotify", func(o *Options) { o.IdleCheck = time.Hour }},
		{"poll", func(o *Options) { o.PollOnly = true; o.IdleCheck = 100 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			exists := make(chan uint32, 16)
			expunged := make(chan uint32, 16)
			flagged := make(chan []goimap.Flag, 16)
			c := e.login(&imapclient.UnilateralDataHandler{
				Mailbox: func(d *imapclient.UnilateralDataMailbox) {
					if d.NumMessages != nil {
						exists <- *d.NumMessages
					}
				},
				Expunge: func(seq uint32) { expunged <- seq },
				Fetch: func(m *imapclient.FetchMessageData) {
					if buf, err := m.Collect(); err == nil && buf.Flags != nil {
						flagged <- buf.Flags
					}
				},
			})
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			idle, err := c.Idle()
			if err != nil {
				t.Fatal(err)
			}
			e.deliver("1700000101.M1P1.test", testMessage(1, "a@example.org", "dropped")) // no Notify
			waitExists(t, exists, 1, 5*time.Second)

			// A flag set by another program: a rename, into cur/ with :2,F
			// (from new/, or from cur/ if the server moved it there).
			found, _ := filepath.Glob(filepath.Join(e.maildir, "[nc][eu][wr]", "1700000101.M1P1.test*"))
			if len(found) != 1 {
				t.Fatalf("the message's file: %v", found)
			}
			flaggedName := filepath.Join(e.maildir, "cur", strings.SplitN(filepath.Base(found[0]), ":", 2)[0]+":2,F")
			if err := os.Rename(found[0], flaggedName); err != nil {
				t.Fatal(err)
			}
			select {
			case f := <-flagged:
				if !slices.Contains(f, goimap.FlagFlagged) {
					t.Errorf("flags %v, want \\Flagged", f)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no FETCH FLAGS within 5 s of another program's flag change")
			}
			if err := os.Remove(flaggedName); err != nil {
				t.Fatal(err)
			}
			select {
			case seq := <-expunged:
				if seq != 1 {
					t.Errorf("EXPUNGE %d, want 1", seq)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no EXPUNGE within 5 s of another program's removal")
			}
			idle.Close()
			idle.Wait()
			// And on NOOP without IDLE.
			e.deliver("1700000102.M1P1.test", testMessage(2, "a@example.org", "dropped"))
			waitFor(t, "EXISTS 1 on NOOP", func() bool {
				c.Noop().Wait()
				return c.Mailbox().NumMessages == 1
			})
		})
	}
}

func TestUIDsSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver("170000020"+string(rune('0'+i))+".M1P1.test", testMessage(i, "a@example.org", "x"))
	}
	c := e.login(nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(seqs(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	e.restart()
	e.deliver("1700000300.M1P1.test", testMessage(9, "a@example.org", "after"))
	c = e.login(nil)
	sel2, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.UIDValidity != sel.UIDValidity {
		t.Errorf("UIDVALIDITY changed: %d -> %d", sel.UIDValidity, sel2.UIDValidity)
	}
	data, err := c.UIDSearch(&goimap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := data.AllUIDs(); len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 4 {
		t.Errorf("UIDs after restart = %v, want [2 3 4] (UID 1 never reused)", got)
	}
}

// A delivery handed over file by file (delivery.Options.OnDelivered) is
// pushed at once to an idling session, without a listing of the folder.
func TestIdleSeesDeliveredFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	c, exists := idleClient(t, e)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		name := e.deliver(fmt.Sprintf("17000002%02d.M1P1.test", i), testMessage(i, "a@example.org", "pushed"))
		e.srv.Delivered(e.maildir, "", name)
		waitExists(t, exists, uint32(i), 5*time.Second)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// The sessions wakeIdlers looks at are those waiting now: in IDLE on a
// mailbox, or with a NOTIFY set; IDLE's end, NOTIFY NONE and a dropped
// connection take them out, so that nothing is left once all are gone.
func TestWakeSetsFollowSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	sets := func() (idlers, notifiers int) {
		e.srv.mu.Lock()
		defer e.srv.mu.Unlock()
		for _, set := range e.srv.idlers {
			idlers += len(set)
		}
		return idlers, len(e.srv.notifiers)
	}
	want := func(what string, idlers, notifiers int) {
		t.Helper()
		waitFor(t, what, func() bool {
			i, n := sets()
			return i == idlers && n == notifiers
		})
	}
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	a.send("i IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	b.send("i IDLE\r\n")
	b.line()
	want("two sessions in IDLE", 2, 0)
	a.send("DONE\r\n")
	a.until("i")
	want("one left IDLE", 1, 0)
	if got := a.cmd("n", "NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (PERSONAL (MessageNew))"); !strings.HasPrefix(last(got), "n OK") {
		t.Fatalf("NOTIFY SET: %q", got)
	}
	// a now waits for its next command on its selected mailbox too, as
	// its NOTIFY set asks for SELECTED events.
	want("a NOTIFY set", 2, 1)
	// A delivery wakes both kinds at once (an hour between polls).
	e.deliver("1700000400.M1P1.test", testMessage(1, "a@example.org", "both"))
	e.srv.Notify(e.maildir)
	expectAtOnce(t, b, "* 1 EXISTS")
	expectAtOnce(t, a, "* 1 EXISTS")
	a.cmd("x", "NOTIFY NONE")
	want("NOTIFY NONE", 1, 0)
	b.c.Close() // dropped in IDLE
	want("nobody waiting", 0, 0)
}

// A NOTIFY set's mailboxes hear other programs at once too: a message
// another program drops into Work reaches the session as a STATUS, with
// an hour between the session's own looks (inotify), and with PollOnly at
// its next look.
func TestNotifySeesOtherProcess(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts func(*Options)
	}{
		{"inotify", func(o *Options) { o.IdleCheck = time.Hour; o.WatchedIdleCheck = time.Hour }},
		{"poll", func(o *Options) { o.PollOnly = true; o.IdleCheck = 100 * time.Millisecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts)
			a := loggedIn(t, e)
			a.cmd("c", "CREATE Work")
			if got := a.cmd("n", "NOTIFY SET (PERSONAL (MessageNew MessageExpunge))"); !strings.HasPrefix(last(got), "n OK") {
				t.Fatalf("NOTIFY SET: %q", got)
			}
			writeMaildirMsg(t, filepath.Join(e.maildir, ".Work"), "new", "1700000501.M1P1.test", testMessage(1, "a@example.org", "dropped"))
			got := expectAtOnce(t, a, `* STATUS "Work"`)
			if !strings.Contains(got, "MESSAGES 1") {
				t.Errorf("STATUS after another program's delivery: %q", got)
			}
		})
	}
}
