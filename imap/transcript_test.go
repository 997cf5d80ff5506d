package imap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Raw-socket transcripts of the failures issue 12 lists and of hostile
// input: what goes over the wire, byte for byte where it matters.

func loggedIn(t *testing.T, e *testEnv) *rawConn {
	t.Helper()
	r := dialRaw(t, e.addr, true)
	if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
		t.Fatalf("LOGIN: %q", got)
	}
	return r
}

// expectAtOnce reads the next line, failing if it does not come within a
// few seconds (the old server waited 30 s for bytes never to be sent).
func expectAtOnce(t *testing.T, r *rawConn, prefix string) string {
	t.Helper()
	start := time.Now()
	got := r.line()
	if !strings.HasPrefix(got, prefix) {
		t.Errorf("got %q, want prefix %q", got, prefix)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answer took %v", d)
	}
	return got
}

func TestLiteralOverLimitAnsweredAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AppendLimit = 1 << 20 })
	r := dialRaw(t, e.addr, true)
	r.send("a LOGIN {100000}\r\n")
	expectAtOnce(t, r, "a NO [TOOBIG]")
	// The refused literal's bytes were never asked for: the connection is
	// still in step.
	if got := last(r.cmd("b", "NOOP")); got != "b OK NOOP completed" {
		t.Errorf("after refused LOGIN literal: %q", got)
	}
	if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
		t.Fatalf("LOGIN: %q", got)
	}
	r.cmd("s", "SELECT INBOX")
	r.send("c SEARCH SUBJECT {100000}\r\n")
	expectAtOnce(t, r, "c NO [TOOBIG]")
	r.send("d APPEND INBOX {2000000}\r\n")
	got := expectAtOnce(t, r, "d NO [TOOBIG]")
	if !strings.Contains(got, "APPENDLIMIT") {
		t.Errorf("APPEND refusal does not name the limit: %q", got)
	}
	if got := last(r.cmd("e", "NOOP")); got != "e OK NOOP completed" {
		t.Errorf("after refused APPEND: %q", got)
	}
	// A non-synchronising literal over the limit: the client is already
	// sending it; the server answers, says BYE and closes.
	r.send("f APPEND INBOX {2000000+}\r\nxxxx")
	expectAtOnce(t, r, "f NO [TOOBIG]")
	expectAtOnce(t, r, "* BYE")
}

func TestHostileTranscripts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	cases := []struct {
		name, cmd, want string
	}{
		{"10k-deep NOT", "SEARCH " + strings.Repeat("NOT ", 10000) + "ALL", "x BAD Too deeply nested"},
		{"10k-deep parens", "SEARCH " + strings.Repeat("(", 10000) + "ALL" + strings.Repeat(")", 10000), "x BAD Too deeply nested"},
		{"huge set within the line", "UID FETCH " + strings.Repeat("1:4294967295,", 4000) + "* (FLAGS)", "x OK"},
		{"sequence numbers beyond the mailbox", "FETCH " + strings.Repeat("1:4294967295,", 4000) + "* (FLAGS)", "x BAD Invalid messageset"},
		{"sequence number beyond the mailbox in STORE", "STORE 1 +FLAGS (\\Seen)", "x BAD Invalid messageset"},
		{"sequence number beyond the mailbox in COPY", "COPY 9 Trash", "x BAD Invalid messageset"},
		{"\\Recent in STORE", "UID STORE 1 +FLAGS (\\Recent)", "x BAD Invalid system flag \\Recent"},
		{"\\Recent in APPEND", "APPEND INBOX (\\Recent) {1+}\r\nx", "x BAD Invalid system flag \\Recent"},
		{"set of 20,000 ranges", "FETCH " + strings.Repeat("1,", 20000) + "1 (FLAGS)", "x BAD Sequence set too large"},
		{"NUL in quoted string", "SEARCH SUBJECT \"a\x00b\"", "x BAD Error in IMAP command: NUL in quoted string"},
		{"unknown command", "FROB", "x BAD Unknown command FROB"},
		{"bad search key", "SEARCH FOO", "x BAD Unknown search key FOO"},
		{"invalid mUTF-7 name", "SELECT \"&Jjo\"", "x NO Mailbox name is not valid mUTF-7"},
		{"invalid mUTF-7 pattern (as Dovecot: matches nothing)", "LIST \"\" \"&Jjo!\"", "x OK"},
		{"STATUS of a missing folder", "STATUS nosuch (MESSAGES)", "x NO [NONEXISTENT]"},
		{"COPY to a missing folder", "UID COPY 1:* nosuch", "x NO"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := last(r.cmd("x", c.cmd))
			if !strings.HasPrefix(got, c.want) {
				t.Errorf("%.60q: got %q, want prefix %q", c.cmd, got, c.want)
			}
			if strings.Contains(got, "SERVERBUG") {
				t.Errorf("client error reported as a server bug: %q", got)
			}
			if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
				t.Errorf("connection out of step afterwards: %q", got)
			}
		})
	}
}

func TestNULInLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.addr, true)
	if got := last(r.cmd("a", "LOGIN \"alice\x00\" secret")); !strings.HasPrefix(got, "a BAD") {
		t.Errorf("NUL in quoted login: %q", got)
	}
	r.send("b LOGIN {9}\r\n")
	r.line()
	r.send("alice\x00xyz secret\r\n")
	if got := last(r.until("b")); !strings.HasPrefix(got, "b NO [AUTHENTICATIONFAILED]") {
		t.Errorf("NUL in literal login: %q", got)
	}
}

func TestThreeFailedLoginsClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.addr, true)
	for i := 1; i <= 3; i++ {
		tag := fmt.Sprint("a", i)
		if got := last(r.cmd(tag, "LOGIN alice wrong")); !strings.HasPrefix(got, tag+" NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("failure %d: %q", i, got)
		}
	}
	if got := r.line(); !strings.HasPrefix(got, "* BYE") {
		t.Errorf("after 3 failures: %q", got)
	}
}

// RFC 2971's maximum: 30 pairs, values of 1,024 octets.
func TestIDMaximum(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.addr, true)
	var b strings.Builder
	b.WriteString("ID (")
	for i := range 30 {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "\"field%02d%s\" \"%s\"", i, strings.Repeat("k", 22), strings.Repeat("v", 1024))
	}
	b.WriteString(")")
	got := r.cmd("i", b.String())
	if last(got) != "i OK ID completed" || got[0] != `* ID ("name" "courriel")` {
		t.Errorf("maximal ID: %q", got)
	}
}

const groupMessage = "From: Real Name <user@domain>\r\n" +
	"To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\r\n" +
	"Cc: empty:;\r\n" +
	"Date: Thu, 15 Feb 2007 01:02:03 +0200\r\n" +
	"Subject: groups\r\n\r\nbody\r\n"

func appendRaw(t *testing.T, r *rawConn, box, msg string) {
	t.Helper()
	r.send(fmt.Sprintf("ap APPEND %s {%d+}\r\n%s\r\n", box, len(msg), msg))
	if got := last(r.until("ap")); !strings.HasPrefix(got, "ap OK") {
		t.Fatalf("APPEND: %q", got)
	}
}

func TestIssue12Transcripts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	appendRaw(t, r, "INBOX", groupMessage)
	appendRaw(t, r, "INBOX", "From: x@y\r\nSubject: no to\r\n\r\nhi\r\n")
	appendRaw(t, r, "INBOX", "To: \"Some One\" <some (comment) @ example.org>\r\nSubject: comment\r\n\r\nhi\r\n")

	t.Run("CLOSE after EXAMINE", func(t *testing.T) {
		r.cmd("e", "EXAMINE INBOX")
		if got := last(r.cmd("c", "CLOSE")); got != "c OK Completed" {
			t.Errorf("CLOSE after EXAMINE: %q", got)
		}
	})
	got := r.cmd("s", "SELECT INBOX")
	if !strings.Contains(strings.Join(got, "\n"), "* 3 RECENT") {
		t.Errorf("first SELECT does not get the messages as \\Recent: %q", got)
	}
	t.Run("ENVELOPE with groups", func(t *testing.T) {
		got := r.cmd("f", "FETCH 1 ENVELOPE")
		want := `* 1 FETCH (ENVELOPE ("Thu, 15 Feb 2007 01:02:03 +0200" "groups" (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) ((NIL NIL "empty" NIL)(NIL NIL NIL NIL)) NIL NIL NIL))`
		if got[0] != want {
			t.Errorf("ENVELOPE:\n got %s\nwant %s", got[0], want)
		}
	})
	t.Run("SEARCH on addresses", func(t *testing.T) {
		for _, c := range []struct{ q, want string }{
			{"SEARCH TO g2@d2.org", "* SEARCH 1"},
			{"SEARCH TO group2", "* SEARCH 1"},
			{"SEARCH TO some@example.org", "* SEARCH 3"},
			{`SEARCH HEADER TO ""`, "* SEARCH 1 3"},
			{"SEARCH RECENT", "* SEARCH 1 2 3"},
		} {
			if got := r.cmd("q", c.q); got[0] != c.want {
				t.Errorf("%s: %q, want %q", c.q, got, c.want)
			}
		}
	})
	t.Run("BINARY partial has its origin", func(t *testing.T) {
		got := r.cmd("b", "FETCH 2 (BINARY.PEEK[1]<0.2>)")
		if got[0] != "* 2 FETCH (BINARY[1]<0> {2}" {
			t.Errorf("BINARY partial: %q", got)
		}
	})
	t.Run("keyword announced before FETCH shows it", func(t *testing.T) {
		got := r.cmd("k", "STORE 1 +FLAGS ($Fresh)")
		if len(got) < 4 || !strings.HasPrefix(got[0], "* FLAGS (") || !strings.Contains(got[0], "$Fresh") ||
			!strings.HasPrefix(got[1], "* OK [PERMANENTFLAGS (") || !strings.Contains(got[2], "$Fresh") {
			t.Errorf("STORE of a new keyword: %q", got)
		}
	})
	t.Run("MOVE to the same mailbox", func(t *testing.T) {
		got := r.cmd("m", "MOVE 1 INBOX")
		want := []string{"* 1 EXPUNGE", "* 3 EXISTS"}
		i := 0
		for _, l := range got {
			if i < len(want) && l == want[i] {
				i++
			}
		}
		if i != len(want) || !strings.HasPrefix(got[0], "* OK [COPYUID ") {
			t.Errorf("MOVE to INBOX: %q, want COPYUID then %q", got, want)
		}
	})
	t.Run("LSUB shows unsubscribed parents as \\Noselect", func(t *testing.T) {
		r.cmd("c1", "CREATE p.child")
		r.cmd("c2", "SUBSCRIBE p.child")
		got := r.cmd("l", `LSUB "" %`)
		if !slicesContains(got, `* LSUB (\Noselect) "." "p"`) {
			t.Errorf("LSUB %%: %q", got)
		}
		got = r.cmd("l", `LIST (SUBSCRIBED RECURSIVEMATCH) "" %`)
		// Dovecot's answer: \NonExistent to LIST-EXTENDED, the
		// children only when RETURN (CHILDREN) asks (see
		// TestListNonExistentParentAsDovecot).
		if !slicesContains(got, `* LIST (\NonExistent) "." "p" ("CHILDINFO" ("SUBSCRIBED"))`) {
			t.Errorf("LIST RECURSIVEMATCH: %q", got)
		}
	})
}

func slicesContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// An office behind one NAT address: 10 users with 5 connections each (what
// Thunderbird opens) are all served, even with a small cap on connections
// that have not logged in: a logged-in one counts against its user.
func TestFiftyConnectionsOneAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.MaxConnsPerIP = 8; o.MaxUserIPConns = 0 })
	for i := range 10 {
		e.auth.add(e.base, fmt.Sprint("user", i), "pw")
	}
	for i := range 50 {
		r := dialRaw(t, e.addr, true)
		if got := last(r.cmd("l", fmt.Sprintf("LOGIN user%d pw", i%10))); !strings.HasPrefix(got, "l OK") {
			t.Fatalf("connection %d refused: %q", i+1, got)
		}
	}
	// The eleventh connection of one user from the address is over
	// Dovecot's mail_max_userip_connections; other users are not affected.
	for i := range 6 {
		r := dialRaw(t, e.addr, true)
		got := last(r.cmd("l", "LOGIN user0 pw"))
		if i < 5 && !strings.HasPrefix(got, "l OK") {
			t.Fatalf("login %d of user0: %q", i+6, got)
		}
		if i == 5 && !strings.HasPrefix(got, "l NO [LIMIT]") {
			t.Errorf("login 11 of user0: %q", got)
		}
	}
	r := dialRaw(t, e.addr, true)
	if got := last(r.cmd("l", "LOGIN user1 pw")); !strings.HasPrefix(got, "l OK") {
		t.Errorf("user1 after user0 hit its limit: %q", got)
	}
}

// Another program renumbered the folder under an open session: the
// session ends with BYE rather than act on UIDs that mean nothing now: at
// its next command, at once in IDLE and while it waits with a NOTIFY set
// for its selected folder (that BYE was written, never sent: the wait's
// error closed the connection unflushed).
func TestRenumberedFolderEndsSession(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"NOOP", "IDLE", "NOTIFY"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(o *Options) { o.IdleCheck = 100 * time.Millisecond })
			for i := 1; i <= 3; i++ {
				writeMaildirMsg(t, e.maildir, "cur", fmt.Sprintf("%d.M1P1.test:2,S", i), testMessage(i, "a@example.org", "hi"))
			}
			r := loggedIn(t, e)
			if got := last(r.cmd("s", "SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
				t.Fatalf("SELECT: %q", got)
			}
			switch how {
			case "IDLE":
				r.send("i IDLE\r\n")
				expectAtOnce(t, r, "+ ")
			case "NOTIFY":
				if got := last(r.cmd("n", "NOTIFY SET (SELECTED (MessageNew MessageExpunge FlagChange))")); !strings.HasPrefix(got, "n OK") {
					t.Fatalf("NOTIFY: %q", got)
				}
			}
			path := filepath.Join(e.maildir, "dovecot-uidlist")
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			re := regexp.MustCompile(` V(\d+) `)
			m := re.FindSubmatch(data)
			if m == nil {
				t.Fatalf("uidlist header %q", data)
			}
			v, _ := strconv.Atoi(string(m[1]))
			time.Sleep(20 * time.Millisecond) // a distinct mtime on coarse clocks
			renamed := re.ReplaceAll(data, []byte(fmt.Sprintf(" V%d ", v+1000)))
			if err := os.WriteFile(path+".tmp", renamed, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".tmp", path); err != nil {
				t.Fatal(err)
			}
			// Something in cur/ changes too, so that a look sees it.
			writeMaildirMsg(t, e.maildir, "cur", "4.M1P1.test:2,S", testMessage(4, "a@example.org", "hi"))
			if how == "NOOP" {
				r.send("n NOOP\r\n")
			}
			if got := r.line(); !strings.HasPrefix(got, "* BYE [UNAVAILABLE] Mailbox renumbered") {
				t.Errorf("after renumbering: %q, want BYE", got)
			}
		})
	}
}

// Shutdown tells idling clients goodbye, from the session's own goroutine.
func TestShutdownSaysBye(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	r.send("i IDLE\r\n")
	if got := r.line(); !strings.HasPrefix(got, "+") {
		t.Fatalf("IDLE: %q", got)
	}
	waiting := loggedIn(t, e) // between commands
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawConn{r, waiting} {
		if got := c.line(); got != "* BYE Server shutting down" {
			t.Errorf("at shutdown: %q", got)
		}
	}
}

// TestRecentSeenByExamineAndStatus: mail that no session has seen is
// \Recent for EXAMINE and STATUS (without claiming it), even in a server
// that never selected the folder (a restart here), and after a SELECT
// claimed it, nothing is recent to the others.
func TestRecentSeenByExamineAndStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1.M1.test", testMessage(1, "a@example.org", "one"))
	e.deliver("2.M2.test", testMessage(2, "b@example.org", "two"))
	e.restart()
	r := loggedIn(t, e)
	if got := strings.Join(r.cmd("s", "STATUS INBOX (RECENT MESSAGES)"), "\n"); !strings.Contains(got, "(MESSAGES 2 RECENT 2)") {
		t.Errorf("STATUS before any SELECT:\n%s", got)
	}
	if got := strings.Join(r.cmd("e", "EXAMINE INBOX"), "\n"); !strings.Contains(got, "* 2 RECENT") {
		t.Errorf("EXAMINE before any SELECT:\n%s", got)
	}
	r2 := loggedIn(t, e)
	if got := strings.Join(r2.cmd("s", "SELECT INBOX"), "\n"); !strings.Contains(got, "* 2 RECENT") {
		t.Errorf("first SELECT:\n%s", got)
	}
	if got := strings.Join(r.cmd("e2", "EXAMINE INBOX"), "\n"); !strings.Contains(got, "* 0 RECENT") {
		t.Errorf("EXAMINE after another session's SELECT:\n%s", got)
	}
}

// STORE's untagged FETCH has a space between items only (RFC 9051 §9
// msg-att): "(FLAGS (\Seen) )" is refused by strict parsers.
func TestStoreFetchReplyGrammar(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1.m1.host", testMessage(1, "a@example.org", "one"))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	cases := []struct{ cmd, want string }{
		{`STORE 1 +FLAGS (\Seen)`, `* 1 FETCH (FLAGS (\Seen \Recent))`},
		{`UID STORE 1 +FLAGS (\Flagged)`, `* 1 FETCH (FLAGS (\Flagged \Seen \Recent) UID 1)`},
		{`UID STORE 1 -FLAGS.SILENT (\Flagged)`, ``},
	}
	for _, c := range cases {
		got := r.cmd("x", c.cmd)
		if last(got) != "x OK Store completed" && !strings.HasPrefix(last(got), "x OK") {
			t.Errorf("%s: %q", c.cmd, got)
		}
		untagged := strings.Join(got[:len(got)-1], "\n")
		if untagged != c.want {
			t.Errorf("%s: got %q, want %q", c.cmd, untagged, c.want)
		}
	}
	r.cmd("e", "ENABLE CONDSTORE")
	got := r.cmd("y", `STORE 1 -FLAGS.SILENT (\Seen)`)
	if len(got) != 2 || !regexp.MustCompile(`^\* 1 FETCH \(UID 1 MODSEQ \(\d+\)\)$`).MatchString(got[0]) {
		t.Errorf("STORE .SILENT with CONDSTORE: %q", got)
	}
}

// A message another session expunged is not served to a session that has
// not seen the EXPUNGE yet, and the tagged OK says why (RFC 5530
// EXPUNGEISSUED, as Dovecot answers); the EXPUNGE comes at the NOOP.
func TestFetchOfExpungedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.deliver("1.m1.host", testMessage(1, "a@example.org", "one"))
	e.deliver("2.m2.host", testMessage(2, "a@example.org", "two"))
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	b.cmd("d", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.cmd("x", "EXPUNGE")
	got := a.cmd("f", "FETCH 1:2 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
	if l := last(got); !strings.HasPrefix(l, "f OK [EXPUNGEISSUED]") {
		t.Errorf("tagged reply %q, want OK [EXPUNGEISSUED]", l)
	}
	if !strings.HasPrefix(got[0], "* 2 FETCH (UID 2 ") || slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "* 1 ") }) {
		t.Errorf("FETCH of 1:2 after another session expunged 1: %q", got)
	}
	if got := a.cmd("n", "NOOP"); len(got) < 2 || got[0] != "* 1 EXPUNGE" {
		t.Errorf("NOOP: %q", got)
	}
	// UID once, even when asked for.
	got = a.cmd("u", "UID FETCH 2 (FLAGS UID)")
	if len(got) != 2 || got[0] != `* 1 FETCH (UID 2 FLAGS (\Recent))` {
		t.Errorf("UID FETCH (FLAGS UID): %q", got)
	}
}

// STATUS of the selected mailbox counts as recent a message that arrived
// since the last command, which the session claims at once: not
// "RECENT 0" just before "* 1 RECENT".
func TestStatusOfSelectedCountsNewRecent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	e.deliver("1.m1.host", testMessage(1, "a@example.org", "new"))
	got := a.cmd("t", "STATUS INBOX (MESSAGES RECENT)")
	if !slices.Contains(got, `* STATUS "INBOX" (MESSAGES 1 RECENT 1)`) {
		t.Errorf("STATUS of the selected mailbox after a delivery: %q", got)
	}
}

// TestLongLineSaysBYE: a command line past 64 KiB outside literals ends
// the connection at once, as Dovecot's imap-login does ("* BYE Too long
// argument."), before or after login, after a syntax error early in the
// line, and under COMPRESS, where 64 MiB of line cost the client a few
// KiB: the server read such a line to its end (QA: 200 MiB without CRLF
// read, and answered only at the end of the line, which never came).
func TestLongLineSaysBYE(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		name     string
		login    bool
		compress bool
		head     string // then 'a' without end
		want     []string
	}{
		{"before login", false, false, "x LOGIN ", []string{"x BAD Too long argument.", "* BYE Too long argument."}},
		{"long tag", false, false, "", []string{"* BYE Too long argument."}},
		{"logged in", true, false, "x SELECT ", []string{"x BAD Too long argument.", "* BYE Too long argument."}},
		{"after a syntax error", true, false, "x STATUS INBOX ) ", []string{"x BAD Error in IMAP command: Expected (", "* BYE Too long argument."}},
		{"after a refusal", true, false, "x FETCH 1 ", []string{"* BYE Too long argument."}},
		{"sequence set too large", true, false, "s SELECT INBOX\r\nx SEARCH UID " + strings.Repeat("1,", 20000), []string{"s OK [READ-WRITE]", "x BAD Sequence set too large", "* BYE Too long argument."}},
		{"under COMPRESS", true, true, "x SELECT ", []string{"x BAD Too long argument.", "* BYE Too long argument."}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := dialRaw(t, e.addr, true)
			if c.login {
				r.cmd("l", "LOGIN alice secret")
			}
			var w io.Writer = r.c
			if c.compress {
				r.cmd("z", "COMPRESS DEFLATE")
				fc := newFlateConn(r.c)
				r.br, w = bufio.NewReader(fc), fc
			}
			const line = 64 << 20
			sent := make(chan int, 1)
			go func() {
				n, _ := w.Write([]byte(c.head))
				chunk := bytes.Repeat([]byte("a"), 64<<10)
				for n < line {
					m, err := w.Write(chunk)
					n += m
					if err != nil {
						break
					}
				}
				sent <- n
			}()
			for _, want := range c.want {
				got := r.line()
				for strings.HasPrefix(got, "* ") && !strings.HasPrefix(got, "* BYE") {
					got = r.line() // SELECT's
				}
				if !strings.HasPrefix(got, want) {
					t.Errorf("got %q, want %q", got, want)
				}
			}
			r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if l, err := r.br.ReadString('\n'); err == nil {
				t.Errorf("connection still open after BYE: %q", l)
			}
			r.c.Close()
			// Compressed, the whole line may fit in the sockets' buffers:
			// the BYE tells there that the server stopped reading.
			if n := <-sent; n >= line && !c.compress {
				t.Errorf("the server read all %d bytes of the line", n)
			}
		})
	}
}
