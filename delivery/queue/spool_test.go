package queue

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

func TestEnqueueIsDurableAndValidated(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	o.MaxMessageBytes = 1000
	o.MaxRecipients = 3
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx := context.Background()

	id, err := q.Enqueue(ctx, "alice@local.test", []string{"bob@remote.test", "bob@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseID(id); err != nil {
		t.Fatalf("Enqueue returned a bad id %q", id)
	}
	names := dirNames(t, dir)
	if !names[id+".eml"] || !names[id+".env"] {
		t.Errorf("spool = %v, want the message's two files", names)
	}
	for n := range names {
		if strings.HasPrefix(n, tmpPrefix) {
			t.Errorf("temporary file %s left after Enqueue", n)
		}
	}
	m, data, err := q.Show(id)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != testMessage || len(m.Recipients) != 1 || m.Recipients[0].State != StatePending {
		t.Errorf("stored %+v / %q; want one pending recipient (duplicates merged) and the data", m, data)
	}

	for _, tc := range []struct {
		name  string
		from  string
		rcpts []string
		data  string
		want  error
	}{
		{"too large", "a@b.test", []string{"c@d.test"}, strings.Repeat("x", 1001+traceAllowance), ErrTooLarge},
		{"too many recipients", "a@b.test", []string{"1@d.test", "2@d.test", "3@d.test", "4@d.test"}, "x", ErrTooManyRecipients},
		{"no recipients", "a@b.test", nil, "x", ErrNoRecipients},
		{"command injection in a recipient", "a@b.test", []string{"c@d.test>\r\nRCPT TO:<e@f.test"}, "x", ErrInvalidAddress},
		{"NUL in the sender", "a\x00@b.test", []string{"c@d.test"}, "x", ErrInvalidAddress},
		{"no domain", "a@b.test", []string{"c@"}, "x", ErrInvalidAddress},
		{"no at sign", "a@b.test", []string{"cd.test"}, "x", ErrInvalidAddress},
		{"bad domain", "a@b.test", []string{"c@d..test"}, "x", ErrInvalidAddress},
		{"bad literal", "a@b.test", []string{"c@[999.1.1.1]"}, "x", ErrInvalidAddress},
		// No local-part limit (smtp takes long ones, as Postfix): the
		// address is bounded by RFC 5321's 256-octet path.
		{"address too long", "a@b.test", []string{strings.Repeat("l", 248) + "@d.test"}, "x", ErrInvalidAddress},
		{"sender too long", strings.Repeat("s", 248) + "@b.test", []string{"c@d.test"}, "x", ErrInvalidAddress},
	} {
		_, err := q.Enqueue(ctx, tc.from, tc.rcpts, []byte(tc.data))
		if !errors.Is(err, tc.want) || !IsPermanent(err) {
			t.Errorf("%s: err = %v, want %v (permanent)", tc.name, err, tc.want)
		}
	}
	if l, _ := q.List(); len(l) != 1 {
		t.Errorf("%d messages after rejected enqueues, want 1", len(l))
	}
	// What smtp accepts, the queue takes: a local part over 64 octets (an
	// SRS0 or VERP sender, a long recipient elsewhere), up to 254 octets.
	long := strings.Repeat("s", 247) + "@b.test"
	if _, err := q.Enqueue(ctx, long, []string{strings.Repeat("l", 70) + "@d.test"}, []byte("x")); err != nil {
		t.Errorf("long local parts: %v", err)
	}
}

func dirNames(t *testing.T, dir string) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func TestRestartNeitherLosesNorResends(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	refuse.Store(true)
	good := newSink(t, sinkOptions{})
	flaky := newSink(t, sinkOptions{rcpt: func(int, string) error {
		if refuse.Load() {
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "not now")
		}
		return nil
	}})
	dir := t.TempDir()
	clock := newClock()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"good.test": good.addr, "flaky.test": flaky.addr}
	o.Dialer = nil

	h := start(t, o)
	id := h.enqueue("alice@local.test", "a@good.test", "b@flaky.test")
	h.waitJob()
	h.close()

	refuse.Store(false)
	clock.Advance(time.Hour)
	h2 := start(t, o)
	h2.waitUntil("the queue is empty", h2.empty)
	if _, n := good.counts(); n != 1 {
		t.Errorf("good.test got %d transactions, want 1: a restart resent a delivered copy", n)
	}
	if _, n := flaky.counts(); n != 1 {
		t.Errorf("flaky.test got %d transactions, want 1", n)
	}
	if _, _, err := h2.q.Show(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show after delivery: %v, want ErrNotFound", err)
	}
}

func TestShutdownDuringDeliveryRetriesLater(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	entered := make(chan struct{}, 1)
	s := newSink(t, sinkOptions{data: func(n int) error {
		if n == 0 {
			entered <- struct{}{}
			<-block // hold the final reply until the client hangs up
			return smtpErr(451, gosmtp.EnhancedCode{4, 0, 0}, "too late")
		}
		return nil
	}})
	t.Cleanup(func() { close(block) })
	dir := t.TempDir()
	clock := newClock()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@remote.test")
	recv(t, entered, "the DATA")
	h.close() // cancels the delivery in flight, its final dot sent
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := q.Show(id)
	q.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The server may have the message: an attempt, deferred (so that a
	// node copy's retry says XRETRY), retried after its backoff.
	if r := m.Recipients[0]; r.State != StatePending || r.Attempts != 1 || !strings.Contains(r.Reply, "may have been delivered") {
		t.Errorf("after an interrupted delivery: %+v, want pending after one attempt of unknown outcome", r)
	}
	clock.Advance(time.Hour)
	h2 := start(t, o)
	h2.waitUntil("the queue is empty", h2.empty)
	if _, n := s.counts(); n != 1 {
		t.Errorf("%d transactions recorded, want 1", n)
	}
}

func TestCrashRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newClock()
	o := baseOptions(t, dir, clock)
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good, err := q.Enqueue(ctx, "alice@local.test", []string{"bob@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	half, _ := q.Enqueue(ctx, "alice@local.test", []string{"carol@remote.test"}, []byte(testMessage))
	noData, _ := q.Enqueue(ctx, "alice@local.test", []string{"dan@remote.test"}, []byte(testMessage))
	q.Close()

	// What a SIGKILL can leave: temporary files, data whose envelope was
	// never renamed in, a torn envelope, an envelope whose data is gone;
	// and what the admin may drop in: files that are not ours.
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	orphan := newID(clock.Now())
	write(tmpPrefix+orphan+".eml-abc", "partial")
	write(tmpPrefix+good+".env-def", `{"v":1,"id":"`)
	write(orphan+".eml", testMessage)
	env, _ := os.ReadFile(filepath.Join(dir, half+".env"))
	write(half+".env", string(env[:len(env)/2]))
	os.Remove(filepath.Join(dir, noData+".eml"))
	write("README", "not a queue file")

	s := newSink(t, sinkOptions{})
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	names := dirNames(t, dir)
	// Only the leftovers planted above: the runner, already started, may
	// be writing temporary files of its own.
	for _, n := range []string{tmpPrefix + orphan + ".eml-abc", tmpPrefix + good + ".env-def"} {
		if names[n] {
			t.Errorf("temporary file %s survived Open", n)
		}
	}
	if names[orphan+".eml"] {
		t.Error("data without envelope survived Open")
	}
	if !names["README"] {
		t.Error("Open removed a file that is not the queue's")
	}
	corrupt := dirNames(t, filepath.Join(dir, corruptDir))
	if !corrupt[half+".env"] || !corrupt[half+".eml"] || !corrupt[noData+".env"] {
		t.Errorf("corrupt/ = %v, want the torn envelope, its data, and the envelope without data", corrupt)
	}
	got := recv(t, s.delivs, "the surviving message")
	h.waitUntil("the queue is empty", h.empty)
	if got.rcpts[0] != "bob@remote.test" {
		t.Errorf("delivered %v, want bob's message", got.rcpts)
	}
	if _, n := s.counts(); n != 1 {
		t.Errorf("%d deliveries, want only the intact message", n)
	}
}

func TestListShowDeleteFlushFromAnotherProcess(t *testing.T) {
	t.Parallel()
	var accept atomic.Bool
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		if !accept.Load() {
			return smtpErr(451, gosmtp.EnhancedCode{4, 3, 0}, "not yet")
		}
		return nil
	}})
	dir := t.TempDir()
	clock := newClock()
	o := baseOptions(t, dir, clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	keep := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	clock.Advance(time.Second)
	drop := h.enqueue("alice@local.test", "carol@remote.test")
	h.waitJob()

	// `courriel queue ...` opens the same spool while the server runs.
	cli := openClient(t, o)
	if err := cli.Run(context.Background()); !errors.Is(err, ErrNotOwner) {
		t.Errorf("Run in a second process: %v, want ErrNotOwner", err)
	}
	list, err := cli.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != keep || list[1].ID != drop {
		t.Fatalf("List = %+v, want %s then %s", list, keep, drop)
	}
	if r := list[0].Recipients; len(r) != 1 || r[0].Addr != "bob@remote.test" || r[0].Reply != "451 4.3.0 not yet" || list[0].NextAttempt.IsZero() {
		t.Errorf("summary = %+v", list[0])
	}
	m, data, err := cli.Show(strings.ToLower(keep))
	if err != nil || m.ID != keep || string(data) != testMessage {
		t.Errorf("Show = %+v, %q, %v", m, data, err)
	}
	if err := cli.Delete(drop); err != nil {
		t.Fatal(err)
	}
	if err := cli.Delete(drop); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	accept.Store(true)
	if err := cli.Flush(); err != nil {
		t.Fatal(err)
	}
	// The runner finds the request within PollInterval, without any
	// clock change: Flush makes everything due.
	got := recv(t, s.delivs, "the flushed delivery")
	h.waitUntil("the queue is empty", h.empty)
	if got.rcpts[0] != "bob@remote.test" {
		t.Errorf("delivered %v; the deleted message must not be sent", got.rcpts)
	}
	if _, n := s.counts(); n != 1 {
		t.Errorf("%d transactions, want 1", n)
	}
	// The spool empties just before the job ends: wait for its end.
	h.waitUntil("the runner indexes no message", func() bool {
		h.q.mu.Lock()
		defer h.q.mu.Unlock()
		return len(h.q.entries) == 0
	})
}

func TestFlushInProcess(t *testing.T) {
	t.Parallel()
	var accept atomic.Bool
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		if !accept.Load() {
			return smtpErr(421, gosmtp.EnhancedCode{4, 4, 2}, "busy")
		}
		return nil
	}})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	accept.Store(true)
	if err := h.q.Flush(); err != nil {
		t.Fatal(err)
	}
	recv(t, s.delivs, "the flushed delivery")
	h.waitUntil("the queue is empty", h.empty)
}

func TestHostileIDs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q, err := Open(baseOptions(t, dir, newClock()))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// A file an attacker would like to reach.
	os.WriteFile(filepath.Join(dir, "..", "secret.env"), []byte("x"), 0o600)
	for _, id := range []string{
		"", ".", "..", "../secret", "../../etc/passwd", "/etc/passwd",
		strings.Repeat("A", idLen-3) + "/..", strings.Repeat("A", idLen-1) + "\x00",
		strings.Repeat("A", idLen-1) + "G", strings.Repeat("A", idLen+1), "corrupt",
		strings.Repeat(".", idLen), strings.Repeat("A", idLen-4) + ".env",
	} {
		if _, _, err := q.Show(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Show(%q) = %v, want ErrInvalidID", id, err)
		}
		if err := q.Delete(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	absent := strings.Repeat("0", idLen)
	if _, _, err := q.Show(absent); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show(absent) = %v, want ErrNotFound", err)
	}
	if err := q.Delete(absent); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(absent) = %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "secret.env")); err != nil {
		t.Errorf("a file outside the spool was touched: %v", err)
	}
}

func TestEnvelopeValidation(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("A", idLen)
	for _, tc := range []struct {
		name string
		env  string
	}{
		{"not JSON", `{"v":1`},
		{"wrong version", `{"v":2,"id":"` + id + `","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@b.test","state":"pending"}]}`},
		{"other id", `{"v":1,"id":"` + strings.Repeat("B", idLen) + `","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@b.test","state":"pending"}]}`},
		{"no recipients", `{"v":1,"id":"` + id + `","created":"2025-01-01T00:00:00Z","rcpts":[]}`},
		{"bad recipient", `{"v":1,"id":"` + id + `","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@b.test\r\nDATA","state":"pending"}]}`},
		{"bad state", `{"v":1,"id":"` + id + `","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@b.test","state":"sent?"}]}`},
		{"bad sender", `{"v":1,"id":"` + id + `","from":"x>","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@b.test","state":"pending"}]}`},
		{"no creation time", `{"v":1,"id":"` + id + `","rcpts":[{"addr":"a@b.test","state":"pending"}]}`},
	} {
		if _, err := decodeEnvelope(id, []byte(tc.env), 10); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: %v, want errCorrupt", tc.name, err)
		}
	}
	ok := `{"v":1,"id":"` + id + `","from":"","created":"2025-01-01T00:00:00Z","rcpts":[{"addr":"a@[192.0.2.1]","state":"pending"}]}`
	if _, err := decodeEnvelope(id, []byte(ok), 10); err != nil {
		t.Errorf("valid envelope rejected: %v", err)
	}
}

func TestOpenOptionsValidation(t *testing.T) {
	t.Parallel()
	base := baseOptions(t, t.TempDir(), newClock())
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no dir", func(o *Options) { o.Dir = "" }},
		{"no hostname", func(o *Options) { o.Hostname = "" }},
		{"bad hostname", func(o *Options) { o.Hostname = "a b" }},
		{"bad policy", func(o *Options) { o.TLSPolicy = "sometimes" }},
		{"bad route host", func(o *Options) { o.Routes = map[string]string{"x.test": "mx!.x.test:25"} }},
		{"bad relayhost", func(o *Options) { o.Relayhost = &Relayhost{Addr: "smtp.x.test:"} }},
	} {
		o := base
		tc.mod(&o)
		if q, err := Open(o); err == nil {
			q.Close()
			t.Errorf("%s: Open succeeded", tc.name)
		}
	}
}

func TestConcurrentRemovesAreEachAnswered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sp, err := openSpool(dir, 10, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	now := time.Now()
	const n = 60
	var ids []string
	for i := range n {
		m := &Message{Version: envelopeVersion, ID: newID(now.Add(time.Duration(i))), From: "a@local.test", Created: now,
			Recipients: []Recipient{{Addr: "b@remote.test", State: StatePending}}}
		if err := sp.create(m, strings.NewReader(testMessage), false); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	// Every message removed twice at once: exactly one of the two
	// removes it, the other is told it is gone.
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range 2 * n {
		wg.Go(func() { errs[i] = sp.remove(ids[i%n]) })
	}
	wg.Wait()
	for i, id := range ids {
		a, b := errs[i], errs[i+n]
		if (a == nil) == (b == nil) || (a != nil && !errors.Is(a, ErrNotFound)) || (b != nil && !errors.Is(b, ErrNotFound)) {
			t.Errorf("%s: removes returned %v and %v, want one nil and one ErrNotFound", id, a, b)
		}
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		if strings.HasSuffix(e.Name(), extData) || strings.HasSuffix(e.Name(), extEnvelope) {
			t.Errorf("%s left in the spool", e.Name())
		}
	}
}

// A crash between a message's last record (every recipient delivered or
// failed and told) and its removal leaves a finished envelope: after a
// restart it is removed at once, and nothing is sent again. Before, it
// stayed in the spool for good, listed and counted.
func TestFinishedMessageRemovedAfterRestart(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	id, err := q.Enqueue(context.Background(), "alice@local.test", []string{"bob@remote.test", "carol@remote.test"}, []byte(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	// The record the crash left: one delivered, one failed with its DSN sent.
	m, err := q.sp.readEnvelope(id)
	if err != nil {
		t.Fatal(err)
	}
	m.Recipients[0].State = StateDelivered
	m.Recipients[1].State, m.Recipients[1].Notified = StateFailed, true
	if err := q.sp.update(m); err != nil {
		t.Fatal(err)
	}
	q.Close()

	h := start(t, o)
	// The envelope goes first and the data file just after it, without
	// the lock: wait for both.
	gone := func(ext string) bool {
		_, err := os.Stat(h.q.sp.path(id, ext))
		return errors.Is(err, fs.ErrNotExist)
	}
	h.waitUntil("the finished message left the spool", func() bool {
		return h.empty() && gone(extEnvelope) && gone(extData)
	})
	if _, _, err := h.q.Show(id); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show: %v, want ErrNotFound", err)
	}
	if _, n := s.counts(); n != 0 {
		t.Errorf("%d transactions: a finished message was sent again", n)
	}
}
