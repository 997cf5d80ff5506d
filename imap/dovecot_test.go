package imap

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	goimap "github.com/emersion/go-imap/v2"

	"courriel/internal/testenv"
)

// TestDovecotReadsOurFiles: a maildir written by courriel (UIDs after an
// expunge, a keyword, flags) reads the same in Dovecot, and mail Dovecot
// appends keeps every UID when courriel opens the folder again.
func TestDovecotReadsOurFiles(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	e := newEnv(t)
	for i := 0; i < 3; i++ {
		e.deliver(fmt.Sprintf("170000000%d.M1P1.test", i), testMessage(i, "a@example.org", "x"))
	}
	c := e.login(nil)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	c.Store(seqs(1), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagDeleted}}, nil).Close()
	c.Store(seqs(2), &goimap.StoreFlags{Op: goimap.StoreFlagsAdd, Silent: true, Flags: []goimap.Flag{goimap.FlagSeen, "$Work"}}, nil).Close()
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	e.srv.Close()
	// Dovecot must be able to traverse the test's temporary directories.
	for d := e.maildir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}

	msg := "Subject: from dovecot\r\n\r\nhi\r\n"
	out := testenv.RunDovecot(t, e.maildir, "", "a SELECT INBOX\r\nb UID FETCH 1:* (FLAGS)\r\n"+
		fmt.Sprintf("c APPEND INBOX {%d+}\r\n%s\r\nd LOGOUT\r\n", len(msg), msg))
	if !strings.Contains(out, fmt.Sprintf("[UIDVALIDITY %d]", sel.UIDValidity)) {
		t.Errorf("Dovecot sees another UIDVALIDITY:\n%s", out)
	}
	flags := map[string]string{}
	for _, m := range regexp.MustCompile(`FETCH \(UID (\d+) FLAGS \(([^)]*)\)\)`).FindAllStringSubmatch(out, -1) {
		flags[m[1]] = m[2]
	}
	if len(flags) != 2 || !strings.Contains(flags["2"], `\Seen`) || !strings.Contains(flags["2"], "$Work") {
		t.Errorf("Dovecot's view of UIDs/flags = %v\n%s", flags, out)
	}
	if _, ok := flags["3"]; !ok {
		t.Errorf("UID 3 missing in Dovecot:\n%s", out)
	}
	if !strings.Contains(out, "c OK [APPENDUID") {
		t.Fatalf("Dovecot APPEND failed:\n%s", out)
	}
	// Back to courriel.
	e.start()
	c = e.login(nil)
	sel2, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel2.UIDValidity != sel.UIDValidity {
		t.Errorf("UIDVALIDITY after Dovecot: %d, want %d", sel2.UIDValidity, sel.UIDValidity)
	}
	data, err := c.UIDSearch(&goimap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(data.AllUIDs()); got != "[2 3 4]" {
		t.Errorf("UIDs after Dovecot appended = %s, want [2 3 4]", got)
	}
	fl, err := c.Fetch(seqs(1), &goimap.FetchOptions{Flags: true}).Collect()
	if err != nil || fmt.Sprint(fl[0].Flags) != `[\Seen $Work]` {
		t.Errorf("flags of UID 2 after Dovecot: %v %v", fl, err)
	}
}

// TestEnvelopeDateAsDovecot: ENVELOPE's date is the Date field as the
// message has it (unfolded), as Dovecot returns it — zone names,
// comments, one-digit days and dates no parser reads included — from the
// files and from the index after a restart.
func TestEnvelopeDateAsDovecot(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	dates := []string{
		"Mon, 2 Jan 2023 10:00:00 +0000",
		"Tue, 03 Jan 2023 10:00:00 GMT",
		"3 Jan 2023 10:00 +0100 (CET)",
		"Wed, 4 Jan 2023\r\n 10:00:00 -0500",
		"Thu, 32 Foo 2023 99:99:99 +9999",
		"not a date at all",
		`"quoted" \ date`,
	}
	e := newEnv(t)
	for i, d := range dates {
		e.deliver(fmt.Sprintf("170000000%d.M1P1.test", i), fmt.Sprintf("Date: %s\r\nSubject: %d\r\n\r\nbody\r\n", d, i))
	}
	envelopeDates := func(lines []string) []string {
		var out []string
		for _, l := range lines {
			if m := regexp.MustCompile(`^\* \d+ FETCH \(ENVELOPE \((NIL|"(?:[^"\\]|\\.)*")`).FindStringSubmatch(l); m != nil {
				out = append(out, m[1])
			}
		}
		return out
	}
	fetch := func() []string {
		r := loggedIn(t, e)
		r.cmd("s", "SELECT INBOX")
		got := envelopeDates(r.cmd("f", "FETCH 1:* (ENVELOPE)"))
		r.cmd("z", "LOGOUT")
		return got
	}
	fromFiles := fetch()
	e.srv.Close()
	e.start()
	fromIndex := fetch()
	e.srv.Close()
	for d := e.maildir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	want := envelopeDates(strings.Split(testenv.RunDovecot(t, e.maildir, "", "a SELECT INBOX\r\nb FETCH 1:* (ENVELOPE)\r\nc LOGOUT\r\n"), "\r\n"))
	if len(want) != len(dates) {
		t.Fatalf("Dovecot returned %d envelopes, want %d: %q", len(want), len(dates), want)
	}
	for i := range dates {
		if i >= len(fromFiles) || fromFiles[i] != want[i] {
			t.Errorf("message %d from the files: got %q, Dovecot %q", i+1, at(fromFiles, i), want[i])
		}
		if i >= len(fromIndex) || fromIndex[i] != want[i] {
			t.Errorf("message %d from the index: got %q, Dovecot %q", i+1, at(fromIndex, i), want[i])
		}
	}
}

func at(l []string, i int) string {
	if i < len(l) {
		return l[i]
	}
	return "(none)"
}

// multipartEdges are multipart bodies at the edges of RFC 2046 §5.1.1's
// delimiter lines (internal/mimepart has the rule), each under a header
// naming its boundary. Dovecot finds the nested case where an outer
// boundary is a prefix of an inner one by the longest boundary open;
// parseEntity cuts the outer body first, so that case is not here.
var multipartEdges = []struct{ boundary, body string }{
	{"b", "pre\r\n--b\r\n\r\none\r\n--bXYZ\r\nContent-Type: text/html\r\n\r\ntwo\r\n--b--\r\nepi\r\n"},
	{"b", "--b\r\n\r\none\r\n--b--junk\r\n--b\r\n\r\nthree\r\n"},
	{"b", "--b \t\r\n\r\none\r\n--b-- \r\nepi\r\n"},
	{"b", "--b\r\n\r\none\r\n--b-\r\n\r\ntwo\r\n--b--\r\n"},
	{"b", "--b\n\none\n--b\n\ntwo\n\n--b--\n"},
	{"b", "pre\r\n--b\r\n\r\none\r\n"},
	{"b", "--b\r\n\r\none\r\n--b"},
	{"b", "--b\r\n--b\r\n\r\n--b--\r\n"},
	{"", "--\r\n\r\nx\r\n--zz\r\n\r\ny\r\n"},
	{strings.Repeat("x", 90), "--" + strings.Repeat("x", 90) + "\r\n\r\none\r\n--" + strings.Repeat("x", 80) + "Q\r\n\r\ntwo\r\n--" + strings.Repeat("x", 90) + "--\r\n"},
	{"out", "--out\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\na\r\n--in\r\n\r\nb\r\n--out--\r\n"},
	// Nested multiparts: a delimiter line is the longest matching
	// boundary's of all those open (an outer "l1" does not take an inner
	// "l10"'s lines), the innermost's of equal ones, and an outer one
	// ends the inner multipart, its epilogue too.
	{"l1", "--l1\r\nContent-Type: multipart/alternative; boundary=\"l10\"\r\n\r\n--l10\r\nContent-Type: text/plain\r\n\r\na\r\n--l10\r\nContent-Type: text/html\r\n\r\nb\r\n--l10--\r\n--l1\r\n\r\nc\r\n--l1--\r\n"},
	{"a", "--a\r\nContent-Type: multipart/mixed; boundary=\"ab\"\r\n\r\n--ab\r\nContent-Type: multipart/alternative; boundary=\"abc\"\r\n\r\n--abc\r\n\r\nx\r\n--abc\r\n\r\ny\r\n--abc--\r\nepi3\r\n--ab\r\n\r\nz\r\n--ab--\r\nepi2\r\n--a\r\n\r\nw\r\n--a--\r\nepi1\r\n"},
	{"b", "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nin1\r\n--b\r\n\r\nin2\r\n--b--\r\nepi\r\n--b\r\n\r\nout2\r\n--b--\r\n"},
	{"l1", "--l1\r\nContent-Type: message/rfc822\r\n\r\nSubject: s\r\nContent-Type: multipart/mixed; boundary=l10\r\n\r\n--l10\r\n\r\nx\r\n--l10--\r\n--l10\r\n\r\nq\r\n--l1--\r\n"},
	{"out", "--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\na\r\n--in--\r\n--out\r\n\r\nb\r\n--out--\r\n"},
	{"out", "--out\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n--in\r\n\r\na\r\n--out\r\n\r\nb\r\n--out--\r\n"},
	{"ab--", "--ab--\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n\r\nx\r\n--ab--\r\n--ab--\r\n\r\ny\r\n--ab----\r\n"},
	{"l1", "--l1\r\nContent-Type: multipart/mixed; boundary=l1--alt\r\n\r\n--l1--alt\r\n\r\nx\r\n--l1--alt--\r\n--l1\r\n\r\ny\r\n--l1--\r\n"},
}

// TestMultipartAsDovecot: BODYSTRUCTURE and the parts of multiparts at
// the edges of the delimiter rule are Dovecot's, byte for byte, read from
// the maildir; and a binary part APPENDed as a literal8 with a bare LF
// before the next delimiter line comes back from BINARY as from Dovecot,
// the LF being the delimiter's.
func TestMultipartAsDovecot(t *testing.T) {
	testenv.NeedDovecot(t)
	t.Parallel()
	e := newEnv(t)
	for i, m := range multipartEdges {
		e.deliver(fmt.Sprintf("17000000%02d.M1P1.test", i), fmt.Sprintf("Subject: %d\r\nContent-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n%s", i, m.boundary, m.body))
	}
	fetch := fmt.Sprintf("FETCH 1:%d (BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[2] BODY.PEEK[3] BODY.PEEK[1.1])", len(multipartEdges))
	binary := "Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\nContent-Transfer-Encoding: binary\r\n\r\na\x00b\n--z\r\n\r\nt\n--z--\r\n"
	const fetchBinary = "FETCH * (BINARY.PEEK[1] BINARY.PEEK[2])"
	r := loggedIn(t, e)
	r.cmd("s", "SELECT INBOX")
	ours := strings.Join(r.cmd("f", fetch), "\n")
	r.send(fmt.Sprintf("ap APPEND INBOX ~{%d+}\r\n%s\r\n", len(binary), binary))
	if got := last(r.until("ap")); !strings.HasPrefix(got, "ap OK") {
		t.Fatalf("APPEND: %q", got)
	}
	r.cmd("n", "NOOP")
	oursBinary := strings.Join(r.cmd("b", fetchBinary), "\n")
	r.cmd("z", "LOGOUT")
	e.srv.Close()
	for d := e.maildir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	theirs := testenv.RunDovecot(t, e.maildir, "", "a SELECT INBOX\r\nf "+fetch+"\r\nz LOGOUT\r\n")
	testenv.RunDovecot(t, e.maildir, "", fmt.Sprintf("a SELECT INBOX\r\nap APPEND INBOX ~{%d+}\r\n%s\r\nz LOGOUT\r\n", len(binary), binary))
	theirsBinary := testenv.RunDovecot(t, e.maildir, "", "a SELECT INBOX\r\nb "+fetchBinary+"\r\nz LOGOUT\r\n")

	// The FETCH responses, one a message, lines joined by LF.
	responses := func(out string) []string {
		out = strings.ReplaceAll(out, "\r\n", "\n")
		var got []string
		for _, l := range strings.SplitAfter(out, "\n") {
			switch {
			case strings.HasPrefix(l, "* ") && strings.Contains(l, " FETCH ("):
				got = append(got, l)
			case len(got) > 0 && !strings.HasSuffix(got[len(got)-1], ")\n"):
				got[len(got)-1] += l
			}
		}
		return got
	}
	want, got := responses(theirs), responses(ours+"\n")
	if len(want) != len(multipartEdges) {
		t.Fatalf("Dovecot answered %d messages of %d:\n%s", len(want), len(multipartEdges), theirs)
	}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Errorf("message %d (%q):\n ours:    %q\n Dovecot: %q", i+1, multipartEdges[i].body, at(got, i), want[i])
		}
	}
	bin := func(out string) string {
		l := responses(out)
		if len(l) == 0 {
			return "(none)"
		}
		_, b, _ := strings.Cut(l[len(l)-1], " FETCH ")
		return b
	}
	if g, w := bin(oursBinary+"\n"), bin(theirsBinary); g != w {
		t.Errorf("BINARY of the literal8: ours %q, Dovecot %q", g, w)
	}
}
