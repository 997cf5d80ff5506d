package imap

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Exact replies of commands a QA pass against the demo found wrong.

// expectLines runs a command and compares every line of its reply.
func expectLines(t *testing.T, r *rawConn, tag, cmd string, want ...string) {
	t.Helper()
	if got := r.cmd(tag, cmd); !slices.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", cmd, got, want)
	}
}

// uidValidity selects name and returns its UIDVALIDITY.
func selectUIDValidity(t *testing.T, r *rawConn, name string) string {
	t.Helper()
	for _, l := range r.cmd("sel", "SELECT "+name) {
		if v, ok := strings.CutPrefix(l, "* OK [UIDVALIDITY "); ok {
			return strings.Fields(strings.TrimSuffix(v, "] UIDs valid"))[0]
		}
	}
	t.Fatalf("SELECT %s: no UIDVALIDITY", name)
	return ""
}

// RFC 9051 §6.4.4: after ENABLE IMAP4rev2, SEARCH and UID SEARCH without
// RETURN answer ESEARCH (ALL), empty results included; SORT and THREAD
// keep their own responses. SELECT's LIST has the attributes LIST gives.
func TestRev2SearchAnswersESearch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	expectLines(t, r, "c", "CREATE INBOX.Sub", "c OK Create completed")
	appendLit(t, r, "a1", "INBOX", "Subject: one\r\n\r\nOne.\r\n")
	appendLit(t, r, "a2", "INBOX", "Subject: two\r\n\r\nTwo.\r\n")
	// Before ENABLE, SEARCH is IMAP4rev1's.
	r.cmd("s0", "SELECT INBOX")
	expectLines(t, r, "s1", "SEARCH ALL", "* SEARCH 1 2", "s1 OK Search completed")
	expectLines(t, r, "e", "ENABLE IMAP4rev2", "* ENABLED IMAP4REV2", "e OK Enabled")
	var list []string
	for _, l := range r.cmd("s", "SELECT INBOX") {
		if strings.HasPrefix(l, "* LIST ") {
			list = append(list, l)
		}
	}
	if want := []string{`* LIST (\HasChildren) "." "INBOX"`}; !slices.Equal(list, want) {
		t.Errorf("SELECT INBOX: LIST %q, want %q", list, want)
	}
	expectLines(t, r, "s2", "SEARCH ALL", `* ESEARCH (TAG "s2") ALL 1:2`, "s2 OK Search completed")
	expectLines(t, r, "s3", "UID SEARCH ALL", `* ESEARCH (TAG "s3") UID ALL 1:2`, "s3 OK Search completed")
	expectLines(t, r, "s4", "SEARCH SUBJECT two", `* ESEARCH (TAG "s4") ALL 2`, "s4 OK Search completed")
	expectLines(t, r, "s5", "SEARCH SUBJECT nothing", `* ESEARCH (TAG "s5")`, "s5 OK Search completed")
	expectLines(t, r, "s6", "UID SEARCH SUBJECT nothing", `* ESEARCH (TAG "s6") UID`, "s6 OK Search completed")
	expectLines(t, r, "s7", "SEARCH RETURN (COUNT) ALL", `* ESEARCH (TAG "s7") COUNT 2`, "s7 OK Search completed")
	expectLines(t, r, "o1", "SORT (SUBJECT) UTF-8 ALL", "* SORT 1 2", "o1 OK Sort completed")
	expectLines(t, r, "o2", "UID SORT (SUBJECT) UTF-8 ALL", "* SORT 1 2", "o2 OK Sort completed")
	expectLines(t, r, "h1", "THREAD REFERENCES UTF-8 ALL", "* THREAD (1)(2)", "h1 OK Thread completed")
	list = nil
	for _, l := range r.cmd("s", "SELECT INBOX.Sub") {
		if strings.HasPrefix(l, "* LIST ") {
			list = append(list, l)
		}
	}
	if want := []string{`* LIST (\HasNoChildren) "." "INBOX.Sub"`}; !slices.Equal(list, want) {
		t.Errorf("SELECT INBOX.Sub: LIST %q, want %q", list, want)
	}
	list = nil
	for _, l := range r.cmd("s", "EXAMINE Sent") {
		if strings.HasPrefix(l, "* LIST ") {
			list = append(list, l)
		}
	}
	if want := []string{`* LIST (\HasNoChildren \Sent) "." "Sent"`}; !slices.Equal(list, want) {
		t.Errorf("EXAMINE Sent: LIST %q, want %q", list, want)
	}
}

// RFC 6851 §4.3, RFC 4315: MOVE and COPY into the selected folder answer
// COPYUID as into any other.
func TestCopyMoveIntoSelectedFolderGiveCopyUID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	for i := range 3 {
		appendLit(t, r, fmt.Sprint("a", i), "INBOX", fmt.Sprintf("Subject: %d\r\n\r\nBody.\r\n", i))
	}
	v := selectUIDValidity(t, r, "INBOX")
	expectLines(t, r, "m", "UID MOVE 2 INBOX",
		"* OK [COPYUID "+v+" 2 4] Moved", "* 2 EXPUNGE", "* 3 EXISTS", "* 3 RECENT", "m OK Move completed")
	expectLines(t, r, "m2", "MOVE 1 inbox",
		"* OK [COPYUID "+v+" 1 5] Moved", "* 1 EXPUNGE", "* 3 EXISTS", "* 3 RECENT", "m2 OK Move completed")
	expectLines(t, r, "c", "COPY 1 INBOX", "* 4 EXISTS", "* 4 RECENT", "c OK [COPYUID "+v+" 3 6] Copy completed")
	expectLines(t, r, "c2", "UID COPY 4:5 INBOX", "* 6 EXISTS", "* 6 RECENT", "c2 OK [COPYUID "+v+" 4:5 7:8] Copy completed")
	// UID 2 has moved: nothing is, and there is no COPYUID to give.
	expectLines(t, r, "m3", "UID MOVE 2 INBOX", "m3 OK No messages found")
	expectLines(t, r, "c3", "UID COPY 2 INBOX", "c3 OK No messages found")
}

// RFC 7889 §3: STATUS APPENDLIMIT, as advertised; RFC 9208: DELETED and
// DELETED-STORAGE with QUOTA=RES-MESSAGE and QUOTA=RES-STORAGE.
func TestStatusAppendLimitAndDeletedStorage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AppendLimit = 4096 })
	r := loggedIn(t, e)
	m1 := "Subject: one\r\n\r\nOne.\r\n"
	m2 := "Subject: second one\r\n\r\nTwo, longer.\r\n"
	appendLit(t, r, "a1", "INBOX", m1)
	appendLit(t, r, "a2", "INBOX", m2)
	expectLines(t, r, "s", "STATUS INBOX (APPENDLIMIT)", `* STATUS "INBOX" (APPENDLIMIT 4096)`, "s OK Status completed")
	expectLines(t, r, "s2", "STATUS INBOX (DELETED DELETED-STORAGE)", `* STATUS "INBOX" (DELETED 0 DELETED-STORAGE 0)`, "s2 OK Status completed")
	r.cmd("sel", "SELECT INBOX")
	r.cmd("st", `STORE 2 +FLAGS.SILENT (\Deleted)`)
	expectLines(t, r, "s3", "STATUS INBOX (MESSAGES DELETED SIZE DELETED-STORAGE)",
		fmt.Sprintf(`* STATUS "INBOX" (MESSAGES 2 DELETED 1 SIZE %d DELETED-STORAGE %d)`, len(m1)+len(m2), len(m2)), "s3 OK Status completed")
	expectLines(t, r, "l", `LIST "" INBOX RETURN (STATUS (APPENDLIMIT DELETED-STORAGE))`,
		`* LIST () "." "INBOX"`, fmt.Sprintf(`* STATUS "INBOX" (DELETED-STORAGE %d APPENDLIMIT 4096)`, len(m2)), "l OK List completed")
}

// A user without a quota has no quota root (RFC 9208: a root has limits),
// in Dovecot's words.
func TestNoQuotaNoQuotaRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	expectLines(t, r, "q", "GETQUOTAROOT INBOX", `* QUOTAROOT "INBOX"`, "q OK No quota")
	expectLines(t, r, "g", `GETQUOTA ""`, "g NO [NONEXISTENT] Quota root doesn't exist")
	expectLines(t, r, "g2", `GETQUOTA "User quota"`, "g2 NO [NONEXISTENT] Quota root doesn't exist")
}

// Dovecot refuses to store an empty message, alone or in a MULTIAPPEND
// (then none).
func TestAppendZeroBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	expectLines(t, r, "a", "APPEND INBOX {0+}\r\n", "a NO Can't save a zero byte message")
	// A synchronising literal is not asked for.
	r.send("b APPEND INBOX {0}\r\n")
	if got := r.line(); got != "b NO Can't save a zero byte message" {
		t.Errorf("APPEND {0}: %q", got)
	}
	expectLines(t, r, "c", "APPEND INBOX {3+}\r\nA\r\n {0+}\r\n", "c NO Can't save a zero byte message")
	expectLines(t, r, "d", "APPEND INBOX (\\Seen) {0+}\r\n {3+}\r\nA\r\n", "d NO Can't save a zero byte message")
	expectLines(t, r, "s", "STATUS INBOX (MESSAGES)", `* STATUS "INBOX" (MESSAGES 0)`, "s OK Status completed")
}

// DELETE and RENAME refusals in Dovecot's codes and words.
func TestDeleteRenameRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	for _, n := range []string{"Work", "Work.Projects"} { // Drafts and Sent are made at login
		r.cmd("c", "CREATE "+n)
	}
	expectLines(t, r, "d", "DELETE INBOX", "d NO INBOX can't be deleted")
	expectLines(t, r, "d2", "DELETE inbox", "d2 NO INBOX can't be deleted")
	expectLines(t, r, "r1", "RENAME Drafts inbox", "r1 NO [ALREADYEXISTS] Target mailbox already exists")
	expectLines(t, r, "r2", "RENAME Drafts Sent", "r2 NO [ALREADYEXISTS] Target mailbox already exists")
	expectLines(t, r, "r3", "RENAME Nothing INBOX", "r3 NO [NONEXISTENT] Mailbox does not exist")
	expectLines(t, r, "r4", "RENAME Work Work.Projects.Old", "r4 NO Can't rename mailbox under its own child")
	expectLines(t, r, "r5", "RENAME Work Work", "r5 NO [ALREADYEXISTS] Can't rename mailbox to itself")
	expectLines(t, r, "r6", "RENAME INBOX Old", "r6 NO [CANNOT] Renaming INBOX isn't supported")
	expectLines(t, r, "r7", "RENAME Work Job", "r7 OK Rename completed")
}

// Dovecot 2.3's RENAME leaves the subscriptions as they are ("renames
// also don't change subscriptions", index_storage_set_subscribed):
// subscriptions are names, kept for a folder that no longer exists (RFC
// 9051 §6.3.7).
func TestRenameKeepsSubscriptions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	for _, c := range []string{"CREATE Work", "CREATE Work.Projects", "SUBSCRIBE Work", "SUBSCRIBE Work.Projects"} {
		r.cmd("c", c)
	}
	expectLines(t, r, "r", "RENAME Work Job", "r OK Rename completed")
	expectLines(t, r, "l", `LSUB "" W*`, `* LSUB () "." "Work"`, `* LSUB () "." "Work.Projects"`, "l OK Lsub completed")
	expectLines(t, r, "l2", `LIST "" Jo*`, `* LIST (\HasChildren) "." "Job"`, `* LIST (\HasNoChildren) "." "Job.Projects"`, "l2 OK List completed")
}

// NOTIFY's refusal of an incomplete set of selected-mailbox events names
// the set, in Dovecot's words.
func TestNotifySelectedEventsRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	expectLines(t, r, "n1", "NOTIFY SET (selected (MessageNew))", "n1 BAD MessageNew and MessageExpunge must be together")
	expectLines(t, r, "n2", "NOTIFY SET (selected (MessageExpunge))", "n2 BAD MessageNew and MessageExpunge must be together")
	expectLines(t, r, "n3", "NOTIFY SET (selected (FlagChange))", "n3 BAD FlagChange requires MessageNew and MessageExpunge")
	expectLines(t, r, "n4", "NOTIFY SET (selected (MessageNew MessageExpunge FlagChange))", "n4 OK NOTIFY completed")
}
