package mailstore

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// Dovecot and courriel share the UIDVALIDITY counter: a folder Dovecot
// creates after one of ours gets the next value, and ours after Dovecot's
// the one after that; each sees the other's folder with its UIDVALIDITY.
func TestDovecotSharesUIDValidityCounter(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	st := testStore(t)
	reg := NewRegistry()
	if err := st.Create("Ours"); err != nil {
		t.Fatal(err)
	}
	mb, err := reg.Open(st, "Ours")
	if err != nil {
		t.Fatal(err)
	}
	ours := mb.UIDValidity()
	mb.Release()

	out := testenv.RunDovecot(t, st.Path(), "", "a CREATE Theirs\r\nb STATUS Theirs (UIDVALIDITY)\r\n"+
		"c STATUS Ours (UIDVALIDITY)\r\nd LOGOUT\r\n")
	if !strings.Contains(out, fmt.Sprintf("STATUS Ours (UIDVALIDITY %d)", ours)) {
		t.Errorf("Dovecot sees another UIDVALIDITY for our folder (want %d):\n%s", ours, out)
	}
	m := regexp.MustCompile(`STATUS Theirs \(UIDVALIDITY (\d+)\)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no STATUS for Dovecot's folder:\n%s", out)
	}
	theirs, _ := strconv.ParseUint(m[1], 10, 32)
	if uint32(theirs) != ours+1 {
		t.Errorf("Dovecot's folder got UIDVALIDITY %d, want %d (the counter after ours)", theirs, ours+1)
	}

	reg = NewRegistry()
	mb, err = reg.Open(st, "Theirs")
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.UIDValidity(); uint64(got) != theirs {
		t.Errorf("courriel reads Dovecot's folder with UIDVALIDITY %d, want %d", got, theirs)
	}
	mb.Release()
	if err := st.Create("Ours2"); err != nil {
		t.Fatal(err)
	}
	mb, err = reg.Open(st, "Ours2")
	if err != nil {
		t.Fatal(err)
	}
	if got := mb.UIDValidity(); uint64(got) <= theirs {
		t.Errorf("our next folder got UIDVALIDITY %d, not above Dovecot's %d", got, theirs)
	}
	mb.Release()
}

// What courriel writes now (records appended to dovecot-uidlist by APPEND
// and Delivered, hard-linked copies, moves) reads the same in Dovecot, and
// what Dovecot then appends is adopted with Dovecot's UIDs.
func TestDovecotReadsAppendedUIDList(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	st := testStore(t)
	for i := 1; i <= 2; i++ {
		deliverFile(t, st, "", i)
	}
	if err := st.Create("Archive"); err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry()
	inbox, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	archive, err := reg.Open(st, "Archive")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inbox.Append(strings.NewReader("Subject: 3\r\n\r\nthree\r\n"), []string{Seen, "Work"}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("1700000009.M9P9.mx,S=%d", len("Subject: 4\n\nfour\n"))
	os.WriteFile(filepath.Join(st.Path(), "new", name), []byte("Subject: 4\n\nfour\n"), 0o600)
	if err := reg.Delivered(st.Path(), "", name); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inbox.CopyTo(archive, []uint32{3}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := inbox.MoveTo(archive, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	inbox.Release()
	archive.Release()
	// A session of another courriel keeps INBOX open meanwhile.
	open := openBox(t, NewRegistry(), st, "INBOX")
	w, _ := open.Watch()
	defer w.Close()

	msg := "Subject: from dovecot\r\n\r\nhi\r\n"
	out := testenv.RunDovecot(t, st.Path(), "", "a SELECT INBOX\r\nb UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"+
		"c SELECT Archive\r\nd UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n"+
		fmt.Sprintf("e APPEND INBOX {%d+}\r\n%s\r\nf LOGOUT\r\n", len(msg), msg))
	got := regexp.MustCompile(`UID (\d+) FLAGS \(([^)]*)\) BODY\[HEADER.FIELDS \(SUBJECT\)\] \{\d+\}\r\nSubject: (\w+)`).FindAllStringSubmatch(out, -1)
	var seen []string
	for _, m := range got {
		seen = append(seen, m[1]+" "+m[3]+" ("+m[2]+")")
	}
	want := []string{
		`2 2 ()`, `3 3 (\Seen Work)`, `4 4 ()`, // INBOX: 1 moved away
		`1 3 (\Seen Work)`, `2 1 ()`, // Archive: the copy, then the moved one
	}
	if strings.Join(seen, "|") != strings.Join(want, "|") {
		t.Errorf("Dovecot reads %q, want %q\n%s", seen, want, out)
	}
	if !strings.Contains(out, "e OK [APPENDUID") {
		t.Fatalf("Dovecot APPEND failed:\n%s", out)
	}
	// Back in courriel: Dovecot's message keeps Dovecot's UID, in the
	// folder courriel had open and in a fresh load, and ours come after.
	if err := open.Sync(false); err != nil {
		t.Fatal(err)
	}
	if ch := w.Changes(true); len(ch) != 1 || ch[0].Kind != Added || ch[0].UID != 5 {
		t.Errorf("the open folder saw %+v, want UID 5 added", ch)
	}
	if uid, err := open.Append(strings.NewReader("Subject: 6\r\n\r\n6\r\n"), nil, time.Time{}); err != nil || uid != 6 {
		t.Errorf("APPEND after Dovecot's: UID %d %v, want 6", uid, err)
	}
	uids := openBox(t, NewRegistry(), st, "INBOX").UIDs()
	if fmt.Sprint(uids) != "[2 3 4 5 6]" {
		t.Errorf("UIDs from disk: %v, want [2 3 4 5 6]", uids)
	}
}
