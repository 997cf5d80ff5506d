package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Transcripts of CATENATE (RFC 4469) and CONTEXT=SEARCH (RFC 5267).

// appendRaw appends body to mailbox with a non-synchronising literal.
func appendLit(t *testing.T, r *rawConn, tag, mailbox, body string) string {
	t.Helper()
	got := last(r.cmd(tag, fmt.Sprintf("APPEND %s {%d+}\r\n%s", mailbox, len(body), body)))
	if !strings.HasPrefix(got, tag+" OK") {
		t.Fatalf("APPEND: %q", got)
	}
	return got
}

// fetchBodies returns BODY[] of every message of the selected mailbox.
func fetchBodies(t *testing.T, r *rawConn) []string {
	t.Helper()
	r.send("f FETCH 1:* BODY.PEEK[]\r\n")
	var out []string
	for {
		l := r.line()
		if strings.HasPrefix(l, "f ") {
			if !strings.HasPrefix(l, "f OK") {
				t.Fatalf("FETCH: %q", l)
			}
			return out
		}
		i := strings.LastIndexByte(l, '{')
		if !strings.HasPrefix(l, "* ") || i < 0 {
			continue
		}
		var n int
		fmt.Sscanf(l[i:], "{%d}", &n)
		b := make([]byte, n)
		if _, err := r.br.Read(b[:0]); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < n; {
			k, err := r.br.Read(b[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += k
		}
		out = append(out, string(b))
		r.line() // ")"
	}
}

func TestCatenate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.AppendLimit = 4096 })
	r := loggedIn(t, e)
	src := "From: a@example.org\r\nSubject: source\r\n\r\nSource body.\r\n"
	appendLit(t, r, "a", "INBOX", src)
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 200) // 3.6 KB of the 4 KB limit
	appendLit(t, r, "a2", "INBOX", big)
	appendLit(t, r, "a3", "INBOX", big)
	var uidv string
	for _, l := range r.cmd("s", "SELECT INBOX") {
		if strings.HasPrefix(l, "* OK [UIDVALIDITY ") {
			uidv = strings.Fields(l)[3]
			uidv = strings.TrimSuffix(uidv, "]")
		}
	}
	if uidv == "" {
		t.Fatal("no UIDVALIDITY")
	}
	// Relative, absolute and selected-mailbox-relative URLs, a section
	// and a range, between TEXT literals.
	text := "\r\nAdded text.\r\n"
	ok := []struct{ name, parts, want string }{
		{"header and text", fmt.Sprintf(`URL "/INBOX;UIDVALIDITY=%s/;UID=1/;SECTION=HEADER" TEXT {%d+}`+"\r\n"+text, uidv, len(text)),
			"From: a@example.org\r\nSubject: source\r\n\r\n" + text},
		{"absolute URL of the own user", `URL "imap://alice@localhost/INBOX/;UID=1"`, src},
		{"relative to the selected mailbox, partial", `URL ";UID=1/;SECTION=TEXT/;PARTIAL=0.6" TEXT {2+}` + "\r\n\r\n", "Source\r\n"},
		{"header fields", `URL "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)" TEXT {6+}` + "\r\nbody\r\n", "Subject: source\r\n\r\nbody\r\n"},
	}
	for i, c := range ok {
		got := last(r.cmd("c", "APPEND Drafts CATENATE ("+c.parts+")"))
		if !strings.HasPrefix(got, "c OK [APPENDUID ") {
			t.Fatalf("%s: %q", c.name, got)
		}
		_ = i
	}
	r.cmd("u", "UNSELECT")
	r.cmd("s", "SELECT Drafts")
	bodies := fetchBodies(t, r)
	if len(bodies) != len(ok) {
		t.Fatalf("Drafts holds %d messages, want %d", len(bodies), len(ok))
	}
	for i, c := range ok {
		if bodies[i] != c.want {
			t.Errorf("%s: stored %q, want %q", c.name, bodies[i], c.want)
		}
	}
	// Bob's mailbox, which alice's URLs must never reach.
	rb := dialRaw(t, e.addr, true)
	rb.cmd("l", "LOGIN bob hunter2")
	appendLit(t, rb, "a", "INBOX", "Subject: bob's secret\r\n\r\nsecret\r\n")

	refused := []struct{ name, parts, code string }{
		{"another user's mailbox", `URL "imap://bob@localhost/INBOX/;UID=1"`, "BADURL"},
		{"a path out of the maildir", `URL "/..%2F..%2Fbob%2Fmailbox/;UID=1"`, "BADURL"},
		{"a path out of the maildir, dotted", `URL "/../bob/;UID=1"`, "BADURL"},
		{"URLAUTH", `URL "imap://alice@localhost/INBOX/;UID=1;URLAUTH=anonymous:internal:00"`, "BADURL"},
		{"a stale UIDVALIDITY", `URL "/INBOX;UIDVALIDITY=12345/;UID=1"`, "BADURL"},
		{"a missing message", `URL "/INBOX/;UID=99"`, "BADURL"},
		{"a missing mailbox", `URL "/Nosuch/;UID=1"`, "BADURL"},
		{"over APPENDLIMIT", strings.Repeat(`URL "/INBOX/;UID=1" `, 80) + `URL "/INBOX/;UID=1"`, "TOOBIG"},
		// Small sections of alternating messages: each read costs the
		// whole message, and the reads are bounded too.
		{"over the read budget", strings.Repeat(`URL "/INBOX/;UID=2/;PARTIAL=0.1" URL "/INBOX/;UID=3/;PARTIAL=0.1" `, 5) + `TEXT {1+}` + "\r\nx", "TOOBIG"},
	}
	for _, c := range refused {
		got := last(r.cmd("x", "APPEND Drafts CATENATE ("+c.parts+")"))
		if !strings.HasPrefix(got, "x NO ["+c.code) {
			t.Errorf("%s: %q, want NO [%s", c.name, got, c.code)
		}
		if strings.Contains(got, "secret") {
			t.Errorf("%s: bob's message leaked: %q", c.name, got)
		}
		if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
			t.Fatalf("%s: out of step afterwards: %q", c.name, got)
		}
	}
	// A synchronising TEXT literal over the limit is refused before the
	// client sends it.
	r.send("x APPEND Drafts CATENATE (TEXT {5000}\r\n")
	expectAtOnce(t, r, "x NO [TOOBIG]")
	if got := last(r.cmd("n", "NOOP")); got != "n OK NOOP completed" {
		t.Fatalf("out of step after a refused TEXT literal: %q", got)
	}
	// All or nothing within a MULTIAPPEND: a good message, then a bad URL.
	got := last(r.cmd("m", `APPEND Drafts CATENATE (URL "/INBOX/;UID=1") CATENATE (URL "/INBOX/;UID=42")`))
	if !strings.HasPrefix(got, "m NO [BADURL") {
		t.Errorf("MULTIAPPEND with a bad URL: %q", got)
	}
	if n := len(fetchBodies(t, r)); n != len(ok) {
		t.Errorf("after refusals Drafts holds %d messages, want %d", n, len(ok))
	}
	// A missing target is TRYCREATE whatever the parts.
	if got := last(r.cmd("t", `APPEND Nosuch CATENATE (URL "/INBOX/;UID=1")`)); !strings.HasPrefix(got, "t NO [TRYCREATE]") {
		t.Errorf("APPEND to a missing mailbox: %q", got)
	}
}

// contextLines keeps the ESEARCH and EXPUNGE/EXISTS lines of a reply.
func contextLines(ls []string) []string {
	var out []string
	for _, l := range ls {
		if strings.HasPrefix(l, "* ESEARCH") || strings.HasSuffix(l, " EXPUNGE") || strings.HasSuffix(l, " EXISTS") || strings.HasPrefix(l, "* NO [NOUPDATE") {
			out = append(out, l)
		}
	}
	return out
}

func TestSearchContextUpdatesFromOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 3; i++ {
		p := e.deliver(fmt.Sprintf("17000002%02d.M1P1.test", i), testMessage(i, "a@example.org", "ctx"))
		// Distinct internal dates (the file's mtime): files written within
		// one kernel tick share one, and the sort context below sorts by
		// arrival.
		at := time.Unix(1700000200+int64(i), 0)
		if err := os.Chtimes(filepath.Join(e.maildir, "new", p), at, at); err != nil {
			t.Fatal(err)
		}
	}
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")

	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", what, got, want)
		}
	}
	check("initial result", contextLines(a.cmd("S1", "SEARCH RETURN (UPDATE ALL) UNSEEN")),
		[]string{`* ESEARCH (TAG "S1") ALL 1:3`})
	check("UID context", contextLines(a.cmd("S2", "UID SEARCH RETURN (UPDATE COUNT) UNSEEN")),
		[]string{`* ESEARCH (TAG "S2") UID COUNT 3`})
	check("sort context", contextLines(a.cmd("S3", "SORT RETURN (UPDATE) (REVERSE ARRIVAL) UTF-8 UNSEEN")),
		[]string{`* ESEARCH (TAG "S3") ALL 3,2,1`})

	// Another session sets \Seen.
	b.cmd("b1", "STORE 2 +FLAGS.SILENT (\\Seen)")
	check("flag change by another session", contextLines(a.cmd("n1", "NOOP")), []string{
		`* ESEARCH (TAG "S1") REMOVEFROM (0 2)`,
		`* ESEARCH (TAG "S2") UID COUNT 2`,
		`* ESEARCH (TAG "S3") REMOVEFROM (2 2)`,
	})

	// A delivery.
	e.deliver("1700000299.M1P1.test", testMessage(4, "a@example.org", "ctx"))
	e.srv.Notify(e.maildir)
	waitFor(t, "the delivery", func() bool {
		ls := contextLines(a.cmd("n2", "NOOP"))
		if len(ls) == 0 {
			return false
		}
		check("delivery", ls, []string{
			`* 4 EXISTS`,
			`* ESEARCH (TAG "S1") ADDTO (0 4)`,
			`* ESEARCH (TAG "S2") UID COUNT 3`,
			`* ESEARCH (TAG "S3") ADDTO (1 4)`,
		})
		return true
	})

	// Another session expunges message 3: REMOVEFROM comes before the
	// EXPUNGE, while its sequence number still holds.
	b.cmd("b2", "NOOP")
	b.cmd("b3", "STORE 3 +FLAGS.SILENT (\\Deleted)")
	b.cmd("b4", "EXPUNGE")
	check("expunge by another session", contextLines(a.cmd("n3", "NOOP")), []string{
		`* ESEARCH (TAG "S1") REMOVEFROM (0 3)`,
		`* ESEARCH (TAG "S2") UID COUNT 2`,
		`* ESEARCH (TAG "S3") REMOVEFROM (2 3)`,
		`* 3 EXPUNGE`,
	})

	// CANCELUPDATE ends them; an unknown tag is an error.
	if got := last(a.cmd("c", `CANCELUPDATE "S1" "S2" "S3"`)); !strings.HasPrefix(got, "c OK") {
		t.Fatalf("CANCELUPDATE: %q", got)
	}
	if got := last(a.cmd("c2", `CANCELUPDATE "S1"`)); !strings.HasPrefix(got, "c2 BAD") {
		t.Errorf("CANCELUPDATE of a cancelled context: %q", got)
	}
	b.cmd("b5", "STORE 1 +FLAGS.SILENT (\\Seen)")
	check("after CANCELUPDATE", contextLines(a.cmd("n4", "NOOP")), nil)

	// The number of live contexts is bounded.
	for i := range maxContexts {
		a.cmd(fmt.Sprintf("L%d", i), "SEARCH RETURN (UPDATE) ALL")
	}
	got := contextLines(a.cmd("over", "SEARCH RETURN (UPDATE) ALL"))
	if !slices.Contains(got, `* NO [NOUPDATE "over"] Too many search contexts`) {
		t.Errorf("context over the limit: %q", got)
	}
}

// readUntil reads lines until one contains want (at most 50 lines, each
// within rawConn's read timeout) and returns them all.
func readUntil(t *testing.T, r *rawConn, want string) []string {
	t.Helper()
	var got []string
	for range 50 {
		l := r.line()
		got = append(got, l)
		if strings.Contains(l, want) {
			return got
		}
	}
	t.Fatalf("no line with %q in %q", want, got)
	return nil
}

func TestNotify(t *testing.T) {
	t.Parallel()
	// A long IdleCheck: only the wake-ups can explain a prompt notification.
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	got := a.cmd("n", "NOTIFY SET STATUS (SELECTED (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge)) (PERSONAL (MessageNew MessageExpunge MailboxName SubscriptionChange))")
	if !strings.HasPrefix(last(got), "n OK") {
		t.Fatalf("NOTIFY SET: %q", got)
	}
	if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, `* STATUS "Sent" (MESSAGES 0 UIDNEXT `) }) {
		t.Errorf("NOTIFY SET STATUS gave no STATUS of Sent: %q", got)
	}
	if slices.ContainsFunc(got, func(l string) bool {
		return strings.HasPrefix(l, `* STATUS "INBOX"`) || strings.HasPrefix(l, `* STATUS INBOX`)
	}) {
		t.Errorf("STATUS of the selected mailbox: %q", got)
	}

	// In IDLE: a delivery to the selected mailbox comes with the FETCH the
	// client asked for.
	a.send("i IDLE\r\n")
	if l := a.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: %q", l)
	}
	e.deliver("1700000300.M1P1.test", testMessage(1, "a@example.org", "pushed news"))
	e.srv.Notify(e.maildir)
	lines := readUntil(t, a, "Subject: pushed news")
	if !slices.Contains(lines, "* 1 EXISTS") || !slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {")
	}) {
		t.Errorf("delivery during IDLE: %q", lines)
	}
	a.send("DONE\r\n")
	readUntil(t, a, "i OK")

	// Between commands: another session's APPEND to a mailbox that is not
	// selected is a STATUS, unasked.
	appendLit(t, b, "ap", "Sent", "Subject: sent\r\n\r\nx\r\n")
	lines = readUntil(t, a, `* STATUS "Sent"`)
	if l := last(lines); !strings.HasPrefix(l, `* STATUS "Sent" (MESSAGES 1 UIDNEXT `) {
		t.Errorf("STATUS after another session's APPEND: %q", l)
	}
	// Another session's expunge in the selected mailbox: EXPUNGE at once.
	b.cmd("b1", `STORE 1 +FLAGS.SILENT (\Deleted)`)
	b.cmd("b2", "EXPUNGE")
	if l := last(readUntil(t, a, "EXPUNGE")); l != "* 1 EXPUNGE" {
		t.Errorf("expunge by another session: %q", l)
	}
	// Mailbox events of another session.
	b.cmd("c", "CREATE Projects")
	if l := last(readUntil(t, a, "Projects")); l != `* LIST () "." "Projects"` {
		t.Errorf("CREATE by another session: %q", l)
	}
	b.cmd("c", "SUBSCRIBE Projects")
	if l := last(readUntil(t, a, "Projects")); l != `* LIST (\Subscribed) "." "Projects"` {
		t.Errorf("SUBSCRIBE by another session: %q", l)
	}
	b.cmd("c", "RENAME Projects Archive2")
	if l := last(readUntil(t, a, "Archive2")); l != `* LIST () "." "Archive2" ("OLDNAME" ("Projects"))` {
		t.Errorf("RENAME by another session: %q", l)
	}
	// The renamed mailbox is watched under its new name.
	appendLit(t, b, "ap2", "Archive2", "Subject: kept\r\n\r\nx\r\n")
	if l := last(readUntil(t, a, `* STATUS`)); !strings.HasPrefix(l, `* STATUS "Archive2" (MESSAGES 1 UIDNEXT `) {
		t.Errorf("STATUS of a renamed mailbox: %q", l)
	}

	// NOTIFY NONE: silence.
	if got := a.cmd("n2", "NOTIFY NONE"); !strings.HasPrefix(last(got), "n2 OK") {
		t.Fatalf("NOTIFY NONE: %q", got)
	}
	appendLit(t, b, "ap3", "Sent", "Subject: sent\r\n\r\ny\r\n")
	b.cmd("c", "DELETE Archive2")
	if got := a.cmd("n3", "NOOP"); len(got) != 1 {
		t.Errorf("after NOTIFY NONE: %q", got)
	}
	// Refusals.
	for _, c := range []string{
		"NOTIFY SET (SELECTED (MessageNew))",
		"NOTIFY SET (PERSONAL (Bogus))",
		"NOTIFY SET (MAILBOXES (MessageNew))",
		"NOTIFY SET (PERSONAL (MessageNew (UID)))",
	} {
		if got := last(a.cmd("x", c)); !strings.HasPrefix(got, "x BAD") {
			t.Errorf("%s: %q", c, got)
		}
	}
	if got := last(a.cmd("x", "NOTIFY SET (PERSONAL (AnnotationChange))")); !strings.HasPrefix(got, "x NO [BADEVENT") {
		t.Errorf("unsupported event: %q", got)
	}
}

func TestNotifySelectedDelayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	for i := 1; i <= 2; i++ {
		e.deliver(fmt.Sprintf("17000004%02d.M1P1.test", i), testMessage(i, "a@example.org", "delayed"))
	}
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	if got := last(a.cmd("n", "NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge))")); !strings.HasPrefix(got, "n OK") {
		t.Fatalf("NOTIFY SET: %q", got)
	}
	// A flag change comes at once.
	b.cmd("b1", `STORE 1 +FLAGS.SILENT (\Flagged)`)
	if l := last(readUntil(t, a, "FETCH")); l != `* 1 FETCH (UID 1 FLAGS (\Flagged \Recent))` {
		t.Errorf("flag change: %q", l)
	}
	// An expunge waits for the next command: the STATUS of a later change
	// elsewhere comes first.
	b.cmd("b2", `STORE 2 +FLAGS.SILENT (\Deleted)`)
	b.cmd("b3", "EXPUNGE")
	appendLit(t, b, "b4", "Sent", "Subject: s\r\n\r\nx\r\n")
	if lines := readUntil(t, a, `* STATUS "Sent"`); slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, "EXPUNGE") }) {
		t.Errorf("EXPUNGE sent before a command: %q", lines)
	}
	got := a.cmd("n2", "NOOP")
	if !slices.Contains(got, "* 2 EXPUNGE") {
		t.Errorf("NOOP after a delayed expunge: %q", got)
	}
}

// Several changes at once: REMOVEFROM positions count the removals before
// them, and MIN, MAX and COUNT follow.
func TestSearchContextPositions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := 1; i <= 5; i++ {
		e.deliver(fmt.Sprintf("17000005%02d.M1P1.test", i), testMessage(i, "a@example.org", "pos"))
	}
	a := loggedIn(t, e)
	a.cmd("s", "SELECT INBOX")
	b := loggedIn(t, e)
	b.cmd("s", "SELECT INBOX")
	check := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", what, got, want)
		}
	}
	check("initial", contextLines(a.cmd("T1", "SORT RETURN (UPDATE) (ARRIVAL) UTF-8 UNSEEN")), []string{`* ESEARCH (TAG "T1") ALL 1:5`})
	check("initial", contextLines(a.cmd("T2", "UID SEARCH RETURN (UPDATE MIN MAX COUNT) UNSEEN")), []string{`* ESEARCH (TAG "T2") UID MIN 1 MAX 5 COUNT 5`})

	b.cmd("b1", `STORE 2,4 +FLAGS.SILENT (\Seen)`)
	check("two removals", contextLines(a.cmd("n1", "NOOP")), []string{
		`* ESEARCH (TAG "T1") REMOVEFROM (2 2 3 4)`,
		`* ESEARCH (TAG "T2") UID MIN 1 MAX 5 COUNT 3`,
	})
	b.cmd("b2", `STORE 1,5 +FLAGS.SILENT (\Deleted)`)
	b.cmd("b3", "EXPUNGE")
	check("two expunges", contextLines(a.cmd("n2", "NOOP")), []string{
		`* ESEARCH (TAG "T1") REMOVEFROM (1 1 2 5)`,
		`* ESEARCH (TAG "T2") UID MIN 3 MAX 3 COUNT 1`,
		`* 1 EXPUNGE`,
		`* 4 EXPUNGE`,
	})
}

func TestParseIMAPURL(t *testing.T) {
	t.Parallel()
	good := []struct {
		raw     string
		box     string
		uidv    uint32
		uid     uint32
		path    []int
		sec     sectionKind
		partial bool
		off     int64
		size    int64
	}{
		{"/INBOX/;UID=5", "INBOX", 0, 5, nil, secAll, false, 0, -1},
		{"/INBOX;UIDVALIDITY=7/;UID=5/;SECTION=1.2.MIME", "INBOX", 7, 5, []int{1, 2}, secMIME, false, 0, -1},
		{"imap://alice@mail.example.org/Sent%20Items/;uid=9/;section=TEXT/;partial=10.20", "Sent Items", 0, 9, nil, secText, true, 10, 20},
		{"IMAP://alice%40example.org@host/a%2Fb/;UID=1/;PARTIAL=3", "a/b", 0, 1, nil, secAll, true, 3, -1},
		{";UID=3/;SECTION=HEADER", "", 0, 3, nil, secHeader, false, 0, -1},
	}
	for _, c := range good {
		u, err := parseIMAPURL(c.raw, "alice")
		if err != nil {
			t.Errorf("%q: %v", c.raw, err)
			continue
		}
		if u.mailbox != c.box || u.uidValidity != c.uidv || u.uid != c.uid || !slices.Equal(u.section.path, c.path) || u.section.sec != c.sec || u.partial != c.partial || u.offset != c.off || u.size != c.size {
			t.Errorf("%q: got %+v", c.raw, u)
		}
	}
	bad := []string{
		"",
		"/",
		"/INBOX",
		"/INBOX/;UID=0",
		"/INBOX/;UID=x",
		"/INBOX/;UID=1/;UID=2",
		"/INBOX/;SECTION=1/;UID=1",
		"/INBOX;UIDVALIDITY=0/;UID=1",
		"/INBOX;FOO=1/;UID=1",
		"/INBOX/;UID=1/;SECTION=0",
		"/INBOX/;UID=1/;SECTION=1..2",
		"/INBOX/;UID=1/;SECTION=BOGUS",
		"/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20()",
		"/INBOX/;UID=1/;PARTIAL=-1",
		"/INBOX/;UID=1/;PARTIAL=1.0",
		"/INBOX/;UID=1;URLAUTH=anonymous:internal:00",
		"/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z",
		"/%ZZ/;UID=1",
		"imap://bob@host/INBOX/;UID=1",
		"imap://alice;AUTH=*@host/INBOX/;UID=1",
		"imap://host",
		"/INBOX/;UID=1/;SECTION=" + strings.Repeat("1.", 40) + "1",
	}
	for _, raw := range bad {
		if u, err := parseIMAPURL(raw, "alice"); err == nil {
			t.Errorf("%q accepted: %+v", raw, u)
		}
	}
}

// FuzzParseIMAPURL: hostile URLs never panic, and what is accepted names
// one message of the user's own.
func FuzzParseIMAPURL(f *testing.F) {
	for _, s := range []string{"/INBOX/;UID=5", "imap://alice@h/a%2Fb;UIDVALIDITY=3/;UID=1/;SECTION=1.2.HEADER.FIELDS%20(A%20B)/;PARTIAL=1.2", ";UID=1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := parseIMAPURL(raw, "alice")
		if err != nil {
			return
		}
		if u.uid == 0 || len(u.section.path) > maxBodyDepth {
			t.Errorf("%q accepted as %+v", raw, u)
		}
	})
}

// A message another program drops into a watched mailbox is seen at the
// next tick, without any wake-up.
func TestNotifyOtherProgram(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = 100 * time.Millisecond })
	a := loggedIn(t, e)
	if got := last(a.cmd("n", "NOTIFY SET (MAILBOXES Junk (MessageNew MessageExpunge))")); !strings.HasPrefix(got, "n OK") {
		t.Fatalf("NOTIFY SET: %q", got)
	}
	writeMaildirMsg(t, filepath.Join(e.maildir, ".Junk"), "new", "1700000600.M1P1.test", testMessage(1, "spam@example.org", "junk"))
	if l := last(readUntil(t, a, "* STATUS")); !strings.HasPrefix(l, `* STATUS "Junk" (MESSAGES 1 UIDNEXT `) {
		t.Errorf("STATUS after another program's delivery: %q", l)
	}
}
