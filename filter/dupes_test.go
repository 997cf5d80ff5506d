package filter

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/directory"
)

// dupesBytes is a database: version, then each record (stamp, id, user).
func dupesBytes(version uint32, recs ...dupRecord) []byte {
	b := binary.NativeEndian.AppendUint32(nil, version)
	for _, r := range recs {
		b = binary.NativeEndian.AppendUint32(b, uint32(r.expiry))
		b = binary.NativeEndian.AppendUint32(b, uint32(len(r.id)))
		b = binary.NativeEndian.AppendUint32(b, uint32(len(r.user)))
		b = append(b, r.id...)
		b = append(b, r.user...)
	}
	return b
}

// TestDupesFormat reads a database the real dovecot-lda 2.3.19 wrote
// (Pigeonhole's vacation :days 3 "away" answering bob@z.z for xomail)
// and writes it back byte for byte.
func TestDupesFormat(t *testing.T) {
	lda, _ := hex.DecodeString("02000000bd071b6b1000000006000000445ca60eeabaa03e9e3bcb64811e137f786f6d61696c")
	if binary.NativeEndian.Uint32(lda) != 2 {
		t.Skip("a big-endian host: the sample is little-endian")
	}
	tbl, problem := parseDupes(lda, 0x6b1b07bd)
	if problem != "" || len(tbl.recs) != 1 {
		t.Fatalf("%d records, problem %q", len(tbl.recs), problem)
	}
	r := tbl.recs[0]
	if r.id != vacationDupID("bob@z.z", "away<default-subject><default-from><NO-MIME>") || r.user != "xomail" || r.expiry != 0x6b1b07bd {
		t.Errorf("record %x %q %d", r.id, r.user, r.expiry)
	}
	if got := tbl.encode(); !bytes.Equal(got, lda) {
		t.Errorf("written back:\n%x\nwant\n%x", got, lda)
	}
	// A record holds through its stamp's second (Dovecot: stamp < now
	// is expired), and a later expired record of the same id and user
	// (any case) forgets it, as Dovecot's read does.
	if tbl, _ := parseDupes(lda, 0x6b1b07bd+1); len(tbl.recs) != 0 {
		t.Error("an expired record read")
	}
	twice := append(bytes.Clone(lda), dupesBytes(0, dupRecord{id: r.id, user: "XOMAIL", expiry: 5})[4:]...)
	if tbl, _ := parseDupes(twice, 100); tbl.has(r.id) {
		t.Error("a record forgotten later in the file still holds")
	}
}

func TestSMTPAddress(t *testing.T) {
	for in, want := range map[string]string{
		"bob@z.z":           "bob@z.z",
		`"bob"@z.z`:         "bob@z.z",
		`"bob smith"@z.z`:   `"bob smith"@z.z`,
		`"a\"b"@z.z`:        `"a\"b"@z.z`,
		`"a.b"@z.z`:         "a.b@z.z",
		`".ab"@z.z`:         `".ab"@z.z`,
		`"a..b"@z.z`:        `"a..b"@z.z`,
		"o'neil+x@Z.z":      "o'neil+x@Z.z",
		`"x@y"@z.z`:         `"x@y"@z.z`,
		`"back\\slash"@z`:   `"back\\slash"@z`,
		"élodie@exemple.fr": "élodie@exemple.fr",
	} {
		if got := smtpAddress(in); got != want {
			t.Errorf("smtpAddress(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestDupesBound: past maxDupesFile a write drops the records expiring
// first, never the ones it adds.
func TestDupesBound(t *testing.T) {
	var tbl dupTable
	id := strings.Repeat("i", dupesMaxField)
	n := maxDupesFile/(12+dupesMaxField+1) + 50
	for i := range n {
		tbl.set(id[:dupesMaxField-8]+string(binary.BigEndian.AppendUint64(nil, uint64(i))), "u", int64(1000+i), 0, false)
	}
	tbl.set("mine", "u", 10, 0, true) // expires first, yet kept
	b := tbl.encode()
	if len(b) > maxDupesFile {
		t.Fatalf("%d bytes written, bound %d", len(b), maxDupesFile)
	}
	got, problem := parseDupes(b, 0)
	if problem != "" || !got.has("mine") {
		t.Fatalf("problem %q, mine kept: %v", problem, got.has("mine"))
	}
	dropped := n + 1 - len(got.recs)
	if dropped < 50 || dropped > 60 {
		t.Errorf("%d records dropped, want about 50", dropped)
	}
	for _, r := range got.recs {
		if r.id != "mine" && r.expiry < int64(1000+dropped) {
			t.Errorf("kept a record expiring at %d while dropping later ones", r.expiry)
			break
		}
	}
}

// TestDupesHostile: whatever the user (shell access) put in the
// database, a reply is decided without a crash, a loop or an
// allocation from a length field: the records before the damage count,
// the problem is said, and the next write leaves a sound file.
func TestDupesHostile(t *testing.T) {
	const now = 1_700_000_000
	bob := dupRecord{id: vacationDupID("bob@z.z", "h"), user: "xomail", expiry: now + 3600}
	valid := dupesBytes(2, bob)
	header := func(stamp, idSize, userSize uint32) []byte {
		b := binary.NativeEndian.AppendUint32(nil, stamp)
		b = binary.NativeEndian.AppendUint32(b, idSize)
		return binary.NativeEndian.AppendUint32(b, userSize)
	}
	for _, c := range []struct {
		name    string
		data    []byte
		fresh   bool   // bob gets a reply
		problem string // in the problem, "" for none
	}{
		{"empty", nil, true, ""},
		{"short", []byte{2, 0}, true, "shorter than its header"},
		{"version 3", dupesBytes(3, bob), true, "version 3"},
		{"version 0 (1.0's format)", dupesBytes(0, bob), true, "version 0"},
		{"truncated record", append(bytes.Clone(valid), append(header(now+9, 16, 6), "abc"...)...), false, "unexpected end of file"},
		{"huge id size", append(bytes.Clone(valid), header(now+9, 0xffffffff, 6)...), false, "broken record"},
		{"huge user size", append(bytes.Clone(valid), header(now+9, 16, 0xfffffff0)...), false, "broken record"},
		{"id size 0", append(bytes.Clone(valid), header(now+9, 0, 6)...), false, "broken record"},
		{"partial header", append(bytes.Clone(valid), 1, 2, 3), false, "partial record header"},
		{"damage before bob", append(dupesBytes(2), append(header(now+9, 5000, 1), valid[4:]...)...), true, "broken record"},
		{"over the bound", append(bytes.Clone(valid), make([]byte, maxDupesFile)...), false, "larger than"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}, Now: func() time.Time { return time.Unix(now, 0) }})
			home := t.TempDir()
			path := filepath.Join(home, DuplicateDBName)
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			fresh, problem, err := f.markReply(context.Background(), replyMark{home: home, user: "xomail", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1})
			if err != nil || fresh != c.fresh || (c.problem == "") != (problem == "") || !strings.Contains(problem, c.problem) {
				t.Fatalf("fresh %v, problem %q, err %v; want %v, %q", fresh, problem, err, c.fresh, c.problem)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !fresh {
				return // nothing written: the damage stays until a reply
			}
			tbl, problem := parseDupes(b, now)
			if problem != "" || !tbl.has(bob.id) || len(b) > maxDupesFile {
				t.Errorf("after the reply: problem %q, bob recorded %v, %d bytes", problem, tbl.has(bob.id), len(b))
			}
		})
	}
}

// TestDupesNotAFile: a symlink, a FIFO or a directory in place of the
// database or the lock directory is refused (no reply, an error), never
// followed or blocked on; a delivery says so in the log.
func TestDupesNotAFile(t *testing.T) {
	f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}})
	elsewhere := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(elsewhere, dupesBytes(2), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		make func(home string) error
	}{
		{"symlink", func(h string) error { return os.Symlink(elsewhere, filepath.Join(h, DuplicateDBName)) }},
		{"symlink in the home", func(h string) error {
			os.WriteFile(filepath.Join(h, "db"), dupesBytes(2), 0o600)
			return os.Symlink("db", filepath.Join(h, DuplicateDBName))
		}},
		{"fifo", func(h string) error { return syscall.Mkfifo(filepath.Join(h, DuplicateDBName), 0o600) }},
		{"directory", func(h string) error { return os.Mkdir(filepath.Join(h, DuplicateDBName), 0o700) }},
		{"lock directory a file", func(h string) error { return os.WriteFile(filepath.Join(h, dupesLocksDir), nil, 0o600) }},
		{"lock directory a symlink", func(h string) error { return os.Symlink(".", filepath.Join(h, dupesLocksDir)) }},
		{"id lock a symlink", func(h string) error {
			os.Mkdir(filepath.Join(h, dupesLocksDir), 0o700)
			os.WriteFile(filepath.Join(h, "l"), nil, 0o600)
			sum := md5.Sum([]byte(vacationDupID("bob@z.z", "h")))
			return os.Symlink("../l", filepath.Join(h, dupesLocksDir, "duplicate.lock."+hex.EncodeToString(sum[:])))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			if err := c.make(home); err != nil {
				t.Fatal(err)
			}
			fresh, _, err := f.markReply(context.Background(), replyMark{home: home, user: "u", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1})
			if err == nil || fresh {
				t.Errorf("fresh %v, err %v: want an error", fresh, err)
			}
			if b, _ := os.ReadFile(elsewhere); !bytes.Equal(b, dupesBytes(2)) {
				t.Error("the file a symlink names was written")
			}
		})
	}
	// A symlink as the dotlock is a lock file like any other: removed
	// once stale (as Dovecot's lstat sees it), never followed.
	t.Run("dotlock a symlink", func(t *testing.T) {
		home := t.TempDir()
		os.Symlink(elsewhere, filepath.Join(home, dupesLockName))
		f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}})
		f.dupWait.stale = 100 * time.Millisecond
		fresh, _, err := f.markReply(context.Background(), replyMark{home: home, user: "u", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1})
		if err != nil || !fresh {
			t.Errorf("fresh %v, err %v", fresh, err)
		}
		if b, _ := os.ReadFile(elsewhere); !bytes.Equal(b, dupesBytes(2)) {
			t.Error("the file the symlink names was written")
		}
		if fi, err := os.Lstat(filepath.Join(home, DuplicateDBName)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("database: %v %v", fi, err)
		}
	})
	t.Run("delivery log", func(t *testing.T) {
		home := t.TempDir()
		os.WriteFile(home+"/.dovecot.sieve", []byte(`require "vacation"; vacation "away";`), 0o644)
		syscall.Mkfifo(filepath.Join(home, DuplicateDBName), 0o600)
		n, log := deliverVacation(t, home, nil)
		if n != 0 || !strings.Contains(log, "vacation not sent: memory unusable") || !strings.Contains(log, "not a regular file") {
			t.Errorf("%d replies, log:\n%s", n, log)
		}
		home = t.TempDir()
		os.WriteFile(home+"/.dovecot.sieve", []byte(`require "vacation"; vacation "away";`), 0o644)
		os.WriteFile(filepath.Join(home, DuplicateDBName), dupesBytes(7), 0o600)
		n, log = deliverVacation(t, home, nil)
		if n != 1 || !strings.Contains(log, "vacation memory damaged") || !strings.Contains(log, "version 7") {
			t.Errorf("%d replies, log:\n%s", n, log)
		}
	})
}

// deliverVacation delivers a message from bob@z.z to u@x.y (home) and
// returns the replies queued and the log.
func deliverVacation(t *testing.T, home string, waits *dupWaits) (int, string) {
	t.Helper()
	var log bytes.Buffer
	q := &recordingQueue{}
	store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: home})
	f, err := New(Options{Store: store, Directory: fakeDir{"u@x.y": &directory.Mailbox{Home: home, Login: "u"}}, Outbound: q,
		Hostname: "mx.x.y", Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if waits != nil {
		f.dupWait = *waits
	}
	m := &delivery.Message{ID: "m", From: "bob@z.z", Arrived: time.Now(), Body: strings.NewReader("From: bob@z.z\r\nTo: u@x.y\r\nSubject: hi\r\n\r\nbody\r\n")}
	if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/"}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	return len(q.data), log.String()
}

// TestDupesDotlock: a dotlock left by a process that died is overridden
// once nothing changed for the stale timeout; one still fresh is waited
// for, and past the timeout the reply is not sent (said in the log),
// the other process's lock left alone.
func TestDupesDotlock(t *testing.T) {
	script := []byte(`require "vacation"; vacation "away";`)
	home := t.TempDir()
	os.WriteFile(home+"/.dovecot.sieve", script, 0o644)
	lock := filepath.Join(home, dupesLockName)
	os.WriteFile(lock, []byte("partial"), 0o600)
	n, log := deliverVacation(t, home, &dupWaits{idLock: 10 * time.Second, dotlock: 10 * time.Second, stale: 100 * time.Millisecond})
	if n != 1 {
		t.Errorf("%d replies past a stale dotlock, want 1\n%s", n, log)
	}
	if _, err := os.Lstat(lock); err == nil {
		t.Error("the dotlock is still there")
	}
	if ents, _ := os.ReadDir(filepath.Join(home, dupesLocksDir)); len(ents) != 0 {
		t.Errorf("id locks left: %v", ents)
	}

	home = t.TempDir()
	os.WriteFile(home+"/.dovecot.sieve", script, 0o644)
	lock = filepath.Join(home, dupesLockName)
	os.WriteFile(lock, []byte("held"), 0o600)
	n, log = deliverVacation(t, home, &dupWaits{idLock: 10 * time.Second, dotlock: 100 * time.Millisecond, stale: time.Hour})
	if n != 0 || !strings.Contains(log, "held by another process") {
		t.Errorf("%d replies while the dotlock is held, want none and a log line\n%s", n, log)
	}
	if b, err := os.ReadFile(lock); err != nil || string(b) != "held" {
		t.Errorf("the other process's dotlock: %q %v", b, err)
	}
}

// TestDupesIDLock: the id's lock held by another process (dovecot-lda
// between its check and its record) makes courriel wait, and not reply
// past the timeout; once released, the reply goes.
func TestDupesIDLock(t *testing.T) {
	script := []byte(`require "vacation"; vacation "away";`)
	home := t.TempDir()
	os.WriteFile(home+"/.dovecot.sieve", script, 0o644)
	os.Mkdir(filepath.Join(home, dupesLocksDir), 0o700)
	sum := md5.Sum([]byte(vacationDupID("bob@z.z", "away<default-subject><default-from><NO-MIME>")))
	path := filepath.Join(home, dupesLocksDir, "duplicate.lock."+hex.EncodeToString(sum[:]))
	os.WriteFile(path, nil, 0o600)

	// fcntl locks are the process's: another process must hold it.
	stop := holdLock(t, path)
	defer stop()
	waits := &dupWaits{idLock: 200 * time.Millisecond, dotlock: 10 * time.Second, stale: 10 * time.Second}
	n, log := deliverVacation(t, home, waits)
	if n != 0 || !strings.Contains(log, "lock timeout") {
		t.Errorf("%d replies while the id is locked, want none and a log line\n%s", n, log)
	}
	if _, err := os.Stat(filepath.Join(home, DuplicateDBName)); err == nil {
		t.Error("the database was written without the id's lock")
	}
	stop()
	waits.idLock = 10 * time.Second
	if n, log := deliverVacation(t, home, waits); n != 1 {
		t.Errorf("%d replies once the lock is released, want 1\n%s", n, log)
	}
	if _, err := os.Lstat(path); err == nil {
		t.Error("the id's lock file was left")
	}
}

// TestHoldLockHelper is TestDupesIDLock's other process: it holds an
// fcntl write lock on $COURRIEL_TEST_HOLD_LOCK until its stdin closes.
func TestHoldLockHelper(t *testing.T) {
	path := os.Getenv("COURRIEL_TEST_HOLD_LOCK")
	if path == "" {
		t.Skip("a helper process of TestDupesIDLock")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.FcntlFlock(f.Fd(), syscall.F_SETLK, &syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart}); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("locked\n")
	io.Copy(io.Discard, os.Stdin)
}

// TestDupesConcurrent: deliveries to one home at once answer a sender
// once (an fcntl lock does not exclude its own process: markReply's
// per-home lock does), and a home whose id lock another process holds
// holds up no other home's reply, even one the striped locks of
// courriel's memory would have put with it.
func TestDupesConcurrent(t *testing.T) {
	f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}})
	home := t.TempDir()
	const n = 8
	results := make(chan bool, n)
	for i := range n {
		go func() {
			fresh, _, err := f.markReply(context.Background(), replyMark{home: home, user: "u", sender: "bob@z.z", handle: "h",
				claim: replyClaim(fmt.Sprintf("Q%d-0", i)), period: time.Hour, uid: -1, gid: -1})
			results <- fresh && err == nil
		}()
	}
	replies := 0
	for range n {
		if <-results {
			replies++
		}
	}
	if replies != 1 {
		t.Errorf("%d replies from %d concurrent deliveries, want 1", replies, n)
	}

	// Home a's id lock held by another process; home b on a's stripe.
	base := t.TempDir()
	a := filepath.Join(base, "a")
	stripe := func(h string) byte { return sha256.Sum256([]byte(h))[0] % byte(len(f.homes)) }
	b := ""
	for i := 0; b == ""; i++ {
		if c := filepath.Join(base, fmt.Sprintf("b%d", i)); stripe(c) == stripe(a) {
			b = c
		}
	}
	for _, h := range []string{a, b} {
		if err := os.Mkdir(h, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(filepath.Join(a, dupesLocksDir), 0o700)
	sum := md5.Sum([]byte(vacationDupID("bob@z.z", "h")))
	path := filepath.Join(a, dupesLocksDir, "duplicate.lock."+hex.EncodeToString(sum[:]))
	os.WriteFile(path, nil, 0o600)
	stop := holdLock(t, path)
	defer stop()
	f.dupWait.idLock = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	aDone := make(chan error, 1)
	go func() {
		_, _, err := f.markReply(ctx, replyMark{home: a, user: "u", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1})
		aDone <- err
	}()
	// Let a reach its wait first (should b go first, the test proves
	// less, and still passes).
	time.Sleep(200 * time.Millisecond)
	bDone := make(chan error, 1)
	go func() {
		_, _, err := f.markReply(context.Background(), replyMark{home: b, user: "u", sender: "bob@z.z", handle: "h", period: time.Hour, uid: -1, gid: -1})
		bDone <- err
	}()
	select {
	case err := <-bDone:
		if err != nil {
			t.Error(err)
		}
	case err := <-aDone:
		t.Fatalf("home a done before b (%v) while its lock is held", err)
	}
	cancel()
	if err := <-aDone; !errors.Is(err, context.Canceled) {
		t.Errorf("home a: %v, want its wait cancelled", err)
	}
}

// holdLock has another process (TestHoldLockHelper) hold an fcntl write
// lock on path until the returned function is called.
func holdLock(t *testing.T, path string) func() {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHoldLockHelper$")
	cmd.Env = append(os.Environ(), "COURRIEL_TEST_HOLD_LOCK="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		stdin.Close()
		cmd.Wait()
		t.Fatalf("helper: %q %v", line, err)
	}
	return func() {
		stdin.Close()
		cmd.Wait()
	}
}

// TestVacationUser: the record names the entry's login, whether the
// entry came with the copy (smtp's RCPT) or from the directory, else the
// maildrop.
func TestVacationUser(t *testing.T) {
	for _, c := range []struct {
		name  string
		entry *delivery.Entry
		mb    *directory.Mailbox
		want  string
	}{
		{"entry carried", &delivery.Entry{Login: "xomail"}, nil, "xomail"},
		{"directory", nil, &directory.Mailbox{Address: "u@x.y", Login: "xomail"}, "xomail"},
		{"no login", nil, &directory.Mailbox{Address: "u@x.y"}, "u@x.y"},
	} {
		t.Run(c.name, func(t *testing.T) {
			home := t.TempDir()
			os.WriteFile(home+"/.dovecot.sieve", []byte(`require "vacation"; vacation "away";`), 0o644)
			dir := fakeDir{}
			if c.mb != nil {
				c.mb.Home = home
				dir["u@x.y"] = c.mb
			}
			if c.entry != nil {
				c.entry.Home = home
			}
			q := &recordingQueue{}
			store, _ := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: home})
			f, _ := New(Options{Store: store, Directory: dir, Outbound: q, Hostname: "mx.x.y"})
			m := &delivery.Message{ID: "m", From: "bob@z.z", Arrived: time.Now(), Body: strings.NewReader("From: bob@z.z\r\nTo: u@x.y\r\nSubject: hi\r\n\r\nbody\r\n")}
			if errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: "u@x.y", Maildir: home + "/mailbox/", Entry: c.entry}}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			b, _ := os.ReadFile(filepath.Join(home, DuplicateDBName))
			tbl, _ := parseDupes(b, time.Now().Unix())
			if len(q.data) != 1 || len(tbl.recs) != 1 || tbl.recs[0].user != c.want {
				t.Errorf("%d replies, records %+v; want one naming %q", len(q.data), tbl.recs, c.want)
			}
		})
	}
}

// TestVacationLegacyMemory: replies and claims earlier versions recorded
// in ~/.courriel.vacation still count until they expire.
func TestVacationLegacyMemory(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	f, _ := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}, Now: func() time.Time { return now }})
	home := t.TempDir()
	reply := sha256.Sum256([]byte("bob@z.z\x00h"))
	legacy := fmt.Sprintf("%d %x\n%d %s\n", now.Unix()+3600, reply, now.Unix()+3601, memoryKey(replyClaim("Q1-0")))
	if err := os.WriteFile(filepath.Join(home, VacationMemoryName), []byte(legacy), 0o600); err != nil {
		t.Fatal(err)
	}
	if markReplyT(t, f, home, "Bob@z.z", "h", "", time.Hour) {
		t.Error("a reply an earlier version recorded did not count")
	}
	if !markReplyT(t, f, home, "bob@z.z", "h", replyClaim("Q1-0"), time.Hour) {
		t.Error("the retry of the copy an earlier version recorded the claim of is not fresh")
	}
	if !markReplyT(t, f, home, "carol@z.z", "h", "", time.Hour) {
		t.Error("another sender not fresh")
	}
	now = now.Add(2 * time.Hour)
	if !markReplyT(t, f, home, "bob@z.z", "h", "", time.Hour) {
		t.Error("an earlier version's reply still counts past its period")
	}
}
