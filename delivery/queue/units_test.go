package queue

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

func TestReplyClassification(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		perm       bool
		status     string
		code       int
		wantPrefix string
	}{
		{"5xx with enhanced code", &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no"}, true, "5.1.1", 550, "550 5.1.1 no"},
		{"4xx with enhanced code", &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 7, 1}, Message: "greylisted"}, false, "4.7.1", 451, "451 4.7.1"},
		{"5xx without enhanced code", &gosmtp.SMTPError{Code: 554, Message: "no"}, true, "5.0.0", 554, "554 no"},
		{"4xx without enhanced code", &gosmtp.SMTPError{Code: 421, Message: "bye"}, false, "4.0.0", 421, "421 bye"},
		// The reply code decides; a contradicting enhanced code is replaced
		// in the status, and the text stays what the server said.
		{"550 with a 4.x.x enhanced code", &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{4, 1, 1}, Message: "x"}, true, "5.0.0", 550, "550 4.1.1 x"},
		{"451 with a 5.x.x enhanced code", &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "x"}, false, "4.0.0", 451, "451 5.1.1 x"},
		{"odd code is temporary", &gosmtp.SMTPError{Code: 354, Message: "x"}, false, "4.0.0", 354, "354 x"},
		{"network error", errors.New("read: connection reset"), false, "4.4.2", 0, "MAIL: read: connection reset"},
		{"multi-line reply is one line", &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 7, 1}, Message: "a\nb\r\nc"}, true, "5.7.1", 550, "550 5.7.1 a b c"},
	} {
		f := replyFailure(tc.err, "MAIL", "4.4.2")
		if f.perm != tc.perm || f.status != tc.status || f.code != tc.code || !strings.HasPrefix(f.text, tc.wantPrefix) {
			t.Errorf("%s: %+v, want perm=%v status=%s code=%d text %q…", tc.name, f, tc.perm, tc.status, tc.code, tc.wantPrefix)
		}
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	now := time.Now()
	seen := map[string]bool{}
	for range 1000 {
		id := newID(now)
		got, err := ParseID(id)
		if err != nil || got != id {
			t.Fatalf("ParseID(newID()) = %q, %v", got, err)
		}
		if seen[id] {
			t.Fatalf("duplicate id %s", id)
		}
		seen[id] = true
	}
	if a, b := newID(now), newID(now.Add(time.Nanosecond)); a[:16] >= b[:16] {
		t.Errorf("ids do not sort by time: %s then %s", a, b)
	}
}

func TestPrintable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"250 ok", "250 ok"},
		{"a\r\nb\n\tc", "a b c"},
		{"\x00\x1b[31mred", "??[31mred"},
		{"caf\xc3\xa9", "caf??"},
		{"  lead", "lead"},
		{strings.Repeat("x", 20), strings.Repeat("x", 10)},
	} {
		if got := printable(tc.in, 10); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestReadHeaders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ name, in, want string }{
		{"CRLF", "A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n"},
		{"bare LF", "A: 1\nB: 2\n\nbody\n", "A: 1\r\nB: 2\r\n"},
		{"no body", "A: 1\r\n", "A: 1\r\n"},
		{"NUL dropped", "A: \x001\r\n\r\n", "A: 1\r\n"},
		{"huge header cut at a line", strings.Repeat("X-Long: "+strings.Repeat("y", 100)+"\r\n", 1000), ""},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.in), 0o600)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readHeaders(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if len(got) > maxDSNHeaders+maxDSNHeaders/50 || !strings.HasSuffix(string(got), "y\r\n") {
				t.Errorf("%s: %d bytes ending %q", tc.name, len(got), got[max(0, len(got)-10):])
			}
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestRouteChoice(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"Special.Test.": "10.0.0.1:2525", "*": "10.0.0.2:25"}
	o.Relayhost = &Relayhost{Addr: "smarthost.test:587"}
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if rt := q.routeFor(normalizeDomain("SPECIAL.test")); rt.nexthop.String() != "[10.0.0.1]:2525" || rt.key != "route:[10.0.0.1]:2525" {
		t.Errorf("domain route: %+v", rt)
	}
	if rt := q.routeFor("other.test"); rt.nexthop.String() != "[10.0.0.2]:25" {
		t.Errorf("* route: %+v", rt)
	}
	delete(q.o.routes, "*")
	if rt := q.routeFor("other.test"); rt.relay == nil || rt.nexthop.String() != "smarthost.test:587" || rt.key != "relay" {
		t.Errorf("relayhost: %+v", rt)
	}
	q.o.Relayhost = nil
	if rt := q.routeFor("other.test"); rt.key != "mx:other.test" {
		t.Errorf("MX: %+v", rt)
	}
	if _, err := ParsePolicy(" Verify "); err != nil {
		t.Error(err)
	}
}

// localResult is the one place where the delivery store's answer for a
// copy stored here (a local recipient's, or a DSN to a local sender, which
// Options.Bounce gives to Accept) becomes the queue's: sent, bounced (the
// store says the copy can never be stored), or deferred, with the
// enhanced status of the log line and the DSN. A full disk or quota, a
// broken maildir, a user held for a move or homed elsewhere all wait; an
// error that is not the store's is temporary.
func TestLocalResult(t *testing.T) {
	t.Parallel()
	perm := func(reason string, err error) error { return &delivery.Error{Reason: reason, Err: err} }
	temp := func(reason string, err error) error {
		return &delivery.Error{Temporary: true, Reason: reason, Err: err}
	}
	for _, tc := range []struct {
		name   string
		err    error
		out    outcome
		status string
		reply  string
	}{
		{"stored", nil, outSent, "2.0.0", "delivered to maildir"},
		// Permanent: bounced.
		{"refused by the recipient's Sieve script", perm("rejected: go away", delivery.ErrRejected), outBounced, "5.7.1", "rejected: go away"},
		{"a permanent error of the store", perm("message unusable", nil), outBounced, "5.6.0", "message unusable"},
		{"a folder that does not exist", perm("no such folder", delivery.ErrNoFolder), outBounced, "5.6.0", "no such folder"},
		{"wrapped, still the store's", fmt.Errorf("filter: %w", perm("message unusable", nil)), outBounced, "5.6.0", "message unusable"},
		// Temporary: deferred.
		{"disk full", temp("disk full", delivery.ErrDiskFull), outDeferred, "4.3.1", "disk full"},
		{"maildir not writable", temp("maildir not writable", delivery.ErrNotWritable), outDeferred, "4.3.1", "maildir not writable"},
		{"over quota", temp("quota exceeded", delivery.ErrOverQuota), outDeferred, "4.2.2", "quota exceeded"},
		{"bad maildir", temp("maildir outside maildir_base", delivery.ErrBadMaildir), outDeferred, "4.3.5", "maildir outside maildir_base"},
		{"a temporary error of the store", temp("fsync failed", errors.New("EIO")), outDeferred, "4.3.0", "fsync failed"},
		{"not the store's error", errors.New("sieve: script timed out"), outDeferred, "4.3.0", "sieve: script timed out"},
		// Held (a move of the user under way) or homed on another node:
		// the copy waits, never bounces.
		{"user held for a move", temp("mailbox held while it is being moved", delivery.ErrHeld), outDeferred, "4.2.0", "mailbox held while it is being moved"},
		{"user homed elsewhere", temp("mailbox homed on another node", delivery.ErrHomedElsewhere), outDeferred, "4.2.0", "mailbox homed on another node"},
		// The store's flag decides, not the cause it wraps, and the
		// status's class follows it.
		{"a temporary error wrapping a rejection", temp("try later", delivery.ErrRejected), outDeferred, "4.7.1", "try later"},
		{"a permanent error wrapping a full mailbox", perm("mailbox full for good", delivery.ErrOverQuota), outBounced, "5.2.2", "mailbox full for good"},
	} {
		got := localResult(tc.err)
		want := result{out: tc.out, status: tc.status, reply: tc.reply, relay: "maildir"}
		if got != want {
			t.Errorf("%s: localResult(%v) = %+v, want %+v", tc.name, tc.err, got, want)
		}
	}
}
