package delivery

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"courriel/delivery/maildirsize"
)

func TestDeliverContent(t *testing.T) {
	t.Parallel()
	const received = "Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
	tests := []struct {
		name   string
		from   string
		origTo string // "test0@hosted-domain.com" when ""
		header string
		body   string
		want   string
	}{
		{
			name:   "plain",
			from:   "sender@example.org",
			header: received,
			body:   "Subject: hi\r\n\r\nline 1\r\nline 2\r\n",
			want: "Return-Path: <sender@example.org>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\n" +
				"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\n" +
				"Subject: hi\n\nline 1\nline 2\n",
		},
		{
			name: "null sender, no trace header",
			from: "",
			body: "Subject: bounce\r\n\r\nx\r\n",
			want: "Return-Path: <>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\nSubject: bounce\n\nx\n",
		},
		{
			name:   "two trace lines, folded",
			from:   "a@b.c",
			header: "Received: from x\r\n\tby y\r\nX-Spam: no\r\n",
			body:   "\r\n",
			want:   "Return-Path: <a@b.c>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\nReceived: from x\n\tby y\nX-Spam: no\n\n",
		},
		{
			name:   "header without final line ending gets one",
			from:   "a@b.c",
			header: "Received: from x",
			body:   "S: 1\r\n\r\nb\r\n",
			want:   "Return-Path: <a@b.c>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\nReceived: from x\nS: 1\n\nb\n",
		},
		{
			name: "bare LF kept, lone CR kept, CR CR LF keeps one CR",
			from: "a@b.c",
			body: "A: 1\nB: 2\r\n\r\nx\ry\r\r\nz\r\n",
			want: "Return-Path: <a@b.c>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\nA: 1\nB: 2\n\nx\ry\r\nz\n",
		},
		{
			name: "empty body",
			from: "a@b.c",
			want: "Return-Path: <a@b.c>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\n",
		},
		{
			name:   "sent to the maildrop itself",
			from:   "a@b.c",
			origTo: "-",
			want:   "Return-Path: <a@b.c>\nX-Original-To: xomail@xoyize.xyz\nDelivered-To: xomail@xoyize.xyz\n",
		},
		{
			name:   "an original recipient that would break the header is not written",
			from:   "a@b.c",
			origTo: "x@y\nX-Injected: 1",
			want:   "Return-Path: <a@b.c>\nX-Original-To: xomail@xoyize.xyz\nDelivered-To: xomail@xoyize.xyz\n",
		},
		{
			name: "8bit and long line untouched",
			from: "é@example.org",
			body: "S: \xc3\xa9\r\n\r\n" + strings.Repeat("x", 70000) + "\r\n",
			want: "Return-Path: <é@example.org>\nX-Original-To: test0@hosted-domain.com\nDelivered-To: xomail@xoyize.xyz\nS: \xc3\xa9\n\n" + strings.Repeat("x", 70000) + "\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base, Hostname: "mx/1:a,b"})
			maildir := base + "/xomail/mailbox/"
			m := &Message{ID: "Q1", From: tc.from, Header: []byte(tc.header), Body: bytes.NewReader([]byte(tc.body))}
			origTo := cmp.Or(tc.origTo, "test0@hosted-domain.com")
			if origTo == "-" {
				origTo = ""
			}
			deliverOK(t, s, m, Recipient{Address: "xomail@xoyize.xyz", OrigTo: origTo, Maildir: maildir})

			name, data := onlyNew(t, maildir)
			if string(data) != tc.want {
				t.Errorf("stored\n%q\nwant\n%q", data, tc.want)
			}
			mm := nameRE.FindStringSubmatch(name)
			if mm == nil {
				t.Fatalf("name %q does not match %s", name, nameRE)
			}
			if mm[1] != `mx\0571\072a\054b` {
				t.Errorf("host part %q, want mx\\0571\\072a\\054b", mm[1])
			}
			size, wsize, ok := SizesFromName(name)
			if !ok || size != int64(len(data)) || wsize != int64(crlfSize(data)) {
				t.Errorf("SizesFromName(%q) = %d, %d, %v; want %d, %d, true", name, size, wsize, ok, len(data), crlfSize(data))
			}
			if mm[2] != strconv.Itoa(len(data)) {
				t.Errorf("S=%s, file has %d bytes", mm[2], len(data))
			}
		})
	}
}

func TestDeliverModesAndOwnership(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		chown    bool
		uid, gid int
		wantUID  int
		wantGID  int
	}{
		{name: "chown to the recipient", chown: true, uid: 20000, gid: 20001, wantUID: 20000, wantGID: 20001},
		{name: "no chown: process user", chown: false, uid: 20000, gid: 20001, wantUID: os.Geteuid(), wantGID: os.Getegid()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.chown && os.Geteuid() != 0 {
				if os.Getenv("CI") == "true" { // CI runs as root: ownership must be checked there
					t.Fatal("chown needs root")
				}
				t.Skip("chown needs root")
			}
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base, Chown: tc.chown})
			home := base + "/domain/xomail"
			maildir := home + "/mailbox/"
			deliverOK(t, s, testMessage("M1"), Recipient{Address: "x@y.z", Maildir: maildir, UID: tc.uid, GID: tc.gid})
			name, _ := onlyNew(t, maildir)

			check := func(path string, mode os.FileMode) {
				t.Helper()
				fi, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				if got := fi.Mode() & (os.ModePerm | os.ModeType); got != mode {
					t.Errorf("%s: mode %v, want %v", path, got, mode)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if int(st.Uid) != tc.wantUID || int(st.Gid) != tc.wantGID {
					t.Errorf("%s: owner %d:%d, want %d:%d", path, st.Uid, st.Gid, tc.wantUID, tc.wantGID)
				}
			}
			for _, d := range []string{base + "/domain", home, maildir, maildir + "cur", maildir + "new", maildir + "tmp"} {
				check(d, os.ModeDir|0o700)
			}
			check(filepath.Join(maildir, "new", name), 0o600)
			// The base existed before: neither chowned nor chmodded.
			if fi, _ := os.Stat(base); fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
				t.Errorf("the allowed base was chowned")
			}
		})
	}
}

func TestDeliverTwoRecipients(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var rec recorder
	s := newStore(t, Options{AllowedBase: base, OnDelivered: rec.notify})
	a, b := base+"/a/mailbox/", base+"/b/mailbox/"
	deliverOK(t, s, testMessage("M2"),
		Recipient{Address: "a@x.y", Maildir: a},
		Recipient{Address: "b@x.y", Maildir: b})
	for dir, to := range map[string]string{a: "a@x.y", b: "b@x.y"} {
		_, data := onlyNew(t, dir)
		if !bytes.Contains(data, []byte("\nDelivered-To: "+to+"\n")) {
			t.Errorf("%s: no Delivered-To: %s in %q", dir, to, data)
		}
	}
	calls := rec.get()
	if len(calls) != 2 || !(calls[0] == a && calls[1] == b || calls[0] == b && calls[1] == a) {
		t.Errorf("OnDelivered calls %v, want %s and %s", calls, a, b)
	}
	if len(rec.missing) > 0 {
		t.Errorf("OnDelivered named files not in new/: %v", rec.missing)
	}
	// Two recipients sharing a maildir still get two files.
	deliverOK(t, s, testMessage("M3"), Recipient{Address: "a@x.y", Maildir: a}, Recipient{Address: "a2@x.y", Maildir: a})
	if n := len(files(t, a+"new")); n != 3 {
		t.Errorf("%snew holds %d files, want 3", a, n)
	}
}

func TestDeliverNoBaseCreatesParents(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStore(t, Options{})
	maildir := dir + "/vmail/xomail/mailbox/"
	deliverOK(t, s, testMessage("M4"), Recipient{Address: "x@y.z", Maildir: maildir})
	onlyNew(t, maildir)
	// Second delivery takes the fast path.
	deliverOK(t, s, testMessage("M5"), Recipient{Address: "x@y.z", Maildir: maildir})
	if n := len(files(t, maildir+"new")); n != 2 {
		t.Errorf("new/ holds %d files, want 2", n)
	}
}

func TestDeliverRecreatesRemovedMaildir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	maildir := base + "/u/mailbox/"
	rcpt := Recipient{Address: "x@y.z", Maildir: maildir}
	deliverOK(t, s, testMessage("M6"), rcpt)
	for _, remove := range []string{maildir + "tmp", base + "/u"} {
		if err := os.RemoveAll(remove); err != nil {
			t.Fatal(err)
		}
		deliverOK(t, s, testMessage("M7"), rcpt)
		if len(files(t, maildir+"new")) == 0 {
			t.Fatalf("after removing %s: nothing delivered", remove)
		}
	}
}

func TestDeliverRefusesBadAddresses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		from, to  string
		uid       int
		chown     bool
		temporary bool
		bad       bool // wraps ErrBadMaildir
	}{
		{name: "CRLF in sender", from: "a@b\r\nX-Evil: 1", to: "x@y.z", temporary: false},
		{name: "LF in maildrop", from: "a@b", to: "x@y.z\nX-Evil: 1", temporary: true, bad: true},
		{name: "uid 0 with chown", from: "a@b", to: "x@y.z", chown: true, uid: 0, temporary: true, bad: true},
		{name: "negative uid with chown", from: "a@b", to: "x@y.z", chown: true, uid: -1, temporary: true, bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			s := newStore(t, Options{AllowedBase: base, Chown: tc.chown})
			m := testMessage("M8")
			m.From = tc.from
			errs := s.Deliver(context.Background(), m, []Recipient{{Address: tc.to, Maildir: base + "/u/mailbox", UID: tc.uid, GID: 1}})
			var e *Error
			if !errors.As(errs[0], &e) {
				t.Fatalf("error %v, want *Error", errs[0])
			}
			if e.Temporary != tc.temporary || errors.Is(e, ErrBadMaildir) != tc.bad {
				t.Errorf("error %v: Temporary %v bad %v, want %v %v", e, e.Temporary, errors.Is(e, ErrBadMaildir), tc.temporary, tc.bad)
			}
			treeEmpty(t, base)
		})
	}
}

func TestDeliverCancelled(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rcpts := []Recipient{{Address: "a@b.c", Maildir: base + "/a/"}, {Address: "b@b.c", Maildir: base + "/b/"}}
	for i, err := range s.Deliver(ctx, testMessage("M9"), rcpts) {
		var e *Error
		if !errors.As(err, &e) || !e.Temporary || !errors.Is(err, context.Canceled) {
			t.Errorf("copy %d: error %v, want temporary wrapping context.Canceled", i, err)
		}
	}
	treeEmpty(t, base)
}

func TestDeliverConcurrent(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	maildirs := []string{base + "/a/mailbox/", base + "/b/mailbox/"}
	const n = 100
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Every message goes to one of two maildirs, some to both.
			rc := []Recipient{{Address: "a@x.y", Maildir: maildirs[i%2]}}
			if i%10 == 0 {
				rc = append(rc, Recipient{Address: "b@x.y", Maildir: maildirs[(i+1)%2]})
			}
			for _, err := range s.Deliver(context.Background(), testMessage(fmt.Sprintf("C%03d", i)), rc) {
				if err != nil {
					errs[i] = err
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	seen := make(map[string]int)
	for _, md := range maildirs {
		treeEmpty(t, md+"tmp")
		for _, name := range files(t, md+"new") {
			data, err := os.ReadFile(md + "new/" + name)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(data, []byte("Subject: C"))
			if i < 0 {
				t.Fatalf("%s: no subject in %q", name, data)
			}
			seen[md+string(data[i+9:i+13])]++
		}
	}
	for i := range n {
		id := fmt.Sprintf("C%03d", i)
		want := map[string]int{maildirs[i%2] + id: 1}
		if i%10 == 0 {
			want[maildirs[(i+1)%2]+id] = 1
		}
		for k, v := range want {
			if seen[k] != v {
				t.Errorf("%s: %d copies, want %d", k, seen[k], v)
			}
		}
	}
	if total := len(seen); total != n+n/10 {
		t.Errorf("%d distinct copies, want %d", total, n+n/10)
	}
}

func TestDeliverLogLine(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	var buf bytes.Buffer
	var mu sync.Mutex
	lg := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	s := newStore(t, Options{AllowedBase: base, Logger: lg})
	m := testMessage("QID42")
	s.Deliver(context.Background(), m, []Recipient{
		{Address: "xomail@xoyize.xyz", OrigTo: "test0@hosted-domain.com", Maildir: base + "/x/mailbox/"},
		{Address: "bad@xoyize.xyz", OrigTo: "test1@hosted-domain.com", Maildir: "relative/mailbox/"},
	})
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	var lines []string // one per copy; the store may log other things once
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.Contains(l, " msg=delivery ") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 2 {
		t.Fatalf("%d delivery lines, want 2:\n%s", len(lines), out)
	}
	wants := map[string][]string{
		"xomail@xoyize.xyz": {"msg_id=QID42", "from=sender@example.org", "to=xomail@xoyize.xyz", "orig_to=test0@hosted-domain.com",
			"relay=maildir", "delay=", "dsn=2.0.0", `status="sent (delivered to maildir)"`},
		"bad@xoyize.xyz": {"level=WARN", "msg_id=QID42", "to=bad@xoyize.xyz", "orig_to=test1@hosted-domain.com", "relay=maildir",
			"dsn=4.3.5", `status="deferred (maildir path is not absolute)"`},
	}
	for _, l := range lines {
		for to, want := range wants {
			if !strings.Contains(l, "to="+to) {
				continue
			}
			for _, w := range want {
				if !strings.Contains(l, w) {
					t.Errorf("log line %q lacks %q", l, w)
				}
			}
			delete(wants, to)
		}
	}
	if len(wants) != 0 {
		t.Errorf("no log line for %v in\n%s", wants, out)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestNewStoreOptions(t *testing.T) {
	t.Parallel()
	if _, err := NewStore(Options{AllowedBase: "var/vmail"}); err == nil {
		t.Error("relative AllowedBase accepted")
	}
	s, err := NewStore(Options{AllowedBase: "/var/vmail/"})
	if err != nil {
		t.Fatal(err)
	}
	if s.base != "/var/vmail" || s.host == "" {
		t.Errorf("base %q host %q", s.base, s.host)
	}
}

// TestDeliverOverQuota: a copy that would take the maildir past its quota
// is refused with a temporary ErrOverQuota (4.2.2) and leaves nothing;
// stored copies, the Junk folder's included, are counted in maildirsize,
// which Dovecot's maildir++ quota reads.
func TestDeliverOverQuota(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	md := base + "/a/mailbox/"
	msg := testMessage("Q1")
	size := int64(0)
	deliverOK(t, s, msg, Recipient{Address: "a@x.y", Maildir: md})
	for _, n := range files(t, md+"new") {
		size, _, _ = SizesFromName(n)
	}
	if size <= 0 {
		t.Fatal("no size in the file name")
	}
	// Room for two more copies: one to the INBOX, one filed in Junk.
	quota := maildirsize.Limits{Bytes: 3 * size, Messages: 10}
	deliverOK(t, s, msg, Recipient{Address: "a@x.y", Maildir: md, Quota: quota})
	deliverOK(t, s, msg, Recipient{Address: "a@x.y", Maildir: md, Quota: quota, Folder: "Junk"})
	overQuota := func(r Recipient) {
		t.Helper()
		err := s.Deliver(context.Background(), msg, []Recipient{r})[0]
		var de *Error
		if !errors.As(err, &de) || !de.Temporary || !errors.Is(err, ErrOverQuota) || de.Status() != "4.2.2" {
			t.Errorf("over quota (%+v): %v", r.Quota, err)
		}
	}
	overQuota(Recipient{Address: "a@x.y", Maildir: md, Quota: quota})
	overQuota(Recipient{Address: "a@x.y", Maildir: md, Quota: quota, Folder: "Junk"})
	// Counted afresh at the first quota'd copy (one copy there), then that
	// copy and the one in Junk added by a line each.
	if b, err := os.ReadFile(md + maildirsize.FileName); err != nil || string(b) != fmt.Sprintf("%s\n%d 1\n%d 1\n%d 1\n", quota, size, size, size) {
		t.Errorf("maildirsize %q (%v)", b, err)
	}
	// A message-count limit; new limits are counted afresh.
	overQuota(Recipient{Address: "a@x.y", Maildir: md, Quota: maildirsize.Limits{Messages: 3}})
	if b, err := os.ReadFile(md + maildirsize.FileName); err != nil || string(b) != fmt.Sprintf("3C\n%d 3\n", 3*size) {
		t.Errorf("maildirsize %q (%v)", b, err)
	}
	if n, j := len(files(t, md+"new")), len(files(t, md+".Junk/new")); n != 2 || j != 1 {
		t.Errorf("%d copies in the INBOX and %d in Junk, want 2 and 1", n, j)
	}
}

// A copy for another node or for a user being moved away is never
// written here: temporary, nothing in the maildir, the other copies
// stored.
func TestDeliverRefusesNodeAndHeldCopies(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	s := newStore(t, Options{AllowedBase: base})
	here, node, held := base+"/a/mailbox/", base+"/b/mailbox/", base+"/c/mailbox/"
	errs := s.Deliver(context.Background(), testMessage("M-held"), []Recipient{
		{Address: "a@x.y", Maildir: here},
		{Address: "b@x.y", Maildir: node, Node: "mx2"},
		{Address: "c@x.y", Maildir: held, Held: true},
	})
	for i, want := range []error{nil, ErrHomedElsewhere, ErrHeld} {
		var de *Error
		switch {
		case want == nil && errs[i] != nil:
			t.Errorf("copy %d: %v, want stored", i, errs[i])
		case want != nil && (!errors.As(errs[i], &de) || !de.Temporary || !errors.Is(errs[i], want)):
			t.Errorf("copy %d: %v, want a temporary %v", i, errs[i], want)
		case want != nil && de.Status() != "4.2.0":
			t.Errorf("copy %d: status %s, want 4.2.0", i, de.Status())
		}
	}
	onlyNew(t, here)
	for _, dir := range []string{node, held} {
		if f := files(t, dir+"new"); len(f) > 0 {
			t.Errorf("%snew holds %v, want nothing", dir, f)
		}
	}
}
