package filter

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/delivery/maildirsize"
	"courriel/directory"
	"courriel/sieve"
)

func TestMaildirFolder(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"INBOX", ""}, {"inbox", ""}, {"", ""},
		{"Work", "Work"}, {"Work.2026", "Work.2026"}, {"Été", "&AMk-t&AOk-"}, {"R&D", "R&-D"},
		{"a b.c d", "a b.c d"},
		{"Inbox.Sub", "INBOX.Sub"}, {"inbox.Sub", "INBOX.Sub"}, // Dovecot's .INBOX.Sub
	} {
		if got, err := maildirFolder(c.in); err != nil || got != c.want {
			t.Errorf("maildirFolder(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"a/b", "..", "a..b", ".a", "a.", "../x", "a\x00", "a\nb", "a\x7f", " a", "a ", `a\b`, "a*", "%", "\xff", strings.Repeat("é", 120)} {
		if got, err := maildirFolder(bad); err == nil {
			t.Errorf("maildirFolder(%q) = %q, want refused", bad, got)
		}
	}
}

func TestScriptLinkTarget(t *testing.T) {
	for _, c := range []struct {
		target, name string
		ok           bool
	}{
		{"sieve/main.sieve", "main.sieve", true},
		{"/home/u/sieve/main.sieve", "main.sieve", true},
		{"./sieve/x.sieve", "x.sieve", true},
		{"sieve/../../etc/passwd", "", false},
		{"/etc/passwd", "", false},
		{"/home/other/sieve/x.sieve", "", false},
		{"sieve/sub/x.sieve", "", false},
		{"sieve/x.svbin", "", false},
		{"sieve", "", false},
		{"other/x.sieve", "", false},
	} {
		name, ok := scriptLinkTarget("/home/u", c.target)
		if name != c.name || ok != c.ok {
			t.Errorf("scriptLinkTarget(%q) = %q, %v; want %q, %v", c.target, name, ok, c.name, c.ok)
		}
	}
}

// userScript on hostile homes: what it reads, refuses or ignores.
func TestUserScriptHostileHome(t *testing.T) {
	c := newScriptCache(sieve.Limits{}, sieve.Extensions{}, 1024, "", 100)
	outside := filepath.Join(t.TempDir(), "evil.sieve")
	os.WriteFile(outside, []byte(`require "fileinto"; fileinto "X";`), 0o644)
	for _, tc := range []struct {
		name  string
		setup func(home string)
		want  string // "none", "ok" or a substring of the error
	}{
		{"no script", func(string) {}, "none"},
		{"regular file", func(h string) { os.WriteFile(h+"/.dovecot.sieve", []byte("keep;"), 0o644) }, "ok"},
		{"symlink into sieve/", func(h string) {
			os.Mkdir(h+"/sieve", 0o755)
			os.WriteFile(h+"/sieve/a.sieve", []byte("keep;"), 0o644)
			os.Symlink("sieve/a.sieve", h+"/.dovecot.sieve")
		}, "ok"},
		{"dangling symlink", func(h string) { os.Mkdir(h+"/sieve", 0o755); os.Symlink("sieve/gone.sieve", h+"/.dovecot.sieve") }, "none"},
		{"symlink out of the home", func(h string) { os.Symlink(outside, h+"/.dovecot.sieve") }, "leads outside"},
		{"symlink through ..", func(h string) { os.Symlink("sieve/../../x", h+"/.dovecot.sieve") }, "leads outside"},
		{"sieve/ a symlink out", func(h string) {
			os.Symlink(filepath.Dir(outside), h+"/sieve")
			os.Symlink("sieve/evil.sieve", h+"/.dovecot.sieve")
		}, "not a directory"},
		{"script a symlink out", func(h string) {
			os.Mkdir(h+"/sieve", 0o755)
			os.Symlink(outside, h+"/sieve/a.sieve")
			os.Symlink("sieve/a.sieve", h+"/.dovecot.sieve")
		}, "not a regular file"},
		{"fifo", func(h string) { syscall.Mkfifo(h+"/.dovecot.sieve", 0o644) }, "not a regular file"},
		{"directory", func(h string) { os.Mkdir(h+"/.dovecot.sieve", 0o755) }, "not a regular file"},
		{"too large", func(h string) { os.WriteFile(h+"/.dovecot.sieve", bytes.Repeat([]byte("#"), 2000), 0o644) }, "more than 1024"},
		{"svbin target", func(h string) { os.Mkdir(h+"/sieve", 0o755); os.Symlink("sieve/a.svbin", h+"/.dovecot.sieve") }, "leads outside"},
		{"does not compile", func(h string) { os.WriteFile(h+"/.dovecot.sieve", []byte("fileinto \"x\";"), 0o644) }, "line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			tc.setup(home)
			done := make(chan struct{})
			var s *compiled
			var err error
			go func() { s, err = c.userScript(home); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("userScript blocked")
			}
			switch {
			case err != nil:
				t.Fatalf("err %v", err)
			case tc.want == "none":
				if s != nil {
					t.Errorf("got %+v, want no script", s)
				}
			case tc.want == "ok":
				if s == nil || s.err != nil || s.script == nil {
					t.Errorf("got %+v, want a compiled script", s)
				}
			default:
				if s == nil || s.err == nil || !strings.Contains(s.err.Error(), tc.want) {
					t.Errorf("got %+v, want an error with %q", s, tc.want)
				}
			}
		})
	}
}

// The cache compiles a file once per version: the same identity is served
// from memory, a rewrite compiles again.
func TestScriptCacheByIdentity(t *testing.T) {
	c := newScriptCache(sieve.Limits{}, sieve.Extensions{}, 1<<20, "", 100)
	home := t.TempDir()
	p := home + "/.dovecot.sieve"
	os.WriteFile(p, []byte("keep;"), 0o644)
	a, _ := c.userScript(home)
	b, _ := c.userScript(home)
	if a == nil || a != b {
		t.Fatalf("second read not from the cache: %p %p", a, b)
	}
	os.WriteFile(p+".new", []byte("discard;"), 0o644)
	os.Rename(p+".new", p)
	d, _ := c.userScript(home)
	if d == a || d == nil || d.err != nil {
		t.Errorf("a replaced script was not compiled again: %+v", d)
	}
}

func TestVacationVerdict(t *testing.T) {
	own := []string{"alice@x.y", "a.smith@x.y"}
	for _, c := range []struct {
		name, from, header, want string
	}{
		{"plain", "bob@z.z", "To: Alice <alice@x.y>\r\n", ""},
		{"cc alias", "bob@z.z", "To: x@z.z\r\nCc: a.smith@x.y\r\n", ""},
		{"resent", "bob@z.z", "To: x@z.z\r\nResent-To: alice@x.y\r\n", ""},
		{"null sender", "", "To: alice@x.y\r\n", "null sender"},
		{"mailer-daemon", "MAILER-DAEMON@z.z", "To: alice@x.y\r\n", "daemon"},
		{"owner-", "owner-list@z.z", "To: alice@x.y\r\n", "daemon"},
		{"-request", "list-request@z.z", "To: alice@x.y\r\n", "daemon"},
		{"quoted '@'", `"bob-request@y"@z.z`, "To: alice@x.y\r\n", ""}, // its local part ends at the last '@'
		{"self", "alice@x.y", "To: alice@x.y\r\n", "the user"},
		{"auto-submitted", "bob@z.z", "To: alice@x.y\r\nAuto-Submitted: auto-replied\r\n", "auto-submitted"},
		{"auto-submitted no", "bob@z.z", "To: alice@x.y\r\nAuto-Submitted: no\r\n", ""},
		{"precedence bulk", "bob@z.z", "To: alice@x.y\r\nPrecedence: bulk\r\n", "precedence"},
		{"precedence list", "bob@z.z", "To: alice@x.y\r\nPrecedence: List\r\n", "precedence"},
		{"list-id", "bob@z.z", "To: alice@x.y\r\nList-Id: <l.z.z>\r\n", "mailing list"},
		{"list-unsubscribe", "bob@z.z", "To: alice@x.y\r\nList-Unsubscribe: <mailto:u@z.z>\r\n", "mailing list"},
		{"bcc", "bob@z.z", "To: other@z.z\r\n", "none of the user's"},
		{"unparsable but there", "bob@z.z", "To: alice@x.y <<broken\r\n", ""},
		{"x-auto-response-suppress oof", "bob@z.z", "To: alice@x.y\r\nX-Auto-Response-Suppress: DR, OOF\r\n", "x-auto-response-suppress OOF"},
		{"x-auto-response-suppress all", "bob@z.z", "To: alice@x.y\r\nX-Auto-Response-Suppress: RN\r\nX-Auto-Response-Suppress:  all \r\n", "x-auto-response-suppress all"},
		{"x-auto-response-suppress others", "bob@z.z", "To: alice@x.y\r\nX-Auto-Response-Suppress: DR, RN, NRN, AutoReply, NoOOF, All OOF\r\n", ""},
	} {
		msg, err := sieve.ReadMessage(strings.NewReader(c.header + "Subject: s\r\n\r\nbody\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		got := vacationVerdict(msg, c.from, own)
		if (c.want == "") != (got == "") || !strings.Contains(got, c.want) {
			t.Errorf("%s: verdict %q, want %q", c.name, got, c.want)
		}
	}
}

// markReplyT is markReply for a test: the user xomail, files left to
// the process.
func markReplyT(t *testing.T, f *Filter, home, sender, handle, claim string, period time.Duration) bool {
	t.Helper()
	fresh, problem, err := f.markReply(context.Background(), replyMark{home: home, user: "xomail", sender: sender, handle: handle,
		claim: claim, period: period, uid: -1, gid: -1})
	if err != nil || problem != "" {
		t.Fatalf("markReply(%s, %s): %v %q", sender, handle, err, problem)
	}
	return fresh
}

func TestVacationMemory(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Now: func() time.Time { return now }})
	home := t.TempDir()
	remember := func(sender, handle string) bool {
		t.Helper()
		return markReplyT(t, f, home, sender, handle, "", 7*24*time.Hour)
	}
	if !remember("bob@z.z", "h") || remember("bob@z.z", "h") || remember("BOB@z.z", "h") {
		t.Error("a sender must get one reply per period")
	}
	if !remember("bob@z.z", "other") || !remember("carol@z.z", "h") {
		t.Error("another handle or sender is a new reply")
	}
	now = now.Add(8 * 24 * time.Hour)
	if !remember("bob@z.z", "h") {
		t.Error("after the period the sender gets a reply again")
	}
	if !markReplyT(t, f, home, "dan@z.z", "h", "", 0) || !markReplyT(t, f, home, "dan@z.z", "h", "", 0) {
		t.Error("period 0 replies every time")
	}
	if markReplyT(t, f, home, "bob@z.z", "h", "", 0) {
		t.Error("period 0 replied within the period of an earlier reply (Pigeonhole checks it)")
	}
	fi, err := os.Lstat(home + "/" + DuplicateDBName)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("memory file: %v %v", fi, err)
	}
	if _, err := os.Lstat(home + "/" + VacationMemoryName); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a reply was recorded in courriel's own memory: %v", err)
	}
	// A FIFO in place of either file is refused, never blocked on.
	for _, name := range []string{DuplicateDBName, VacationMemoryName} {
		home2 := t.TempDir()
		syscall.Mkfifo(home2+"/"+name, 0o600)
		if _, _, err := f.markReply(context.Background(), replyMark{home: home2, user: "u", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1}); err == nil {
			t.Errorf("a FIFO %s was used", name)
		}
	}
}

// TestVacationClaim: a reply recorded for one keyed copy is fresh again
// for that copy's retry (a crash may have come before it was queued; the
// queue's key makes it once), never for another message of the sender.
func TestVacationClaim(t *testing.T) {
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}})
	home := t.TempDir()
	for i, tc := range []struct {
		claim string
		want  bool
	}{
		{replyClaim("Q1-0"), true},  // the first reply
		{replyClaim("Q1-0"), true},  // its retry
		{replyClaim("Q2-0"), false}, // another message within the period
		{"", false},                 // another, without a key
		{replyClaim(""), false},
	} {
		if got := markReplyT(t, f, home, "bob@z.z", "h", tc.claim, 7*24*time.Hour); got != tc.want {
			t.Errorf("%d: claim %q: fresh %v, want %v", i, tc.claim, got, tc.want)
		}
	}
}

// TestVacationClaimPeriod: a reply's claim is kept for the reply's
// period (its :days), not longer: once the reply is forgotten, the next
// write drops both (Dovecot's cleanup of expired records), and every live
// record of the database, whoever wrote it, stays.
func TestVacationClaimPeriod(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Now: func() time.Time { return now }})
	home := t.TempDir()
	path := filepath.Join(home, DuplicateDBName)
	if !markReplyT(t, f, home, "bob@z.z", "h", replyClaim("Q1-0"), 24*time.Hour) {
		t.Fatal("first reply not fresh")
	}
	// Two days on, a database full of the replies of the day before.
	now = now.Add(48 * time.Hour)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	live := uint32(now.Add(12 * time.Hour).Unix())
	const others = 5000
	for i := range others {
		id := fmt.Sprintf("%016x", i)
		b = binary.NativeEndian.AppendUint32(b, live)
		b = binary.NativeEndian.AppendUint32(b, uint32(len(id)))
		b = binary.NativeEndian.AppendUint32(b, 6)
		b = append(b, id+"xomail"...)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if !markReplyT(t, f, home, "carol@z.z", "h", "", 24*time.Hour) {
		t.Fatal("carol: not fresh")
	}
	b, err = os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tbl, problem := parseDupes(b, now.Unix()-1)
	if problem != "" {
		t.Fatal(problem)
	}
	n := 0
	for _, r := range tbl.recs {
		if uint32(r.expiry) == live {
			n++
		}
	}
	if n != others || len(tbl.recs) != others+1 {
		t.Errorf("%d records, %d of the %d live ones: want them and carol's only", len(tbl.recs), n, others)
	}
	if tbl.has(vacationDupID("bob@z.z", "h")) || tbl.has(claimDupID(replyClaim("Q1-0"))) {
		t.Error("bob's expired reply or its claim was written again")
	}
}

// TestVacationClaimBound: the bound, which drops the earliest expiries
// first, drops a claimed reply before its claim, never the claim alone,
// which would make the claiming copy's retry send nothing: the claim
// expires a second after the reply. Both name the user as dovecot-lda
// would.
func TestVacationClaimBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Now: func() time.Time { return now }})
	home := t.TempDir()
	if !markReplyT(t, f, home, "bob@z.z", "h", replyClaim("Q1-0"), 24*time.Hour) {
		t.Fatal("not fresh")
	}
	b, err := os.ReadFile(filepath.Join(home, DuplicateDBName))
	if err != nil {
		t.Fatal(err)
	}
	tbl, problem := parseDupes(b, now.Unix())
	if problem != "" || len(tbl.recs) != 2 {
		t.Fatalf("%d records (%s), want 2", len(tbl.recs), problem)
	}
	reply, claim := tbl.recs[0], tbl.recs[1]
	if reply.id != vacationDupID("bob@z.z", "h") || claim.id != claimDupID(replyClaim("Q1-0")) {
		t.Fatalf("records %q, %q", reply.id, claim.id)
	}
	if want := now.Add(24 * time.Hour).Unix(); reply.expiry != want || claim.expiry != want+1 {
		t.Errorf("reply expires at %d, its claim at %d; want %d and %d", reply.expiry, claim.expiry, want, want+1)
	}
	if reply.user != "xomail" || claim.user != "xomail" {
		t.Errorf("users %q, %q", reply.user, claim.user)
	}
}

func TestComposeReply(t *testing.T) {
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Hostname: "mx.x.y"})
	msg, _ := sieve.ReadMessage(strings.NewReader("Subject: =?utf-8?q?R=C3=A9union?=\r\nMessage-ID: <m1@z.z>\r\nReferences: <m0@z.z>\r\n\r\nhi\r\n"))
	out := string(f.composeReply(msg, "bob@z.z", "alice@x.y", &sieve.VacationReply{Reason: "Absente.\nRetour lundi."}))
	for _, want := range []string{"From: alice@x.y\r\n", "To: <bob@z.z>\r\n", "Subject: =?utf-8?q?Auto:_R=C3=A9union?=\r\n",
		"In-Reply-To: <m1@z.z>\r\n", "References: <m0@z.z> <m1@z.z>\r\n", "Auto-Submitted: auto-replied", "X-Auto-Response-Suppress: All\r\n", "MIME-Version: 1.0\r\n",
		"Content-Type: text/plain; charset=utf-8\r\n", "\r\n\r\nAbsente.\r\nRetour lundi.\r\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("reply lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(strings.ReplaceAll(out, "\r\n", ""), "\n") {
		t.Error("bare LF in the reply")
	}

	// A long thread and a long UTF-8 subject: lines folded at spaces
	// (within 78 octets but for "Subject: " and one whole encoded-word of
	// at most 75, RFC 2047 §2), far under 998; a UTF-8 display name encoded, as
	// Pigeonhole writes it; no subject gives Pigeonhole's default.
	var refs []string
	for i := range 50 {
		refs = append(refs, fmt.Sprintf("<thread-message-%02d@lists.example.org>", i))
	}
	long, _ := sieve.ReadMessage(strings.NewReader("Subject: =?utf-8?q?" + strings.Repeat("R=C3=A9union_", 60) + "?=\r\nMessage-ID: <m1@z.z>\r\nReferences: " +
		strings.Join(refs, "\r\n ") + "\r\n\r\nhi\r\n"))
	out = string(f.composeReply(long, "bob@z.z", "Alïce Dupré <alice@x.y>", &sieve.VacationReply{Reason: "away"}))
	head, _, _ := strings.Cut(out, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		if len(l) > len("Subject: ")+75 {
			t.Errorf("header line of %d octets: %.60q", len(l), l)
		}
	}
	unfolded := strings.ReplaceAll(head, "\r\n ", " ")
	for _, want := range []string{"From: =?utf-8?q?Al=C3=AFce_Dupr=C3=A9?= <alice@x.y>\r\n", "References: " + strings.Join(refs, " ") + " <m1@z.z>\r\n"} {
		if !strings.Contains(unfolded, want) {
			t.Errorf("reply lacks %q:\n%s", want, head)
		}
	}
	bare, _ := sieve.ReadMessage(strings.NewReader("From: bob@z.z\r\n\r\nhi\r\n"))
	if out := string(f.composeReply(bare, "bob@z.z", "alice@x.y", &sieve.VacationReply{Reason: "away"})); !strings.Contains(out, "Subject: Automated reply\r\n") {
		t.Errorf("no subject:\n%s", out)
	}
}

type fakeDir map[string]*directory.Mailbox

func (d fakeDir) Mailbox(_ context.Context, addr string) (*directory.Mailbox, error) {
	if mb, ok := d[addr]; ok {
		return mb, nil
	}
	return nil, directory.ErrNotFound
}

type recordingQueue struct {
	mu   sync.Mutex
	sent []string // from + " -> " + rcpts
	data []string
}

// Accept records the sender of the remote copies.
func (q *recordingQueue) Accept(_ context.Context, out Outgoing) (string, []error, error) {
	b := make([]byte, out.Data.Size())
	out.Data.ReadAt(b, 0)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.sent = append(q.sent, cmp.Or(out.RemoteFrom, out.From)+" -> "+strings.Join(out.Remote, ","))
	q.data = append(q.data, string(b))
	return "Q1", nil, nil
}

// A queued message's keyed copies with a script: two folders and a
// redirect; a retry (the earlier outcome lost) stores nothing twice and
// queues no second redirect.
func TestKeyedRetryIdempotent(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["fileinto", "mailbox", "copy"];
fileinto :create "A"; fileinto :create "B"; redirect :copy "x@far.example";`), 0o644)
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	if err != nil {
		t.Fatal(err)
	}
	q := &recordingQueue{}
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: q, Directory: fakeDir{"u@x.y": {Home: home}}})
	if err != nil {
		t.Fatal(err)
	}
	m := &delivery.Message{ID: "m1", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: k\r\n\r\nkeyed\r\n")), Arrived: time.Unix(1700000000, 0)}
	r := []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/", CopyKey: "Q1-0"}}
	for attempt := range 2 {
		m.Retry = attempt > 0
		if errs := f.Deliver(context.Background(), m, r); errs[0] != nil {
			t.Fatalf("attempt %d: %v", attempt, errs[0])
		}
	}
	for _, d := range []string{".A/new", ".B/new"} {
		if n, _ := os.ReadDir(home + "/mailbox/" + d); len(n) != 1 {
			t.Errorf("%s holds %d copies, want 1", d, len(n))
		}
	}
	if n, _ := os.ReadDir(home + "/mailbox/new"); len(n) != 0 {
		t.Errorf("INBOX holds %d copies, want 0", len(n))
	}
	if len(q.sent) != 1 || q.sent[0] != "s@z.z -> x@far.example" || !strings.HasPrefix(q.data[0], "X-Sieve-Redirected-From: u@x.y\r\n") {
		t.Errorf("queued %v, want one redirect from the sender", q.sent)
	}
}

// The milter's junk verdict meets the script: the implicit keep goes to
// Junk, an explicit fileinto wins.
func TestJunkVerdict(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["fileinto", "mailbox"];
if header :contains "subject" "file" { fileinto :create "Lists"; }`), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: store, Directory: fakeDir{"u@x.y": {Home: home}}})
	for _, subj := range []string{"keep me", "file me"} {
		m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: " + subj + "\r\n\r\nb\r\n")), Arrived: time.Now()}
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/", Folder: "Junk"}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	for d, want := range map[string]int{".Junk/new": 1, ".Lists/new": 1, "new": 0} {
		if n, _ := os.ReadDir(home + "/mailbox/" + d); len(n) != want {
			t.Errorf("%s holds %d, want %d", d, len(n), want)
		}
	}
}

// The vacation action as Deliver carries it out (the interpreter's
// vacation arrives with its merge): from <>, to the sender, once per
// :days, with the :from kept only when it is one of the user's addresses;
// else From the user's address the message came to (its To).
func TestVacationQueued(t *testing.T) {
	home := t.TempDir()
	q := &recordingQueue{}
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Outbound: q, Hostname: "mx.x.y"})
	mb := &directory.Mailbox{Home: home, Addresses: []string{"alice@example.org"}}
	send := func(from, vfrom string) {
		m := &delivery.Message{ID: "m", From: from, Body: bytes.NewReader([]byte("To: alice@example.org\r\nSubject: hi\r\n\r\nb\r\n"))}
		p := &plan{mb: mb, vacation: &sieve.VacationReply{Reason: "away", From: vfrom, Period: 24 * time.Hour}}
		f.vacation(context.Background(), m, &delivery.Recipient{Address: "alice@x.y"}, p)
	}
	send("bob@z.z", "")
	send("bob@z.z", "")
	send("carol@z.z", "Alice <alice@example.org>")
	send("dan@z.z", "ceo@elsewhere.example")
	if len(q.sent) != 3 || q.sent[0] != " -> bob@z.z" || q.sent[1] != " -> carol@z.z" || q.sent[2] != " -> dan@z.z" {
		t.Fatalf("queued %v, want one reply each to bob, carol and dan, from <>", q.sent)
	}
	for i, want := range []string{"From: alice@example.org\r\n", `From: "Alice" <alice@example.org>` + "\r\n", "From: alice@example.org\r\n"} {
		if !strings.Contains(q.data[i], want) {
			t.Errorf("reply %d lacks %q:\n%s", i, want, q.data[i])
		}
	}
}

// A reply whose record is in place but whose home could not be synced
// goes, and is remembered: not sent while its record holds, a sender
// would get no reply for the whole period.
func TestVacationRecordNotSynced(t *testing.T) {
	home := t.TempDir()
	q := &recordingQueue{}
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Outbound: q, Hostname: "mx.x.y"})
	f.syncDir = func(*os.Root) error { return syscall.EIO }
	mb := &directory.Mailbox{Home: home, Addresses: []string{"alice@example.org"}}
	for range 2 {
		m := &delivery.Message{ID: "m", From: "bob@z.z", Body: bytes.NewReader([]byte("To: alice@example.org\r\nSubject: hi\r\n\r\nb\r\n"))}
		p := &plan{mb: mb, vacation: &sieve.VacationReply{Reason: "away", Period: 24 * time.Hour}}
		f.vacation(context.Background(), m, &delivery.Recipient{Address: "alice@x.y"}, p)
	}
	if len(q.sent) != 1 || q.sent[0] != " -> bob@z.z" {
		t.Fatalf("queued %v, want one reply to bob", q.sent)
	}
}

// A :mime reason with an 8-bit body goes out in 7 bits, converted before
// it is signed: what was signed is what is queued, and no next hop
// converts it after the signature.
func TestVacationMIMESignedIn7Bits(t *testing.T) {
	home := t.TempDir()
	q := &recordingQueue{}
	var signed []byte
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Outbound: q, Hostname: "mx.x.y",
		Sign: func(msg []byte) ([]byte, error) {
			signed = slices.Clone(msg)
			return []byte("DKIM-Signature: test\r\n"), nil
		}})
	mb := &directory.Mailbox{Home: home, Addresses: []string{"alice@example.org"}}
	m := &delivery.Message{ID: "m", From: "bob@z.z", Body: bytes.NewReader([]byte("To: alice@example.org\r\nSubject: hi\r\n\r\nb\r\n"))}
	reason := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nAbsente jusqu'\xc3\xa0 lundi.\r\n"
	p := &plan{mb: mb, vacation: &sieve.VacationReply{Reason: reason, MIME: true, Period: 24 * time.Hour}}
	f.vacation(context.Background(), m, &delivery.Recipient{Address: "alice@x.y"}, p)
	if len(q.data) != 1 {
		t.Fatalf("%d replies queued", len(q.data))
	}
	if strings.ContainsFunc(q.data[0], func(r rune) bool { return r >= 0x80 }) || !strings.Contains(q.data[0], "jusqu'=C3=A0 lundi") {
		t.Errorf("reply not in 7 bits:\n%s", q.data[0])
	}
	if got, ok := strings.CutPrefix(q.data[0], "DKIM-Signature: test\r\n"); !ok || got != string(signed) {
		t.Errorf("queued is not what was signed:\nsigned:\n%s\nqueued:\n%s", signed, q.data[0])
	}
}

// Mail to a group alias (another entry, whose maildrops include the
// user's) brings no reply, as with Pigeonhole, unless configured: each
// member on vacation would answer. Mail to one of the user's own
// addresses does.
func TestVacationOriginalRecipient(t *testing.T) {
	for _, c := range []struct {
		name, to, origTo string
		useOrig          bool
		want             int
	}{
		{"group alias", "team@x.y", "team@x.y", false, 0},
		{"group alias, use_original_recipient", "team@x.y", "team@x.y", true, 1},
		{"the entry's own address", "alice@example.org", "alice@example.org", false, 1},
		{"the maildrop", "alice@x.y", "", false, 1},
	} {
		q := &recordingQueue{}
		f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Outbound: q, Hostname: "mx.x.y",
			VacationUseOriginalRecipient: c.useOrig})
		mb := &directory.Mailbox{Home: t.TempDir(), Addresses: []string{"alice@example.org"}}
		m := &delivery.Message{ID: "m", From: "bob@z.z", Body: strings.NewReader("To: " + c.to + "\r\nSubject: hi\r\n\r\nb\r\n")}
		p := &plan{mb: mb, vacation: &sieve.VacationReply{Reason: "away", Period: 24 * time.Hour}}
		f.vacation(context.Background(), m, &delivery.Recipient{Address: "alice@x.y", OrigTo: c.origTo}, p)
		if len(q.sent) != c.want {
			t.Errorf("%s: %d replies, want %d", c.name, len(q.sent), c.want)
		}
	}
}

// A copy that cannot be stored (over quota) queues no redirect, however
// often it is tried; once it is stored, the redirect goes once.
func TestRedirectAfterStore(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["copy"]; redirect :copy "x@far.example";`), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	q := &recordingQueue{}
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: q, Directory: fakeDir{"u@x.y": {Home: home}}})
	m := &delivery.Message{ID: "m2", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: q\r\n\r\nquota\r\n")), Arrived: time.Unix(1700000000, 0)}
	r := delivery.Recipient{Address: "u@x.y", Maildir: home + "/mailbox/", CopyKey: "Q2-0", Quota: maildirsize.Limits{Bytes: 10}}
	for attempt := range 3 {
		m.Retry = attempt > 0
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{r}); !errors.Is(errs[0], delivery.ErrOverQuota) {
			t.Fatalf("attempt %d: %v, want over quota", attempt, errs[0])
		}
	}
	if len(q.sent) != 0 {
		t.Fatalf("redirects queued for a copy never stored: %v", q.sent)
	}
	r.Quota = maildirsize.Limits{}
	for range 2 {
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{r}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	if len(q.sent) != 1 {
		t.Errorf("queued %v, want the redirect once", q.sent)
	}
}

// editheader's header is what the stored and the redirected copies carry.
func TestEditedHeaderCopies(t *testing.T) {
	src := `require ["editheader", "copy"]; addheader "X-Edited" "yes"; deleteheader "X-Drop"; redirect :copy "x@far.example";`
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home, 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(src), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	q := &recordingQueue{}
	f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: q, Directory: fakeDir{"u@x.y": {Home: home}}})
	m := &delivery.Message{ID: "m", From: "s@z.z", Header: []byte("Received: by test\r\n"),
		Body: bytes.NewReader([]byte("X-Drop: 1\r\nSubject: e\r\n\r\nedited body\r\n")), Arrived: time.Now()}
	if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	files, _ := os.ReadDir(home + "/mailbox/new")
	if len(files) != 1 {
		t.Fatalf("%d copies", len(files))
	}
	b, _ := os.ReadFile(home + "/mailbox/new/" + files[0].Name())
	for name, got := range map[string]string{"stored": string(b), "redirected": strings.Join(q.data, "")} {
		if !strings.Contains(got, "X-Edited: yes") || strings.Contains(got, "X-Drop") || !strings.Contains(got, "Received: by test") || !strings.Contains(got, "edited body") {
			t.Errorf("%s copy:\n%s", name, got)
		}
	}
}

// include and duplicate at delivery: the user's script includes a
// personal script (~/sieve/, through the home's root) and a global one,
// and a message whose Message-ID was delivered before goes to Dups; a
// symlinked personal include leading out of the home is not followed.
func TestIncludeAndDuplicate(t *testing.T) {
	base := t.TempDir()
	home, global := base+"/u", base+"/global"
	for _, d := range []string{home + "/sieve", global} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["include"];
include :personal "dups";
include :global "tag";
`), 0o644)
	os.WriteFile(home+"/sieve/dups.sieve", []byte(`require ["duplicate", "fileinto", "mailbox"];
if duplicate { fileinto :create "Dups"; stop; }
`), 0o644)
	os.WriteFile(global+"/tag.sieve", []byte(`require ["fileinto", "mailbox"];
if header :contains "subject" "tagged" { fileinto :create "Tagged"; }
`), 0o644)
	os.WriteFile(base+"/outside.sieve", []byte(`discard;`), 0o644)
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Global: global, Directory: fakeDir{"u@x.y": {Home: home}}})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(msgID, subject string) {
		t.Helper()
		m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(),
			Body: bytes.NewReader([]byte("Message-ID: <" + msgID + ">\r\nSubject: " + subject + "\r\n\r\nbody\r\n"))}
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
	}
	count := func(dir string) int {
		files, _ := os.ReadDir(home + "/mailbox/" + dir + "/new")
		return len(files)
	}
	deliver("a@x", "first")
	deliver("a@x", "first again")
	deliver("b@x", "tagged")
	if in, dups, tagged := count(""), count(".Dups"), count(".Tagged"); in != 1 || dups != 1 || tagged != 1 {
		t.Errorf("INBOX %d, Dups %d, Tagged %d; want 1 each", in, dups, tagged)
	}
	if fi, err := os.Stat(home + "/" + DuplicateDBName); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("duplicate ids' file: %v %v", fi, err)
	}

	// A personal include that is a symlink out of the home: the script
	// does not compile (the copy goes to INBOX), the outside script is
	// never run.
	os.Remove(home + "/sieve/dups.sieve")
	os.Symlink(base+"/outside.sieve", home+"/sieve/dups.sieve")
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["include"];
include :personal "dups";
`), 0o644)
	deliver("c@x", "after the link")
	if in := count(""); in != 2 {
		t.Errorf("INBOX %d after a script including a link out of the home, want 2", in)
	}
}

// A copy SMTP stores at DATA (Message.Single) is one file or nothing: a
// script that files into two folders or redirects stores nothing and
// says ErrNeedsQueue, so the sender is never answered 4xx after a file
// was written; a script with one store is delivered at once.
func TestSingleCopyOneFileOrNothing(t *testing.T) {
	for _, tc := range []struct {
		script    string
		needQueue bool
	}{
		{`require ["fileinto", "mailbox"]; fileinto :create "A";`, false},
		{`require ["fileinto", "mailbox"]; fileinto :create "A"; keep;`, true},
		{`redirect "x@far.example";`, true},
		{`require ["vacation"]; vacation "away";`, true},
		{`require "reject"; reject "no";`, false},
		{`require "enotify"; notify "mailto:pager@far.example";`, true},
		{`require ["enotify", "reject"]; notify "mailto:pager@far.example"; reject "no";`, false},
	} {
		t.Run(tc.script, func(t *testing.T) {
			base := t.TempDir()
			home := base + "/u"
			os.MkdirAll(home, 0o755)
			os.WriteFile(home+"/.dovecot.sieve", []byte(tc.script), 0o644)
			store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
			q := &recordingQueue{}
			f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: q, Directory: fakeDir{"u@x.y": {Home: home, Addresses: []string{"u@x.y"}}}})
			m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(), Single: true,
				Body: bytes.NewReader([]byte("To: u@x.y\r\nSubject: s\r\n\r\nbody\r\n"))}
			err := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}})[0]
			files, _ := filepath.Glob(home + "/mailbox/*/*")
			more, _ := filepath.Glob(home + "/mailbox/.*/*/*")
			files = append(files, more...)
			var stored []string
			for _, f := range files {
				if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && !strings.Contains(f, "/tmp/") && !strings.HasSuffix(f, "maildirfolder") {
					stored = append(stored, f)
				}
			}
			if got := errors.Is(err, delivery.ErrNeedsQueue); got != tc.needQueue {
				t.Fatalf("ErrNeedsQueue %v, want %v (err %v)", got, tc.needQueue, err)
			}
			if tc.needQueue && (len(stored) > 0 || len(q.sent) > 0) {
				t.Errorf("stored %v and queued %v before saying ErrNeedsQueue", stored, q.sent)
			}
		})
	}
}

// The cached script of a user stands while the scripts it includes do:
// an included script edited in place (same size, same inode: its mtime
// tells), deleted (the include fails, the copy is kept and the error
// logged) and uploaded again is what the next delivery runs, the main
// script untouched, as Pigeonhole's ext_include_binary_up_to_date.
func TestIncludeChangedRecompiled(t *testing.T) {
	base := t.TempDir()
	home := base + "/u"
	os.MkdirAll(home+"/sieve", 0o755)
	os.WriteFile(home+"/.dovecot.sieve", []byte(`require ["include"];
include :personal "sub";
`), 0o644)
	sub := home + "/sieve/sub.sieve"
	os.WriteFile(sub, []byte(`require ["fileinto", "mailbox"]; fileinto :create "A";`), 0o644)
	var log syncBuffer
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Directory: fakeDir{"u@x.y": {Home: home}}, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	deliver := func(to string) {
		t.Helper()
		m := &delivery.Message{ID: "m", From: "s@z.z", Arrived: time.Now(), Body: bytes.NewReader([]byte("Subject: s\r\n\r\nbody\r\n"))}
		if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		want[to]++
		for _, d := range []string{"", ".A", ".B"} {
			files, _ := os.ReadDir(home + "/mailbox/" + d + "/new")
			if len(files) != want[d] {
				t.Fatalf("after a delivery to %q: %q holds %d, want %d", to, d, len(files), want[d])
			}
		}
	}
	deliver(".A")
	deliver(".A") // from the cache

	// Edited in place: one letter, the same size and inode, a later mtime.
	fi0, _ := os.Stat(sub)
	os.WriteFile(sub, []byte(`require ["fileinto", "mailbox"]; fileinto :create "B";`), 0o644)
	os.Chtimes(sub, fi0.ModTime().Add(time.Second), fi0.ModTime().Add(time.Second))
	if fi, _ := os.Stat(sub); fi.Size() != fi0.Size() || !os.SameFile(fi, fi0) {
		t.Fatal("the edit changed the size or the inode")
	}
	deliver(".B")

	// Deleted: the include fails, the copy is kept.
	os.Remove(sub)
	deliver("")
	if !strings.Contains(log.String(), `does not exist`) {
		t.Errorf("the failed include is not logged:\n%s", log.String())
	}
	deliver("")

	// Uploaded again: used at once.
	os.WriteFile(sub, []byte(`require ["fileinto", "mailbox"]; fileinto :create "A";`), 0o644)
	deliver(".A")
}

// syncBuffer is a bytes.Buffer for a logger used by several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The reply is From the user's address the message came to, looked for
// as Pigeonhole does: To, then Cc, Bcc, Resent-*; in each, the
// recipient, the original recipient (when configured), the :addresses,
// then the entry's own addresses (TestVacationReplyOracle compares with
// sieve-test).
func TestVacationReplyFrom(t *testing.T) {
	for _, c := range []struct {
		name, header, addresses, want string
	}{
		{"to an :addresses", "To: sales@hosted-domain.com\r\n", "sales@hosted-domain.com", "From: sales@hosted-domain.com\r\n"},
		{"to the entry's alias", "To: Bob <BOB@example.org>\r\n", "", "From: bob@example.org\r\n"},
		{"To before Cc", "To: bob@example.org\r\nCc: alice@x.y\r\n", "", "From: bob@example.org\r\n"},
		{"the recipient first", "To: bob@example.org, sales@hosted-domain.com, alice@x.y\r\n", "sales@hosted-domain.com", "From: alice@x.y\r\n"},
		{":addresses before the entry's", "To: bob@example.org, sales@hosted-domain.com\r\n", "sales@hosted-domain.com", "From: sales@hosted-domain.com\r\n"},
		{"resent-cc", "To: x@z.z\r\nResent-Cc: sales@hosted-domain.com\r\n", "sales@hosted-domain.com", "From: sales@hosted-domain.com\r\n"},
	} {
		q := &recordingQueue{}
		f, _ := New(Options{Extensions: sieve.AllExtensions(), Store: &delivery.Store{}, Directory: fakeDir{}, Outbound: q, Hostname: "mx.x.y"})
		mb := &directory.Mailbox{Home: t.TempDir(), Addresses: []string{"bob@example.org"}}
		m := &delivery.Message{ID: "m", From: "carol@z.z", Body: strings.NewReader(c.header + "Subject: hi\r\n\r\nb\r\n")}
		v := &sieve.VacationReply{Reason: "away", Period: 24 * time.Hour}
		if c.addresses != "" {
			v.Addresses = []string{c.addresses}
		}
		f.vacation(context.Background(), m, &delivery.Recipient{Address: "alice@x.y"}, &plan{mb: mb, vacation: v})
		if len(q.data) != 1 || !strings.Contains(q.data[0], c.want) {
			t.Errorf("%s: replies %q, want one with %q", c.name, q.data, c.want)
		}
	}
}
