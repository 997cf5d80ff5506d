package filter

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"courriel/delivery"
	"courriel/directory"
	"courriel/sieve"
)

// dupHome delivers to one user whose script is script, at the time *now.
type dupHome struct {
	base, home string
	f          *Filter
}

func newDupHome(t *testing.T, script string, now *time.Time) *dupHome {
	t.Helper()
	base := t.TempDir()
	h := &dupHome{base: base, home: filepath.Join(base, "u")}
	os.MkdirAll(h.home, 0o755)
	os.WriteFile(filepath.Join(h.home, ".dovecot.sieve"), []byte(script), 0o644)
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h.f, err = New(Options{Extensions: sieve.AllExtensions(), Store: store, Now: func() time.Time { return *now },
		Directory: fakeDir{"u@x.y": {Address: "u@x.y", Home: h.home, Login: "ulogin"}}})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// deliver delivers a message with that Message-ID and says whether the
// script filed it into Dups.
func (h *dupHome) deliver(t *testing.T, msgID string) bool {
	t.Helper()
	before := h.count(".Dups")
	m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
		Body: strings.NewReader("Message-ID: " + msgID + "\r\nSubject: s\r\n\r\nbody\r\n")}
	if errs := h.f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: h.home + "/mailbox/"}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return h.count(".Dups") > before
}

func (h *dupHome) count(dir string) int {
	files, _ := os.ReadDir(h.home + "/mailbox/" + dir + "/new")
	return len(files)
}

const dupScript = "require [\"duplicate\", \"fileinto\", \"mailbox\"];\nif duplicate :seconds 100 { fileinto :create \"Dups\"; }\n"

// The duplicate test records its id in Pigeonhole's database: the id
// ext_duplicate_hash makes of the Message-ID, the user dovecot-lda names
// (the entry's login), the stamp the time of the delivery plus :seconds;
// a message with that id is a duplicate until the stamp has passed.
func TestDuplicateInPigeonholeDatabase(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	h := newDupHome(t, dupScript, &now)
	if h.deliver(t, "<a@z.z>") {
		t.Fatal("the first message is a duplicate")
	}
	b, err := os.ReadFile(filepath.Join(h.home, DuplicateDBName))
	if err != nil {
		t.Fatal(err)
	}
	tbl, problem := parseDupes(b, t0.Unix())
	sum := md5.Sum([]byte("sieve duplicate+default<a@z.z>"))
	if problem != "" || len(tbl.recs) != 1 {
		t.Fatalf("database: %+v, %q; want one record", tbl.recs, problem)
	}
	if r := tbl.recs[0]; r.id != string(sum[:]) || r.user != "ulogin" || r.expiry != t0.Unix()+100 {
		t.Errorf("record id %x user %q stamp %d; want %x \"ulogin\" %d", r.id, r.user, r.expiry, sum, t0.Unix()+100)
	}
	if _, err := os.Stat(filepath.Join(h.home, duplicatesFile)); err == nil {
		t.Errorf("%s written", duplicatesFile)
	}
	now = t0.Add(100 * time.Second) // the stamp's second: still recorded, as Dovecot reads it
	if !h.deliver(t, "<a@z.z>") {
		t.Error("the same Message-ID within the period is no duplicate")
	}
	if h.deliver(t, "<b@z.z>") {
		t.Error("another Message-ID is a duplicate")
	}
	now = t0.Add(101 * time.Second)
	if h.deliver(t, "<a@z.z>") {
		t.Error("the first mark still holds past its period")
	}
}

// Ids an earlier version of courriel recorded in ~/.courriel.duplicates
// (sieve.DuplicateFile) still count until they expire.
func TestDuplicateLegacyFile(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	h := newDupHome(t, dupScript, &now)
	// What an earlier version did: the run's marks committed to the file.
	s, err := sieve.CompileWith([]byte(dupScript), sieve.CompileOptions{Extensions: sieve.AllExtensions()})
	if err != nil {
		t.Fatal(err)
	}
	legacy := &sieve.DuplicateFile{Path: filepath.Join(h.home, duplicatesFile)}
	msg, err := sieve.ReadMessage(strings.NewReader("Message-ID: <old@z.z>\r\n\r\nbody\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := s.RunContext(context.Background(), msg, sieve.Envelope{}, sieve.RunOptions{Now: t0, Duplicates: legacy})
	if err := legacy.Commit(res.DuplicateMarks, t0); err != nil || len(res.DuplicateMarks) != 1 {
		t.Fatalf("legacy commit: %v, %d marks", err, len(res.DuplicateMarks))
	}
	if !h.deliver(t, "<old@z.z>") {
		t.Error("a Message-ID the former file records is no duplicate")
	}
	now = t0.Add(101 * time.Second)
	if h.deliver(t, "<old@z.z>") {
		t.Error("the former file's mark holds past its period")
	}
}

// A record in Pigeonhole's database outlives a crash: once the new file
// is renamed into place, the home (the directory holding the name) is
// fsynced, after the rename, before the delivery goes on.
func TestDupesSyncsHome(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newDupHome(t, dupScript, &now)
	var synced []string
	h.f.syncDir = func(root *os.Root) error {
		// What the sync makes durable must be there already: the new
		// database under its name, the dotlock gone.
		b, err := root.ReadFile(DuplicateDBName)
		if err != nil {
			t.Errorf("home synced before %s is in place: %v", DuplicateDBName, err)
		}
		if _, err := root.Lstat(dupesLockName); err == nil {
			t.Errorf("home synced with %s still there", dupesLockName)
		}
		synced = append(synced, root.Name())
		tbl, _ := parseDupes(b, now.Unix())
		if len(tbl.recs) != 1 {
			t.Errorf("home synced with %d records in the database, want 1", len(tbl.recs))
		}
		return syncRootDir(root)
	}
	h.deliver(t, "<a@z.z>")
	if len(synced) != 1 || synced[0] != h.home {
		t.Fatalf("homes synced: %q; want [%q]", synced, h.home)
	}
	// A home that cannot be synced is reported, not taken for written.
	h.f.syncDir = func(*os.Root) error { return syscall.EIO }
	root, err := os.OpenRoot(h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	dl, err := h.f.lockDupes(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	if err := dl.replace((&dupTable{}).encode(), nil, -1, -1); !errors.Is(err, syscall.EIO) {
		t.Errorf("replace with a failing sync: %v, want EIO", err)
	}
}

// Deliveries of one message at the same moment: as under Dovecot, whose
// duplicate check locks the id until its mark is committed, exactly one
// finds it new (the INBOX), the others wait for its record and find it a
// duplicate (Dups). Bounded: a delivery waiting past the deadline fails.
func TestDuplicateConcurrentDeliveries(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newDupHome(t, dupScript, &now)
	const rounds, parallel = 5, 4
	for round := range rounds {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := make(chan struct{})
		errs := make(chan error, parallel)
		for range parallel {
			go func() {
				<-start
				m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
					Body: strings.NewReader(fmt.Sprintf("Message-ID: <r%d@z.z>\r\nSubject: s\r\n\r\nbody\r\n", round))}
				errs <- h.f.Deliver(ctx, m, []delivery.Recipient{{Address: "u@x.y", Maildir: h.home + "/mailbox/"}})[0]
			}()
		}
		close(start)
		for range parallel {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		if inbox, dups := h.count(""), h.count(".Dups"); inbox != round+1 || dups != (round+1)*(parallel-1) {
			t.Fatalf("round %d: %d in INBOX, %d in Dups; want %d, %d (one delivery of each message finds it new)",
				round, inbox, dups, round+1, (round+1)*(parallel-1))
		}
	}
	if ents, err := os.ReadDir(filepath.Join(h.home, dupesLocksDir)); err != nil || len(ents) != 0 {
		t.Errorf("lock directory after the deliveries: %v, %v; want it empty", ents, err)
	}
}

// One message delivered twice at the same moment to two users whose
// scripts test it, the recipients in opposite orders (a list's copy and
// a direct one): each recipient's ids are released once its copies are
// stored, so neither delivery waits for good for an id the other holds
// (a queue job has no deadline), and each user finds it new once.
func TestDuplicateOppositeRecipientOrders(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	base := t.TempDir()
	homes := map[string]string{"u@x.y": filepath.Join(base, "u"), "v@x.y": filepath.Join(base, "v")}
	dir := fakeDir{}
	for addr, home := range homes {
		os.MkdirAll(home, 0o755)
		os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(dupScript), 0o644)
		dir[addr] = &directory.Mailbox{Address: addr, Home: home, Login: filepath.Base(home)}
	}
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Now: func() time.Time { return now }, Directory: dir})
	if err != nil {
		t.Fatal(err)
	}
	rcpt := func(addr string) delivery.Recipient {
		return delivery.Recipient{Address: addr, Maildir: homes[addr] + "/mailbox/"}
	}
	count := func(addr, folder string) int {
		files, _ := os.ReadDir(homes[addr] + "/mailbox/" + folder + "/new")
		return len(files)
	}
	const rounds = 10
	for round := range rounds {
		start := make(chan struct{})
		errs := make(chan error, 2)
		for _, order := range [][]delivery.Recipient{{rcpt("u@x.y"), rcpt("v@x.y")}, {rcpt("v@x.y"), rcpt("u@x.y")}} {
			go func() {
				<-start
				m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
					Body: strings.NewReader(fmt.Sprintf("Message-ID: <o%d@z.z>\r\nSubject: s\r\n\r\nbody\r\n", round))}
				errs <- errors.Join(f.Deliver(context.Background(), m, order)...)
			}()
		}
		close(start)
		for range 2 {
			select {
			case err := <-errs:
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("round %d: a delivery still waits after 30 s: the two hold each other's ids", round)
			}
		}
		for addr := range homes {
			if inbox, dups := count(addr, ""), count(addr, ".Dups"); inbox != round+1 || dups != round+1 {
				t.Fatalf("round %d: %s has %d in INBOX, %d in Dups; want %d each", round, addr, inbox, dups, round+1)
			}
		}
	}
}

// A script testing ids by the hundred locks at most maxHeldDupIDs of
// them (two descriptors and a lock file each); the others are tested
// without a lock, not refused.
func TestDuplicateLocksBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newDupHome(t, dupScript, &now)
	root, err := os.OpenRoot(h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	holds := &dupHolds{f: h.f, ctx: context.Background()}
	defer holds.release()
	for i := range 3 * maxHeldDupIDs {
		if err := holds.lock(root, h.home, fmt.Sprintf("id%d", i), -1, -1); err != nil {
			t.Fatal(err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(h.home, dupesLocksDir)); err != nil || len(ents) != maxHeldDupIDs {
		t.Errorf("%d lock files (%v), want %d", len(ents), err, maxHeldDupIDs)
	}
}

// An id another delivery keeps locked past the wait defers the delivery
// (a temporary failure, nothing stored), as dovecot-lda tempfails, rather
// than keeping the message in the INBOX unfiltered; once it is free, the
// retry is filtered.
func TestDuplicateLockedDefers(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newDupHome(t, dupScript, &now)
	h.f.dupWait.idLock = 200 * time.Millisecond
	root, err := os.OpenRoot(h.home)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	sum := md5.Sum([]byte("sieve duplicate+default<l@z.z>"))
	other := &dupHolds{f: h.f, ctx: context.Background()}
	if err := other.lock(root, h.home, string(sum[:]), -1, -1); err != nil {
		t.Fatal(err)
	}
	deliver := func() error {
		m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
			Body: strings.NewReader("Message-ID: <l@z.z>\r\nSubject: s\r\n\r\nbody\r\n")}
		return h.f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: h.home + "/mailbox/"}})[0]
	}
	var de *delivery.Error
	if err := deliver(); !errors.As(err, &de) || !de.Temporary || !errors.Is(err, errDupLocked) {
		t.Fatalf("delivery with the id locked: %v, want a temporary failure", err)
	}
	if n := h.count("") + h.count(".Dups"); n != 0 {
		t.Fatalf("%d copies stored while the id was locked", n)
	}
	other.release()
	if err := deliver(); err != nil || h.count("") != 1 {
		t.Fatalf("the retry: %v, %d in INBOX", err, h.count(""))
	}
}

// A delivery with a deadline waits for a locked id at most half the time
// left, then defers that recipient: the wait does not spend the time the
// other recipients' scripts share (they would be kept unfiltered). In a
// synctest bubble, the clock moves only while everything waits: the
// half is spent whole and nothing else, however slow the run.
func TestDuplicateLockWaitLeavesTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Unix(1_800_000_000, 0)
		h := newDupHome(t, dupScript, &now)
		h.f.dupWait.idLock = time.Hour
		root, err := os.OpenRoot(h.home)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		sum := md5.Sum([]byte("sieve duplicate+default<w@z.z>"))
		other := &dupHolds{f: h.f, ctx: context.Background()}
		if err := other.lock(root, h.home, string(sum[:]), -1, -1); err != nil {
			t.Fatal(err)
		}
		defer other.release()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		defer cancel()
		m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
			Body: strings.NewReader("Message-ID: <w@z.z>\r\nSubject: s\r\n\r\nbody\r\n")}
		start := time.Now()
		err = h.f.Deliver(ctx, m, []delivery.Recipient{{Address: "u@x.y", Maildir: h.home + "/mailbox/"}})[0]
		var de *delivery.Error
		if !errors.As(err, &de) || !de.Temporary || !errors.Is(err, errDupLocked) {
			t.Fatalf("delivery with the id locked and a deadline: %v, want it deferred as locked", err)
		}
		// The bubble's clock: what the code waited, not what the run took.
		if waited, want := time.Since(start), 1500*time.Millisecond; waited != want {
			t.Errorf("waited %v for the id, want %v: half the scripts' 3 s", waited, want)
		}
	})
}
