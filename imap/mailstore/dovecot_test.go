package mailstore

import (
	"fmt"
	"io"
	"os"
	"os/exec"
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

// Dovecot sessions APPENDing to a folder that courriel keeps open and
// syncs, APPENDs to and delivers into meanwhile (the QA's duprepro.py,
// bounded in messages, not in time): every message has one UID, the same
// in both, ascending as a session of ours learnt of them; dovecot-uidlist
// lists no file twice, and Dovecot finds nothing to renumber.
func TestDovecotAppendsWhileWeSync(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	const sessions, appends = 2, 100
	st, err := OpenStore(filepath.Join(testenv.MemoryDir(t), "Maildir"), Owner{UID: 65534, GID: 65534, Chown: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg := NewRegistry()
	mb := openBox(t, reg, st, "INBOX")
	w, view := mb.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: mb.Status().UIDNext}

	type result struct {
		out []byte
		err error
	}
	done := make(chan result, sessions)
	for d := range sessions {
		var script strings.Builder
		script.WriteString("s SELECT INBOX\r\n")
		for i := range appends {
			msg := fmt.Sprintf("Message-ID: <d%d.%d@dovecot>\r\nSubject: d\r\n\r\nx\r\n", d, i)
			fmt.Fprintf(&script, "a%d APPEND INBOX {%d+}\r\n%s\r\nn%d NOOP\r\n", i, len(msg), msg, i)
		}
		script.WriteString("z LOGOUT\r\n")
		cmd := testenv.DovecotCommand(t, st.Path(), "")
		go func() {
			out, err := dovecotSession(cmd, script.String())
			done <- result{out, err}
		}()
	}
	var outs []string
	ours, appended, delivered := 0, 0, 0
	for running := sessions; running > 0; {
		var r result
		received := true
		if ours < 4*sessions*appends {
			select {
			case r = <-done:
			default:
				received = false
			}
		} else {
			r = <-done // enough of ours: Dovecot ends its sessions
		}
		if received {
			running--
			if r.err != nil {
				t.Fatalf("dovecot imap: %v\n%s", r.err, r.out)
			}
			outs = append(outs, string(r.out))
			continue
		}
		// Ours: a sync (a session's NOOP), an APPEND, a delivery.
		switch ours++; ours % 4 {
		case 1:
			msg := fmt.Sprintf("Message-ID: <c%d@courriel>\r\nSubject: c\r\n\r\nx\r\n", ours)
			if _, err := mb.Append(strings.NewReader(msg), nil, time.Time{}); err != nil {
				t.Fatal(err)
			}
			appended++
		case 2:
			name := fmt.Sprintf("1700000000.M%dP2.mx", ours)
			p := filepath.Join(st.Path(), "new", name)
			if err := os.WriteFile(p, []byte(fmt.Sprintf("Message-ID: <m%d@mx>\nSubject: m\n\nx\n", ours)), 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(p, 65534, 65534)
			if err := reg.Delivered(st.Path(), "", name); err != nil {
				t.Fatal(err)
			}
			delivered++
		default:
			if err := mb.Sync(false); err != nil {
				t.Fatal(err)
			}
		}
		s.update(t, "while Dovecot appends")
	}
	for _, out := range outs {
		for _, bad := range []string{"Duplicate file entry", "reappeared", "changed UID", "UIDVALIDITY changed", " NO ", " BAD "} {
			if strings.Contains(out, bad) {
				t.Errorf("Dovecot: %q:\n%s", bad, out)
			}
		}
	}
	if err := mb.Sync(true); err != nil {
		t.Fatal(err)
	}
	s.update(t, "at the end")
	checkFolder(t, "at the end", st, mb, s)

	// Each message once, with the same UID in both.
	ourIDs := map[string]uint32{}
	for _, u := range mb.UIDs() {
		b, _, err := mb.ReadMessage(u, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		id := regexp.MustCompile(`Message-ID: (<[^>]*>)`).FindSubmatch(b)
		if id == nil {
			t.Fatalf("message %d without Message-ID: %q", u, b)
		}
		if prev, dup := ourIDs[string(id[1])]; dup {
			t.Errorf("%s is UID %d and %d here", id[1], prev, u)
		}
		ourIDs[string(id[1])] = u
	}
	if want := sessions*appends + appended + delivered; len(ourIDs) != want {
		t.Errorf("%d messages here, want %d", len(ourIDs), want)
	}
	b, err := dovecotSession(testenv.DovecotCommand(t, st.Path(), ""),
		"s SELECT INBOX\r\nf UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])\r\nz LOGOUT\r\n")
	if err != nil {
		t.Fatalf("dovecot imap: %v\n%s", err, b)
	}
	out := string(b)
	theirs := map[string]uint32{}
	// FLAGS (\Recent) may come with a message Dovecot sees first.
	for _, m := range regexp.MustCompile(`\* \d+ FETCH \([^{]*UID (\d+)[^{]*\{\d+\}\r\nMessage-ID: (<[^>]*>)`).FindAllStringSubmatch(out, -1) {
		u, _ := strconv.ParseUint(m[1], 10, 32)
		if prev, dup := theirs[m[2]]; dup {
			t.Errorf("%s is UID %d and %d in Dovecot", m[2], prev, u)
		}
		theirs[m[2]] = uint32(u)
	}
	for id, u := range ourIDs {
		if theirs[id] != u {
			t.Errorf("%s: UID %d here, %d in Dovecot", id, u, theirs[id])
		}
	}
	if len(theirs) != len(ourIDs) {
		t.Errorf("Dovecot shows %d messages, courriel %d", len(theirs), len(ourIDs))
	}
}

// dovecotSession runs cmd (testenv.DovecotCommand) on script, which ends
// with LOGOUT: its input stays open until Dovecot ends the session, which
// ends it at the end of its input even with answers still to write (a
// long FETCH).
func dovecotSession(cmd *exec.Cmd, script string) ([]byte, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	go io.WriteString(in, script) // closed by Wait
	return cmd.CombinedOutput()
}
