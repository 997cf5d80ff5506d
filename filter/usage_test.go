package filter

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
