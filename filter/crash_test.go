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
)

// crashingQueue is the real queue behind the filter, and a crash: the
// first Accept of a message to crashOn returns, and the delivery that
// made it dies there (runtime.Goexit in Deliver's goroutine), before
// anything after the Accept is recorded, as at a SIGKILL.
type crashingQueue struct {
	mu      sync.Mutex
	q       *queue.Queue // the current life's
	crashOn string       // an address; "" once crashed
}

func (c *crashingQueue) Accept(ctx context.Context, key, msgID, from string, remote []string, local []delivery.Recipient, data delivery.Content) (string, []error, error) {
	c.mu.Lock()
	q := c.q
	c.mu.Unlock()
	id, errs, err := q.Accept(ctx, msgID, from, remote, local, data, queue.WithOnceKey(key))
	c.crashAfter(remote, local, err)
	return id, errs, err
}

func (c *crashingQueue) AcceptForward(ctx context.Context, key, msgID, from, remoteFrom string, remote []string, local []delivery.Recipient, data delivery.Content) (string, []error, error) {
	c.mu.Lock()
	q := c.q
	c.mu.Unlock()
	id, errs, err := q.AcceptForward(ctx, msgID, from, remoteFrom, remote, local, data, queue.WithOnceKey(key))
	c.crashAfter(remote, local, err)
	return id, errs, err
}

func (c *crashingQueue) crashAfter(remote []string, local []delivery.Recipient, err error) {
	c.mu.Lock()
	crash := err == nil && c.crashOn != "" && (slices.Contains(remote, c.crashOn) ||
		slices.ContainsFunc(local, func(r delivery.Recipient) bool { return r.Address == c.crashOn }))
	if crash {
		c.crashOn = ""
	}
	c.mu.Unlock()
	if crash {
		runtime.Goexit()
	}
}

// crashResolver routes v@x.y to a maildir here, everything else away.
type crashResolver struct{ maildir string }

func (r crashResolver) ClassifyDomain(_ context.Context, domain string) (directory.DomainClass, error) {
	if domain == "x.y" {
		return directory.DomainMailbox, nil
	}
	return directory.DomainForeign, nil
}

func (r crashResolver) ResolveRecipient(_ context.Context, addr string) (directory.Resolution, error) {
	if addr != "v@x.y" {
		return directory.Resolution{}, directory.ErrNotFound
	}
	return directory.Resolution{Recipient: addr, Destinations: []directory.Destination{{Address: addr,
		Mailbox: &directory.Mailbox{Address: addr, Maildir: r.maildir, UID: os.Getuid(), GID: os.Getgid()}}}}, nil
}

// TestSideEffectsOnceAcrossACrash: the process dies right after the
// queue took what a keyed copy's script made (a redirect, a notification,
// a vacation reply) and before the filter recorded it; the queue's retry
// of the copy after the restart, on the same spool and home, runs the
// script again, and exactly one message reaches its recipient: stored in
// the local maildir (gone from the queue before the crash), or queued.
func TestSideEffectsOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, script string
		to           string // the crash comes after its Accept; v@x.y: a maildir here, else queued
	}{
		{"redirect, stored before the crash", `redirect "v@x.y";`, "v@x.y"},
		{"redirect, queued at the crash", `redirect "w@far.example";`, "w@far.example"},
		{"second redirect", `require ["editheader", "copy"]; redirect :copy "w@far.example"; addheader "X-Two" "2"; redirect "v@x.y";`, "v@x.y"},
		{"notification", `require "enotify"; notify "mailto:v@x.y";`, "v@x.y"},
		{"vacation reply", `require "vacation"; vacation "away";`, "s@z.z"},
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
			cq := &crashingQueue{q: open(), crashOn: tc.to}
			f, err := New(Options{Store: store, Outbound: cq, Resolver: crashResolver{vMaildir}, Hostname: "mx.x.y",
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
