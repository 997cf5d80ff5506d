package imap

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"courriel/internal/testenv"
)

// A syscall.Errno is a net.Error (it has Timeout and Temporary): only the
// connection's own errors may end a session, never a storage error.
func TestConnErrOnlyFromTheConnection(t *testing.T) {
	t.Parallel()
	pathErr := func(op string, errno syscall.Errno) error {
		return &os.PathError{Op: op, Path: "tmp/1.M2P3.host", Err: errno}
	}
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name string
		err  error
		conn bool
	}{
		{"ENOSPC writing the message", fmt.Errorf("mailstore: write tmp/x: %w", pathErr("write", syscall.ENOSPC)), false},
		{"EDQUOT creating the file", fmt.Errorf("mailstore: create tmp/x: %w", pathErr("open", syscall.EDQUOT)), false},
		{"EROFS", pathErr("open", syscall.EROFS), false},
		{"EIO", pathErr("read", syscall.EIO), false},
		{"EAGAIN (Timeout() is true)", pathErr("write", syscall.EAGAIN), false},
		{"a message file cut short", io.ErrUnexpectedEOF, false},
		{"client gone", &connError{err: io.EOF}, true},
		{"client reset", &connError{err: reset}, true},
		{"client gone while the message was read", fmt.Errorf("mailstore: read message: %w", &connError{err: io.EOF}), true},
		{"literal cut short", fmt.Errorf("%w (%w)", io.ErrUnexpectedEOF, &connError{err: io.EOF}), true},
	}
	for _, tc := range tests {
		if got := isConnErr(tc.err); got != tc.conn {
			t.Errorf("%s: isConnErr(%v) = %v, want %v", tc.name, tc.err, got, tc.conn)
		}
	}
}

// An APPEND whose message cannot be written (file system full, or
// read-only) is answered with a tagged NO; the rest of its literal is
// read, so the session goes on in step; nothing is left in tmp/; and
// once the file system takes writes again, APPEND works. (QA: the
// ENOSPC was taken for a network error and the connection dropped
// without a word.)
func TestAppendStorageFailureAnswered(t *testing.T) {
	t.Parallel()
	for _, fs := range []struct {
		name string
		deny func(t *testing.T, e *testEnv) (allow func())
		want string
	}{
		{"disk full", func(t *testing.T, e *testEnv) func() {
			return testenv.FillSpace(t, filepath.Join(e.base, "fill"))
		}, "a NO [OVERQUOTA] Not enough disk space"},
		{"read-only", func(t *testing.T, e *testEnv) func() {
			testenv.Remount(t, e.base, "ro")
			return func() { testenv.Remount(t, e.base, "rw") }
		}, "a NO [UNAVAILABLE] Internal error, try again later (id "},
	} {
		t.Run(fs.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvOnTmpfs(t, "size=1m,mode=0755")
			r := loggedIn(t, e)
			if got := last(r.cmd("s", "SELECT INBOX")); !strings.HasPrefix(got, "s OK") {
				t.Fatalf("SELECT: %q", got)
			}
			msg := strings.Repeat("Subject: full\r\n", 600) + "\r\nbody\r\n" // 9 KB
			allow := fs.deny(t, e)
			for _, nonSync := range []bool{false, true} {
				plus := ""
				if nonSync {
					plus = "+"
				}
				r.send(fmt.Sprintf("a APPEND INBOX {%d%s}\r\n", len(msg), plus))
				if !nonSync {
					if got := r.line(); !strings.HasPrefix(got, "+ ") {
						t.Fatalf("APPEND: %q, want a continuation", got)
					}
				}
				r.send(msg + "\r\n")
				if got := last(r.until("a")); !strings.HasPrefix(got, fs.want) {
					t.Errorf("APPEND on a %s file system (non-sync %v): %q, want %q", fs.name, nonSync, got, fs.want)
				}
				if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
					t.Fatalf("after the failed APPEND: %q", got)
				}
			}
			if ents, err := os.ReadDir(filepath.Join(e.maildir, "tmp")); err != nil || len(ents) != 0 {
				t.Errorf("tmp/ after the failed APPENDs: %v, %v", ents, err)
			}
			allow()
			r.send(fmt.Sprintf("b APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
			if got := last(r.until("b")); !strings.HasPrefix(got, "b OK [APPENDUID ") {
				t.Errorf("APPEND once writable again: %q", got)
			}
		})
	}
}

// On a full disk, what needs a new block is refused with OVERQUOTA (QA:
// UNAVAILABLE, "try again later", which a client does at once), and
// what needs none still works.
func TestDiskFullIsOverquota(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	e := newEnvOnTmpfs(t, "size=1m,mode=0755", func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	e.deliver("1700000000.M1P1.host", testMessage(1, "a@example.org", "one"))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	r.cmd("k", "STORE 1 +FLAGS (known)") // dovecot-keywords gets its block
	testenv.FillSpace(t, filepath.Join(e.base, "fill"))
	for _, c := range []struct{ cmd, want string }{
		{"APPEND INBOX {5+}\r\nhello", "x NO [OVERQUOTA] Not enough disk space"},
		{"STORE 1 +FLAGS (newkeyword)", "x NO [OVERQUOTA] Not enough disk space"},
		{"STORE 1 +FLAGS (\\Seen known)", "x OK"},
		{"FETCH 1 (FLAGS BODY[])", "x OK"},
	} {
		if got := last(r.cmd("x", c.cmd)); !strings.HasPrefix(got, c.want) {
			t.Errorf("%q on a full disk: %q, want %q", c.cmd, got, c.want)
		}
	}
	// The administrator learns it, with the connection and the error.
	if l := logs.String(); !strings.Contains(l, `msg="imap: disk full"`) || !strings.Contains(l, "op=append") || !strings.Contains(l, "no space left on device") {
		t.Errorf("no disk-full line in the log:\n%s", l)
	}
}

// A CREATE that runs out of room half-way (here: no inode for cur/)
// answers OVERQUOTA and leaves nothing behind: LIST does not show the
// folder, and the same CREATE works once there is room (QA: an empty
// .NewFolder stayed, listed, ALREADYEXISTS to CREATE and NONEXISTENT to
// everything else).
func TestCreateOutOfRoomTakesBack(t *testing.T) {
	t.Parallel()
	e := newEnvOnTmpfs(t, "size=1m,nr_inodes=200,mode=0755")
	r := loggedIn(t, e)
	free := testenv.FillInodes(t, e.base, 1) // .NewFolder, then no more
	if got := last(r.cmd("a", "CREATE NewFolder")); got != "a NO [OVERQUOTA] Not enough disk space" {
		t.Errorf("CREATE with one inode left: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(e.maildir, ".NewFolder")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".NewFolder after the failed CREATE: %v", err)
	}
	if got := strings.Join(r.cmd("b", `LIST "" "New*"`), "\n"); got != "b OK List completed" {
		t.Errorf("LIST after the failed CREATE:\n%s", got)
	}
	free()
	if got := last(r.cmd("c", "CREATE NewFolder")); got != "c OK Create completed" {
		t.Errorf("CREATE with room again: %q", got)
	}
	if got := last(r.cmd("d", "SELECT NewFolder")); !strings.HasPrefix(got, "d OK [READ-WRITE]") {
		t.Errorf("SELECT of the new folder: %q", got)
	}
}

// halfFolders makes a maildir at dir whose folders Half, Half2 and Half3
// are bare directories, without cur/, new/ and tmp/ (a CREATE cut short
// by a crash, another program's mkdir).
func halfFolders(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{"cur", "new", "tmp", ".Half", ".Half2", ".Half3"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}

// halfFolderScript is what a client does with such folders; every
// command works as in Dovecot, which makes cur/, new/ and tmp/ when it
// opens a folder.
const halfFolderScript = "a LIST \"\" \"Half*\"\r\n" +
	"b CREATE Half\r\n" +
	"c SELECT Half\r\n" +
	"d STATUS Half2 (MESSAGES UIDNEXT)\r\n" +
	"e APPEND Half {4+}\r\nhi\r\n\r\n" +
	"f RENAME Half2 Moved\r\n" +
	"g DELETE Half3\r\n" +
	"h SELECT Moved\r\n" +
	"z LOGOUT\r\n"

// tagged returns the tagged replies of a transcript, as "tag KIND [CODE"
// (the code's first word) in the order of the tags, and the names LIST
// gave.
func tagged(out string) (replies []string, listed []string) {
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		if m := regexp.MustCompile(`^\* LIST \([^)]*\) "\." "?([^"]*)"?$`).FindStringSubmatch(l); m != nil {
			listed = append(listed, m[1])
			continue
		}
		m := regexp.MustCompile(`^([a-z]) (OK|NO|BAD) (\[[A-Z-]+)?`).FindStringSubmatch(l)
		if m != nil && m[1] != "z" {
			replies = append(replies, strings.TrimSpace(m[1]+" "+m[2]+" "+m[3]))
		}
	}
	slices.Sort(replies) // by tag: Dovecot may finish a pipelined APPEND after the next command
	slices.Sort(listed)
	return replies, listed
}

func TestHalfMadeFolderUsable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	halfFolders(t, e.maildir)
	r := loggedIn(t, e)
	r.send(halfFolderScript)
	out := strings.Join(r.until("z"), "\n")
	replies, listed := tagged(out)
	want := []string{"a OK", "b NO [ALREADYEXISTS", "c OK [READ-WRITE", "d OK", "e OK [APPENDUID", "f OK", "g OK", "h OK [READ-WRITE"}
	if !slices.Equal(replies, want) {
		t.Errorf("replies %q, want %q\n%s", replies, want, out)
	}
	if !slices.Equal(listed, []string{"Half", "Half2", "Half3"}) {
		t.Errorf("LIST gave %q", listed)
	}
	for _, d := range []string{".Half/cur", ".Half/new", ".Half/tmp", ".Moved/cur"} {
		if fi, err := os.Stat(filepath.Join(e.maildir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s after the folder was opened: %v", d, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(e.maildir, ".Half3")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".Half3 after DELETE: %v", err)
	}

	// Dovecot 2.3 answers the same.
	testenv.NeedDovecot(t)
	dc := filepath.Join(t.TempDir(), "Maildir")
	halfFolders(t, dc)
	dreplies, dlisted := tagged(testenv.RunDovecot(t, dc, "", halfFolderScript))
	if !slices.Equal(dreplies, want) || !slices.Equal(dlisted, listed) {
		t.Errorf("Dovecot: replies %q, LIST %q; courriel: %q, %q", dreplies, dlisted, replies, listed)
	}
}

// On a full disk a user can still open a folder with new mail, see it,
// and expunge to make room: the uidlist lock needs no data block, and the
// new messages' UIDs are appended within the uidlist's last block. (QA:
// SELECT, STATUS, GETQUOTAROOT and SUBSCRIBE failed with UNAVAILABLE, the
// lock's pid needing a block.)
func TestFullDiskFolderStillOpens(t *testing.T) {
	t.Parallel()
	e := newEnvOnTmpfs(t, "size=1m,mode=0755")
	e.deliver("1700000000.M1P1.host", testMessage(1, "a@example.org", "one"))
	r := loggedIn(t, e)
	for _, c := range []string{"SELECT INBOX", "SUBSCRIBE INBOX", "LOGOUT"} {
		r.cmd("p", c)
	}
	e.deliver("1700000001.M2P1.host", testMessage(2, "a@example.org", "two"))
	e.deliver("1700000002.M3P1.host", testMessage(3, "a@example.org", "three"))
	testenv.FillSpace(t, filepath.Join(e.base, "fill"))

	r = loggedIn(t, e)
	for _, c := range []struct{ cmd, want string }{
		{"STATUS INBOX (MESSAGES UIDNEXT)", `* STATUS "INBOX" (MESSAGES 3 UIDNEXT 4)`},
		{"GETQUOTAROOT INBOX", "x OK"},
		{"SUBSCRIBE INBOX", "x OK"},
		{"SELECT INBOX", "* 3 EXISTS"},
		{"UID FETCH 1:* (FLAGS)", "* 3 FETCH (UID 3 FLAGS ("},
		{"STORE 1:2 +FLAGS.SILENT (\\Deleted)", "x OK"},
		{"EXPUNGE", "* 1 EXPUNGE"},
		{"NOOP", "x OK"},
	} {
		got := r.cmd("x", c.cmd)
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, c.want) }) || !strings.HasPrefix(last(got), "x OK") {
			t.Errorf("%s on a full disk:\n%s\nwant a line %q and OK", c.cmd, strings.Join(got, "\n"), c.want)
		}
	}
}

// With no inode left (not even for the uidlist lock), a folder with new
// mail still opens, showing the messages that have UIDs; the others come
// as EXISTS once there is room.
func TestNoInodeFolderStillOpens(t *testing.T) {
	t.Parallel()
	e := newEnvOnTmpfs(t, "size=1m,nr_inodes=300,mode=0755")
	e.deliver("1700000000.M1P1.host", testMessage(1, "a@example.org", "one"))
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	e.deliver("1700000001.M2P1.host", testMessage(2, "a@example.org", "two"))
	free := testenv.FillInodes(t, e.base, 0)
	if got := strings.Join(r.cmd("n", "NOOP"), "\n"); got != "n OK NOOP completed" {
		t.Errorf("NOOP with no inode left:\n%s", got)
	}
	r2 := loggedIn(t, e)
	if got := r2.cmd("s", "SELECT INBOX"); !slices.Contains(got, "* 1 EXISTS") || !strings.HasPrefix(last(got), "s OK") {
		t.Errorf("SELECT with no inode left:\n%s", strings.Join(got, "\n"))
	}
	free()
	for _, c := range []*rawConn{r, r2} {
		if got := c.cmd("n", "NOOP"); !slices.Contains(got, "* 2 EXISTS") {
			t.Errorf("NOOP with inodes again:\n%s", strings.Join(got, "\n"))
		}
	}
}

// A folder no IMAP server has opened (messages delivered or copied into
// new/ and cur/, no dovecot-uidlist) cannot be numbered on a full disk:
// SELECT, EXAMINE and STATUS answer NO [OVERQUOTA] saying why, rather
// than show an empty INBOX under a UIDVALIDITY that is not kept (QA);
// GETQUOTAROOT and LIST still work. With room, every message is there.
// Dovecot 2.3 refuses the folder too (with [SERVERBUG] for ENOSPC).
func TestNeverNumberedFolderRefusedOnFullDisk(t *testing.T) {
	t.Parallel()
	fill := func(dir string) {
		for i, n := range []string{"1700000000.M1P1.host", "1700000001.M2P1.host"} {
			writeMaildirMsg(t, dir, "new", n, testMessage(i+1, "a@example.org", "new"))
		}
		for i, n := range []string{"1600000000.M1P1.host:2,S", "1600000001.M2P1.host:2,FS"} {
			writeMaildirMsg(t, dir, "cur", n, testMessage(i+3, "a@example.org", "old"))
		}
	}
	const refused = "x NO [OVERQUOTA] Not enough disk space to open this mailbox"
	e := newEnvOnTmpfs(t, "size=1m,mode=0755")
	fill(e.maildir)
	free := testenv.FillSpace(t, filepath.Join(e.base, "fill"))
	r := loggedIn(t, e)
	for _, c := range []struct{ cmd, want string }{
		{"SELECT INBOX", refused},
		{"EXAMINE INBOX", refused},
		{"STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY)", refused},
		{"GETQUOTAROOT INBOX", "x OK"},
		{`LIST "" INBOX`, "x OK"},
		{"NOOP", "x OK"},
	} {
		got := r.cmd("x", c.cmd)
		if !strings.HasPrefix(last(got), c.want) || slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "EXISTS") }) {
			t.Errorf("%s on a full disk:\n%s\nwant %q", c.cmd, strings.Join(got, "\n"), c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(e.maildir, "dovecot-uidlist")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dovecot-uidlist on a full disk: %v", err)
	}
	free()
	if got := r.cmd("x", "STATUS INBOX (MESSAGES UIDNEXT)"); !slices.Contains(got, `* STATUS "INBOX" (MESSAGES 4 UIDNEXT 5)`) {
		t.Errorf("STATUS with room again:\n%s", strings.Join(got, "\n"))
	}
	if got := r.cmd("x", "SELECT INBOX"); !slices.Contains(got, "* 4 EXISTS") || !strings.HasPrefix(last(got), "x OK") {
		t.Errorf("SELECT with room again:\n%s", strings.Join(got, "\n"))
	}

	// Dovecot 2.3 on the same folder on a full disk.
	testenv.NeedDovecot(t)
	base := t.TempDir()
	testenv.MountTmpfs(t, base, "size=256k,mode=0755")
	dc := filepath.Join(base, "Maildir")
	fill(dc)
	cmd := testenv.DovecotCommand(t, dc, "")
	testenv.FillSpace(t, filepath.Join(base, "fill"))
	cmd.Stdin = strings.NewReader("a SELECT INBOX\r\nb STATUS INBOX (MESSAGES)\r\nz LOGOUT\r\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dovecot imap: %v\n%s", err, out)
	}
	for _, tag := range []string{"a", "b"} {
		if !regexp.MustCompile(`(?m)^` + tag + ` NO `).Match(out) {
			t.Errorf("Dovecot's %s on a full disk is no NO:\n%s", tag, out)
		}
	}
}
