package directory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/directory"
	"courriel/directory/embedded"
	"courriel/internal/testenv"
)

// pollTimeout bounds every wait for replication or the watcher: the tests
// never assert how fast, only that it happens.
const pollTimeout = 30 * time.Second

// eventually polls cond every 20 ms until it holds or pollTimeout passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(pollTimeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v (last: %s)", what, pollTimeout, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replicaOptions reads the consumer of r, with answers cached for an hour:
// only the watcher can make a change visible within the test.
func replicaOptions(r *testenv.Replicated) directory.Options {
	o := options(r.Consumer)
	o.CacheTTL, o.NegativeCacheTTL = time.Hour, time.Hour
	o.HomeAttribute = "mailHost"
	return o
}

// runWatcher runs w until the test ends.
func runWatcher(t *testing.T, w *directory.Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(pollTimeout):
			t.Error("watcher did not stop")
		}
	})
}

func resolve(d *directory.Directory, addr string) (string, error) {
	res, err := d.ResolveRecipient(context.Background(), addr)
	if err != nil {
		return "", err
	}
	var out []string
	for _, dst := range res.Destinations {
		s := dst.Address
		if dst.Mailbox != nil {
			s += "@node=" + dst.Mailbox.Node
		}
		out = append(out, s)
	}
	return strings.Join(out, ","), nil
}

// A change on the provider is seen by a Directory reading the consumer
// within the replication lag, although its answers are cached for an hour;
// the same Directory without a watcher keeps the stale answer. The watcher
// comes back after the consumer restarts.
func TestWatcherInvalidatesCache(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	watched := newDir(t, replicaOptions(r))
	unwatched := newDir(t, replicaOptions(r))
	w := watched.NewWatcher(nil)
	if err := w.Check(context.Background()); err != nil {
		t.Fatalf("Check on the consumer: %v", err)
	}
	runWatcher(t, w)
	eventually(t, "watcher connected", func() (bool, string) {
		st := w.Status()
		return st.Connected, "status " + statusString(st)
	})

	const alias = "newalias@hosted-domain.com"
	for _, d := range []*directory.Directory{watched, unwatched} {
		if _, err := resolve(d, alias); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("before: %s resolves: %v", alias, err)
		}
		if got, err := resolve(d, "alice@xoyize.xyz"); err != nil || got != "alice@xoyize.xyz@node=" {
			t.Fatalf("before: alice = %q, %v", got, err)
		}
	}

	// A new alias on the provider.
	r.Provider.Add(t, "dn: uid=newalias,"+testenv.MailBase+"\nobjectClass: account\nobjectClass: postfixUser\n"+
		"uid: newalias\nmailacceptinggeneralid: "+alias+"\nmaildrop: alice@xoyize.xyz\n")
	eventually(t, "new alias resolved through the consumer", func() (bool, string) {
		got, err := resolve(watched, alias)
		return err == nil && got == "alice@xoyize.xyz@node=", got + " " + errString(err)
	})
	if st := w.Status(); st.Changes == 0 || st.LastChange.IsZero() {
		t.Errorf("status after a change: %s", statusString(st))
	}
	// The consumer has it; the Directory without a watcher still answers
	// from its cache (the hour-long TTL): the watcher made the difference.
	if _, err := resolve(unwatched, alias); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("without a watcher the alias is seen at once (%v): the test proves nothing", err)
	}

	// A new home node for alice.
	r.Provider.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: node-b\n")
	eventually(t, "mailHost change seen", func() (bool, string) {
		got, err := resolve(watched, "alice@xoyize.xyz")
		return err == nil && got == "alice@xoyize.xyz@node=node-b", got + " " + errString(err)
	})

	// The consumer is killed: the watcher says so, then reconnects when
	// it is back, and a change made meanwhile on the provider is seen.
	connects := w.Status().Connects
	r.Consumer.Kill(t)
	eventually(t, "watcher disconnected", func() (bool, string) {
		st := w.Status()
		return !st.Connected, statusString(st)
	})
	r.Provider.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nreplace: mailHost\nmailHost: node-c\n")
	r.Consumer.Start(t)
	eventually(t, "watcher reconnected", func() (bool, string) {
		st := w.Status()
		return st.Connected && st.Connects > connects, statusString(st)
	})
	eventually(t, "change made while the consumer was down seen", func() (bool, string) {
		got, err := resolve(watched, "alice@xoyize.xyz")
		return err == nil && got == "alice@xoyize.xyz@node=node-c", got + " " + errString(err)
	})
	// And changes keep flowing after the reconnection.
	r.Provider.Delete(t, "uid=newalias,"+testenv.MailBase)
	eventually(t, "deleted alias gone", func() (bool, string) {
		got, err := resolve(watched, alias)
		return errors.Is(err, directory.ErrNotFound), got + " " + errString(err)
	})
}

// A change to what no lookup reads (a password the reader may not read,
// an operational timestamp) keeps the cache: a burst of logins that
// write lastbind or ppolicy timestamps is not a burst of searches. A
// change to what a lookup reads still flushes, as does a new entry.
func TestWatcherKeepsCacheOnUnreadChange(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	d := newDir(t, replicaOptions(r))
	w := d.NewWatcher(nil)
	runWatcher(t, w)
	eventually(t, "watcher connected", func() (bool, string) {
		st := w.Status()
		return st.Connected, "status " + statusString(st)
	})
	const alias = "test9@hosted-domain.com"
	lookups := func(when string) {
		t.Helper()
		if got, err := resolve(d, "test0@hosted-domain.com"); err != nil || got != "xomail@xoyize.xyz@node=" {
			t.Fatalf("%s: test0 = %q, %v", when, got, err)
		}
		if got, err := resolve(d, alias); !errors.Is(err, directory.ErrNotFound) {
			t.Fatalf("%s: %s = %q, %v; want ErrNotFound", when, alias, got, err)
		}
	}
	lookups("before")

	r.Provider.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nreplace: userPassword\nuserPassword: {CLEARTEXT}new\n")
	eventually(t, "password change reported", func() (bool, string) {
		st := w.Status()
		return st.Unread == 1 && st.Changes == 1, statusString(st)
	})
	before := d.Stats().Searches
	lookups("after the password change")
	if n := d.Stats().Searches - before; n != 0 {
		t.Errorf("a password change flushed the cache: %d searches to answer again", n)
	}

	// What a lookup reads: flushed, negative answers included.
	r.Provider.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: "+alias+"\n")
	eventually(t, "new address seen", func() (bool, string) {
		got, err := resolve(d, alias)
		return err == nil && got == "xomail@xoyize.xyz@node=", got + " " + errString(err)
	})
	if st := w.Status(); st.Unread != 1 || st.Changes != 2 {
		t.Errorf("after an address change: %s", statusString(st))
	}
}

// A filter attribute the reader may search but not read (an ACL of
// "search") changes no digest the watcher keeps: the watcher finds it out
// at start and flushes on every change, so that disabling an address
// through that attribute takes effect at once, not after the cache TTL.
func TestWatcherFlushesOnSearchOnlyAttribute(t *testing.T) {
	t.Parallel()
	s := testenv.StartSlapd(t, testenv.WithSyncProv())
	// description: search only for the reader, before its read of ou=mail.
	s.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcAccess\n"+
		"olcAccess: {1}to dn.subtree=\""+testenv.MailBase+"\" attrs=description by dn.exact=\""+testenv.ReaderDN+"\" search by * none\n")
	// An entry with a description, so that the watcher finds out from
	// what the reader gets, not from the attribute being nowhere.
	s.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nadd: description\ndescription: active\n")
	var logs syncBuffer
	o := options(s)
	o.CacheTTL, o.NegativeCacheTTL = time.Hour, time.Hour
	o.Queries = directory.DefaultQueries()
	o.Queries.Aliases.Filter = "(&(mailacceptinggeneralid=%s)(!(description=disabled)))"
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d := newDir(t, o)
	w := d.NewWatcher(nil)
	runWatcher(t, w)
	eventually(t, "watcher connected", func() (bool, string) {
		st := w.Status()
		return st.Connected, "status " + statusString(st)
	})
	if got, err := resolve(d, "test0@hosted-domain.com"); err != nil || got != "xomail@xoyize.xyz@node=" {
		t.Fatalf("before: test0 = %q, %v", got, err)
	}

	s.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nadd: description\ndescription: disabled\n")
	eventually(t, "change reported", func() (bool, string) {
		st := w.Status()
		return st.Changes == 1, statusString(st)
	})
	if got, err := resolve(d, "test0@hosted-domain.com"); !errors.Is(err, directory.ErrNotFound) {
		t.Errorf("after disabling through a search-only attribute: test0 = %q, %v; want ErrNotFound (%s)",
			got, err, statusString(w.Status()))
	}
	if st := w.Status(); st.Unread != 0 {
		t.Errorf("the change was counted unread: %s", statusString(st))
	}
	if l := logs.String(); strings.Count(l, "flushes on every change") != 1 || !strings.Contains(l, "attribute=description") {
		t.Errorf("want one log line naming description, got:\n%s", l)
	}
}

// With the replica listed first and the provider second, the watcher
// follows the provider while the replica is down (as lookups do, so a
// change is still seen at once), then goes back to the replica when it
// answers again, and changes flow through it.
func TestWatcherFailsOver(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	o := replicaOptions(r)
	o.URLs = []string{r.Consumer.URL(), r.Provider.URL()}
	d := newDir(t, o)
	w := d.NewWatcher(nil)
	runWatcher(t, w)
	connectedTo := func(url string) func() (bool, string) {
		return func() (bool, string) {
			st := w.Status()
			return st.Connected && st.URL == url, statusString(st)
		}
	}
	eventually(t, "watching the replica", connectedTo(r.Consumer.URL()))
	if got, err := resolve(d, "alice@xoyize.xyz"); err != nil || got != "alice@xoyize.xyz@node=" {
		t.Fatalf("before: alice = %q, %v", got, err)
	}

	r.Consumer.Kill(t)
	eventually(t, "watching the provider", connectedTo(r.Provider.URL()))
	r.Provider.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nadd: objectClass\nobjectClass: inetLocalMailRecipient\n-\nadd: mailHost\nmailHost: node-b\n")
	eventually(t, "change seen while the replica is down", func() (bool, string) {
		got, err := resolve(d, "alice@xoyize.xyz")
		return err == nil && got == "alice@xoyize.xyz@node=node-b", got + " " + errString(err)
	})

	r.Consumer.Start(t)
	eventually(t, "back on the replica", connectedTo(r.Consumer.URL()))
	r.Provider.Modify(t, "dn: uid=alice,"+testenv.MailBase+"\nchangetype: modify\nreplace: mailHost\nmailHost: node-c\n")
	eventually(t, "change seen through the replica again", func() (bool, string) {
		got, err := resolve(d, "alice@xoyize.xyz")
		return err == nil && got == "alice@xoyize.xyz@node=node-c", got + " " + errString(err)
	})
}

// The embedded demo directory does not answer the sync control: the
// watcher stops after one log line and the directory works on TTLs.
func TestWatcherUnsupported(t *testing.T) {
	t.Parallel()
	srv, err := embedded.Start(context.Background(), embedded.Options{Addr: "127.0.0.1:0", LDIF: embedded.DemoLDIF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	var logs syncBuffer
	d := newDir(t, directory.Options{
		URLs: []string{"ldap://" + srv.Addr()}, BindDN: embedded.DemoReaderDN, BindPassword: embedded.DemoPassword,
		BaseDN: embedded.DemoSearchBase, MailboxDomains: []string{"xoyize.xyz"},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	w := d.NewWatcher(nil)
	if err := w.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "sync control") {
		t.Errorf("Check on the embedded directory: %v", err)
	}
	done := make(chan struct{})
	go func() { w.Run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(pollTimeout):
		t.Fatal("watcher still running against a server without the sync control")
	}
	if st := w.Status(); !st.Unsupported || st.Connected {
		t.Errorf("status %s", statusString(st))
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "watch off") {
		t.Errorf("want one log line, got:\n%s", logs.String())
	}
	if got, err := resolve(d, "test0@hosted-domain.com"); err != nil || !strings.HasPrefix(got, "xomail@xoyize.xyz") {
		t.Errorf("lookup after the watcher stopped: %q %v", got, err)
	}
}

func statusString(st directory.WatchStatus) string {
	var b strings.Builder
	b.WriteString("connected=")
	if st.Connected {
		b.WriteString("yes")
	} else {
		b.WriteString("no")
	}
	b.WriteString(" url=" + st.URL + " connects=" + itoa(st.Connects) + " changes=" + itoa(st.Changes) + " unread=" + itoa(st.Unread))
	if st.Unsupported {
		b.WriteString(" unsupported")
	}
	return b.String()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
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

// A size limit on the reader cuts the sync refresh: Check says so and how
// to fix it; the lookups themselves are not affected.
func TestWatcherSizeLimit(t *testing.T) {
	t.Parallel()
	r := testenv.StartReplicated(t)
	r.Consumer.ModifyConfig(t, "dn: olcDatabase={1}mdb,cn=config\nchangetype: modify\nadd: olcLimits\n"+
		"olcLimits: dn.exact=\""+testenv.ReaderDN+"\" size=3\n")
	d := newDir(t, replicaOptions(r))
	err := d.NewWatcher(nil).Check(context.Background())
	if err == nil || !strings.Contains(err.Error(), "size=unlimited") {
		t.Errorf("Check with a size limit of 3: %v", err)
	}
	if got, err := resolve(d, "test0@hosted-domain.com"); err != nil || got != "xomail@xoyize.xyz@node=" {
		t.Errorf("lookup: %q %v", got, err)
	}
}

// Once the first URL answers again after a failover, lookups go back to
// it, reported by the Watcher or found by the pool's own check, instead of
// staying on the second for as long as its connections live: an alias
// that only the second server has is found there, then no longer.
func TestLookupsGoBackToFirstURL(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t)
	a := testenv.StartSlapd(t, testenv.WithCA(ca), testenv.WithSyncProv())
	b := testenv.StartSlapd(t, testenv.WithCA(ca), testenv.WithSyncProv())
	ctx := context.Background()
	for i, watch := range []bool{true, false} {
		name := map[bool]string{true: "watcher", false: "pool check"}[watch]
		t.Run(name, func(t *testing.T) {
			o := options(a)
			o.URLs = []string{a.URL(), b.URL()}
			o.CacheTTL, o.NegativeCacheTTL = -1, -1
			o.PoolSize = 1
			d := newDir(t, o)
			if watch {
				directory.SetPreferredCheckEvery(d, 0)
			} else {
				directory.SetPreferredCheckEvery(d, 100*time.Millisecond)
			}
			a.Stop(t)
			alias := fmt.Sprintf("onlyonb%d@hosted-domain.com", i)
			b.Modify(t, "dn: uid=xomail,"+testenv.MailBase+"\nchangetype: modify\nadd: mailacceptinggeneralid\nmailacceptinggeneralid: "+alias+"\n")
			if got, err := d.Lookup(ctx, directory.MapAliases, alias); err != nil {
				t.Fatalf("on the second URL: %s = %q, %v", alias, got, err)
			}
			if watch {
				w := d.NewWatcher(nil)
				runWatcher(t, w)
				eventually(t, "watcher on the second URL", func() (bool, string) {
					st := w.Status()
					return st.Connected && st.URL == b.URL(), statusString(st)
				})
			}
			a.Start(t)
			eventually(t, "lookups back on the first URL", func() (bool, string) {
				got, err := d.Lookup(ctx, directory.MapAliases, alias)
				return errors.Is(err, directory.ErrNotFound), fmt.Sprintf("%q %s", got, errString(err))
			})
		})
	}
}
