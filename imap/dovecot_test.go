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
