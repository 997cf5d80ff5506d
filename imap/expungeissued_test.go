package imap

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// STORE, COPY and MOVE naming a message another session expunged, which
// this one has not seen go yet, answer as Dovecot 2.3 answers: STORE a
// plain OK (the message that is gone is left alone, without a FETCH;
// cmd-store.c), COPY and MOVE NO [EXPUNGEISSUED] with nothing copied or
// moved, not even the messages still there (cmd-copy.c rolls its
// transaction back), the EXPUNGE before it. UID STORE announces the
// EXPUNGE before its OK, STORE does not.
func TestStoreCopyMoveOfExpungedMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 5; i++ {
		e.deliver(fmt.Sprintf("%d.m%d.host", i, i), testMessage(i, "a@example.org", "msg"))
	}
	a := loggedIn(t, e)
	a.cmd("c", "CREATE Dest")
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	expunge := func(uid string) {
		b.cmd("d", `UID STORE `+uid+` +FLAGS.SILENT (\Deleted)`)
		b.cmd("x", "EXPUNGE")
	}
	expect := func(cmd string, want ...string) {
		t.Helper()
		if got := a.cmd("t", cmd); !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", cmd, got, want)
		}
	}
	const issued = "t NO [EXPUNGEISSUED] Some of the requested messages no longer exist"
	destEmpty := func() {
		t.Helper()
		if got := b.cmd("st", "STATUS Dest (MESSAGES)"); got[0] != `* STATUS "Dest" (MESSAGES 0)` {
			t.Errorf("Dest after a failed COPY or MOVE: %q", got)
		}
	}

	expunge("2") // a: 1 2 3 4 5, 2 gone
	expect(`STORE 2 +FLAGS (\Flagged)`, "t OK Store completed")
	expect(`STORE 1:3 +FLAGS (\Answered)`,
		`* 1 FETCH (FLAGS (\Answered \Recent))`, `* 3 FETCH (FLAGS (\Answered \Recent))`, "t OK Store completed")
	expect("COPY 1:3 Dest", "* 2 EXPUNGE", issued)
	destEmpty()

	expunge("3") // a: 1 3 4 5, 3 gone
	expect("UID MOVE 1:3 Dest", "* 2 EXPUNGE", issued)
	expunge("4") // a: 1 4 5, 4 gone
	expect("MOVE 2 Dest", "* 2 EXPUNGE", issued)
	destEmpty()

	expunge("5") // a: 1 5, 5 gone
	expect(`UID STORE 5 +FLAGS (\Seen)`, "* 2 EXPUNGE", "t OK Store completed")
	// Once it is announced, the others are copied.
	if got := last(a.cmd("t", "COPY 1 Dest")); !strings.HasPrefix(got, "t OK [COPYUID ") {
		t.Errorf("COPY 1 after the EXPUNGE: %q", got)
	}
}
