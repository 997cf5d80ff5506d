package imap

import (
	"strings"
	"testing"
)

// TestQuota: RFC 9208 over the directory's limits and maildirsize. Over
// the quota, APPEND is refused before its literal is asked for and COPY
// before anything is copied, both with NO [OVERQUOTA]; an EXPUNGE makes
// room again; SETQUOTA is the directory's business. A user without a quota
// has a quota root list with no root.
func TestQuota(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setQuota("alice", 2048, 10)

	r := loggedIn(t, e)
	all := func(ls []string) string { return strings.Join(ls, "\n") }
	if got := all(r.cmd("c", "CAPABILITY")); !strings.Contains(got, " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE ") {
		t.Errorf("CAPABILITY:\n%s", got)
	}
	if got := all(r.cmd("q", "GETQUOTAROOT INBOX")); !strings.Contains(got, "* QUOTAROOT \"INBOX\" \"User quota\"") ||
		!strings.Contains(got, "* QUOTA \"User quota\" (STORAGE 0 2 MESSAGE 0 10)") || !strings.Contains(got, "q OK") {
		t.Errorf("GETQUOTAROOT:\n%s", got)
	}
	msg := "Subject: q\r\n\r\n" + strings.Repeat("x", 1400) + "\r\n"
	r.send("a1 APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
	if got := r.line(); !strings.HasPrefix(got, "+") {
		t.Fatalf("APPEND under the quota: %q", got)
	}
	r.send(msg + "\r\n")
	if got := last(r.until("a1")); !strings.HasPrefix(got, "a1 OK") {
		t.Fatalf("APPEND under the quota: %q", got)
	}
	r.send("a2 APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
	expectAtOnce(t, r, "a2 NO [OVERQUOTA]")
	r.cmd("s", "SELECT INBOX")
	if got := last(r.cmd("k", "COPY 1 INBOX")); !strings.HasPrefix(got, "k NO [OVERQUOTA]") {
		t.Errorf("COPY over the quota: %q", got)
	}
	if got := all(r.cmd("g", "GETQUOTA \"User quota\"")); !strings.Contains(got, "(STORAGE 2 2 MESSAGE 1 10)") { // 1,418 bytes: 2 KiB rounded up, as Dovecot
		t.Errorf("GETQUOTA:\n%s", got)
	}
	if got := last(r.cmd("x", "SETQUOTA \"User quota\" (STORAGE 99999)")); !strings.HasPrefix(got, "x NO [NOPERM]") {
		t.Errorf("SETQUOTA: %q", got)
	}
	r.cmd("d", "STORE 1 +FLAGS.SILENT (\\Deleted)")
	r.cmd("e", "EXPUNGE")
	if got := all(r.cmd("g2", "GETQUOTA \"User quota\"")); !strings.Contains(got, "(STORAGE 0 2 MESSAGE 0 10)") {
		t.Errorf("GETQUOTA after EXPUNGE:\n%s", got)
	}
	r.send("a3 APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
	if got := r.line(); !strings.HasPrefix(got, "+") {
		t.Fatalf("APPEND after EXPUNGE: %q", got)
	}
	r.send(msg + "\r\n")
	if got := last(r.until("a3")); !strings.HasPrefix(got, "a3 OK") {
		t.Errorf("APPEND after EXPUNGE: %q", got)
	}

	// bob has no quota.
	b := dialRaw(t, e.addr, true)
	b.cmd("l", "LOGIN bob hunter2")
	if got := b.cmd("q", "GETQUOTAROOT INBOX"); len(got) != 2 || got[0] != "* QUOTAROOT \"INBOX\"" {
		t.Errorf("GETQUOTAROOT without quota: %q", got)
	}
	if got := last(b.cmd("g", "GETQUOTA \"User quota\"")); !strings.HasPrefix(got, "g NO") {
		t.Errorf("GETQUOTA without quota: %q", got)
	}
}

// TestMultiAppendAtomic: MULTIAPPEND (RFC 3502) stores every message or
// none: a second message refused (its literal over APPENDLIMIT, answered
// before it is sent) leaves the first one out too.
func TestMultiAppendAtomic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AppendLimit = 4096 })
	r := loggedIn(t, e)
	msg := "Subject: m\r\n\r\nbody\r\n"
	r.send("a APPEND INBOX (\\Seen) {" + itoa(len(msg)) + "+}\r\n" + msg + " {100000}\r\n")
	expectAtOnce(t, r, "a NO [TOOBIG]")
	if got := strings.Join(r.cmd("s", "STATUS INBOX (MESSAGES)"), "\n"); !strings.Contains(got, "(MESSAGES 0)") {
		t.Errorf("after a refused MULTIAPPEND:\n%s", got)
	}
	r.send("b APPEND INBOX {" + itoa(len(msg)) + "+}\r\n" + msg + " (\\Flagged) {" + itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
	if got := last(r.until("b")); !strings.HasPrefix(got, "b OK [APPENDUID ") || !strings.Contains(got, " 1:2]") {
		t.Errorf("MULTIAPPEND of two: %q", got)
	}
	if got := strings.Join(r.cmd("s2", "STATUS INBOX (MESSAGES)"), "\n"); !strings.Contains(got, "(MESSAGES 2)") {
		t.Errorf("after MULTIAPPEND of two:\n%s", got)
	}
}

// TestQuotaFreedByDelete: a deleted folder's messages leave the quota at
// once, as Dovecot's quota plugin frees them; the folder in the trash is
// not counted when the file is recomputed either. Before, they counted
// until a recomputation and mail was refused for room the user had made.
func TestQuotaFreedByDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setQuota("alice", 5000, 10)

	r := loggedIn(t, e)
	all := func(ls []string) string { return strings.Join(ls, "\n") }
	r.cmd("c", "CREATE Old")
	msg := "Subject: q\r\n\r\n" + strings.Repeat("x", 1400) + "\r\n"
	for i, box := range []string{"Old", "Old", "INBOX"} {
		tag := "a" + itoa(i)
		r.send(tag + " APPEND " + box + " {" + itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
		if got := last(r.until(tag)); !strings.HasPrefix(got, tag+" OK") {
			t.Fatalf("APPEND %s: %q", box, got)
		}
	}
	if got := all(r.cmd("g", "GETQUOTA \"User quota\"")); !strings.Contains(got, " MESSAGE 3 10)") {
		t.Fatalf("GETQUOTA with Old:\n%s", got)
	}
	r.send("a9 APPEND INBOX {" + itoa(len(msg)) + "}\r\n")
	expectAtOnce(t, r, "a9 NO [OVERQUOTA]")
	if got := last(r.cmd("d", "DELETE Old")); !strings.HasPrefix(got, "d OK") {
		t.Fatalf("DELETE: %q", got)
	}
	if got := all(r.cmd("g2", "GETQUOTA \"User quota\"")); !strings.Contains(got, "(STORAGE 2 5 MESSAGE 1 10)") {
		t.Errorf("GETQUOTA after DELETE:\n%s", got)
	}
	r.send("b1 APPEND INBOX {" + itoa(len(msg)) + "+}\r\n" + msg + "\r\n")
	if got := last(r.until("b1")); !strings.HasPrefix(got, "b1 OK") {
		t.Errorf("APPEND after DELETE: %q", got)
	}
}

// setQuota gives login a quota of bytes and messages in the test directory.
func (e *testEnv) setQuota(login string, bytes, messages int64) {
	e.auth.mu.Lock()
	defer e.auth.mu.Unlock()
	u := e.auth.users[login]
	u.user.QuotaBytes, u.user.QuotaMessages = bytes, messages
	e.auth.users[login] = u
}
