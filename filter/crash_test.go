package filter

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/delivery/queue"
	"courriel/directory"
	"courriel/sieve"
)

// crashingQueue is the real queue behind the filter, and a crash: the
// first Accept of a message to crashOn returns (or, before, is never
// made), and the delivery that made it dies there (runtime.Goexit in
// Deliver's goroutine), before anything after is recorded, as at a
// SIGKILL.
type crashingQueue struct {
	mu      sync.Mutex
	q       *queue.Queue // the current life's
	crashOn string       // an address; "" once crashed
	before  bool
}

func (c *crashingQueue) Accept(ctx context.Context, out Outgoing) (id string, errs []error, err error) {
	q := c.crash(out.Remote, out.Local, true)
	if out.RemoteFrom != "" {
		id, errs, err = q.AcceptForward(ctx, out.MsgID, out.From, out.RemoteFrom, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
	} else {
		id, errs, err = q.Accept(ctx, out.MsgID, out.From, out.Remote, out.Local, out.Data, queue.WithOnceKey(out.Key))
	}
	c.crash(out.Remote, out.Local, false)
	return id, errs, err
}

// crash dies if the crash comes now (before the Accept or after), and
// returns the current queue otherwise.
func (c *crashingQueue) crash(remote []string, local []delivery.Recipient, before bool) *queue.Queue {
	c.mu.Lock()
	crash := c.crashOn != "" && c.before == before && (slices.Contains(remote, c.crashOn) ||
		slices.ContainsFunc(local, func(r delivery.Recipient) bool { return r.Address == c.crashOn }))
	if crash {
		c.crashOn = ""
	}
	q := c.q
	c.mu.Unlock()
	if crash {
		runtime.Goexit()
	}
	return q
}

// crashResolver routes v@x.y to a maildir here, everything else away.
type crashResolver struct{ maildir string }

func (r crashResolver) ClassifyDomain(_ context.Context, domain string) (directory.DomainClass, error) {
	if domain == "x.y" {
		return directory.DomainMailbox, nil
	}
	return directory.DomainForeign, nil
}

func (r crashResolver) ResolveClassified(_ context.Context, addr string, _ directory.DomainClass) (directory.Resolution, error) {
	if addr != "v@x.y" {
		return directory.Resolution{}, directory.ErrNotFound
	}
	return directory.Resolution{Recipient: addr, Destinations: []directory.Destination{{Address: addr,
		Mailbox: &directory.Mailbox{Address: addr, Maildir: r.maildir, UID: os.Getuid(), GID: os.Getgid()}}}}, nil
}

// TestSideEffectsOnceAcrossACrash: the process dies right after the
// queue took what a keyed copy's script made (a redirect, a notification,
// a vacation reply) and before the filter recorded it, or right before
// (the vacation memory written); the queue's retry of the copy after the
// restart, on the same spool and home, runs the script again, and
// exactly one message reaches its recipient: stored in the local maildir
// (gone from the queue before the crash), or queued.
func TestSideEffectsOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		to           string // the crash comes at its Accept; v@x.y: a maildir here, else queued
		before       bool   // the crash comes before that Accept
	}{
		{"redirect, stored before the crash", `redirect "v@x.y";`, "v@x.y", false},
		{"redirect, queued at the crash", `redirect "w@far.example";`, "w@far.example", false},
		{"redirect, crash before", `redirect "v@x.y";`, "v@x.y", true},
		{"second redirect", `require ["editheader", "copy"]; redirect :copy "w@far.example"; addheader "X-Two" "2"; redirect "v@x.y";`, "v@x.y", false},
		{"notification", `require "enotify"; notify "mailto:v@x.y";`, "v@x.y", false},
		{"vacation reply", `require "vacation"; vacation "away";`, "s@z.z", false},
		{"vacation reply, crash before", `require "vacation"; vacation "away";`, "s@z.z", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := t.TempDir()
			home := filepath.Join(base, "u")
			if err := os.MkdirAll(home, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(home+"/.dovecot.sieve", []byte(tc.script), 0o644); err != nil {
				t.Fatal(err)
			}
			store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: base})
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			vMaildir := filepath.Join(base, "v", "Maildir") + "/"
			qo := queue.Options{Dir: filepath.Join(base, "spool"), Hostname: "mx.x.y", Local: store}
			open := func() *queue.Queue {
				q, err := queue.Open(qo)
				if err != nil {
					t.Fatal(err)
				}
				return q
			}
			cq := &crashingQueue{q: open(), crashOn: tc.to, before: tc.before}
			f, err := New(Options{Extensions: sieve.AllExtensions(), Store: store, Outbound: cq, Resolver: crashResolver{vMaildir}, Hostname: "mx.x.y",
				Directory: fakeDir{"u@x.y": {Home: home}}})
			if err != nil {
				t.Fatal(err)
			}
			m := &delivery.Message{ID: "m1", From: "s@z.z", Arrived: time.Unix(1700000000, 0),
				Body: strings.NewReader("From: s@z.z\r\nTo: u@x.y\r\nSubject: hi\r\n\r\nbody\r\n")}
			r := []delivery.Recipient{{Address: "u@x.y", Maildir: filepath.Join(base, "u", "Maildir") + "/",
				CopyKey: "18EEF7A41C96FFFD39421ED1E14BE0AA-0"}}

			// First life: dead right after the Accept.
			done := make(chan struct{})
			go func() {
				defer close(done)
				f.Deliver(context.Background(), m, r)
				t.Error("the delivery did not reach the crash")
			}()
			<-done
			cq.q.Close()

			// Second life: the copy's retry.
			cq.mu.Lock()
			cq.q = open()
			cq.mu.Unlock()
			defer cq.q.Close()
			m.Retry = true
			if errs := f.Deliver(context.Background(), m, r); errs[0] != nil {
				t.Fatal(errs[0])
			}
			got := 0
			if tc.to == "v@x.y" {
				for _, sub := range []string{"new", "cur"} {
					ents, err := os.ReadDir(vMaildir + sub)
					if err != nil && !errors.Is(err, os.ErrNotExist) {
						t.Fatal(err)
					}
					got += len(ents)
				}
			} else {
				l, err := cq.q.List()
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range l {
					if slices.ContainsFunc(s.Recipients, func(qr queue.Recipient) bool { return qr.Addr == tc.to }) {
						got++
					}
				}
			}
			if got != 1 {
				t.Errorf("%s got %d messages, want 1", tc.to, got)
			}
		})
	}
}
