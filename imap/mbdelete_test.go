package imap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"courriel/imap/mailstore"
)

// idleOn logs a session in, selects folder and starts IDLE in it.
func idleOn(t *testing.T, e *testEnv, folder string) *rawConn {
	t.Helper()
	r := loggedIn(t, e)
	if got := last(r.cmd("s", "SELECT "+folder)); !strings.HasPrefix(got, "s OK") {
		t.Fatalf("SELECT %s: %q", folder, got)
	}
	r.send("i IDLE\r\n")
	expectAtOnce(t, r, "+ ")
	return r
}

// expectBye reads what an idling session is sent until its BYE: the
// messages' removal may come first (inotify wakes it while the folder's
// files go), nothing else.
func expectBye(t *testing.T, r *rawConn, want string) {
	t.Helper()
	for {
		l := r.line()
		if strings.HasPrefix(l, want) {
			break
		}
		if !regexp.MustCompile(`^\* \d+ EXPUNGE$`).MatchString(l) {
			t.Fatalf("got %q, want %q", l, want)
		}
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := r.br.ReadString('\n'); err == nil {
		t.Errorf("after the BYE: %q, want the end", l)
	}
}

var (
	uidValidityRE = regexp.MustCompile(`\[UIDVALIDITY (\d+)\]`)
	existsRE      = regexp.MustCompile(`^\* (\d+) EXISTS$`)
)

// selectFolder selects folder and returns its EXISTS and UIDVALIDITY.
func selectFolder(t *testing.T, r *rawConn, folder string) (exists int, uidValidity string) {
	t.Helper()
	exists = -1
	lines := r.cmd("s", "SELECT "+folder)
	if !strings.HasPrefix(last(lines), "s OK") {
		t.Fatalf("SELECT %s: %q", folder, lines)
	}
	for _, l := range lines {
		if m := existsRE.FindStringSubmatch(l); m != nil {
			exists, _ = strconv.Atoi(m[1])
		}
		if m := uidValidityRE.FindStringSubmatch(l); m != nil {
			uidValidity = m[1]
		}
	}
	return exists, uidValidity
}

// listed reports whether LIST shows folder.
func listed(t *testing.T, r *rawConn, folder string) bool {
	t.Helper()
	lines := r.cmd("l", `LIST "" "*"`)
	if !strings.HasPrefix(last(lines), "l OK") {
		t.Fatalf("LIST: %q", lines)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "* LIST ") && (strings.HasSuffix(l, " "+folder) || strings.HasSuffix(l, ` "`+folder+`"`)) {
			return true
		}
		if strings.Contains(l, "DOVECOT-TRASHED") {
			t.Errorf("LIST shows the trash: %q", l)
		}
	}
	return false
}

// A DELETE while other sessions are in IDLE on the folder: each of them,
// woken by inotify as the messages' files went, synced and took the
// folder's uidlist lock (its file in the folder) while DELETE was
// removing it: RemoveAll failed ("directory not empty"), the client got
// NO [UNAVAILABLE] and the folder stayed half deleted (its messages gone,
// its directory, with a lock or state file, still there: LIST showed it,
// SELECT made it a folder again, empty, under its old UIDVALIDITY). Now
// the name goes at once (the directory renamed into the maildir's trash,
// as Dovecot does), the sessions that had it are detached and told
// (BYE), and the files are removed afterwards. The race is tried in a
// bounded loop, and RENAME beside it.
func TestDeleteWhileOthersIdle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = 20 * time.Millisecond })
	d := loggedIn(t, e)
	dir := filepath.Join(e.maildir, ".Work")
	const rounds, idlers, messages = 12, 3, 200
	var prevValidity string
	for round := range rounds {
		if got := last(d.cmd("c", "CREATE Work")); !strings.HasPrefix(got, "c OK") {
			t.Fatalf("round %d: CREATE: %q", round, got)
		}
		for i := range messages {
			writeMaildirMsg(t, dir, "new", fmt.Sprintf("%d.M%dP1.test", 1700000000+i, round), testMessage(i, "a@example.org", "m"))
		}
		rename := round%3 == 2
		var sessions []*rawConn
		for range idlers {
			sessions = append(sessions, idleOn(t, e, "Work"))
		}
		op, want := "DELETE Work", "* BYE Selected mailbox was deleted"
		if rename {
			op, want = "RENAME Work Other", "* BYE Selected mailbox was renamed"
		}
		if got := last(d.cmd("d", op)); !strings.HasPrefix(got, "d OK") {
			t.Fatalf("round %d: %s: %q", round, op, got)
		}
		for _, r := range sessions {
			expectBye(t, r, want)
		}
		if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
			ents, _ := os.ReadDir(dir)
			t.Fatalf("round %d: after %s, the folder's directory: %v (holding %v)", round, op, err, ents)
		}
		if _, err := os.Lstat(filepath.Join(e.maildir, mailstore.TrashDir)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("round %d: after %s, the trash: %v", round, op, err)
		}
		if listed(t, d, "Work") {
			t.Fatalf("round %d: LIST shows Work after %s", round, op)
		}
		if got := last(d.cmd("x", "STATUS Work (MESSAGES)")); !strings.HasPrefix(got, "x NO [NONEXISTENT]") {
			t.Errorf("round %d: STATUS of the deleted folder: %q", round, got)
		}
		if rename {
			if n, _ := selectFolder(t, d, "Other"); n != messages {
				t.Errorf("round %d: the renamed folder has %d messages, want %d", round, n, messages)
			}
			d.cmd("u", "UNSELECT")
			if got := last(d.cmd("d", "DELETE Other")); !strings.HasPrefix(got, "d OK") {
				t.Fatalf("round %d: DELETE Other: %q", round, got)
			}
		}
		// The name is free: a CREATE makes a new, empty folder.
		if got := last(d.cmd("c", "CREATE Work")); !strings.HasPrefix(got, "c OK") {
			t.Fatalf("round %d: CREATE again: %q", round, got)
		}
		n, validity := selectFolder(t, d, "Work")
		if n != 0 || validity == "" || validity == prevValidity {
			t.Errorf("round %d: the new folder: %d messages, UIDVALIDITY %s (the last one %s)", round, n, validity, prevValidity)
		}
		prevValidity = validity
		d.cmd("u", "UNSELECT")
		if got := last(d.cmd("d", "DELETE Work")); !strings.HasPrefix(got, "d OK") {
			t.Fatalf("round %d: DELETE of the new folder: %q", round, got)
		}
	}
}
