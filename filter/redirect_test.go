package filter

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

// streamingQueue reads what it is given as the spool does, in pieces,
// and keeps its digest and the header; it fails the Accepts whose
// recipients include fail while failures remain.
type streamingQueue struct {
	mu       sync.Mutex
	fail     string
	failures int
	sent     []string   // from + " -> " + rcpts
	sums     [][32]byte // each message's SHA-256
	heads    []string   // each message's header
}

// Accept records the sender of the remote copies.
func (q *streamingQueue) Accept(_ context.Context, out Outgoing) (string, []error, error) {
	from, remote, data := cmp.Or(out.RemoteFrom, out.From), out.Remote, out.Data
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failures > 0 && strings.Contains(strings.Join(remote, ","), q.fail) {
		q.failures--
		return "", nil, errors.New("spool full")
	}
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var head []byte
	if _, err := io.CopyBuffer(io.MultiWriter(h, &headWriter{b: &head}), io.NewSectionReader(data, 0, data.Size()), buf); err != nil {
		return "", nil, err
	}
	q.sent = append(q.sent, from+" -> "+strings.Join(remote, ","))
	q.sums = append(q.sums, [32]byte(h.Sum(nil)))
	q.heads = append(q.heads, string(head))
	return "Q", nil, nil
}

// headWriter keeps what comes before the first empty line.
type headWriter struct {
	b    *[]byte
	done bool
}

func (w *headWriter) Write(p []byte) (int, error) {
	if !w.done {
		*w.b = append(*w.b, p...)
		if i := bytes.Index(*w.b, []byte("\r\n\r\n")); i >= 0 {
			*w.b, w.done = (*w.b)[:i+2], true
		}
	}
	return len(p), nil
}

// redirectSetup is a user whose script is src, with a streaming queue.
func redirectSetup(t *testing.T, src string) (*Filter, *streamingQueue, string) {
	t.Helper()
	base := t.TempDir()
	home := base + "/u"
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
	q := &streamingQueue{}
	f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: q, Directory: fakeDir{"u@x.y": {Home: home}}})
	if err != nil {
		t.Fatal(err)
	}
	return f, q, home
}

// A redirect reads the message in place, as the stored copies do: what
// the redirect of a message allocates (the script's view of it, at most
// 4 MiB of body, beside) does not grow with the message, as received or
// with editheader's edits, and the queue gets every octet.
func TestRedirectStreams(t *testing.T) {
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.\r\n")
	for _, tc := range []struct {
		name, src, head string
	}{
		{"as received", `redirect "x@far.example";`, ""},
		{"edited", `require "editheader"; addheader "X-Edited" "yes"; redirect "x@far.example";`, "X-Edited: yes\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var alloc [2]uint64
			for i, size := range []int{8 << 20, 40 << 20} {
				f, q, _ := redirectSetup(t, tc.src)
				orig := append([]byte("Subject: big\r\n\r\n"), bytes.Repeat(line, size/len(line))...)
				m := &delivery.Message{ID: "m", From: "s@z.z", Header: []byte("Received: by test\r\n"), Body: bytes.NewReader(orig), Arrived: time.Now()}
				r := delivery.Recipient{Address: "u@x.y", Maildir: t.TempDir() + "/", CopyKey: "Q1-0"}
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				if errs := f.Deliver(context.Background(), m, []delivery.Recipient{r}); errs[0] != nil {
					t.Fatal(errs[0])
				}
				runtime.ReadMemStats(&after)
				alloc[i] = after.TotalAlloc - before.TotalAlloc
				want := sha256.Sum256(bytes.Join([][]byte{[]byte(RedirectedHeader + ": u@x.y\r\nDelivered-To: u@x.y\r\n" + tc.head + "Received: by test\r\n"), orig}, nil))
				if len(q.sums) != 1 || q.sums[0] != want {
					t.Errorf("%d MiB: queued %v (headers %q), want the message once, marked", size>>20, q.sent, q.heads)
				}
			}
			if alloc[1] > alloc[0]+8<<20 {
				t.Errorf("the redirect of an 8 MiB message allocated %d MiB, of a 40 MiB one %d MiB", alloc[0]>>20, alloc[1]>>20)
			}
		})
	}
}

// Redirects carrying different headers are queued by separate Accepts:
// when a later one fails, the retry of the delivery queues only what was
// not queued, never the earlier ones again.
func TestRedirectRetryQueuesOnce(t *testing.T) {
	f, q, _ := redirectSetup(t, `require ["editheader", "copy"];
redirect :copy "a@far.example";
addheader "X-Second" "yes";
redirect :copy "b@far.example";
redirect :copy "c@far.example";
deleteheader "X-Second";
addheader "X-Third" "yes";
redirect "d@far.example";`)
	q.fail, q.failures = "d@far.example", 1
	m := &delivery.Message{ID: "m", From: "s@z.z", Body: bytes.NewReader([]byte("Subject: r\r\n\r\nretry\r\n")), Arrived: time.Unix(1700000000, 0)}
	r := []delivery.Recipient{{Address: "u@x.y", Maildir: t.TempDir() + "/", CopyKey: "Q1-0"}}
	if errs := f.Deliver(context.Background(), m, r); errs[0] == nil {
		t.Fatal("the failed redirect did not fail the delivery")
	}
	if want := []string{"s@z.z -> a@far.example", "s@z.z -> b@far.example,c@far.example"}; strings.Join(q.sent, "|") != strings.Join(want, "|") {
		t.Fatalf("first attempt queued %q, want %q", q.sent, want)
	}
	for attempt := range 2 {
		m.Retry = true
		if errs := f.Deliver(context.Background(), m, r); errs[0] != nil {
			t.Fatalf("retry %d: %v", attempt, errs[0])
		}
	}
	if want := []string{"s@z.z -> a@far.example", "s@z.z -> b@far.example,c@far.example", "s@z.z -> d@far.example"}; strings.Join(q.sent, "|") != strings.Join(want, "|") {
		t.Errorf("queued %q, want %q: each redirect once", q.sent, want)
	}
	if len(q.heads) == 3 && (!strings.Contains(q.heads[2], "X-Third: yes") || strings.Contains(q.heads[2], "X-Second")) {
		t.Errorf("the last redirect's header: %q", q.heads[2])
	}
}
