package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"courriel/imap/mailstore"
	"courriel/imap/uidlist"
)

// CONDSTORE/QRESYNC (RFC 7162) as clients see it: imapclient where it
// speaks the extension (CONDSTORE: SELECT (CONDSTORE), FETCH CHANGEDSINCE,
// STORE UNCHANGEDSINCE, STATUS HIGHESTMODSEQ), raw lines for what it does
// not (SELECT (QRESYNC ...), VANISHED).

// appendN stores n messages in INBOX through imapclient.
func appendN(t *testing.T, c *imapclient.Client, n int) {
	t.Helper()
	for i := range n {
		msg := strings.ReplaceAll(testMessage(i, "Bob <bob@example.org>", "m"+strconv.Itoa(i)), "\n", "\r\n")
		a := c.Append("INBOX", int64(len(msg)), nil)
		if _, err := a.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Wait(); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

func selectCondstore(t *testing.T, c *imapclient.Client) *goimap.SelectData {
	t.Helper()
	d, err := c.Select("INBOX", &goimap.SelectOptions{CondStore: true}).Wait()
	if err != nil {
		t.Fatalf("select: %v", err)
	}
	if d.HighestModSeq == 0 {
		t.Fatal("SELECT (CONDSTORE) gave no HIGHESTMODSEQ")
	}
	return d
}

// modSeqs fetches UID → (flags, modseq) of every message, with CHANGEDSINCE
// when since > 0.
func modSeqs(t *testing.T, c *imapclient.Client, since uint64) map[goimap.UID]fetched {
	t.Helper()
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true, ModSeq: true, ChangedSince: since}).Collect()
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	out := map[goimap.UID]fetched{}
	for _, m := range msgs {
		if m.ModSeq == 0 {
			t.Fatalf("UID %d: FETCH without MODSEQ", m.UID)
		}
		out[m.UID] = fetched{flags: flagStrings(m.Flags), modseq: m.ModSeq}
	}
	return out
}

type fetched struct {
	flags  string
	modseq uint64
}

func flagStrings(fl []goimap.Flag) string {
	var s []string
	for _, f := range fl {
		if f != `\Recent` {
			s = append(s, string(f))
		}
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

var (
	highestRE  = regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`)
	vanishedRE = regexp.MustCompile(`^\* VANISHED \(EARLIER\) (\S+)$`)
	fetchRE    = regexp.MustCompile(`^\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)$`)
)

// qresyncSelect runs ENABLE QRESYNC and SELECT INBOX (QRESYNC (...)) on a
// raw connection and returns what the client learns: HIGHESTMODSEQ, the
// VANISHED (EARLIER) set and the changed messages' UID → flags.
func qresyncSelect(t *testing.T, e *testEnv, param string) (highest uint64, vanished string, changed map[string]string) {
	t.Helper()
	r := loggedIn(t, e)
	if got := last(r.cmd("e", "ENABLE QRESYNC")); !strings.HasPrefix(got, "e OK") {
		t.Fatalf("ENABLE QRESYNC: %q", got)
	}
	lines := r.cmd("s", "SELECT INBOX (QRESYNC ("+param+"))")
	if got := last(lines); !strings.HasPrefix(got, "s OK") {
		t.Fatalf("SELECT (QRESYNC): %q", lines)
	}
	changed = map[string]string{}
	for _, l := range lines {
		if m := highestRE.FindStringSubmatch(l); m != nil {
			highest, _ = strconv.ParseUint(m[1], 10, 64)
		}
		if m := vanishedRE.FindStringSubmatch(l); m != nil {
			vanished = m[1]
		}
		if m := fetchRE.FindStringSubmatch(l); m != nil {
			fl := strings.Fields(strings.ReplaceAll(m[2], `\Recent`, ""))
			slices.Sort(fl)
			changed[m[1]] = strings.Join(fl, " ")
		}
	}
	if highest == 0 {
		t.Fatalf("no HIGHESTMODSEQ in %q", lines)
	}
	return highest, vanished, changed
}

// One session changes flags and expunges while the other is away; the
// server restarts; the other resynchronises with QRESYNC from the state it
// cached, and with FETCH CHANGEDSINCE.
func TestQresyncAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.login(nil)
	appendN(t, a, 6)
	d := selectCondstore(t, a)
	cached := modSeqs(t, a, 0)
	if len(cached) != 6 {
		t.Fatalf("fetched %d messages, want 6", len(cached))
	}
	h0 := d.HighestModSeq
	for uid, f := range cached {
		if f.modseq > h0 {
			t.Errorf("UID %d: modseq %d above HIGHESTMODSEQ %d", uid, f.modseq, h0)
		}
	}
	a.Logout()

	b := e.login(nil)
	selectCondstore(t, b)
	if err := b.Store(goimap.UIDSetNum(2, 5), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagFlagged}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Store(goimap.UIDSetNum(3, 4), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.UIDExpunge(goimap.UIDSetNum(3, 4)).Close(); err != nil {
		t.Fatal(err)
	}
	b.Logout()

	e.restart()

	highest, vanished, changed := qresyncSelect(t, e, fmt.Sprintf("%d %d 1:6", d.UIDValidity, h0))
	if highest <= h0 {
		t.Errorf("HIGHESTMODSEQ %d after changes, not above the cached %d", highest, h0)
	}
	if vanished != "3:4" {
		t.Errorf("VANISHED (EARLIER) %q, want 3:4", vanished)
	}
	want := map[string]string{"2": `\Flagged`, "5": `\Flagged`}
	if fmt.Sprint(changed) != fmt.Sprint(want) {
		t.Errorf("changed messages %v, want %v", changed, want)
	}

	// The same through FETCH CHANGEDSINCE.
	c := e.login(nil)
	selectCondstore(t, c)
	got := modSeqs(t, c, h0)
	if len(got) != 2 || got[2].flags != `\Flagged` || got[5].flags != `\Flagged` {
		t.Errorf("FETCH CHANGEDSINCE %d: %v", h0, got)
	}
	for uid, f := range got {
		if f.modseq <= h0 {
			t.Errorf("UID %d: modseq %d not above %d", uid, f.modseq, h0)
		}
	}

	// Up to date: nothing to report.
	_, vanished, changed = qresyncSelect(t, e, fmt.Sprintf("%d %d 1:6", d.UIDValidity, highest))
	if vanished != "" || len(changed) != 0 {
		t.Errorf("resync from the current HIGHESTMODSEQ: VANISHED %q, changed %v", vanished, changed)
	}
	// Another UIDVALIDITY: the client starts over, told nothing.
	_, vanished, changed = qresyncSelect(t, e, fmt.Sprintf("%d %d 1:6", d.UIDValidity+1, h0))
	if vanished != "" || len(changed) != 0 {
		t.Errorf("resync with another UIDVALIDITY: VANISHED %q, changed %v", vanished, changed)
	}
}

// Modseqs and HIGHESTMODSEQ are the same after a restart.
func TestModSeqsSurviveRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.login(nil)
	appendN(t, a, 4)
	selectCondstore(t, a)
	if err := a.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	before := modSeqs(t, a, 0)
	st, err := a.Status("INBOX", &goimap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	a.Logout()
	e.restart()
	b := e.login(nil)
	d := selectCondstore(t, b)
	if d.HighestModSeq != st.HighestModSeq {
		t.Errorf("HIGHESTMODSEQ %d after restart, was %d", d.HighestModSeq, st.HighestModSeq)
	}
	after := modSeqs(t, b, 0)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("modseqs after restart %v, before %v", after, before)
	}
}

// Another program (Dovecot, a script) renames a file's ":2," info: the
// change gets a new modseq, whether courriel has the folder open or not,
// and a selected CONDSTORE session hears of it with MODSEQ.
func TestExternalFlagChangeGetsModSeq(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	var unsolicited []uint64 // their MODSEQ
	a := e.login(&imapclient.UnilateralDataHandler{Fetch: func(m *imapclient.FetchMessageData) {
		var ms uint64
		for it := m.Next(); it != nil; it = m.Next() {
			if d, ok := it.(imapclient.FetchItemDataModSeq); ok {
				ms = d.ModSeq
			}
		}
		mu.Lock()
		unsolicited = append(unsolicited, ms)
		mu.Unlock()
	}})
	appendN(t, a, 3)
	d := selectCondstore(t, a)
	h0 := d.HighestModSeq
	var renames atomic.Int64
	rename := func(flags string) {
		t.Helper()
		// The second message (UID 2) by the uidlist: sorting the names
		// does not give UID order (the microseconds in them are not
		// zero-padded).
		cur := filepath.Join(e.maildir, "cur")
		base := uidBaseName(t, e.maildir, 2)
		ents, err := os.ReadDir(cur)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(ents, func(d os.DirEntry) bool { return strings.HasPrefix(d.Name(), base+":2,") })
		if i < 0 {
			t.Fatalf("no file in cur/ for UID 2 (%s)", base)
		}
		if err := os.Rename(filepath.Join(cur, ents[i].Name()), filepath.Join(cur, base+":2,"+flags)); err != nil {
			t.Fatal(err)
		}
		// A directory's mtime has the kernel's clock-tick granularity: a
		// rename in the same tick as courriel's last look would go
		// unnoticed until the periodic full listing. Another program's
		// rename comes later in real life.
		later := time.Now().Add(time.Duration(renames.Add(1)) * time.Second)
		if err := os.Chtimes(cur, later, later); err != nil {
			t.Fatal(err)
		}
	}
	rename("F")
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	// imapclient hands unilateral data to the handler on a goroutine.
	waitFor(t, "the unsolicited FETCH", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(unsolicited) > 0
	})
	got := modSeqs(t, a, h0)
	if len(got) != 1 || got[2].flags != `\Flagged` || got[2].modseq <= h0 {
		t.Fatalf("CHANGEDSINCE %d after an external rename: %v", h0, got)
	}
	h1 := got[2].modseq
	mu.Lock()
	if unsolicited[0] != h1 {
		t.Errorf("unsolicited FETCH with MODSEQ %d, want %d", unsolicited[0], h1)
	}
	mu.Unlock()
	a.Logout()

	// Now with the folder closed, and across a restart.
	e.restart()
	rename("FS")
	b := e.login(nil)
	d = selectCondstore(t, b)
	if d.HighestModSeq <= h1 {
		t.Errorf("HIGHESTMODSEQ %d, not above %d after a change made while closed", d.HighestModSeq, h1)
	}
	got = modSeqs(t, b, h1)
	if len(got) != 1 || got[2].flags != `\Flagged \Seen` || got[2].modseq <= h1 {
		t.Errorf("CHANGEDSINCE %d after a rename while closed: %v", h1, got)
	}
}

// STORE (UNCHANGEDSINCE) leaves a message changed since alone and says so
// with MODIFIED; the others are stored.
func TestStoreUnchangedSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.login(nil)
	appendN(t, a, 3)
	d := selectCondstore(t, a)
	h0 := d.HighestModSeq
	if err := a.Store(goimap.SeqSetNum(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	lines := r.cmd("u", fmt.Sprintf("UID STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)", h0))
	if got := last(lines); !strings.HasPrefix(got, "u OK [MODIFIED 2]") {
		t.Errorf("STORE UNCHANGEDSINCE: %q", lines)
	}
	for _, l := range lines[:len(lines)-1] {
		if strings.Contains(l, " FETCH ") && !strings.Contains(l, "MODSEQ (") {
			t.Errorf("STORE response without MODSEQ: %q", l)
		}
	}
	got := modSeqs(t, a, 0)
	if got[1].flags != `\Flagged` || got[2].flags != `\Seen` || got[3].flags != `\Flagged` {
		t.Errorf("flags after the conditional store: %v", got)
	}
}

// The index lost or corrupt, or a crash that lost its last records: the
// folder's HIGHESTMODSEQ never goes below one a client saw, every message
// counts as changed since, and VANISHED (EARLIER) still tells a client
// what it must drop.
func TestLostModSeqFileNeverGoesBack(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		harm func(t *testing.T, path string, saved []byte)
	}{
		{"deleted", func(t *testing.T, path string, _ []byte) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt", func(t *testing.T, path string, _ []byte) {
			if err := os.WriteFile(path, []byte("garbage\x00\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"crash lost the last records", func(t *testing.T, path string, saved []byte) {
			// The file as a crash may leave it: the reservation made
			// durable by the first STORE is there, the records of the
			// changes after it are lost.
			if err := os.WriteFile(path, saved, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			a := e.login(nil)
			appendN(t, a, 4)
			selectCondstore(t, a)
			path := filepath.Join(e.maildir, mailstore.ModSeqFileName)
			if err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			saved, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Expunge().Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Store(goimap.SeqSetNum(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Flags: []goimap.Flag{goimap.FlagAnswered}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			seen := modSeqs(t, a, 0)
			var top uint64
			for _, f := range seen {
				top = max(top, f.modseq)
			}
			a.Logout()
			e.srv.Close()
			tc.harm(t, path, saved)
			e.start()

			b := e.login(nil)
			d := selectCondstore(t, b)
			if d.HighestModSeq <= top {
				t.Fatalf("HIGHESTMODSEQ %d after losing the index, not above %d a client saw", d.HighestModSeq, top)
			}
			got := modSeqs(t, b, top)
			if tc.name != "crash lost the last records" && len(got) != 3 {
				t.Errorf("CHANGEDSINCE %d after a rebuild gave %d messages, want all 3", top, len(got))
			}
			if g := got[2]; g.flags != `\Answered` || g.modseq <= top {
				t.Errorf("UID 2 after the rebuild: %+v", g)
			}
			_, vanished, _ := qresyncSelect(t, e, fmt.Sprintf("%d %d 1:4", d.UIDValidity, top))
			if vanished != "1" {
				t.Errorf("VANISHED (EARLIER) %q, want 1", vanished)
			}
		})
	}
}

// EXPUNGE gives VANISHED once QRESYNC is on; FETCH (CHANGEDSINCE n
// VANISHED) reports the UIDs expunged since n.
func TestVanishedResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.login(nil)
	appendN(t, a, 5)
	r := loggedIn(t, e)
	r.cmd("e", "ENABLE QRESYNC")
	lines := r.cmd("s", "SELECT INBOX")
	var h0 string
	for _, l := range lines {
		if m := highestRE.FindStringSubmatch(l); m != nil {
			h0 = m[1]
		}
	}
	if h0 == "" {
		t.Fatalf("SELECT after ENABLE QRESYNC without HIGHESTMODSEQ: %q", lines)
	}
	r.cmd("st", `STORE 2,4 +FLAGS.SILENT (\Deleted)`)
	lines = r.cmd("x", "EXPUNGE")
	if !slices.Contains(lines, "* VANISHED 2,4") || slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, " EXPUNGE") }) {
		t.Errorf("EXPUNGE with QRESYNC: %q", lines)
	}
	lines = r.cmd("f", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE "+h0+" VANISHED)")
	if !slices.Contains(lines, "* VANISHED (EARLIER) 2,4") {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %q", lines)
	}
	lines = r.cmd("q", "SELECT INBOX (QRESYNC (1 1))")
	if got := last(lines); !strings.HasPrefix(got, "q OK") {
		t.Errorf("SELECT with QRESYNC and a wrong UIDVALIDITY: %q", got)
	}
	r2 := loggedIn(t, e)
	if got := last(r2.cmd("q", "SELECT INBOX (QRESYNC (1 1))")); !strings.HasPrefix(got, "q BAD") {
		t.Errorf("SELECT (QRESYNC) without ENABLE QRESYNC: %q", got)
	}
}

// SEARCH MODSEQ (with and without an entry name) answers with the highest
// modseq of what it returns; ENABLE CONDSTORE in the selected state tells
// the client its HIGHESTMODSEQ; CONDSTORE shows in CAPABILITY, NOMODSEQ
// never appears.
func TestSearchModSeqAndEnable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.login(nil)
	appendN(t, a, 3)
	r := loggedIn(t, e)
	caps := strings.Join(r.cmd("c", "CAPABILITY"), "\n")
	if !strings.Contains(caps, " CONDSTORE") || !strings.Contains(caps, " QRESYNC") {
		t.Errorf("CAPABILITY: %q", caps)
	}
	lines := r.cmd("s", "SELECT INBOX")
	if slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "MODSEQ") }) {
		t.Errorf("SELECT before CONDSTORE is enabled: %q", lines)
	}
	lines = r.cmd("e", "ENABLE CONDSTORE")
	var h0 uint64
	for _, l := range lines {
		if m := highestRE.FindStringSubmatch(l); m != nil {
			h0, _ = strconv.ParseUint(m[1], 10, 64)
		}
	}
	if h0 == 0 || !slices.Contains(lines, "* ENABLED CONDSTORE") {
		t.Fatalf("ENABLE CONDSTORE while selected: %q", lines)
	}
	lines = r.cmd("st", `STORE 2 +FLAGS (\Seen)`)
	m := regexp.MustCompile(`^\* 2 FETCH \(FLAGS \(\\Seen \\Recent\) UID 2 MODSEQ \((\d+)\)\)$`).FindStringSubmatch(lines[0])
	if m == nil {
		t.Fatalf("STORE with CONDSTORE on: %q", lines)
	}
	ms2 := m[1]
	for _, q := range []string{"SEARCH MODSEQ " + ms2, `SEARCH MODSEQ "/flags/\\seen" all ` + ms2, "UID SEARCH MODSEQ 1 SEEN"} {
		lines = r.cmd("q", q)
		if want := "* SEARCH 2 (MODSEQ " + ms2 + ")"; lines[0] != want {
			t.Errorf("%s: %q, want %q", q, lines, want)
		}
	}
	// By subject (m0, m1, m2): the three arrived within a second or two,
	// and ARRIVAL's ties go by sequence number.
	lines = r.cmd("o", "SORT (REVERSE SUBJECT) UTF-8 MODSEQ 1")
	if want := "* SORT 3 2 1 (MODSEQ " + ms2 + ")"; lines[0] != want {
		t.Errorf("SORT MODSEQ: %q, want %q", lines, want)
	}
	lines = r.cmd("q", "SEARCH MODSEQ "+strconv.FormatUint(h0+1000, 10))
	if lines[0] != "* SEARCH" {
		t.Errorf("SEARCH MODSEQ above everything: %q", lines)
	}
	lines = r.cmd("q", "SEARCH RETURN (COUNT) MODSEQ 1")
	if lines[0] != `* ESEARCH (TAG "q") COUNT 3 MODSEQ `+ms2 {
		t.Errorf("ESEARCH COUNT MODSEQ: %q", lines)
	}
	lines = r.cmd("x", "STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
	if lines[0] != `* STATUS "INBOX" (MESSAGES 3 HIGHESTMODSEQ `+ms2+")" {
		t.Errorf("STATUS HIGHESTMODSEQ: %q", lines)
	}
	for _, l := range lines {
		if strings.Contains(l, "NOMODSEQ") {
			t.Errorf("NOMODSEQ: %q", l)
		}
	}
}

// uidBaseName is the maildir base name of uid, as dovecot-uidlist says.
func uidBaseName(t *testing.T, maildir string, uid uint32) string {
	t.Helper()
	f, err := os.Open(filepath.Join(maildir, "dovecot-uidlist"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := uidlist.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range l.Records {
		if r.UID == uid {
			return r.Name
		}
	}
	t.Fatalf("UID %d not in dovecot-uidlist", uid)
	return ""
}
