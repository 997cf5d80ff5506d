package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"
)

func TestFolderCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.login(nil)
	// A UTF-8 name is sent as it is only after UTF8=ACCEPT (go-imap's
	// client sends it so as soon as IMAP4rev2 is advertised).
	if _, err := c.Enable(goimap.CapUTF8Accept).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"Archive", "Archive.2024", "Entwürfe"} {
		if err := c.Create(n, nil).Wait(); err != nil {
			t.Fatalf("create %s: %v", n, err)
		}
	}
	for _, d := range []string{".Archive", ".Archive.2024", ".Entw&APw-rfe"} {
		if _, err := os.Stat(filepath.Join(e.maildir, d, "cur")); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	if err := c.Create("Archive", nil).Wait(); imapCode(err) != goimap.ResponseCodeAlreadyExists {
		t.Errorf("create twice: %v", err)
	}
	list, err := c.List("", "Archive%", nil).Collect()
	if err != nil || len(list) != 1 || !slices.Contains(list[0].Attrs, goimap.MailboxAttrHasChildren) {
		t.Errorf("LIST Archive%% = %+v, %v", list, err)
	}
	if err := c.Rename("Archive", "Old", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.maildir, ".Old.2024")); err != nil {
		t.Errorf("child not renamed: %v", err)
	}
	if err := c.Subscribe("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	lsub, err := c.List("", "Old*", &goimap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil || len(lsub) != 1 || lsub[0].Mailbox != "Old.2024" {
		t.Errorf("LIST (SUBSCRIBED) = %+v, %v", lsub, err)
	}
	if err := c.Unsubscribe("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old.2024").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete("Old.2024").Wait(); imapCode(err) != goimap.ResponseCodeNonExistent {
		t.Errorf("delete missing: %v", err)
	}
	if _, err := c.Select("Nope", nil).Wait(); imapCode(err) != goimap.ResponseCodeNonExistent {
		t.Errorf("select missing: %v", err)
	}
	// LIST-STATUS.
	ls, err := c.List("", "INBOX", &goimap.ListOptions{ReturnStatus: &goimap.StatusOptions{NumMessages: true, UIDValidity: true}}).Collect()
	if err != nil || len(ls) != 1 || ls[0].Status == nil || *ls[0].Status.NumMessages != 0 {
		t.Errorf("LIST RETURN (STATUS) = %+v, %v", ls, err)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '.' {
		t.Errorf("NAMESPACE = %+v, %v", ns, err)
	}
}

func TestHostileFolderNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	outside := filepath.Join(e.base, "outside")
	os.MkdirAll(filepath.Join(outside, "cur"), 0o700)
	// A symlink planted in the maildir must not lead out of it.
	os.Symlink(outside, filepath.Join(e.maildir, ".Escape"))
	c := e.login(nil)
	for _, name := range []string{"..", "a..b", ".hidden", "trailing..", "a/b", "../../etc", "bad\x01name", "*", "x%y", string(make([]byte, 300))} {
		if err := c.Create(name, nil).Wait(); err == nil {
			t.Errorf("CREATE %q accepted", name)
		}
	}
	if _, err := c.Select("Escape", nil).Wait(); err == nil {
		t.Error("SELECT through a symlink leading outside the maildir succeeded")
	}
	ents, _ := os.ReadDir(e.base)
	for _, en := range ents {
		if en.Name() != "alice" && en.Name() != "bob" && en.Name() != "outside" {
			t.Errorf("something created outside the maildir: %s", en.Name())
		}
	}
	// Another user's mail is not reachable by name.
	bob := filepath.Join(e.base, "bob", "mailbox")
	writeMaildirMsg(t, bob, "new", "1700000000.M1P1.bob", "Subject: private\n\nbob's\n")
	if _, err := c.Select("../../bob/mailbox", nil).Wait(); err == nil {
		t.Error("selected another user's maildir")
	}
}

// A mailbox name is taken as the client wrote it or refused: without
// UTF8=ACCEPT it must be modified UTF-7 in its one canonical form (RFC
// 3501 §5.1.3: printable ASCII, "&" as "&-", each run of other characters
// as one base64 run with zero padding bits), so that what LIST shows is
// what the client created. Dovecot answers the same NO, without a code,
// to every command taking a mailbox name.
func TestMailboxNameMustBeMUTF7(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	const notMUTF7 = "x NO Mailbox name is not valid mUTF-7"
	if got := last(r.cmd("c", `CREATE "ok&AOkA6Q-"`)); !strings.HasPrefix(got, "c OK") {
		t.Fatalf("CREATE of a canonical name: %q", got)
	}
	r.cmd("s", "SELECT INBOX")
	appendRaw(t, r, "INBOX", "Subject: x\r\n\r\nx\r\n")
	for _, bad := range []string{
		"\"latin \xfc\"",          // 8-bit, not even UTF-8
		"\"bad8 \xc3\xbc &AOk-\"", // UTF-8 and mUTF-7 at once
		`"bad4&AOk-&AOk-"`,        // two adjacent runs: one in canonical form
		`"pad&AOl-"`,              // non-zero padding bits: "&AOk-" in canonical form
		`"&Jjo"`,                  // unterminated run
		`"&AGEA-"`,                // printable ASCII encoded
	} {
		for _, cmd := range []string{
			"CREATE " + bad,
			"RENAME \"ok&AOkA6Q-\" " + bad,
			"RENAME " + bad + " x",
			"DELETE " + bad,
			"SELECT " + bad,
			"EXAMINE " + bad,
			"STATUS " + bad + " (MESSAGES)",
			"SUBSCRIBE " + bad,
			"UNSUBSCRIBE " + bad,
			"APPEND " + bad + " {1+}\r\nx",
			"COPY 1 " + bad,
			"MOVE 1 " + bad,
			"GETQUOTAROOT " + bad,
		} {
			if !strings.HasPrefix(cmd, "SELECT") && !strings.HasPrefix(cmd, "EXAMINE") {
				r.cmd("s", "SELECT INBOX") // a failed SELECT leaves none selected
			}
			if got := last(r.cmd("x", cmd)); got != notMUTF7 {
				t.Errorf("%q: %q, want %q", cmd, got, notMUTF7)
			}
		}
	}
	// UTF-8 without "&", as go-imap's client sends it to an IMAP4rev2
	// server without ENABLE: taken, and listed in the form that decodes
	// to it.
	if got := last(r.cmd("u", "CREATE \"caf\xc3\xa9\"")); !strings.HasPrefix(got, "u OK") {
		t.Errorf("CREATE of a UTF-8 name: %q", got)
	}
	var names []string
	for _, l := range r.cmd("l", `LIST "" "*"`) {
		if strings.HasPrefix(l, "* LIST") {
			names = append(names, strings.Trim(l[strings.LastIndexByte(l, ' ')+1:], `"`))
		}
	}
	if !slices.Contains(names, "ok&AOkA6Q-") || !slices.Contains(names, "caf&AOk-") || slices.ContainsFunc(names, func(n string) bool {
		return strings.Contains(n, "bad") || strings.Contains(n, "pad") || strings.Contains(n, "latin")
	}) {
		t.Errorf("LIST after the refusals: %q", names)
	}

	// A LIST pattern that is not canonical is taken as it is, as Dovecot
	// takes it: it names no folder. 8-bit in a pattern is UTF-8 there.
	for _, tc := range []struct{ pat, want string }{
		{`"ok&AOkA6Q-"`, "* LIST (\\HasNoChildren) \".\" \"ok&AOkA6Q-\""},
		{`"ok&AOk-&AOk-"`, "l OK"},
		{"\"ok\xc3\xa9*\"", "* LIST (\\HasNoChildren) \".\" \"ok&AOkA6Q-\""},
	} {
		if got := r.cmd("l", `LIST "" `+tc.pat); !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("LIST %s: %q, want %q", tc.pat, got, tc.want)
		}
	}

	// With UTF8=ACCEPT names are UTF-8, which an invalid byte is not.
	u := loggedIn(t, e)
	u.cmd("e", "ENABLE UTF8=ACCEPT")
	if got := last(u.cmd("c", "CREATE \"u8 \xc3\xbc\"")); !strings.HasPrefix(got, "c OK") {
		t.Errorf("CREATE of a UTF-8 name after UTF8=ACCEPT: %q", got)
	}
	if got := last(u.cmd("x", "CREATE \"latin \xfc\"")); got != "x NO Mailbox name is not valid UTF-8" {
		t.Errorf("CREATE of a non-UTF-8 name after UTF8=ACCEPT: %q", got)
	}
	if got := u.cmd("l", `LIST "" "u8*"`); got[0] != "* LIST (\\HasNoChildren) \".\" \"u8 \xc3\xbc\"" {
		t.Errorf("LIST after UTF8=ACCEPT: %q", got)
	}
}

// TestDovecotWildcardFoldersShown: folders Dovecot created with a list
// wildcard or a backslash in their names (".50% off", ".Star*",
// ".back\slash") are listed, selected, renamed and deleted as Dovecot
// 2.3 lists them, quoted and escaped, where they were left out of LIST
// and refused by name (their mail out of reach after a move from
// Dovecot); courriel still makes no new folder so named.
func TestDovecotWildcardFoldersShown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i, d := range []string{".50% off", ".Star*", `.back\slash`} {
		writeMaildirMsg(t, filepath.Join(e.maildir, d), "cur", fmt.Sprintf("170000000%d.M1P1.host", i), "Subject: kept\n\nbody\n")
	}
	r := loggedIn(t, e)
	var got []string
	for _, l := range r.cmd("l", `LIST "" "*"`) {
		if strings.HasPrefix(l, "* LIST") && !strings.HasSuffix(l, `"INBOX"`) {
			got = append(got, l)
		}
	}
	want := []string{
		`* LIST (\HasNoChildren) "." "50% off"`,
		`* LIST (\HasNoChildren) "." "Star*"`,
		`* LIST (\HasNoChildren) "." "back\\slash"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("LIST:\n got %q\nwant %q", got, want)
	}
	for _, c := range []struct{ name, renamed string }{
		{`"50% off"`, `"50 off"`},
		{`"Star*"`, "Star"},
		{`"back\\slash"`, "slash"},
	} {
		if got := r.cmd("s", "SELECT "+c.name); !slices.Contains(got, "* 1 EXISTS") || !strings.HasPrefix(last(got), "s OK") {
			t.Errorf("SELECT %s: %q", c.name, got)
		}
		if got := r.cmd("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"); len(got) < 2 || got[1] != "Subject: kept" {
			t.Errorf("FETCH in %s: %q", c.name, got)
		}
		r.cmd("u", "UNSELECT")
		if got := last(r.cmd("r", "RENAME "+c.name+" "+c.renamed)); !strings.HasPrefix(got, "r OK") {
			t.Errorf("RENAME %s: %q", c.name, got)
		}
		if got := last(r.cmd("b", "RENAME "+c.renamed+" "+c.name)); !strings.HasPrefix(got, "b NO [CANNOT]") {
			t.Errorf("RENAME back to %s: %q", c.name, got)
		}
		if got := last(r.cmd("d", "DELETE "+c.renamed)); !strings.HasPrefix(got, "d OK") {
			t.Errorf("DELETE %s: %q", c.renamed, got)
		}
		if got := last(r.cmd("c", "CREATE "+c.name)); !strings.HasPrefix(got, "c NO [CANNOT]") {
			t.Errorf("CREATE %s: %q", c.name, got)
		}
	}
}

// TestRenameParentWithoutFolder: RENAME of a name that is only the parent
// of folders (Maildir++ has ".Work.Sub" without ".Work" when a client or
// Dovecot made the child alone; clients show "Work" all the same) renames
// its children, as Dovecot 2.3 does; it answered NONEXISTENT, so that a
// Thunderbird user could not rename the folder shown.
func TestRenameParentWithoutFolder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := loggedIn(t, e)
	for _, c := range []string{"CREATE Work.Sub", "CREATE Work.Other.Deep"} {
		if got := last(r.cmd("c", c)); got != "c OK Create completed" {
			t.Fatalf("%s: %q", c, got)
		}
	}
	writeMaildirMsg(t, filepath.Join(e.maildir, ".Work.Sub"), "cur", "1700000001.M1P1.host", "Subject: kept\n\nbody\n")
	if _, err := os.Stat(filepath.Join(e.maildir, ".Work")); !os.IsNotExist(err) {
		t.Fatalf(".Work: %v", err)
	}
	expectLines(t, r, "r", "RENAME Work Play", "r OK Rename completed")
	expectLines(t, r, "l", `LIST "" "Play*"`,
		`* LIST (\Noselect \HasChildren) "." "Play"`,
		`* LIST (\Noselect \HasChildren) "." "Play.Other"`,
		`* LIST (\HasNoChildren) "." "Play.Other.Deep"`,
		`* LIST (\HasNoChildren) "." "Play.Sub"`,
		"l OK List completed")
	expectLines(t, r, "s", "STATUS Play.Sub (MESSAGES)", `* STATUS "Play.Sub" (MESSAGES 1)`, "s OK Status completed")
	expectLines(t, r, "n", "RENAME Work Play2", "n NO [NONEXISTENT] Mailbox does not exist")
	expectLines(t, r, "x", "RENAME Play Play.Sub.In", "x NO Can't rename mailbox under its own child")
}

// TestListMatchesInboxLevelAnyCase: LIST patterns match INBOX, and the
// INBOX level of its children, in any case ("inbox.*", "i*", reference
// "inbox."), as Dovecot 2.3 lists them; INBOX.Sub was left out of them.
// Other names match as they are spelt.
func TestListMatchesInboxLevelAnyCase(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, name string
		match         bool
	}{
		{"inbox", "INBOX", true},
		{"Inbox*", "INBOX", true},
		{"inbox.*", "INBOX.Sub", true},
		{"inbox.%", "INBOX.Sub", true},
		{"i*", "INBOX.Sub", true},
		{"inb%", "INBOX", true},
		{"inbox.sub", "INBOX.Sub", false}, // below INBOX, names keep their case
		{"INBOX.Sub", "INBOX.Sub", true},
		{"i*", "Inboxes", false},
		{"inboxes", "Inboxes", false},
		{"s*", "Sent", false},
		{"%", "INBOX.Sub", false},
	} {
		if got := matchList(c.pattern, c.name); got != c.match {
			t.Errorf("matchList(%q, %q) = %v", c.pattern, c.name, got)
		}
	}
	e := newEnv(t)
	r := loggedIn(t, e)
	r.cmd("c", "CREATE INBOX.Sub")
	expectLines(t, r, "l", `LIST "inbox." "%"`, `* LIST (\HasNoChildren) "." "INBOX.Sub"`, "l OK List completed")
	expectLines(t, r, "l", `LIST "" "inbox*"`, `* LIST (\HasChildren) "." "INBOX"`, `* LIST (\HasNoChildren) "." "INBOX.Sub"`, "l OK List completed")
}
