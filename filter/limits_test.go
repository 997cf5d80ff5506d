package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// manyParts is a message of n text/plain parts, the last holding "qqq".
func manyParts(n int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@z.z\r\nSubject: parts\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
	for i := 0; i < n-1; i++ {
		fmt.Fprintf(&b, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nqqq\r\n--b--\r\n")
	return b.Bytes()
}

// limitsSetup is a user whose script is src, and a filter with limits.
func limitsSetup(t *testing.T, src string, limits sieve.Limits) (f *Filter, home string, rcpt delivery.Recipient) {
	t.Helper()
	base := t.TempDir()
	home = base + "/u"
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(home+"/.dovecot.sieve", []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	if err != nil {
		t.Fatal(err)
	}
	f, err = New(Options{Extensions: sieve.AllExtensions(), Store: store, Directory: fakeDir{"u@x.y": {Home: home}}, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	return f, home, delivery.Recipient{Address: "u@x.y", Maildir: home + "/mailbox/"}
}

// stored counts the copies in a folder ("" the INBOX).
func stored(home, folder string) int {
	files, _ := os.ReadDir(filepath.Join(home, "mailbox", folder, "new"))
	return len(files)
}

// qaFileinto is the QA round's script, filing the message when a part
// holds "qqq".
const qaFileinto = `require ["foreverypart", "mime", "extracttext", "variables", "body", "fileinto", "mailbox"];
foreverypart { extracttext "x"; if body :raw :contains "qqq" { fileinto :create "Found"; } }`

// A script past its run's limits (the QA round's loop on a message of
// thousands of parts) fails as any runtime error does: the copy is kept in
// INBOX and delivered (no error: never a 4xx, whose retry would spend the
// same again), and the user's ~/.dovecot.sieve.log says why. Within the
// default limits the script does what it says.
func TestScriptPastItsLimits(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limits  sieve.Limits
		folder  string   // where the copy goes
		userLog []string // in ~/.dovecot.sieve.log; nil for no log
	}{
		{"default limits", sieve.Limits{}, ".Found", nil},
		{"past the work limit", sieve.Limits{MaxRunWork: 1_000_000}, "",
			[]string{"msg_id=m1: ~/.dovecot.sieve: run error: line 2, ", ": execution exceeded the work limit (1000000 units): message kept in INBOX\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, home, r := limitsSetup(t, qaFileinto, tc.limits)
			m := &delivery.Message{ID: "m1", From: "a@z.z", Body: bytes.NewReader(manyParts(4000)), Arrived: time.Now()}
			if err := f.Deliver(context.Background(), m, []delivery.Recipient{r})[0]; err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			if n := stored(home, tc.folder); n != 1 {
				t.Errorf("%d copies in %q, want 1", n, tc.folder)
			}
			log, err := os.ReadFile(filepath.Join(home, UserLogName))
			if tc.userLog == nil && err == nil {
				t.Errorf("user log %q, want none", log)
			}
			for _, want := range tc.userLog {
				if !strings.Contains(string(log), want) {
					t.Errorf("user log %q (%v), want %q in it", log, err, want)
				}
			}
		})
	}
}

// A script still running when the delivery's time for scripts runs out
// (scriptContext) is stopped: the copy is kept in INBOX and stored, the
// reason in the user's log. The delivery's context has a deadline but
// never ends: scriptContext's share of it, not the machine's speed,
// decides whether the script or the store runs out of time.
func TestScriptPastTheDeliverysTime(t *testing.T) {
	// a :matches that goes back at every octet of 2 MiB: seconds of
	// work, within MaxRunWork, far past the scripts' 75 ms
	src := `require "body"; if body :raw :matches "*` + strings.Repeat("a", 1000) + `b*" { discard; }`
	f, home, r := limitsSetup(t, src, sieve.Limits{MaxRunWork: 1 << 62})
	ctx := deadlineOnly{Context: context.Background(), d: time.Now().Add(100 * time.Millisecond)}
	m := &delivery.Message{ID: "m2", From: "a@z.z", Arrived: time.Now(),
		Body: bytes.NewReader([]byte("Subject: a line\r\n\r\n" + strings.Repeat("a", 2<<20) + "\r\n"))}
	if err := f.Deliver(ctx, m, []delivery.Recipient{r})[0]; err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if n := stored(home, ""); n != 1 {
		t.Errorf("%d copies in INBOX, want 1", n)
	}
	if log, err := os.ReadFile(filepath.Join(home, UserLogName)); !strings.Contains(string(log), errScriptsTime.Error()) {
		t.Errorf("user log %q (%v), want %q", log, err, errScriptsTime)
	}
}

// deadlineOnly is a context with deadline d that never ends: what is
// bounded by its deadline is scriptContext's doing.
type deadlineOnly struct {
	context.Context
	d time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.d, true }

// A delivery cancelled (its deadline, a shutdown) while a script runs is
// not the script's failure: the recipient gets a temporary error, nothing
// is stored, the user's log says nothing.
func TestScriptDeliveryCancelled(t *testing.T) {
	f, home, r := limitsSetup(t, qaFileinto, sieve.Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := &delivery.Message{ID: "m3", From: "a@z.z", Body: bytes.NewReader(manyParts(10)), Arrived: time.Now()}
	err := f.Deliver(ctx, m, []delivery.Recipient{r})[0]
	var de *delivery.Error
	if !errors.As(err, &de) || !de.Temporary || !errors.Is(err, context.Canceled) {
		t.Errorf("Deliver: %v, want a temporary error for the cancelled delivery", err)
	}
	if n := stored(home, ""); n != 0 {
		t.Errorf("%d copies stored", n)
	}
	if log, err := os.ReadFile(filepath.Join(home, UserLogName)); err == nil {
		t.Errorf("user log %q, want none", log)
	}
}

// scriptContext leaves a quarter of the delivery's time to store the
// copies, and no deadline without one.
// The bubble's clock stands still while the test runs, so the quarter is
// exact however long the machine takes between the two contexts.
func TestScriptContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		sctx, scancel := scriptContext(ctx)
		defer scancel()
		d, _ := ctx.Deadline()
		if sd, ok := sctx.Deadline(); !ok || !sd.Equal(d.Add(-15*time.Minute)) {
			t.Errorf("scripts' deadline %v, want 15 minutes before the delivery's (%v)", sd, d)
		}
		sctx, scancel = scriptContext(context.Background())
		defer scancel()
		if _, ok := sctx.Deadline(); ok {
			t.Error("a deadline for scripts of a delivery without one")
		}
	})
}

// An addheader in a loop that would grow the header past the megabyte a
// script may see fails the run: the copy is kept in INBOX with the
// message's own header, and ~/.dovecot.sieve.log says why, as for any
// runtime error.
func TestEditheaderGrowthFails(t *testing.T) {
	src := `require ["editheader", "foreverypart", "variables"]; set "v" "` + strings.Repeat("w ", 1000) + `";
foreverypart { addheader :last "X-A" "${v}"; }`
	f, home, r := limitsSetup(t, src, sieve.Limits{})
	m := &delivery.Message{ID: "m4", From: "a@z.z", Body: bytes.NewReader(manyParts(4000)), Arrived: time.Now()}
	if err := f.Deliver(context.Background(), m, []delivery.Recipient{r})[0]; err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	files, _ := os.ReadDir(filepath.Join(home, "mailbox", "new"))
	if len(files) != 1 {
		t.Fatalf("%d copies in INBOX, want 1", len(files))
	}
	b, err := os.ReadFile(filepath.Join(home, "mailbox", "new", files[0].Name()))
	if err != nil || !bytes.Contains(b, []byte("\nFrom: a@z.z\nSubject: parts\nMIME-Version: 1.0\n")) || bytes.Contains(b, []byte("X-A:")) {
		t.Errorf("stored %.200q (%v), want the message unedited", b, err)
	}
	want := "msg_id=m4: ~/.dovecot.sieve: run error: line 2, column 16: addheader action: the fields added would exceed 5000 fields or 1048576 bytes: message kept in INBOX\n"
	if log, err := os.ReadFile(filepath.Join(home, UserLogName)); !strings.HasSuffix(string(log), want) {
		t.Errorf("user log %q (%v), want %q", log, err, want)
	}
}

// An administrator's script stopped by its limits on a huge header (the
// pass of its deleteheader over the fields past what it sees) fails as
// Pigeonhole's run aborted for excessive resource usage: the message is
// kept in INBOX as it came (the field it was deleting still there, no
// script's edit, as Dovecot's default delivery stores it after
// Pigeonhole gives up), the scripts after it are not run, what the
// scripts before it did stands, and the log says why. (sieve-test stores
// nothing on such a run: it has no default delivery.)
func TestScriptPastItsLimitsOnAHugeHeader(t *testing.T) {
	var hdr strings.Builder
	hdr.WriteString("From: a@b.c\nSubject: hi\n")
	for i := 0; i < 40000; i++ {
		fmt.Fprintf(&hdr, "X-Fill-%05d: %s\n", i, strings.Repeat("v", 80))
	}
	hdr.WriteString("X-Strip: forged\nTo: u@x.y")
	msg := hdr.String() + "\n\nbody\n"
	tc := sequenceCase{"limits", []string{
		`require ["editheader", "fileinto", "mailbox", "copy"]; addheader "X-First" "1"; fileinto :copy :create "First";`,
		`require "editheader"; addheader "X-Second" "2"; deleteheader "X-Strip";`,
	}, `require ["fileinto", "mailbox"]; fileinto :create "User";`}
	after := []string{`require ["fileinto", "mailbox"]; fileinto :create "After";`}
	var log bytes.Buffer
	o := Options{Extensions: sieve.AllExtensions(), Logger: slog.New(slog.NewTextHandler(&log, nil)), Limits: sieve.Limits{MaxRunWork: 300_000}}
	got := runSequenceWith(t, tc, after, msg, o)
	header := strings.ReplaceAll(hdr.String(), "\n", "|")
	want := []string{"First [] X-First: 1|" + header, "INBOX [] " + header}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		var summary []string
		for _, c := range got {
			summary = append(summary, c[:min(len(c), 60)])
		}
		t.Errorf("stored %q, want the First copy with its edit and the INBOX copy as it came", summary)
	}
	for _, w := range []string{`level=ERROR msg="sieve: script failed: aborted for excessive resource usage, message kept in INBOX as it came"`,
		`before1.sieve stage=run err="line 1, column 49: execution exceeded the work limit (300000 units)"`} {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log %q, want %q in it", log.String(), w)
		}
	}
}
