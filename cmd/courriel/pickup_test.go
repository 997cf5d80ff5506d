package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"courriel/delivery/maildrop"
	"courriel/monitor"
)

// pickupEnv is a maildrop and a pickup whose submissions, bounces, clock
// and log the test sees.
type pickupEnv struct {
	t     *testing.T
	dir   *maildrop.Dir
	p     *pickup
	clock time.Time
	log   syncBuffer
	// submitted: the files handed to the session, in order ("uid/name").
	submitted []string
	// answer is the submission's outcome for a file.
	answer  func(f *maildrop.File) error
	bounces []pickupBounce
}

type pickupBounce struct {
	sender, status, reason string
	rcpts                  []string
}

func newPickupEnv(t *testing.T) *pickupEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root: files of other uids; CI runs as root")
		}
		t.Skip("needs root: files of other uids")
	}
	queueDir := t.TempDir()
	d, _, err := maildrop.Setup(maildropDir(queueDir))
	must(t, err)
	t.Cleanup(func() { d.Close() })
	e := &pickupEnv{t: t, dir: d, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewTextHandler(&e.log, nil))
	e.p = newPickup(d, nil, log, 1<<20, 5*24*time.Hour)
	e.p.host = "mx.test"
	e.p.now = func() time.Time { return e.clock }
	e.p.submitFn = func(f *maildrop.File) error {
		e.submitted = append(e.submitted, strconv.Itoa(int(f.UID))+"/"+f.Name)
		if e.answer != nil {
			return e.answer(f)
		}
		return nil
	}
	e.p.bounce = func(_ context.Context, sender string, rcpts []string, status, reason string, _ []byte) error {
		e.bounces = append(e.bounces, pickupBounce{sender, status, reason, rcpts})
		return nil
	}
	return e
}

func (e *pickupEnv) logs() string { return e.log.String() }

// userDir makes maildrop/<uid> as that user's sendmail would.
func (e *pickupEnv) userDir(uid int) string {
	p := filepath.Join(e.dir.Path(), strconv.Itoa(uid))
	if err := os.Mkdir(p, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		e.t.Fatal(err)
	}
	must(e.t, os.Lchown(p, uid, uid))
	return p
}

// drop writes a file for uid as its sendmail would, its owner uid.
func (e *pickupEnv) drop(uid int, n int, env *maildrop.Envelope) string {
	sub := e.userDir(uid)
	name := strconv.Itoa(1700000000+n) + "000000000.1.0123456789abcdef"
	head := "courriel-maildrop 1\n"
	if env.FromSet {
		head += "from " + env.From + "\n"
	}
	for _, r := range env.Recipients {
		head += "rcpt " + r + "\n"
	}
	msg := "Subject: x\r\n\r\nb\r\n"
	p := filepath.Join(sub, name)
	must(e.t, os.WriteFile(p, []byte(head+"size "+strconv.Itoa(len(msg))+"\n\n"+msg), 0o600))
	must(e.t, os.Lchown(p, uid, uid))
	return name
}

func (e *pickupEnv) left(uid int) []string {
	ents, _ := os.ReadDir(filepath.Join(e.dir.Path(), strconv.Itoa(uid)))
	var out []string
	for _, x := range ents {
		out = append(out, x.Name())
	}
	return out
}

// TestPickupTakesUsersInTurn: one user's many files do not hold the
// others back: a look submits at most pickupPerUser of each, every user
// is served in it, and the next look comes at once only because files
// were taken.
func TestPickupTakesUsersInTurn(t *testing.T) {
	e := newPickupEnv(t)
	for i := range 30 {
		e.drop(4242, i, &maildrop.Envelope{Recipients: []string{"root"}})
	}
	other := e.drop(4343, 99, &maildrop.Envelope{Recipients: []string{"root"}})
	if wait := e.p.pass(context.Background()); wait != 0 {
		t.Errorf("wait %v with files left to take, want 0", wait)
	}
	if !slices.Contains(e.submitted, "4343/"+other) {
		t.Errorf("the other user's file waits behind 30: submitted %v", e.submitted)
	}
	if len(e.submitted) != pickupPerUser+1 {
		t.Errorf("submitted %d files in one look, want %d", len(e.submitted), pickupPerUser+1)
	}
	for range 5 {
		e.p.pass(context.Background())
	}
	if n := len(e.left(4242)); n != 0 {
		t.Errorf("%d files left", n)
	}
	if wait := e.p.pass(context.Background()); wait != pickupPoll {
		t.Errorf("wait %v with nothing to take, want %v", wait, pickupPoll)
	}
}

// TestPickupStaleTempBySeenTime: a temporary file is judged stale by
// when this server first saw it, not by its mtime (its owner's to set):
// one dated 2099 goes all the same, StaleAfter after it was first seen;
// many of them never make the pickup look without a pause.
func TestPickupStaleTempBySeenTime(t *testing.T) {
	e := newPickupEnv(t)
	sub := e.userDir(4242)
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50 {
		p := filepath.Join(sub, ".tmp-"+strconv.Itoa(1700000000+i)+"000000000.1.0123456789abcdef")
		must(t, os.WriteFile(p, nil, 0o600))
		must(t, os.Lchown(p, 4242, 4242))
		must(t, os.Chtimes(p, future, future))
	}
	if wait := e.p.pass(context.Background()); wait == 0 {
		t.Error("no pause with nothing taken")
	}
	if n := len(e.left(4242)); n != 50 {
		t.Fatalf("%d temporary files left at once, want 50", n)
	}
	e.clock = e.clock.Add(maildrop.StaleAfter + time.Minute)
	e.p.pass(context.Background())
	if left := e.left(4242); len(left) != 0 {
		t.Errorf("stale temporary files kept: %v", left)
	}
	if !strings.Contains(e.logs(), "removed a temporary file its writer left") {
		t.Errorf("log:\n%s", e.logs())
	}
}

// TestPickupBounces: a file refused for good, or not taken within the
// queue's lifetime, is bounced to its sender (the owner's login when the
// file names none) for each recipient, and removed; one that cannot be
// bounced (the null sender) is set aside with an ERROR naming it.
func TestPickupBounces(t *testing.T) {
	e := newPickupEnv(t)
	refused := e.drop(0, 1, &maildrop.Envelope{Recipients: []string{"a@remote.example", "b"}})
	null := e.drop(0, 2, &maildrop.Envelope{FromSet: true, Recipients: []string{"c@remote.example"}})
	e.answer = func(f *maildrop.File) error {
		return exitf(exUnavailable, "message refused: 554 5.7.1 no; mail NOT sent")
	}
	e.p.pass(context.Background())
	if len(e.bounces) != 1 || e.bounces[0].sender != "root@mx.test" || !slices.Equal(e.bounces[0].rcpts, []string{"a@remote.example", "b@mx.test"}) ||
		e.bounces[0].status != "5.7.1" || !strings.Contains(e.bounces[0].reason, "554 5.7.1 no") {
		t.Errorf("bounces %+v", e.bounces)
	}
	if left := e.left(0); len(left) != 0 {
		t.Errorf("left %v", left)
	}
	logs := e.logs()
	if !strings.Contains(logs, "maildrop: not delivered; bounced to the sender") || !strings.Contains(logs, refused) {
		t.Errorf("no bounce line for %s:\n%s", refused, logs)
	}
	if !strings.Contains(logs, "level=ERROR msg=\"maildrop: file set aside, not delivered nor bounced\" file="+null) {
		t.Errorf("no ERROR for %s:\n%s", null, logs)
	}

	// Refused for now until the lifetime has passed: bounced then
	// (5.4.7), never set aside silently.
	e.bounces = nil
	late := e.drop(4242, 3, &maildrop.Envelope{Recipients: []string{"d@remote.example"}})
	e.answer = func(f *maildrop.File) error {
		return exitf(exTempFail, "451 4.6.0 alias expansion limit; mail NOT sent")
	}
	e.p.pass(context.Background())
	if len(e.bounces) != 0 || len(e.left(4242)) != 1 {
		t.Fatalf("a temporary refusal: bounces %+v, left %v", e.bounces, e.left(4242))
	}
	e.clock = e.clock.Add(6 * 24 * time.Hour)
	e.p.pass(context.Background())
	if len(e.bounces) != 1 || e.bounces[0].status != "5.4.7" || e.bounces[0].sender != "4242@mx.test" || len(e.left(4242)) != 0 {
		t.Errorf("expired %s: bounces %+v, left %v", late, e.bounces, e.left(4242))
	}
}

// TestPickupUnreadableExpires: a file the server cannot read now (its
// owner holds a lease: EAGAIN) is tried again, and once the lifetime has
// passed since it was first seen, set aside with an ERROR rather than
// retried for ever.
func TestPickupUnreadableExpires(t *testing.T) {
	e := newPickupEnv(t)
	name := e.drop(0, 1, &maildrop.Envelope{Recipients: []string{"root"}})
	f, err := os.OpenFile(filepath.Join(e.dir.Path(), "0", name), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_WRLCK); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no lease here: %v", err)
		}
		t.Skipf("no lease here: %v", err)
	}
	e.p.pass(context.Background())
	if len(e.submitted) != 0 || len(e.left(0)) != 1 {
		t.Fatalf("submitted %v, left %v", e.submitted, e.left(0))
	}
	e.clock = e.clock.Add(6 * 24 * time.Hour)
	e.p.pass(context.Background())
	if len(e.left(0)) != 0 || !strings.Contains(e.logs(), "not readable within the queue's lifetime") {
		t.Errorf("left %v; log:\n%s", e.left(0), e.logs())
	}
}

// TestPickupPartial: a message the session took for some recipients
// only (it split the transaction) leaves a file for the others, of the
// same owner, and nothing for those served.
func TestPickupPartial(t *testing.T) {
	e := newPickupEnv(t)
	name := e.drop(4242, 1, &maildrop.Envelope{Recipients: []string{"a", "b", "c"}})
	written := time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(e.dir.Path(), "4242", name), written, written))
	e.answer = func(f *maildrop.File) error {
		if len(f.Envelope.Recipients) == 3 {
			return &partialError{exitError: &exitError{code: exTempFail, err: errors.New("451 later")}, sender: "4242@mx.test",
				data: []byte("Subject: x\r\n\r\nb\r\n"), rest: []string{"c@mx.test"}}
		}
		return nil
	}
	e.p.pass(context.Background())
	left := e.left(4242)
	if len(left) != 1 || left[0] == name {
		t.Fatalf("left %v", left)
	}
	u, err := e.dir.OpenUser(4242)
	must(t, err)
	defer u.Close()
	f, err := u.Read(left[0], 1<<20)
	if err != nil || f.UID != 4242 || !f.Written.Equal(written) || !slices.Equal(f.Envelope.Recipients, []string{"c@mx.test"}) || f.Envelope.From != "4242@mx.test" {
		t.Fatalf("the rest's file: %+v, %v", f, err)
	}
	e.clock = e.clock.Add(time.Hour)
	e.p.pass(context.Background())
	if len(e.left(4242)) != 0 {
		t.Errorf("left %v", e.left(4242))
	}
}

// TestPickupRemovesForeignEntries: an entry at the top that is no user's
// subdirectory (a user's "corrupt", another uid's name) is removed, one
// WARN per owner and look, and blocks nobody.
func TestPickupRemovesForeignEntries(t *testing.T) {
	e := newPickupEnv(t)
	for _, n := range []string{"corrupt", "4343", "x"} {
		p := filepath.Join(e.dir.Path(), n)
		must(t, os.Mkdir(p, 0o700))
		must(t, os.Lchown(p, 4242, 4242))
	}
	e.p.pass(context.Background())
	ents, _ := os.ReadDir(e.dir.Path())
	if len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
	if n := strings.Count(e.logs(), "removed entries that are no user's subdirectory"); n != 1 {
		t.Errorf("%d WARN lines, want 1:\n%s", n, e.logs())
	}
}

// TestMaildropBounceIsOne: a maildrop file refused for more recipients
// than the recipient limit is one bounce (one queue entry, one DSN), not
// one per part: the first recipients named, the others counted.
func TestMaildropBounceIsOne(t *testing.T) {
	a := &app{
		cfg: &Config{MyHostname: "mx.test", RecipientLimit: 2, Queue: QueueConfig{Dir: t.TempDir(), TLSPolicy: "none"}},
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), metrics: monitor.NewMetrics(),
	}
	q, err := a.openQueue()
	must(t, err)
	defer q.Close()
	a.queue = q
	rcpts := []string{"a@remote.example", "b@remote.example", "c@remote.example", "d@remote.example", "e@remote.example"}
	must(t, a.maildropBounce(context.Background(), "alice@mx.test", rcpts, "5.7.1", "554 5.7.1 no", []byte("Subject: x\r\n\r\nb\r\n")))
	l, err := q.List()
	must(t, err)
	if len(l) != 1 {
		t.Fatalf("%d queue entries, want one: %+v", len(l), l)
	}
	m, _, err := q.Show(l[0].ID)
	must(t, err)
	if len(m.Recipients) != 2 || m.Recipients[1].Addr != "b@remote.example" || m.Recipients[1].State != "failed" ||
		!strings.Contains(m.Recipients[1].Reply, "554 5.7.1 no (and to 3 other recipients, not listed)") {
		t.Errorf("the entry: %+v", m.Recipients)
	}
	if err := a.maildropBounce(context.Background(), "alice@mx.test", nil, "5.7.1", "no", nil); err == nil {
		t.Error("a bounce naming no recipient: no error")
	}
}

// TestPickupForeignDeepAndOnce: files from two owners at the top are
// removed with one WARN for the look; a foreign directory deeper than
// any recursion would go leaves the name it squats at once and is gone
// from the trash after the look, without an ERROR; an entry that cannot
// be looked at stops nobody and is logged once, not at each look.
func TestPickupForeignDeepAndOnce(t *testing.T) {
	e := newPickupEnv(t)
	for i, owner := range []int{4242, 4343} {
		p := filepath.Join(e.dir.Path(), strconv.Itoa(1700000000+i)+"000000000.1.0123456789abcdef")
		must(t, os.WriteFile(p, nil, 0o600))
		must(t, os.Lchown(p, owner, owner))
	}
	deep := filepath.Join(e.dir.Path(), "4343")
	must(t, os.Mkdir(deep, 0o700))
	must(t, os.Lchown(deep, 4242, 4242))
	p := deep
	for range 100 {
		p = filepath.Join(p, "d")
		must(t, os.Mkdir(p, 0o700))
		must(t, os.WriteFile(filepath.Join(p, "f"), nil, 0o600))
	}
	e.drop(4242, 1, &maildrop.Envelope{Recipients: []string{"a"}})
	e.p.pass(context.Background())
	if ents, _ := os.ReadDir(e.dir.Path()); len(ents) != 1 || ents[0].Name() != "4242" {
		t.Errorf("left at the top: %v", ents)
	}
	trash := filepath.Join(maildrop.CorruptPath(e.dir.Path()), maildrop.TrashName)
	if ents, err := os.ReadDir(trash); err != nil || len(ents) != 0 {
		t.Errorf("left in the trash: %d entries, %v", len(ents), err)
	}
	if n := strings.Count(e.logs(), "removed entries that are no user's subdirectory"); n != 1 || strings.Contains(e.logs(), "level=ERROR") {
		t.Errorf("%d WARN lines, want 1, and no ERROR:\n%s", n, e.logs())
	}
	if len(e.submitted) != 1 {
		t.Errorf("submitted %v", e.submitted)
	}

	e.p.listFn = func(max int) (maildrop.Top, error) {
		top, err := e.dir.List(max)
		top.Skipped = append(top.Skipped, maildrop.Entry{Name: "4444", Why: "cannot be looked at: permission denied"})
		return top, err
	}
	for range 3 {
		e.drop(4242, 2, &maildrop.Envelope{Recipients: []string{"a"}})
		e.p.pass(context.Background())
	}
	if n := strings.Count(e.logs(), "an entry at the top cannot be read"); n != 1 {
		t.Errorf("%d lines for the skipped entry in 3 looks, want 1:\n%s", n, e.logs())
	}
	if len(e.submitted) != 4 {
		t.Errorf("submitted %v: the skipped entry stopped the others", e.submitted)
	}
}
