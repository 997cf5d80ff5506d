package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/imap/mailstore"
)

// A STORE over more messages than one piece (storeChunk) answers one
// FETCH per message, in order, and every file has its new name when the
// tagged OK comes; UNCHANGEDSINCE reports the messages another session
// changed in any piece.
func TestStoreInPieces(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := storeChunk + 7
	for i := 1; i <= n; i++ {
		writeMaildirMsg(t, e.maildir, "new", fmt.Sprintf("%d.M%dP1.test", 1700000000+i, i), "Subject: x\n\nx\n")
	}
	r := dialRaw(t, e.addr, true)
	r.cmd("a", "LOGIN alice secret")
	if got := last(r.cmd("b", "SELECT INBOX (CONDSTORE)")); !strings.HasPrefix(got, "b OK") {
		t.Fatalf("SELECT: %q", got)
	}
	lines := r.cmd("c", `STORE 1:* +FLAGS (\Seen)`)
	if got := last(lines); !strings.HasPrefix(got, "c OK") {
		t.Fatalf("STORE: %q", got)
	}
	// The files as the tagged OK found them.
	ents, err := os.ReadDir(filepath.Join(e.maildir, "cur"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if !strings.HasSuffix(ent.Name(), ":2,S") {
			t.Fatalf("%s not renamed by the tagged OK", ent.Name())
		}
	}
	next := 1
	for _, l := range lines[:len(lines)-1] {
		// \Recent too: the messages were delivered into new/.
		want := fmt.Sprintf(`* %d FETCH (FLAGS (\Seen \Recent) UID %d MODSEQ (`, next, next)
		if !strings.HasPrefix(l, want) {
			t.Fatalf("%q, want %q…", l, want)
		}
		next++
	}
	if next != n+1 {
		t.Fatalf("%d FETCH responses, want %d", next-1, n)
	}

	// UNCHANGEDSINCE across pieces.
	var highest uint64
	for _, l := range r.cmd("d", "STATUS INBOX (HIGHESTMODSEQ)") {
		fmt.Sscanf(l, `* STATUS "INBOX" (HIGHESTMODSEQ %d)`, &highest)
	}
	if highest == 0 {
		t.Fatal("no HIGHESTMODSEQ")
	}
	other := dialRaw(t, e.addr, true)
	other.cmd("a", "LOGIN alice secret")
	other.cmd("b", "SELECT INBOX")
	changed := []int{2, storeChunk + 3}
	for _, u := range changed {
		if got := last(other.cmd("c", fmt.Sprintf(`UID STORE %d +FLAGS (\Flagged)`, u))); !strings.HasPrefix(got, "c OK") {
			t.Fatalf("other STORE: %q", got)
		}
	}
	lines = r.cmd("e", fmt.Sprintf(`UID STORE 1:* (UNCHANGEDSINCE %d) +FLAGS.SILENT (\Answered)`, highest))
	want := fmt.Sprintf("e OK [MODIFIED %d,%d]", changed[0], changed[1])
	if got := last(lines); !strings.HasPrefix(got, want) {
		t.Errorf("conditional STORE: %q, want %q…", got, want)
	}
	answered := 0
	for _, l := range lines {
		// .SILENT: the modseq alone (the other session's changes come
		// with their flags).
		if strings.Contains(l, " FETCH (UID ") && strings.Contains(l, "MODSEQ") && !strings.Contains(l, "FLAGS") {
			answered++
		}
	}
	if answered != n-len(changed) {
		t.Errorf("%d FETCH responses with the new modseq, want %d", answered, n-len(changed))
	}
}

// While another process holds the folder's uidlist lock past the wait
// (Dovecot syncing a large folder), FETCH BODY[] still answers its data
// with \Seen, and STORE answers OK with the new flags, as Dovecot 2.3
// answers when its own lock wait times out (checked with a lock held by
// hand); the files are renamed once the lock is free, at a later command.
// Meanwhile another session of the folder is not held up.
func TestFlagChangesWhileUIDListLockedElsewhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 2; i++ {
		e.deliver(fmt.Sprintf("%d.M%dP1.host", 1700000000+i, i), testMessage(i, "a@example.org", "m"))
	}
	a, b := loggedIn(t, e), loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b.cmd("s", "SELECT INBOX")
	names := func() string {
		ents, _ := os.ReadDir(filepath.Join(e.maildir, "cur"))
		var s []string
		for _, e := range ents {
			s = append(s, e.Name())
		}
		return strings.Join(s, " ")
	}
	before := names()
	lock := filepath.Join(e.maildir, "dovecot-uidlist.lock")
	if err := os.WriteFile(lock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a.send("f FETCH 1 BODY[]\r\n")
	time.Sleep(200 * time.Millisecond)
	t0 := time.Now()
	if got := b.cmd("g", "FETCH 2 (FLAGS)"); !strings.HasPrefix(last(got), "g OK") {
		t.Errorf("FETCH FLAGS in another session: %q", got)
	}
	// Held up behind the first session, it would wait out the first
	// one's lock wait (10 s); a bound, not a measure of speed.
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("another session's FETCH FLAGS waited %v for the first one's wait for the lock", d)
	}
	b.send("st STORE 2 +FLAGS (\\Flagged)\r\n")
	fa := strings.Join(a.until("f"), "\n")
	if !strings.HasPrefix(fa, "* 1 FETCH (BODY[] {") || !strings.Contains(fa, "Hello number 1.") || !strings.Contains(fa, "FLAGS (\\Seen") || !strings.Contains(fa, "\nf OK") {
		t.Errorf("FETCH BODY[] while another process holds the lock:\n%s", fa)
	}
	fb := strings.Join(b.until("st"), "\n")
	if !strings.Contains(fb, "* 2 FETCH (FLAGS (\\Flagged))") || !strings.Contains(fb, "\nst OK") {
		t.Errorf("STORE while another process holds the lock:\n%s", fb)
	}
	if now := names(); now != before {
		t.Errorf("files renamed while another process holds the lock: %s, was %s", now, before)
	}
	// Both changes are on disk before their OKs, for the next open to
	// make should courriel crash now.
	pending := filepath.Join(e.maildir, mailstore.PendingFlagsFileName)
	data, err := os.ReadFile(pending)
	for i := 1; i <= 2; i++ {
		if base := fmt.Sprintf("%d.M%dP1.host", 1700000000+i, i); !strings.Contains(string(data), base) {
			t.Errorf("the change of message %d is not in %s (%v)", i, mailstore.PendingFlagsFileName, err)
		}
	}
	os.Remove(lock)
	a.cmd("n", "NOOP")
	if now := names(); !strings.Contains(now, "P1.host,S=") || strings.Count(now, ":2,S") != 1 || strings.Count(now, ":2,F") != 1 {
		t.Errorf("after the lock was freed and a NOOP: %s", now)
	}
	if _, err := os.Stat(pending); !os.IsNotExist(err) {
		t.Errorf("%s left once its renames were made (%v)", mailstore.PendingFlagsFileName, err)
	}
}
