package filter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
	"courriel/sieve/scripts"
)

// usageSetup is limitsSetup with a clock, each run of qaFileinto on 4,000
// parts stopped by a work limit of 2,000,000 units (2 ms of usage), runs
// of more than 1 ms recorded and a sum of 5 ms the limit: the third run
// disables the script.
func usageSetup(t *testing.T) (f *Filter, home string, r delivery.Recipient, now *time.Time) {
	t.Helper()
	f, home, r = limitsSetup(t, qaFileinto, sieve.Limits{MaxRunWork: 2_000_000})
	clock := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.o.Now = func() time.Time { return clock }
	f.usage.high, f.usage.max = time.Millisecond, 5*time.Millisecond
	return f, home, r, &clock
}

// deliverOnce delivers a message of 4,000 parts to r and returns what
// the user's log gained.
func deliverOnce(t *testing.T, f *Filter, home string, r delivery.Recipient, id string) string {
	t.Helper()
	before, _ := os.ReadFile(filepath.Join(home, UserLogName))
	m := &delivery.Message{ID: id, From: "a@z.z", Body: bytes.NewReader(manyParts(4000)), Arrived: time.Now()}
	if err := f.Deliver(context.Background(), m, []delivery.Recipient{r})[0]; err != nil {
		t.Fatalf("Deliver %s: %v", id, err)
	}
	after, _ := os.ReadFile(filepath.Join(home, UserLogName))
	return strings.TrimPrefix(string(after), string(before))
}

const (
	ranOverLimit = ": run error: line 2, column 36: execution exceeded the work limit (2000000 units): message kept in INBOX\n"
	refused      = "~/.dovecot.sieve: open error: cumulative resource usage limit exceeded: message kept in INBOX\n"
)

// A script whose runs keep spending much is disabled once their sum
// passes the limit within the timeout: it is not run again (the message
// kept in INBOX, the reason in the user's log), whatever the clock says,
// until a new version of it is found after the timeout; the records
// survive a restart.
func TestCumulativeUsageDisables(t *testing.T) {
	f, home, r, now := usageSetup(t)
	for i := 1; i <= 3; i++ {
		log := deliverOnce(t, f, home, r, fmt.Sprintf("m%d", i))
		if !strings.HasSuffix(log, ranOverLimit) {
			t.Fatalf("run %d: user log %q, want the run's error", i, log)
		}
		if disabled := strings.Contains(log, "disabled"); disabled != (i == 3) {
			t.Errorf("run %d: user log %q: disabled %v", i, log, disabled)
		}
		*now = now.Add(10 * time.Minute)
	}
	b, err := os.ReadFile(filepath.Join(home, UsageFileName))
	if err != nil || !strings.HasPrefix(string(b), usageFileHeader+"\n\"~/.dovecot.sieve\" ") || !strings.HasSuffix(string(b), " 6 1772367600 1\n") {
		t.Errorf("%s: %q (%v)", UsageFileName, b, err)
	}
	refusedNow := func(when string) {
		t.Helper()
		if log := deliverOnce(t, f, home, r, "r"); !strings.HasSuffix(log, "msg_id=r: "+refused) {
			t.Errorf("%s: user log %q, want the script refused", when, log)
		}
	}
	refusedNow("at once")
	// a restart: the records are in the home
	f2, err := New(f.o)
	if err != nil {
		t.Fatal(err)
	}
	f2.usage = f.usage
	f = f2
	refusedNow("after a restart")
	*now = now.Add(2 * time.Hour)
	refusedNow("the same version after the timeout")
	*now = now.Add(-2 * time.Hour)
	// a new version within the timeout: still disabled
	if err := os.WriteFile(home+"/.dovecot.sieve", []byte(qaFileinto+"\n# v2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refusedNow("a new version within the timeout")
	// after it: run again, the record dropped
	*now = now.Add(61 * time.Minute)
	if log := deliverOnce(t, f, home, r, "v2"); !strings.HasSuffix(log, "msg_id=v2: ~/.dovecot.sieve"+ranOverLimit) {
		t.Errorf("a new version after the timeout: user log %q, want it run", log)
	}
	if _, err := os.Stat(filepath.Join(home, UsageFileName)); err == nil {
		b, _ := os.ReadFile(filepath.Join(home, UsageFileName))
		if strings.HasSuffix(string(b), " 1\n") {
			t.Errorf("%s after the new version ran: %q", UsageFileName, b)
		}
	}
	if n := stored(home, ""); n != 8 {
		t.Errorf("%d copies in INBOX, want every message's", n)
	}
}

// A sum whose last record is older than the timeout starts again: runs
// spread over hours never disable the script. Each script has a record
// of its own, and without a timeout (negative) nothing is recorded.
func TestCumulativeUsageTimesOut(t *testing.T) {
	f, home, r, now := usageSetup(t)
	for i := 1; i <= 6; i++ {
		if log := deliverOnce(t, f, home, r, fmt.Sprintf("m%d", i)); strings.Contains(log, "disabled") || !strings.HasSuffix(log, ranOverLimit) {
			t.Fatalf("run %d: user log %q", i, log)
		}
		if i%2 == 0 {
			*now = now.Add(61 * time.Minute)
		}
	}
	// two scripts, one after the other: 4 ms each, neither disabled
	if err := os.MkdirAll(home+"/sieve", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(home+"/sieve/"+name+".sieve", []byte(qaFileinto), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Remove(home + "/.dovecot.sieve")
		if err := os.Symlink("sieve/"+name+".sieve", home+"/.dovecot.sieve"); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 2; i++ {
			if log := deliverOnce(t, f, home, r, name); strings.Contains(log, "disabled") || !strings.Contains(log, "~/sieve/"+name+".sieve: run error") {
				t.Fatalf("script %s, run %d: user log %q", name, i, log)
			}
		}
	}
	b, _ := os.ReadFile(filepath.Join(home, UsageFileName))
	if !strings.Contains(string(b), "\"~/sieve/a.sieve\" ") || !strings.Contains(string(b), "\"~/sieve/b.sieve\" ") {
		t.Errorf("%s: %q, want a record for each script", UsageFileName, b)
	}
	f.usage.timeout = -1
	os.Remove(filepath.Join(home, UsageFileName))
	for i := 1; i <= 4; i++ {
		if log := deliverOnce(t, f, home, r, "off"); strings.Contains(log, "disabled") {
			t.Fatalf("no timeout, run %d: user log %q", i, log)
		}
	}
	if _, err := os.Stat(filepath.Join(home, UsageFileName)); err == nil {
		t.Errorf("%s written without a timeout", UsageFileName)
	}
}

// The records are the user's file: one that is not a regular file, or
// does not parse, never stops the script from running, and is replaced.
func TestCumulativeUsageHostileFile(t *testing.T) {
	f, home, r, _ := usageSetup(t)
	for _, bad := range []func(p string){
		func(p string) { os.Symlink("/etc/passwd", p) },
		func(p string) { os.WriteFile(p, []byte("garbage\n\"~/.dovecot.sieve\" 1 2 3 4 5 1\n"), 0o644) },
		func(p string) {
			os.WriteFile(p, []byte(usageFileHeader+"\n\"~/.dovecot.sieve\" x 2 3 99999 5 1\n"), 0o644)
		},
	} {
		p := filepath.Join(home, UsageFileName)
		os.Remove(p)
		bad(p)
		if log := deliverOnce(t, f, home, r, "h"); !strings.HasSuffix(log, ranOverLimit) {
			t.Errorf("user log %q, want the script run", log)
		}
		if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s not replaced by a regular file: %v", UsageFileName, err)
		}
	}
}

// A script disabled and stored again through ManageSieve (sieve/scripts'
// Put, as PUTSCRIPT: the same text, a new file) stays disabled within
// the timeout and runs once it has passed, as Pigeonhole's binary
// compiled again.
func TestCumulativeUsagePutScript(t *testing.T) {
	f, home, r, now := usageSetup(t)
	st, err := scripts.Open(home, scripts.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	os.Remove(home + "/.dovecot.sieve")
	if err := st.Put("rules", []byte(qaFileinto)); err != nil {
		t.Fatal(err)
	}
	if err := st.SetActive("rules"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		deliverOnce(t, f, home, r, "m")
	}
	if log := deliverOnce(t, f, home, r, "r"); !strings.HasSuffix(log, "~/sieve/rules.sieve: open error: cumulative resource usage limit exceeded: message kept in INBOX\n") {
		t.Fatalf("user log %q, want the script disabled", log)
	}
	*now = now.Add(30 * time.Minute)
	if err := st.Put("rules", []byte(qaFileinto)); err != nil {
		t.Fatal(err)
	}
	if log := deliverOnce(t, f, home, r, "p1"); !strings.Contains(log, "open error: cumulative resource usage limit exceeded") {
		t.Errorf("stored again within the timeout: user log %q, want the script disabled", log)
	}
	*now = now.Add(31 * time.Minute)
	if log := deliverOnce(t, f, home, r, "p2"); !strings.HasSuffix(log, "~/sieve/rules.sieve"+ranOverLimit) {
		t.Errorf("after the timeout: user log %q, want the script run", log)
	}
}

// A run stopped by time is charged its work, not its wall time, unless
// its work was high too: a stall the script did not cause (here every
// run "took" 40 s, the time limit 1 ns stopping it at its first
// command) never disables it, however often. A run whose work was high
// is charged its wall time, but never more than the limit: a single run
// never disables the script, the second within the timeout does.
func TestCumulativeUsageTimeLimit(t *testing.T) {
	const stoppedByTime = ": run error: line 1, column 1: execution exceeded the time limit (1ns): message kept in INBOX\n"
	setup := func(t *testing.T) (*Filter, string, delivery.Recipient) {
		f, home, r := limitsSetup(t, qaFileinto, sieve.Limits{MaxRunTime: time.Nanosecond})
		f.o.Now = func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }
		f.usage.high, f.usage.max = time.Millisecond, 5*time.Millisecond
		f.since = func(time.Time) time.Duration { return 40 * time.Second }
		return f, home, r
	}
	t.Run("stalled", func(t *testing.T) {
		f, home, r := setup(t)
		for i := 1; i <= 5; i++ {
			if log := deliverOnce(t, f, home, r, fmt.Sprintf("m%d", i)); !strings.HasSuffix(log, "~/.dovecot.sieve"+stoppedByTime) {
				t.Fatalf("run %d: user log %q, want the run stopped by time and nothing more", i, log)
			}
		}
		if b, err := os.ReadFile(filepath.Join(home, UsageFileName)); err == nil {
			t.Errorf("%s: %q, want no record of runs that did little work", UsageFileName, b)
		}
		if n := stored(home, ""); n != 5 {
			t.Errorf("%d copies in INBOX, want 5", n)
		}
	})
	t.Run("high work", func(t *testing.T) {
		f, home, r := setup(t)
		f.usage.high = 100 // ns: the first command's work is high
		if log := deliverOnce(t, f, home, r, "m1"); !strings.HasSuffix(log, "~/.dovecot.sieve"+stoppedByTime) {
			t.Fatalf("first run: user log %q, want the run stopped by time, the script not disabled", log)
		}
		b, err := os.ReadFile(filepath.Join(home, UsageFileName))
		if err != nil || !strings.HasSuffix(string(b), " 5 1772366400 0\n") {
			t.Errorf("%s after one run: %q (%v), want 5 ms (the limit) charged, not disabled", UsageFileName, b, err)
		}
		if log := deliverOnce(t, f, home, r, "m2"); !strings.Contains(log, "disabled") {
			t.Errorf("second run: user log %q, want the script disabled", log)
		}
	})
}

// runUsage: work; wall time only for a run stopped by time whose work
// was high; at most the limit.
func TestRunUsage(t *testing.T) {
	p := usagePolicy{timeout: time.Hour, high: 1500 * time.Millisecond, max: 30 * time.Second}
	timeErr := &sieve.Error{Err: sieve.ErrTimeLimit}
	scriptsErr := &sieve.Error{Err: errScriptsTime}
	workErr := &sieve.Error{Err: sieve.ErrWorkLimit}
	for _, tc := range []struct {
		name string
		res  sieve.Result
		took time.Duration
		want time.Duration
	}{
		{"ordinary run", sieve.Result{Work: 2_000_000}, time.Second, 2 * time.Millisecond},
		{"stalled, stopped by time", sieve.Result{Work: 5_000_000, Err: timeErr}, 31 * time.Second, 5 * time.Millisecond},
		{"stalled, the delivery's time", sieve.Result{Work: 5_000_000, Err: scriptsErr}, 45 * time.Second, 5 * time.Millisecond},
		{"high work, stopped by time", sieve.Result{Work: 2_000_000_000, Err: timeErr}, 20 * time.Second, 20 * time.Second},
		{"high work, stopped by time, past the limit", sieve.Result{Work: 2_000_000_000, Err: timeErr}, 31 * time.Second, 30 * time.Second},
		{"high work, the delivery's time", sieve.Result{Work: 2_000_000_000, Err: scriptsErr}, 10 * time.Second, 10 * time.Second},
		{"stopped by work", sieve.Result{Work: 4_000_000_000, Err: workErr}, 50 * time.Second, 4 * time.Second},
		{"work past the limit", sieve.Result{Work: 90_000_000_000, Err: workErr}, 90 * time.Second, 30 * time.Second},
	} {
		if got := p.runUsage(tc.res, tc.took); got != tc.want {
			t.Errorf("%s: charged %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The usage records are made durable: the home is fsynced once the new
// file is in place under its name, and a home that cannot be synced is
// an error, not a record taken for written.
func TestUsageSyncsHome(t *testing.T) {
	f, home, r, _ := usageSetup(t)
	var synced []string
	f.syncDir = func(root *os.Root) error {
		if _, err := root.Stat(UsageFileName); err != nil {
			t.Errorf("home synced before %s is in place: %v", UsageFileName, err)
		}
		synced = append(synced, root.Name())
		return syncRootDir(root)
	}
	deliverOnce(t, f, home, r, "m1")
	if !slices.Contains(synced, home) {
		t.Fatalf("homes synced: %q; want %q", synced, home)
	}
	f.syncDir = func(*os.Root) error { return syscall.EIO }
	root, err := os.OpenRoot(home)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := f.writeUsage(root, []usageEntry{{name: "x"}}, -1, -1); !errors.Is(err, syscall.EIO) {
		t.Errorf("writeUsage with a failing sync: %v, want EIO", err)
	}
}
