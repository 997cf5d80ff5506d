package queue

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// fakeMailboxes is the directory as the queue's MailboxFinder (and
// HomeFinder) sees it: a maildrop missing from boxes is unknown
// (ErrNoMailbox, ErrNoHome); with down set, every lookup fails as an
// unreachable directory does.
type fakeMailboxes struct {
	mu        sync.Mutex
	boxes     map[string]Mailbox
	down      error
	calls     int // Mailbox lookups
	homeCalls int // Home lookups
}

func (f *fakeMailboxes) Home(_ context.Context, addr string) (string, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.homeCalls++
	if f.down != nil {
		return "", false, f.down
	}
	mb, ok := f.boxes[addr]
	if !ok {
		return "", false, ErrNoHome
	}
	return mb.Node, mb.Held, nil
}

// searches is every lookup, Mailbox and Home alike: each is a directory
// search once the cache is off or has expired.
func (f *fakeMailboxes) searches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls + f.homeCalls
}

func (f *fakeMailboxes) Mailbox(_ context.Context, addr string) (Mailbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down != nil {
		return Mailbox{}, f.down
	}
	mb, ok := f.boxes[addr]
	if !ok {
		return Mailbox{}, ErrNoMailbox
	}
	return mb, nil
}

func (f *fakeMailboxes) set(addr string, mb *Mailbox, down error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mb == nil {
		delete(f.boxes, addr)
	} else {
		f.boxes[addr] = *mb
	}
	f.down = down
}

func (f *fakeMailboxes) lookups() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func mailboxOf(r delivery.Recipient) *Mailbox {
	return &Mailbox{Maildir: r.Maildir, UID: r.UID, GID: r.GID}
}

// reresolveSetup is a running queue with a real store and a fake
// directory, and a message accepted for alice and bob whose bob copy
// failed at once (bobFirst: the target bob's copy was accepted with).
// fail, when set, says whether a later store call (2, 3…) fails bob's
// copy again, temporarily.
type reresolveSetup struct {
	h     *harness
	ls    *localStore
	mbs   *fakeMailboxes
	b     *bounces
	clock *fakeClock
	id    string
	// seen are the recipients each store call got (index: call-1).
	mu   sync.Mutex
	seen [][]delivery.Recipient
}

func newReresolve(t *testing.T, bobFirst func(*localStore) delivery.Recipient, fail func(call int) bool, opts ...func(*Options, *fakeMailboxes)) *reresolveSetup {
	t.Helper()
	s := &reresolveSetup{ls: newLocalStore(t), clock: newClock(), b: newBounces()}
	s.mbs = &fakeMailboxes{boxes: map[string]Mailbox{}}
	s.mbs.set("alice@local.test", mailboxOf(s.ls.rcpt("alice")), nil)
	s.mbs.set("bob@local.test", mailboxOf(s.ls.rcpt("bob")), nil)
	o := baseOptions(t, t.TempDir(), s.clock)
	o.Local, o.Mailboxes, o.Bounce = s.ls, s.mbs, s.b.fn
	for _, opt := range opts {
		opt(&o, s.mbs)
	}
	s.ls.after = func(call int, rcpts []delivery.Recipient, errs []error) {
		s.mu.Lock()
		s.seen = append(s.seen, append([]delivery.Recipient(nil), rcpts...))
		s.mu.Unlock()
		for i, r := range rcpts {
			if r.Address == "bob@local.test" && errs[i] == nil && (call == 1 || fail != nil && fail(call)) {
				// Stored, but reported failed: the retry must find it.
				errs[i] = &delivery.Error{Temporary: true, Reason: "simulated"}
			}
		}
	}
	s.h = start(t, o)
	id, errs := s.h.accept(nil, []delivery.Recipient{s.ls.rcpt("alice"), bobFirst(s.ls)}, []byte(testMessage))
	var le *LocalError
	if errs[0] != nil || !errors.As(errs[1], &le) || le.Permanent {
		t.Fatalf("first attempt: %v, want alice stored and bob deferred", errs)
	}
	if n := s.mbs.lookups(); n != 0 {
		t.Fatalf("the first attempt looked the maildrops up %d times: the RCPT just did", n)
	}
	s.id = id
	return s
}

// retry makes bob's copy due and waits for the job that tries it.
func (s *reresolveSetup) retry(t *testing.T) {
	t.Helper()
	s.clock.Advance(2 * time.Hour)
	for len(s.h.done) > 0 {
		<-s.h.done
	}
	if err := s.h.q.Flush(); err != nil {
		t.Fatal(err)
	}
	s.h.waitJob()
}

func (s *reresolveSetup) bob(t *testing.T) Recipient {
	t.Helper()
	m, _, err := s.h.q.Show(s.id)
	if err != nil {
		t.Fatalf("show %s: %v", s.id, err)
	}
	for _, r := range m.Recipients {
		if r.Addr == "bob@local.test" {
			return r
		}
	}
	t.Fatal("bob is not in the envelope")
	return Recipient{}
}

func (s *reresolveSetup) storeCalls() [][]delivery.Recipient {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]delivery.Recipient(nil), s.seen...)
}

const movedLog = "local copy follows its mailbox"

// TestRetryFollowsMovedMailbox is QA's case: a copy queued because its
// maildir was outside the allowed base is stored, once the admin fixed
// the entry, in the maildir the directory names now; the change is
// logged once (old → new) and recorded in the envelope, though the new
// maildir too fails once.
func TestRetryFollowsMovedMailbox(t *testing.T) {
	t.Parallel()
	ls0 := newLocalStore(t) // only its path: somewhere outside the store's base
	outside := ls0.rcpt("bob")
	s := newReresolve(t, func(*localStore) delivery.Recipient { return outside }, func(call int) bool { return call == 2 })
	if got := s.bob(t); got.State != StatePending || !strings.Contains(got.Reply, "outside the allowed base") {
		t.Fatalf("bob after the first attempt: %+v", got)
	}
	fixed := s.ls.rcpt("bob")

	s.retry(t) // the new maildir, failing once more
	got := s.bob(t)
	if got.State != StatePending || got.Local.Maildir != fixed.Maildir || got.Local.OrigTo != "team@local.test" {
		t.Fatalf("bob after the first retry: %+v %+v, want pending with the new maildir recorded", got, got.Local)
	}
	s.retry(t)
	s.h.waitUntil("the queue is empty", s.h.empty)
	s.ls.oneCopy(t, "bob", []byte(testMessage))
	s.ls.oneCopy(t, "alice", []byte(testMessage))
	if files := ls0.copies(t, "bob"); len(files) != 0 {
		t.Errorf("the old maildir got %q", files)
	}
	calls := s.storeCalls()
	if len(calls) != 3 {
		t.Fatalf("%d store calls, want 3", len(calls))
	}
	for _, c := range calls[1:] {
		if len(c) != 1 || c[0].Maildir != fixed.Maildir || c[0].OrigTo != "team@local.test" {
			t.Errorf("a retry stored %+v, want bob into %s", c, fixed.Maildir)
		}
	}
	logs := s.h.logs.String()
	if n := strings.Count(logs, movedLog); n != 1 {
		t.Errorf("the change is logged %d times, want once:\n%s", n, logs)
	}
	if !strings.Contains(logs, outside.Maildir+" → "+fixed.Maildir) {
		t.Errorf("the log does not say old → new:\n%s", logs)
	}
	if s.b.count() != 0 {
		t.Errorf("%d DSNs, want none", s.b.count())
	}
}

// TestRetryUnknownUserBounces: a user removed from the directory while
// the copy waited is not stored anywhere: the copy bounces 5.1.1 "unknown
// user", as Postfix's virtual(8), with a DSN.
func TestRetryUnknownUserBounces(t *testing.T) {
	t.Parallel()
	s := newReresolve(t, func(ls *localStore) delivery.Recipient { return ls.rcpt("bob") }, nil)
	s.mbs.set("bob@local.test", nil, nil)
	s.retry(t)
	r := parseDSN(t, recv(t, s.b.got, "the DSN"))
	s.h.waitUntil("the queue is empty", s.h.empty)
	if len(r.rcpts) != 1 {
		t.Fatalf("%d recipients in the DSN, want bob", len(r.rcpts))
	}
	for k, v := range map[string]string{"Final-Recipient": "rfc822; bob@local.test", "Action": "failed", "Status": "5.1.1",
		"Diagnostic-Code": `X-Courriel; unknown user: "bob@local.test"`} {
		if got := r.rcpts[0].Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if n := len(s.storeCalls()); n != 1 {
		t.Errorf("%d store calls, want only the first attempt", n)
	}
	if logs := s.h.logs.String(); !strings.Contains(logs, `dsn=5.1.1 status="bounced (unknown user: \"bob@local.test\")"`) {
		t.Errorf("no bounce line:\n%s", logs)
	}
}

// TestRetryDirectoryDown: while the directory cannot answer, the copy
// waits, never bounces and is not stored at the recorded maildir; once it
// answers again, the copy is stored.
func TestRetryDirectoryDown(t *testing.T) {
	t.Parallel()
	s := newReresolve(t, func(ls *localStore) delivery.Recipient { return ls.rcpt("bob") }, nil)
	ls := s.ls
	s.mbs.set("bob@local.test", mailboxOf(ls.rcpt("bob")), errors.New("directory unavailable: timeout"))
	for range 3 {
		s.retry(t)
		got := s.bob(t)
		if got.State != StatePending || got.Status != "4.4.3" || !strings.Contains(got.Reply, "directory unavailable: timeout") {
			t.Fatalf("bob during the outage: %+v", got)
		}
	}
	if n := len(s.storeCalls()); n != 1 {
		t.Errorf("%d store calls during the outage, want only the first attempt", n)
	}
	if files := ls.copies(t, "bob"); len(files) != 1 { // the first attempt's, reported failed
		t.Fatalf("bob has %d copies", len(files))
	}
	if s.b.count() != 0 {
		t.Fatalf("%d DSNs during the outage, want none", s.b.count())
	}
	s.mbs.set("bob@local.test", mailboxOf(ls.rcpt("bob")), nil)
	s.retry(t)
	s.h.waitUntil("the queue is empty", s.h.empty)
	ls.oneCopy(t, "bob", []byte(testMessage)) // found by the retry, not stored twice
	if s.b.count() != 0 {
		t.Errorf("%d DSNs, want none", s.b.count())
	}
	if strings.Contains(s.h.logs.String(), movedLog) {
		t.Error("an unchanged mailbox was logged as changed")
	}
}

// TestRetryUnchangedMailbox: a copy whose entry did not move is stored
// where it was headed, after one lookup, with the quota the directory
// gives now, and nothing is logged as changed.
func TestRetryUnchangedMailbox(t *testing.T) {
	t.Parallel()
	s := newReresolve(t, func(ls *localStore) delivery.Recipient { return ls.rcpt("bob") }, nil)
	ls := s.ls
	mb := mailboxOf(ls.rcpt("bob"))
	mb.QuotaBytes, mb.QuotaMessages = 1<<20, 100
	s.mbs.set("bob@local.test", mb, nil)
	before := s.mbs.lookups()
	s.retry(t)
	s.h.waitUntil("the queue is empty", s.h.empty)
	ls.oneCopy(t, "bob", []byte(testMessage))
	if n := s.mbs.lookups() - before; n != 1 {
		t.Errorf("%d lookups for one retry, want 1", n)
	}
	calls := s.storeCalls()
	if len(calls) != 2 || len(calls[1]) != 1 {
		t.Fatalf("store calls %+v", calls)
	}
	if r := calls[1][0]; r.Maildir != ls.rcpt("bob").Maildir || r.Quota.Bytes != 1<<20 || r.Quota.Messages != 100 || r.OrigTo != "team@local.test" {
		t.Errorf("the retry stored %+v", r)
	}
	if strings.Contains(s.h.logs.String(), movedLog) {
		t.Error("an unchanged mailbox was logged as changed")
	}
}

// TestRetryOneLookupWithHomes: on a cluster node (Options.Homes set) a
// retry resolves the maildrop and places the copy from one directory
// answer, not one lookup for each; the placement follows that answer (a
// held user's copy waits without a second question).
func TestRetryOneLookupWithHomes(t *testing.T) {
	t.Parallel()
	withHomes := func(o *Options, mbs *fakeMailboxes) { o.Homes = mbs }
	s := newReresolve(t, func(ls *localStore) delivery.Recipient { return ls.rcpt("bob") }, nil, withHomes)
	mb := mailboxOf(s.ls.rcpt("bob"))
	mb.Held = true
	s.mbs.set("bob@local.test", mb, nil)
	before := s.mbs.searches()
	s.retry(t)
	if got := s.bob(t); got.State != StatePending || got.Status != "4.2.0" {
		t.Fatalf("bob, held, after a retry: %+v", got)
	}
	if n := s.mbs.searches() - before; n != 1 {
		t.Errorf("%d directory lookups for one retry, want 1", n)
	}
	mb.Held = false
	s.mbs.set("bob@local.test", mb, nil)
	before = s.mbs.searches()
	s.retry(t)
	s.h.waitUntil("the queue is empty", s.h.empty)
	s.ls.oneCopy(t, "bob", []byte(testMessage))
	if n := s.mbs.searches() - before; n != 1 {
		t.Errorf("%d directory lookups for the retry that stored the copy, want 1", n)
	}
}

// TestQueueDropsEntry: the directory entry a recipient carries from its
// RCPT (delivery.Recipient.Entry) never reaches the store through the
// queue, not even at Accept's first attempt: a queued copy's deliverer
// (the Sieve filter) looks the entry up afresh, so one stale from a RCPT
// long past is never used.
func TestQueueDropsEntry(t *testing.T) {
	t.Parallel()
	s := newReresolve(t, func(ls *localStore) delivery.Recipient {
		r := ls.rcpt("bob")
		r.Entry = &delivery.Entry{Home: "/stale/bob", Addresses: []string{"bob@old.test"}}
		return r
	}, nil)
	s.retry(t)
	s.h.waitUntil("the queue is empty", s.h.empty)
	calls := s.storeCalls()
	if len(calls) != 2 {
		t.Fatalf("%d store calls, want the first attempt and a retry", len(calls))
	}
	for i, c := range calls {
		for _, r := range c {
			if r.Entry != nil {
				t.Errorf("store call %d got %s with the entry %+v from its RCPT", i+1, r.Address, r.Entry)
			}
		}
	}
}

// TestRetryEnvelopeFromBefore: an envelope written before re-resolution
// (the same format: a local target with its maildir, uid and gid) is
// loaded after a restart and its copy goes where the directory says now.
func TestRetryEnvelopeFromBefore(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	clock := newClock()
	dir := t.TempDir()
	id := newID(clock.Now())
	env := `{"v":1,"id":"` + id + `","from":"sender@local.test","created":"` + clock.Now().UTC().Format(time.RFC3339Nano) + `","size":` +
		strconv.Itoa(len(testMessage)) + `,"rcpts":[{"addr":"bob@local.test","state":"pending","attempts":1,` +
		`"next_attempt":"` + clock.Now().UTC().Format(time.RFC3339Nano) + `","reply":"maildir path is outside the allowed base","status":"4.3.5",` +
		`"local":{"orig_to":"team@local.test","maildir":"/elsewhere/bob/Maildir/","uid":` + strconv.Itoa(os.Getuid()) + `,"gid":` + strconv.Itoa(os.Getgid()) + `}}]}`
	if err := os.WriteFile(filepath.Join(dir, id+".eml"), []byte(testMessage), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, id+".env"), []byte(env), 0o600); err != nil {
		t.Fatal(err)
	}
	mbs := &fakeMailboxes{boxes: map[string]Mailbox{"bob@local.test": *mailboxOf(ls.rcpt("bob"))}}
	o := baseOptions(t, dir, clock)
	o.Local, o.Mailboxes = ls, mbs
	h := start(t, o)
	h.waitUntil("the queue is empty", h.empty)
	ls.oneCopy(t, "bob", []byte(testMessage))
	if !strings.Contains(h.logs.String(), "/elsewhere/bob/Maildir/ → "+ls.rcpt("bob").Maildir) {
		t.Errorf("no old → new line:\n%s", h.logs.String())
	}
}
