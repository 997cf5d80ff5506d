package tlsconf_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/tlsconf"
)

// fakeClock is an Options.Now the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// laterFuncs holds what a Manager asked to run later (SetAfterFunc), for
// the test to run once it has moved its clock.
type laterFuncs struct {
	mu    sync.Mutex
	delay []time.Duration
	f     []func()
}

func (l *laterFuncs) afterFunc(d time.Duration, f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.delay, l.f = append(l.delay, d), append(l.f, f)
}

// take returns the delays and functions asked for since the last take.
func (l *laterFuncs) take() ([]time.Duration, []func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d, f := l.delay, l.f
	l.delay, l.f = nil, nil
	return d, f
}

// swapLink points link at target atomically, as certbot does (a new
// symlink renamed over the old one).
func swapLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// A certbot renewal swaps the live/ symlinks one at a time (cert, then
// privkey, chain, fullchain), so a check can see the new key beside the
// old full chain. That is not an error yet: the pair is read again a
// moment later, and served then, with nothing logged at ERROR; the
// mismatched pair is never served. A mismatch that stays is an error
// once the files have stood still, logged once.
func TestCertbotSymlinkSwapSettles(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "test CA")
	dir := t.TempDir()
	for _, d := range []string{"archive", "live"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// archive/fullchainN.pem and privkeyN.pem, as certbot keeps them.
	pairs := make([]testPair, 4)
	for i := 1; i < len(pairs); i++ {
		pairs[i] = ca.issue(t, leafOpts{})
		writeFile(t, filepath.Join(dir, "archive", fmt.Sprintf("fullchain%d.pem", i)), pairs[i].certPEM)
		writeFile(t, filepath.Join(dir, "archive", fmt.Sprintf("privkey%d.pem", i)), pairs[i].keyPEM)
	}
	certFile, keyFile := filepath.Join(dir, "live", "fullchain.pem"), filepath.Join(dir, "live", "privkey.pem")
	link := func(kind string, n int) {
		t.Helper()
		swapLink(t, fmt.Sprintf("../archive/%s%d.pem", kind, n), filepath.Join(dir, "live", kind+".pem"))
	}
	link("fullchain", 1)
	link("privkey", 1)

	clock := &fakeClock{t: time.Now()}
	later := &laterFuncs{}
	log, logs := newLogger(t)
	m, err := tlsconf.New(tlsconf.Options{CertFile: certFile, KeyFile: keyFile, Logger: log,
		ReloadCheckInterval: tlsconf.DefaultReloadCheckInterval, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	m.SetAfterFunc(later.afterFunc)
	addr := serveEcho(t, m.ServerConfig())
	served := func() string { return servedSerial(t, addr, ca.pool()).String() }
	if got, want := served(), pairs[1].leaf.SerialNumber.String(); got != want {
		t.Fatalf("at start served %s, want %s", got, want)
	}

	// The renewal is halfway when the next check comes.
	link("privkey", 2)
	clock.add(tlsconf.DefaultReloadCheckInterval)
	if got, want := served(), pairs[1].leaf.SerialNumber.String(); got != want {
		t.Fatalf("halfway: served %s, want the previous %s", got, want)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a renewal halfway through its swaps is logged as an error:\n%s", logs)
	}
	delays, retry := later.take()
	if len(retry) != 1 || delays[0] <= 0 || delays[0] >= tlsconf.DefaultReloadCheckInterval {
		t.Fatalf("second look asked for in %v, want once, sooner than the next check", delays)
	}
	// It completes; the second look, not the next check, serves it.
	link("fullchain", 2)
	clock.add(delays[0])
	retry[0]()
	if got, want := served(), pairs[2].leaf.SerialNumber.String(); got != want {
		t.Errorf("after the second look served %s, want the renewal %s", got, want)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a renewal completed within the delay is logged as an error:\n%s", logs)
	}

	// A key that does not match and stays so is an error, once.
	link("privkey", 3)
	clock.add(tlsconf.DefaultReloadCheckInterval)
	if got, want := served(), pairs[2].leaf.SerialNumber.String(); got != want {
		t.Fatalf("mismatched: served %s, want %s", got, want)
	}
	delays, retry = later.take()
	if len(retry) != 1 {
		t.Fatalf("second look asked for %d times, want once", len(retry))
	}
	clock.add(delays[0])
	retry[0]()
	for range 2 {
		clock.add(tlsconf.DefaultReloadCheckInterval)
		if got, want := served(), pairs[2].leaf.SerialNumber.String(); got != want {
			t.Fatalf("mismatched, settled: served %s, want %s", got, want)
		}
	}
	out := logs.String()
	if n := strings.Count(out, "level=ERROR"); n != 1 || !strings.Contains(out, "private key does not match") {
		t.Errorf("a mismatch that stays is logged at ERROR %d times, want once with the reason:\n%s", n, out)
	}
	if _, retry := later.take(); len(retry) != 0 {
		t.Errorf("a settled mismatch is looked at again %d times more", len(retry))
	}
}
