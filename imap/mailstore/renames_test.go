package mailstore

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// renameFolder makes a folder of n messages in cur/, numbered (1 to n) by
// a first open, on the machine's disk (ext4 or XFS, where a directory of
// thousands of names is read in several getdents calls, in hash order: a
// file renamed between two calls may be in neither), owned by owner.
func renameFolder(t *testing.T, n int, owner Owner) *Store {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "Maildir"), owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for i := 1; i <= n; i++ {
		p := filepath.Join(st.Path(), "cur", fmt.Sprintf("1700000000.M%dP1.test,S=20:2,S", i))
		if err := os.WriteFile(p, []byte(fmt.Sprintf("Subject: %d\n\nbody\n", i)), 0o600); err != nil {
			t.Fatal(err)
		}
		if owner.Chown {
			os.Chown(p, owner.UID, owner.GID)
		}
	}
	reg := NewRegistry()
	mb, err := reg.Open(st, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if s := mb.Status(); s.Messages != uint32(n) || s.UIDNext != uint32(n+1) {
		t.Fatalf("%d messages, UIDNEXT %d; want %d, %d", s.Messages, s.UIDNext, n, n+1)
	}
	mb.Release()
	reg.SaveAll() // no lingering folder writes in the maildir later
	return st
}

// closedAtEnd is a new registry closed (SaveAll) when the test ends,
// after its folders' releases: a large folder lingers after its release,
// and would write its state while the test's directory is removed.
func closedAtEnd(t *testing.T) *Registry {
	reg := NewRegistry()
	t.Cleanup(reg.SaveAll)
	return reg
}

// storeLoop is a session's STORE loop: \Flagged set and cleared on random
// batches of messages (a rename in cur/ each) until stop; it returns the
// count of renames.
func storeLoop(t *testing.T, mb *Mailbox, n int, stop *atomic.Bool) int {
	t.Helper()
	renames := 0
	for i := 0; !stop.Load(); i++ {
		uids := make([]uint32, 0, 64)
		for range cap(uids) {
			uids = append(uids, uint32(1+rand.IntN(n)))
		}
		slices.Sort(uids)
		uids = slices.Compact(uids)
		op := StoreAdd
		if i%2 == 1 {
			op = StoreRemove
		}
		if _, _, err := mb.StoreFlags(uids, op, []string{Flagged}, nil); err != nil {
			t.Errorf("STORE: %v", err)
			return renames
		}
		renames += len(uids)
	}
	return renames
}

// A session changing flags (a file renamed in cur/ each) while another
// courriel (its own registry: another process) syncs the folder over and
// over: no message disappears from the other's sessions, none gets a new
// UID, the folder is never renumbered.
func TestFlagRenamesWhileAnotherCourrielSyncs(t *testing.T) {
	t.Parallel()
	const n = 5000
	st := renameFolder(t, n, Owner{})
	writer := openBox(t, closedAtEnd(t), st, "INBOX")
	reader := openBox(t, closedAtEnd(t), st, "INBOX")
	w, view := reader.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: reader.Status().UIDNext}
	var stop atomic.Bool
	renames := make(chan int)
	go func() { renames <- storeLoop(t, writer, n, &stop) }()
	syncs := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !t.Failed(); syncs++ {
		if err := reader.Sync(true); err != nil {
			t.Error(err)
			break
		}
		for _, c := range w.Changes(false) {
			if c.Kind == Expunged || c.Kind == Invalidated {
				t.Errorf("sync %d: UID %d %v while the other session renames files", syncs, c.UID, map[ChangeKind]string{Expunged: "expunged", Invalidated: "invalidated"}[c.Kind])
			}
		}
		s.update(t, "while the other session renames files")
	}
	stop.Store(true)
	r := <-renames
	t.Logf("%d syncs of %d messages while %d files were renamed", syncs, n, r)
	if err := reader.Sync(true); err != nil {
		t.Fatal(err)
	}
	s.update(t, "after the renames")
	checkFolder(t, "after the renames", st, reader, s)
	if got := reader.UIDs(); len(got) != n || got[0] != 1 || got[n-1] != n {
		t.Errorf("the reader has %d UIDs, want 1 to %d", len(got), n)
	}
}

// The same beside Dovecot 2.3, which renames files for its flag changes
// under the uidlist lock and lists cur/ under it too, trusting that no
// file is renamed meanwhile: a courriel session's STORE loop while a
// Dovecot session syncs (NOOP) over and over. No EXPUNGE in Dovecot's
// session, no message given a new UID there or here.
func TestFlagRenamesWhileDovecotSyncs(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	const n = 5000
	owner := Owner{UID: 65534, GID: 65534, Chown: true}
	st := renameFolder(t, n, owner)
	cmd := testenv.DovecotCommand(t, st.Path(), "")
	writer := openBox(t, closedAtEnd(t), st, "INBOX")
	w, view := writer.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: writer.Status().UIDNext}

	// Dovecot's session reads the folder once (its index), then syncs
	// at each NOOP while ours renames.
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, log strings.Builder // apart: a log line may fall within a reply
	cmd.Stdout, cmd.Stderr = &out, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(in, "s SELECT INBOX\r\n")
	var stop atomic.Bool
	renames := make(chan int)
	go func() { renames <- storeLoop(t, writer, n, &stop) }()
	noops := 0
	for deadline := time.Now().Add(4 * time.Second); time.Now().Before(deadline); noops++ {
		fmt.Fprintf(in, "n%d NOOP\r\n", noops)
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	r := <-renames
	// Its input stays open until it has answered LOGOUT (Wait closes
	// it): at the end of its input Dovecot drops what it has not
	// answered yet.
	fmt.Fprintf(in, "f UID SEARCH ALL\r\nz LOGOUT\r\n")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dovecot imap: %v\n%s", err, log.String())
	}
	got := out.String() + log.String()
	t.Logf("%d Dovecot NOOPs while %d files were renamed here", noops, r)
	for _, bad := range []string{" EXPUNGE\r", "reappeared", "Duplicate file entry", "UIDVALIDITY changed", " NO ", " BAD "} {
		if i := strings.Index(got, bad); i >= 0 {
			t.Errorf("Dovecot's session: %q: %.500s", bad, got[max(0, i-200):])
		}
	}
	// The reply may end the output without its CRLF: under load Dovecot
	// has been seen to log out before the rest of its output (the line
	// end, BYE, the tagged replies) reached the pipe.
	m := regexp.MustCompile(`\* SEARCH ([0-9 ]+)(\r\n|$)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no SEARCH reply from Dovecot:\n%s", got[max(0, len(got)-3000):])
	}
	uids := strings.Fields(m[1])
	if len(uids) != n || uids[0] != "1" || uids[n-1] != strconv.Itoa(n) {
		t.Errorf("Dovecot ends with %d UIDs (%s ... %s), want 1 to %d", len(uids), uids[0], uids[len(uids)-1], n)
	}
	if err := writer.Sync(true); err != nil {
		t.Fatal(err)
	}
	s.update(t, "after the renames")
	checkFolder(t, "after the renames", st, writer, s)
}

// And the other way: a Dovecot session's STORE loop (renames under the
// uidlist lock) while a courriel session syncs over and over, listing
// cur/ without the lock first, then under it for a file it missed: no
// message disappears, none gets a new UID.
func TestDovecotRenamesWhileWeSync(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	const n, stores = 5000, 1500
	owner := Owner{UID: 65534, GID: 65534, Chown: true}
	st := renameFolder(t, n, owner)
	cmd := testenv.DovecotCommand(t, st.Path(), "")
	reader := openBox(t, closedAtEnd(t), st, "INBOX")
	w, view := reader.Watch()
	defer w.Close()
	s := &sessionModel{w: w, view: view, uidNext: reader.Status().UIDNext}
	var script strings.Builder
	script.WriteString("s SELECT INBOX\r\n")
	for i := range stores {
		set := make([]string, 0, 64)
		for range cap(set) {
			set = append(set, strconv.Itoa(1+rand.IntN(n)))
		}
		fmt.Fprintf(&script, "a%d UID STORE %s %sFLAGS.SILENT (\\Flagged)\r\n", i, strings.Join(set, ","), map[bool]string{true: "+", false: "-"}[i%2 == 0])
	}
	script.WriteString("z LOGOUT\r\n")
	done := make(chan []byte)
	go func() {
		out, err := dovecotSession(cmd, script.String())
		if err != nil {
			t.Errorf("dovecot imap: %v", err)
		}
		done <- out
	}()
	syncs := 0
	var out []byte
	for running := true; running; syncs++ {
		select {
		case out = <-done:
			running = false
		default:
		}
		if err := reader.Sync(true); err != nil {
			t.Fatal(err)
		}
		for _, c := range w.Changes(false) {
			if c.Kind == Expunged || c.Kind == Invalidated {
				t.Errorf("sync %d: UID %d %v while Dovecot renames files", syncs, c.UID, map[ChangeKind]string{Expunged: "expunged", Invalidated: "invalidated"}[c.Kind])
			}
		}
		s.update(t, "while Dovecot renames files")
	}
	t.Logf("%d syncs of %d messages while Dovecot ran %d STOREs", syncs, n, stores)
	if c := strings.Count(string(out), " OK "); c < stores+2 {
		t.Errorf("Dovecot answered OK %d times, want %d:\n%.2000s", c, stores+2, out)
	}
	checkFolder(t, "after Dovecot's renames", st, reader, s)
}
