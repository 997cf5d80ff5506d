package uidlist

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// A dovecot-uidlist as Dovecot 2.3 leaves it: extension fields, a name
// without S=/W= carrying its sizes as W/S extensions, an unknown header field.
const dovecotList = `3 V1700000000 N7 G5d1f7a0b3c2e1f00a40b0000d2b1c5a3 Xfuture
1 :1699999990.M1P10.mail,S=1024,W=1050
4 W2049 S2000 :1699999991.M2P10.mail
6 GfeedFACE P123 :1699999992.M3P10.mail,S=10,W=11
`

func TestParseDovecotUIDList(t *testing.T) {
	t.Parallel()
	l, err := Parse(strings.NewReader(dovecotList))
	if err != nil {
		t.Fatal(err)
	}
	if l.UIDValidity != 1700000000 || l.NextUID != 7 || l.GUID != "5d1f7a0b3c2e1f00a40b0000d2b1c5a3" {
		t.Errorf("header = %+v", l)
	}
	if len(l.HeaderExt) != 1 || l.HeaderExt[0] != "Xfuture" {
		t.Errorf("header ext = %v", l.HeaderExt)
	}
	if len(l.Records) != 3 || l.Records[1].UID != 4 || l.Records[1].Name != "1699999991.M2P10.mail" {
		t.Fatalf("records = %+v", l.Records)
	}
	if v, ok := l.Records[1].ExtValue('W'); !ok || v != "2049" {
		t.Errorf("W ext = %q %v", v, ok)
	}
	out := string(l.Marshal())
	if out != dovecotList {
		t.Errorf("round trip changed the file:\n%s\nwant\n%s", out, dovecotList)
	}
	again, err := Parse(strings.NewReader(out))
	if err != nil || len(again.Records) != 3 || again.NextUID != 7 {
		t.Errorf("re-read: %+v %v", again, err)
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"empty":          "",
		"version 2":      "2 V1 N1\n",
		"no validity":    "3 N5\n",
		"unordered":      "3 V1 N9\n5 :a\n3 :b\n",
		"slash in name":  "3 V1 N9\n1 :../x\n",
		"bad extension":  "3 V1 N9\n1 w12 :a\n",
		"zero uid":       "3 V1 N9\n0 :a\n",
		"no file name":   "3 V1 N9\n1 W12\n",
		"garbage header": "hello\n",
	} {
		if _, err := Parse(strings.NewReader(in)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
}

// A crash while a record was appended leaves a last line without its
// newline: that record is dropped, the rest of the file kept.
func TestParseTornAppend(t *testing.T) {
	t.Parallel()
	for _, tail := range []string{"7 W1", "7", "7 :", "3 :x"} {
		l, err := Parse(strings.NewReader(dovecotList + tail))
		if err != nil {
			t.Errorf("tail %q: %v", tail, err)
			continue
		}
		if len(l.Records) != 3 || l.NextUID != 7 {
			t.Errorf("tail %q: %d records, next %d", tail, len(l.Records), l.NextUID)
		}
	}
	// Complete, the same line is corruption.
	if _, err := Parse(strings.NewReader(dovecotList + "7 W1\n")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("complete bad line: %v", err)
	}
	// A complete last line without its newline is kept.
	l, err := Parse(strings.NewReader(dovecotList + "9 :y"))
	if err != nil || len(l.Records) != 4 || l.NextUID != 10 {
		t.Errorf("unterminated good line: %+v %v", l, err)
	}
}

func TestNextUIDAtLeastPastLastRecord(t *testing.T) {
	t.Parallel()
	l, err := Parse(strings.NewReader("3 V1 N2\n1 :a\n5 :b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.NextUID != 6 {
		t.Errorf("NextUID = %d, want 6", l.NextUID)
	}
}

func TestVersion1Accepted(t *testing.T) {
	t.Parallel()
	l, err := Parse(strings.NewReader("1 1234 3\n1 a:2,S\n2 b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.UIDValidity != 1234 || len(l.Records) != 2 || l.Records[0].Name != "a" {
		t.Errorf("v1 = %+v", l)
	}
}

func TestKeywords(t *testing.T) {
	t.Parallel()
	k, err := ParseKeywords(strings.NewReader("0 $Forwarded\n1 $Junk\n3 Work\n30 TooFar\nbroken\n2 bad(name\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k[0] != "$Forwarded" || k[1] != "$Junk" || k[3] != "Work" || k[2] != "" {
		t.Errorf("keywords = %q", k[:4])
	}
	if i := k.Index("work"); i != 3 {
		t.Errorf("Index(work) = %d", i)
	}
	i, added := k.Add("Personal")
	if i != 2 || !added {
		t.Errorf("Add = %d %v, want the first free slot 2", i, added)
	}
	if got := string(k.Marshal()); got != "0 $Forwarded\n1 $Junk\n2 Personal\n3 Work\n" {
		t.Errorf("Marshal = %q", got)
	}
	var full Keywords
	for j := range full {
		full[j] = "k" + string(rune('a'+j))
	}
	if i, _ := full.Add("one-more"); i != -1 {
		t.Errorf("27th keyword got slot %d", i)
	}
}

func TestLockCommitAndStale(t *testing.T) {
	t.Parallel()
	root, dir := tempRoot(t)
	lk, err := Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(root, FileName, 50*time.Millisecond, 0o600, -1, -1); !errors.Is(err, ErrLocked) {
		t.Errorf("second lock: %v, want ErrLocked", err)
	}
	if err := lk.Commit([]byte("3 V1 N1\n")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dir + "/" + FileName); string(b) != "3 V1 N1\n" {
		t.Errorf("content = %q", b)
	}
	if _, err := os.Stat(dir + "/" + FileName + ".lock"); !os.IsNotExist(err) {
		t.Errorf("lock file left behind: %v", err)
	}
	// A lock older than StaleTimeout is broken.
	os.WriteFile(dir+"/"+FileName+".lock", nil, 0o600)
	old := time.Now().Add(-StaleTimeout - time.Minute)
	os.Chtimes(dir+"/"+FileName+".lock", old, old)
	lk, err = Acquire(root, FileName, 50*time.Millisecond, 0o600, -1, -1)
	if err != nil {
		t.Fatalf("stale lock not broken: %v", err)
	}
	lk.Release()
}

// A held lock says "pid:host", as Dovecot's do; one whose process of this
// host is gone (a server killed while it held the lock) is broken at once
// instead of after StaleTimeout, which kept a folder from opening for two
// minutes after a crash. A live holder, another host's or a lock without
// a pid still wait.
func TestLockOfDeadProcess(t *testing.T) {
	t.Parallel()
	root, dir := tempRoot(t)
	lockPath := filepath.Join(dir, FileName+".lock")
	lk, err := Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if b, _ := os.ReadFile(lockPath); string(b) != fmt.Sprintf("%d:%s", os.Getpid(), host) {
		t.Errorf("held lock says %q", b)
	}
	lk.Release()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left after Release: %v", ents)
	}

	// A pid that no longer exists: a child that has exited.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead := child.Process.Pid
	for _, c := range []struct {
		name, content string
		broken        bool
	}{
		{"dead pid of this host", fmt.Sprintf("%d:%s", dead, host), true},
		{"live pid of this host", fmt.Sprintf("%d:%s", os.Getppid(), host), false},
		{"dead pid of another host", fmt.Sprintf("%d:%s", dead, "other.example"), false},
		{"no pid (Dovecot's uidlist lock)", "", false},
		{"uidlist data (a commit in progress)", "3 V1 N1\n", false},
	} {
		if err := os.WriteFile(lockPath, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		lk, err := Acquire(root, FileName, 50*time.Millisecond, 0o600, -1, -1)
		if got := err == nil; got != c.broken {
			t.Errorf("%s: Acquire error %v, want broken %v", c.name, err, c.broken)
		}
		if err == nil {
			lk.Release()
		}
		os.Remove(lockPath)
	}
}

// On a full disk the lock is still taken, empty (the pid would need a
// data block), and still locks; replacing the target needs room and
// fails with ENOSPC, leaving the target as it was and no lock behind.
// (QA: SELECT of a folder with new messages failed on a full disk:
// "create dovecot-uidlist.lock: write ….lock.tmp-…: no space left on
// device".)
func TestLockOnFullDisk(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	testenv.MountTmpfs(t, dir, "size=64k,mode=0700")
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	const list = "3 V1 N2\n1 :1700000000.M1P1.host\n"
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	free := testenv.FillSpace(t, filepath.Join(dir, "fill"))
	lockPath := filepath.Join(dir, FileName+".lock")

	lk, err := Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatalf("Acquire on a full disk: %v", err)
	}
	if fi, err := os.Stat(lockPath); err != nil || fi.Size() != 0 {
		t.Fatalf("lock on a full disk: %v, %v; want an empty file", fi, err)
	}
	if _, err := Acquire(root, FileName, 50*time.Millisecond, 0o600, -1, -1); !errors.Is(err, ErrLocked) {
		t.Errorf("second Acquire while the empty lock is held: %v, want ErrLocked", err)
	}
	err = lk.Commit([]byte(list + "2 :1700000001.M2P1.host\n"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Commit on a full disk: %v, want ENOSPC", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, FileName)); string(b) != list {
		t.Errorf("%s after the failed Commit: %q", FileName, b)
	}
	if _, err := os.Lstat(lockPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock after the failed Commit: %v", err)
	}
	lk, err = Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	lk.Release()
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("files left: %v, want %s and the filler", ents, FileName)
	}

	free()
	lk, err = Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	if b, _ := os.ReadFile(lockPath); !strings.HasPrefix(string(b), fmt.Sprintf("%d:", os.Getpid())) {
		t.Errorf("lock with room again says %q, want pid:host", b)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(dovecotList)
	f.Add("1 1 1\n")
	f.Fuzz(func(t *testing.T, in string) {
		l, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		again, err := Parse(strings.NewReader(string(l.Marshal())))
		if err != nil {
			t.Fatalf("re-parse of our own output failed: %v", err)
		}
		if len(again.Records) != len(l.Records) || again.NextUID != l.NextUID {
			t.Fatalf("round trip changed records")
		}
	})
}

// A holder still at work touches its lock (Touch, every TouchInterval),
// as Dovecot touches its uidlist lock while it syncs: one held past
// StaleTimeout is then not broken by another process. Touch is a clock
// comparison until the interval has passed.
func TestLockTouch(t *testing.T) {
	t.Parallel()
	root, dir := tempRoot(t)
	lockPath := filepath.Join(dir, FileName+".lock")
	lk, err := Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Release()
	// Held for three minutes by now (slow renames): its mtime is that old.
	old := time.Now().Add(-StaleTimeout - time.Minute)
	backdate := func() {
		if err := os.Chtimes(lockPath, old, old); err != nil {
			t.Fatal(err)
		}
	}
	mtime := func() time.Time {
		st, err := os.Stat(lockPath)
		if err != nil {
			t.Fatal(err)
		}
		return st.ModTime()
	}
	backdate()
	start := time.Now()
	lk.Touch(start.Add(TouchInterval / 2))
	if !mtime().Equal(old) {
		t.Errorf("touched before TouchInterval passed")
	}
	lk.Touch(start.Add(TouchInterval + time.Second))
	if m := mtime(); time.Since(m) > time.Minute {
		t.Fatalf("not touched after TouchInterval: mtime %v", m)
	}
	if l2, err := Acquire(root, FileName, 50*time.Millisecond, 0o600, -1, -1); !errors.Is(err, ErrLocked) {
		if err == nil {
			l2.Release()
		}
		t.Fatalf("a lock touched by its holder was broken: %v", err)
	}
	// The next touch waits for the next interval, counted from this one.
	backdate()
	lk.Touch(start.Add(TouchInterval + 2*time.Second))
	if !mtime().Equal(old) {
		t.Errorf("touched again within TouchInterval")
	}
	lk.Touch(start.Add(2*TouchInterval + 2*time.Second))
	if time.Since(mtime()) > time.Minute {
		t.Errorf("not touched at the second interval")
	}
}

// A lock broken as stale by another process, which then took its own:
// Release leaves the other's lock in place, and Commit neither renames
// it over the target (the uidlist would become the other's empty lock)
// nor removes it, as Dovecot's file_dotlock_delete and
// file_dotlock_replace check the lock is still theirs (device and inode).
func TestLockBrokenMeanwhile(t *testing.T) {
	t.Parallel()
	root, dir := tempRoot(t)
	lockPath := filepath.Join(dir, FileName+".lock")
	target := filepath.Join(dir, FileName)
	if err := os.WriteFile(target, []byte("3 V1 N5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	breakAndRetake := func() {
		t.Helper()
		if err := os.Remove(lockPath); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lockPath, nil, 0o600); err != nil { // the other's (Dovecot's: empty)
			t.Fatal(err)
		}
	}
	othersHeld := func(what string) {
		t.Helper()
		if _, err := os.Stat(lockPath); err != nil {
			t.Errorf("%s removed the other process's lock: %v", what, err)
		}
		if l2, err := Acquire(root, FileName, 20*time.Millisecond, 0o600, -1, -1); !errors.Is(err, ErrLocked) {
			if err == nil {
				l2.Release()
			}
			t.Errorf("after %s, the other's lock no longer locks: %v", what, err)
		}
	}

	lk, err := Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	breakAndRetake()
	lk.Release()
	othersHeld("Release")
	os.Remove(lockPath)

	lk, err = Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	breakAndRetake()
	if err := lk.Commit([]byte("3 V1 N9\n")); !errors.Is(err, ErrLockLost) {
		t.Errorf("Commit of a broken lock: %v, want ErrLockLost", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "3 V1 N5\n" {
		t.Errorf("target after Commit of a broken lock: %q", b)
	}
	othersHeld("Commit")
	os.Remove(lockPath)

	// Broken, and nobody took it since: Release has nothing to remove.
	lk, err = Acquire(root, FileName, time.Second, 0o600, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(lockPath)
	lk.Release()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}

// tempRoot is a new empty directory and its os.Root, closed at the end.
func tempRoot(t *testing.T) (*os.Root, string) {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return root, dir
}
