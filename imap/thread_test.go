package imap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"courriel/imap/mailstore"
)

// openWatch counts the files opened in a maildir's cur/ and new/, by any
// process, through inotify's IN_OPEN: what "no message re-read" means.
type openWatch struct {
	t  *testing.T
	fd int
}

func watchOpens(t *testing.T, maildir string) *openWatch {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatalf("inotify: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	for _, sub := range []string{"cur", "new"} {
		if _, err := unix.InotifyAddWatch(fd, filepath.Join(maildir, sub), unix.IN_OPEN); err != nil {
			t.Fatalf("inotify watch %s: %v", sub, err)
		}
	}
	return &openWatch{t: t, fd: fd}
}

// opened returns the names of the files opened since the last call (the
// kernel queues the event inside open(2), so a reply received means its
// opens are queued).
func (w *openWatch) opened() []string {
	w.t.Helper()
	var names []string
	buf := make([]byte, 64<<10)
	for range 1000 {
		n, err := unix.Read(w.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return names
		}
		if err != nil {
			w.t.Fatalf("inotify read: %v", err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
				names = append(names, "(overflow)")
			}
			if s := string(bytes.TrimRight(name, "\x00")); s != "" && ev.Mask&unix.IN_ISDIR == 0 {
				names = append(names, s)
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
	w.t.Fatal("inotify: too many events")
	return nil
}

// threadCorpus: threads that only References make (subjects differ), one
// with a missing middle message, one In-Reply-To only, one under an
// unknown root.
func threadCorpus(e *testEnv) {
	for i, h := range []string{
		"Subject: a\nMessage-ID: <1@x>",
		"Subject: Re: a\nMessage-ID: <2@x>\nReferences: <1@x>",
		"Subject: b\nMessage-ID: <3@x>\nReferences: <1@x>\n <2@x>",
		"Subject: c\nMessage-ID: <4@x>\nIn-Reply-To: <1@x>",
		"Subject: d\nMessage-ID: <5@x>",
		"Subject: e\nMessage-ID: <6@x>\nReferences: <gone@x> <5@x>",
		"Subject: f\nMessage-ID: <7@x>\nReferences: <1@x> <miss\n ing@x>",
	} {
		e.deliver(fmt.Sprintf("100%d.M%dP1.test", i, i), fmt.Sprintf(
			"From: u%d@example.org\nTo: alice@example.org\nDate: Mon, 02 Jan 2006 15:0%d:00 +0000\n%s\n\nbody %d\n", i, i, h, i))
	}
}

const threadCorpusWant = "* THREAD (1 (2 3)(4)(7))(5 6)"

// TestThreadReferencesFromIndex: on a warm folder (its index on disk, the
// server restarted) SORT and THREAD open no message file, and THREAD
// REFERENCES gives the answer it gave when it read them. An index of the
// previous version is rebuilt from the files and then rewritten.
func TestThreadReferencesFromIndex(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	threadCorpus(e)
	a := dialRaw(t, e.addr, true)
	a.cmd("l", "LOGIN alice secret")
	a.cmd("s", "SELECT INBOX")
	cold := a.cmd("t", "THREAD REFERENCES US-ASCII ALL")
	if cold[0] != threadCorpusWant {
		t.Fatalf("cold THREAD REFERENCES = %q, want %q", cold, threadCorpusWant)
	}
	a.cmd("o", "LOGOUT")

	index := filepath.Join(e.maildir, mailstore.IndexFileName)
	warm := func() (thread []string, opened []string) {
		t.Helper()
		e.restart() // nothing in memory: the index is read from disk
		r := dialRaw(t, e.addr, true)
		r.cmd("l", "LOGIN alice secret")
		r.cmd("s", "SELECT INBOX")
		w := watchOpens(t, e.maildir)
		thread = r.cmd("t", "THREAD REFERENCES US-ASCII ALL")
		opened = w.opened()
		r.cmd("o", "LOGOUT")
		return thread, opened
	}

	got, opened := warm()
	if got[0] != threadCorpusWant {
		t.Errorf("warm THREAD REFERENCES = %q, want %q", got, threadCorpusWant)
	}
	if len(opened) != 0 {
		t.Errorf("warm THREAD REFERENCES opened %d message files: %q", len(opened), opened)
	}

	// The other SORT and THREAD forms, on the same warm folder.
	e.restart()
	r := dialRaw(t, e.addr, true)
	r.cmd("l", "LOGIN alice secret")
	r.cmd("s", "SELECT INBOX")
	w := watchOpens(t, e.maildir)
	for _, c := range []struct{ cmd, want string }{
		{"UID THREAD REFERENCES UTF-8 ALL", ""},
		{"THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (1 2)(3)(4)(5)(6)(7)"},
		{"SORT (DATE) UTF-8 ALL", "* SORT 1 2 3 4 5 6 7"},
		{"SORT (REVERSE FROM) UTF-8 ALL", "* SORT 7 6 5 4 3 2 1"},
		{"SORT (SUBJECT) UTF-8 ALL", "* SORT 1 2 3 4 5 6 7"},
	} {
		lines := r.cmd("c", c.cmd)
		if c.want != "" && lines[0] != c.want {
			t.Errorf("%s = %q, want %q", c.cmd, lines, c.want)
		}
		if !strings.HasPrefix(last(lines), "c OK") {
			t.Errorf("%s: %q", c.cmd, lines)
		}
		if o := w.opened(); len(o) != 0 {
			t.Errorf("warm %s opened %d message files: %q", c.cmd, len(o), o)
		}
	}
	r.cmd("o", "LOGOUT")

	// An index of version 4 (no References kept), or 8 (parameters
	// lower-cased and sorted, no Content-MD5), is not trusted: it is
	// rebuilt from the files, then written in the current version.
	e.srv.Close() // its sessions have released the folder: no more writes
	for _, old := range []string{"4", "8"} {
		data, err := os.ReadFile(index)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, []byte("COURRIEL-INDEX 9\n")) {
			t.Fatalf("index starts %q", data[:min(len(data), 20)])
		}
		copy(data, "COURRIEL-INDEX "+old+"\n")
		if err := os.WriteFile(index, data, 0o600); err != nil {
			t.Fatal(err)
		}
		got, opened = warm()
		if got[0] != threadCorpusWant {
			t.Errorf("THREAD REFERENCES over an index of version %s = %q, want %q", old, got, threadCorpusWant)
		}
		if len(opened) == 0 {
			t.Errorf("an index of version %s was used as it is", old)
		}
		got, opened = warm()
		if got[0] != threadCorpusWant || len(opened) != 0 {
			t.Errorf("after the rebuild of version %s: %q, %d files opened", old, got, len(opened))
		}
	}
}

// TestReferenceIDs: the ids kept from a References field, hostile ones
// bounded.
func TestReferenceIDs(t *testing.T) {
	var many strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&many, " <%d@x>", i)
	}
	manyIDs := referenceIDs(many.String())
	if len(manyIDs) != maxReferences || manyIDs[0] != "0@x" || manyIDs[1] != "4901@x" || manyIDs[maxReferences-1] != "4999@x" {
		t.Errorf("5000 references: kept %d, %q … %q", len(manyIDs), manyIDs[:min(3, len(manyIDs))], manyIDs[len(manyIDs)-1:])
	}
	long := "<" + strings.Repeat("a", maxMessageIDLen) + "@x>"
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"no ids here", nil},
		{"<a@x> <b@x>", []string{"a@x", "b@x"}},
		{"<a@x>\r\n\t<b@\r\n x>", []string{"a@x", "b@x"}},
		{"<> <a@x> <", []string{"a@x"}},
		{long + " <a@x>", []string{"a@x"}},
		{"(comment) <a@x> junk <b@x", []string{"a@x"}},
	} {
		if got := referenceIDs(c.in); !slices.Equal(got, c.want) {
			t.Errorf("referenceIDs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	// The envelope cached in the index keeps them as bounded.
	env := buildEnvelope([]byte("References: " + many.String() + "\n\n"))
	total := 0
	for _, id := range env.References {
		total += len(id)
	}
	if len(env.References) != maxReferences || total > maxReferences*maxMessageIDLen {
		t.Errorf("envelope keeps %d references, %d bytes", len(env.References), total)
	}
}

// TestSortRanks: a SORT by one criterion remembers ranks; the next ones
// (the same, reversed, after a new message) answer as computing the keys
// does.
func TestSortRanks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, from := range []string{"carol", "alice", "Bob", "alice", "dave"} {
		e.deliver(fmt.Sprintf("200%d.M%dP1.test", i, i), fmt.Sprintf(
			"From: %s@example.org\nSubject: s%d\nDate: Mon, 02 Jan 2006 15:0%d:00 +0000\n\nbody\n", from, i, 9-i))
	}
	r := dialRaw(t, e.addr, true)
	r.cmd("l", "LOGIN alice secret")
	r.cmd("s", "SELECT INBOX")
	for _, c := range []struct{ cmd, want string }{
		{"SORT (FROM) UTF-8 ALL", "* SORT 2 4 3 1 5"},
		{"SORT (FROM) UTF-8 ALL", "* SORT 2 4 3 1 5"},
		{"SORT (REVERSE FROM) UTF-8 ALL", "* SORT 5 1 3 2 4"},
		{"SORT (FROM) UTF-8 NOT FROM carol", "* SORT 2 4 3 5"},
		{"SORT (FROM DATE) UTF-8 ALL", "* SORT 4 2 3 1 5"},
		{"UID SORT (REVERSE DATE) UTF-8 ALL", "* SORT 1 2 3 4 5"},
		{"UID SORT (DATE) UTF-8 ALL", "* SORT 5 4 3 2 1"},
	} {
		if got := r.cmd("c", c.cmd); got[0] != c.want {
			t.Errorf("%s = %q, want %q", c.cmd, got, c.want)
		}
	}
	e.deliver("2009.M9P1.test", "From: beth@example.org\nSubject: s9\nDate: Mon, 02 Jan 2006 15:05:30 +0000\n\nbody\n")
	waitFor(t, "the new message", func() bool {
		return slices.Contains(r.cmd("n", "NOOP"), "* 6 EXISTS")
	})
	for _, c := range []struct{ cmd, want string }{
		{"SORT (FROM) UTF-8 ALL", "* SORT 2 4 6 3 1 5"},
		{"SORT (REVERSE FROM) UTF-8 ALL", "* SORT 5 1 3 6 2 4"},
		{"SORT (DATE) UTF-8 ALL", "* SORT 5 6 4 3 2 1"},
	} {
		if got := r.cmd("c", c.cmd); got[0] != c.want {
			t.Errorf("after a new message, %s = %q, want %q", c.cmd, got, c.want)
		}
	}
}

// TestThreadGatherResorts: a reply gathered by subject under a message
// that then goes under a new dummy is still ordered by date among that
// message's children (RFC 5256 §3 step 6 sorts the whole tree).
func TestThreadGatherResorts(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }
	ms := []*threadMsg{
		{num: 1, seq: 1, date: day(1), subject: "Re: x", msgID: "a"},
		{num: 2, seq: 2, date: day(2), subject: "x", msgID: "t"},
		{num: 3, seq: 3, date: day(4), subject: "x", msgID: "c"},
		{num: 4, seq: 4, date: day(5), subject: "other", msgID: "r", refs: []string{"t"}},
	}
	var b strings.Builder
	writeThreads(&b, threadReferences(ms))
	if got, want := b.String(), " ((2 (1)(4))(3))"; got != want {
		t.Errorf("threads %q, want %q", got, want)
	}
}
