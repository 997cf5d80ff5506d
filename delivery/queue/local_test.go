package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
)

// localStore is a real delivery store under a temporary base, with a hook
// that may replace a copy's outcome after the store has run.
type localStore struct {
	base  string
	store *delivery.Store
	mu    sync.Mutex
	calls int
	// after, when set, sees each call's recipients and errors and may
	// change the errors (the copies stay as the store left them).
	after func(call int, rcpts []delivery.Recipient, errs []error)
	// retries records Message.Retry of each call.
	retries []bool
}

func newLocalStore(t *testing.T) *localStore {
	t.Helper()
	base := t.TempDir()
	st, err := delivery.NewStore(delivery.Options{Hostname: "mta.test", AllowedBase: base,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &localStore{base: base, store: st}
}

func (l *localStore) Deliver(ctx context.Context, m *delivery.Message, rcpts []delivery.Recipient) []error {
	errs := l.store.Deliver(ctx, m, rcpts)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.retries = append(l.retries, m.Retry)
	if l.after != nil {
		l.after(l.calls, rcpts, errs)
	}
	return errs
}

func (l *localStore) rcpt(user string) delivery.Recipient {
	return delivery.Recipient{Address: user + "@local.test", OrigTo: "team@local.test",
		Maildir: filepath.Join(l.base, user, "Maildir") + "/", UID: os.Getuid(), GID: os.Getgid()}
}

// copies returns the files of user's maildir, new/ and cur/ together.
func (l *localStore) copies(t *testing.T, user string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"new", "cur"} {
		ents, err := os.ReadDir(filepath.Join(l.base, user, "Maildir", sub))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range ents {
			out = append(out, filepath.Join(l.base, user, "Maildir", sub, e.Name()))
		}
	}
	return out
}

// oneCopy checks that user has exactly one copy and that it holds data.
func (l *localStore) oneCopy(t *testing.T, user string, data []byte) {
	t.Helper()
	files := l.copies(t, user)
	if len(files) != 1 {
		t.Fatalf("%s has %d copies, want 1: %q", user, len(files), files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// The store keeps LF line ends on disk, as Dovecot does.
	if !bytes.HasSuffix(b, bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))) || !bytes.Contains(b, []byte("Delivered-To: "+user+"@local.test\n")) {
		t.Fatalf("%s's copy is wrong:\n%s", user, b)
	}
}

func (h *harness) accept(remote []string, local []delivery.Recipient, data []byte) (string, []error) {
	h.t.Helper()
	id, errs, err := h.q.Accept(context.Background(), "", "sender@local.test", remote, local, bytes.NewReader(data))
	if err != nil {
		h.t.Fatal(err)
	}
	if len(errs) != len(local) {
		h.t.Fatalf("Accept gave %d local outcomes for %d local recipients", len(errs), len(local))
	}
	return id, errs
}

// TestAcceptLocalAndRemote: the local copies are stored during Accept, the
// remote one is delivered by the runner, and the message then leaves.
func TestAcceptLocalAndRemote(t *testing.T) {
	s := newSink(t, sinkOptions{})
	clock := newClock()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	o.Local = ls
	h := start(t, o)
	data := []byte(testMessage)
	_, errs := h.accept([]string{"carol@remote.test"}, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, data)
	for i, err := range errs {
		if err != nil {
			t.Errorf("local copy %d: %v", i, err)
		}
	}
	ls.oneCopy(t, "alice", data)
	ls.oneCopy(t, "bob", data)
	got := recv(t, s.delivs, "the remote copy")
	if len(got.rcpts) != 1 || got.rcpts[0] != "carol@remote.test" || got.data != testMessage {
		t.Errorf("remote got %+v", got)
	}
	h.waitUntil("the queue is empty", h.empty)
	ls.oneCopy(t, "alice", data)
	ls.oneCopy(t, "bob", data)
	if ls.retries[0] {
		t.Error("the first attempt looked for earlier copies")
	}
}

// TestAcceptLocalOnlyLeavesNoTrace: when every local copy is stored, the
// message is gone from the spool before Accept returns.
func TestAcceptLocalOnlyLeavesNoTrace(t *testing.T) {
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, newClock())
	o.Local = ls
	h := start(t, o)
	h.accept(nil, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, []byte(testMessage))
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, e.Name())
			}
		}
		if len(names) > 0 {
			t.Errorf("spool still holds %q", names)
		}
	}
}

// TestAcceptLocalRetry: a local copy that fails temporarily stays queued and
// is stored by a later try, once; the other copy is not stored again.
func TestAcceptLocalRetry(t *testing.T) {
	clock := newClock()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), clock)
	o.Local = ls
	ls.after = func(call int, rcpts []delivery.Recipient, errs []error) {
		for i, r := range rcpts {
			if call == 1 && strings.HasPrefix(r.Address, "bob") {
				// Stored, but reported failed: the retry must find it.
				errs[i] = &delivery.Error{Temporary: true, Reason: "simulated"}
			}
		}
	}
	h := start(t, o)
	data := []byte(testMessage)
	id, errs := h.accept(nil, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, data)
	var le *LocalError
	if errs[0] != nil || !errors.As(errs[1], &le) || le.Permanent || le.Status != "4.3.0" {
		t.Fatalf("local outcomes %v", errs)
	}
	list, err := h.q.List()
	if err != nil || len(list) != 1 || list[0].ID != id || len(list[0].Recipients) != 1 ||
		list[0].Recipients[0].Addr != "bob@local.test" || list[0].Recipients[0].Local == nil {
		t.Fatalf("queue holds %+v (%v), want bob pending", list, err)
	}
	if c := h.q.Counts(); c.Messages != 1 || c.Pending != 1 || c.Delivered != 1 {
		t.Errorf("counts %+v, want one message, bob pending, alice delivered", c)
	}
	clock.Advance(time.Hour)
	if err := h.q.Flush(); err != nil {
		t.Fatal(err)
	}
	// The counts follow when the job ends, a moment after the spool empties.
	h.waitUntil("the queue is empty and counted so", func() bool { return h.empty() && h.q.Counts() == (Counts{}) })
	ls.oneCopy(t, "alice", data)
	ls.oneCopy(t, "bob", data)
	if len(ls.retries) != 2 || !ls.retries[1] {
		t.Errorf("calls with Retry: %v, want [false true]", ls.retries)
	}
}

// TestAcceptCrashAfterLocalCopies: the process dies after the local copies
// are stored and before their outcome is recorded. Every write before that
// point was synced, so the spool holds exactly what it held when the
// message was queued. After the restart each recipient has exactly one copy
// (one of them already moved to cur/ by an IMAP client) and the remote copy
// is delivered.
func TestAcceptCrashAfterLocalCopies(t *testing.T) {
	s := newSink(t, sinkOptions{})
	clock := newClock()
	ls := newLocalStore(t)
	dir := t.TempDir()
	o := baseOptions(t, dir, clock)
	o.Local = ls
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil // the real dialer, to the loopback sink
	snapshot := map[string][]byte{}
	ls.after = func(call int, _ []delivery.Recipient, _ []error) {
		if call != 1 {
			return
		}
		// The crash: what is on disk now is all a restart would find.
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
			return
		}
		for _, e := range ents {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					t.Error(err)
				}
				snapshot[e.Name()] = b
			}
		}
	}
	// First life: a queue without a runner, so the remote copy is not sent
	// before the "crash".
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(testMessage)
	if _, _, err := q.Accept(context.Background(), "", "sender@local.test", []string{"carol@remote.test"},
		[]delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	q.Close()
	if len(snapshot) != 2 {
		t.Fatalf("spool at the crash held %d files, want the .eml and .env", len(snapshot))
	}
	// Put the spool back as it was at the crash.
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for name, b := range snapshot {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Meanwhile alice's client read her copy: new/ → cur/ with \Seen.
	files := ls.copies(t, "alice")
	if len(files) != 1 {
		t.Fatalf("alice has %d copies before the restart", len(files))
	}
	moved := filepath.Join(filepath.Dir(filepath.Dir(files[0])), "cur", filepath.Base(files[0])+":2,S")
	if err := os.Rename(files[0], moved); err != nil {
		t.Fatal(err)
	}
	// Second life.
	ls.after = nil
	h := start(t, o)
	recv(t, s.delivs, "the remote copy")
	h.waitUntil("the queue is empty", h.empty)
	ls.oneCopy(t, "alice", data)
	ls.oneCopy(t, "bob", data)
	if len(ls.retries) != 2 || !ls.retries[1] {
		t.Errorf("calls with Retry: %v, want [false true]", ls.retries)
	}
}

// TestAcceptLocalPermanentBounces: a local copy that fails permanently is
// reported to the sender by a DSN; the other copy stays stored.
func TestAcceptLocalPermanentBounces(t *testing.T) {
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	b := newBounces()
	o.Bounce = b.fn
	ls.after = func(_ int, rcpts []delivery.Recipient, errs []error) {
		for i, r := range rcpts {
			if strings.HasPrefix(r.Address, "bob") {
				errs[i] = &delivery.Error{Temporary: false, Reason: "simulated permanent failure"}
			}
		}
	}
	h := start(t, o)
	_, errs := h.accept(nil, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, []byte(testMessage))
	var le *LocalError
	if errs[0] != nil || !errors.As(errs[1], &le) || !le.Permanent || le.Status != "5.6.0" {
		t.Fatalf("local outcomes %v", errs)
	}
	report := recv(t, b.got, "the DSN")
	if !bytes.Contains(report, []byte("bob@local.test")) || !bytes.Contains(report, []byte("5.6.0")) {
		t.Errorf("DSN does not name bob and 5.6.0:\n%s", report)
	}
	h.waitUntil("the queue is empty", h.empty)
	ls.oneCopy(t, "alice", []byte(testMessage))
}

// TestAcceptChecksFirst: a message the queue refuses is refused before
// anything is stored; a message just under the limit with courriel's own
// trace header on top is taken (it used to fail in the queue after SMTP had
// taken it).
func TestAcceptChecksFirst(t *testing.T) {
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	o.MaxMessageBytes = 4096
	o.MaxRecipients = 3
	h := start(t, o)
	body := bytes.Repeat([]byte("x"), 4036)
	received := []byte("Received: from client.example ([192.0.2.1]) by mx.local.test with ESMTPS id 0123456789ABCDEF; Sun, 06 Dec 2026 12:00:00 +0000\r\n")
	if _, _, err := h.q.Accept(context.Background(), "", "s@local.test", []string{"carol@remote.test"},
		[]delivery.Recipient{ls.rcpt("alice")}, bytes.NewReader(append(received, body...))); err != nil {
		t.Errorf("a message under the limit with its trace header: %v", err)
	}
	for _, tc := range []struct {
		name   string
		remote []string
		data   []byte
		want   error
	}{
		{"too large", nil, bytes.Repeat([]byte("x"), 4096+traceAllowance+1), ErrTooLarge},
		{"too many recipients", []string{"a@r.test", "b@r.test", "c@r.test"}, []byte(testMessage), ErrTooManyRecipients},
		{"bad remote address", []string{"a b@"}, []byte(testMessage), ErrInvalidAddress},
	} {
		_, _, err := h.q.Accept(context.Background(), "", "s@local.test", tc.remote, []delivery.Recipient{ls.rcpt("bob")}, bytes.NewReader(tc.data))
		if !errors.Is(err, tc.want) || !IsPermanent(err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if files := ls.copies(t, "bob"); len(files) != 0 {
		t.Errorf("refused messages stored %d copies", len(files))
	}
}

// TestAcceptFromFile: a message handed over as a file (what SMTP does with
// a large one) larger than any single read is spooled and stored byte for
// byte, locally and remotely, without the file being read into memory by
// the caller.
func TestAcceptFromFile(t *testing.T) {
	s := newSink(t, sinkOptions{})
	clock := newClock()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.Local = ls
	h := start(t, o)
	data := []byte(testMessage + strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n", 5000))
	f, err := os.CreateTemp(t.TempDir(), "msg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	_, errs, err := h.q.Accept(context.Background(), "", "sender@local.test", []string{"carol@remote.test"},
		[]delivery.Recipient{ls.rcpt("alice")}, io.NewSectionReader(f, 0, int64(len(data))))
	if err != nil || errs[0] != nil {
		t.Fatalf("Accept: %v, %v", err, errs)
	}
	ls.oneCopy(t, "alice", data)
	got := recv(t, s.delivs, "the remote copy")
	if got.data != string(data) {
		t.Errorf("remote got %d bytes, want %d", len(got.data), len(data))
	}
}

// TestOneLogLinePerLocalCopy: a local copy the queue stores is logged once,
// by the queue with its queue_id, not again by the store (Postfix: one
// line per delivery).
func TestOneLogLinePerLocalCopy(t *testing.T) {
	s := newSink(t, sinkOptions{})
	logs := &lockedBuffer{}
	base := t.TempDir()
	st, err := delivery.NewStore(delivery.Options{Hostname: "mta.test", AllowedBase: base,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ls := &localStore{base: base, store: st}
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	o.Local = ls
	o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	h := start(t, o)
	id, _ := h.accept([]string{"carol@remote.test"}, []delivery.Recipient{ls.rcpt("alice")}, []byte(testMessage))
	recv(t, s.delivs, "the remote copy")
	h.waitUntil("the queue is empty", h.empty)
	var lines []string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "msg=delivery") && strings.Contains(l, "alice@local.test") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "queue_id="+id) {
		t.Errorf("alice's copy logged %d times, want once with queue_id=%s:\n%s", len(lines), id, strings.Join(lines, "\n"))
	}
}
