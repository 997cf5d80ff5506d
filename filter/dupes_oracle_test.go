package filter

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/delivery"
	"courriel/sieve"
)

const dovecotLDA = "/usr/lib/dovecot/dovecot-lda"

// ldaHome is a home shared by the real dovecot-lda (Pigeonhole 0.5.19)
// and courriel's filter, as after a swap of one for the other.
type ldaHome struct {
	dir, home  string
	uid, gid   int
	user, rcpt string
}

// newLDAHome writes a dovecot.conf for dovecot-lda (sieve on, replies
// through a sendmail script writing dir/sent.N, logs in dir/lda.log) and
// the user's script. Run as root, dovecot-lda runs as nobody, the home's
// owner, as the seed's users own theirs.
// lockingFilter is a filter that takes dovecot-lda's locks in h's home,
// and that home's root, closed when the test ends.
func (h *ldaHome) lockingFilter(t *testing.T) (*Filter, *os.Root) {
	t.Helper()
	f, err := New(Options{Store: &delivery.Store{}, Directory: fakeDir{}, Chown: os.Getuid() == 0})
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(h.home)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return f, root
}

func newLDAHome(t *testing.T, script string) *ldaHome {
	t.Helper()
	if _, err := os.Stat(dovecotLDA); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dovecot-lda (Debian packages dovecot-core, dovecot-sieve) is missing; CI must have it")
		}
		t.Skip("dovecot-lda (Debian packages dovecot-core, dovecot-sieve) is not installed")
	}
	dir, err := os.MkdirTemp("", "lda-dupes")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &ldaHome{dir: dir, home: filepath.Join(dir, "home"), uid: os.Getuid(), gid: os.Getgid(), user: "xomail", rcpt: "xomail@x.y"}
	if h.uid == 0 {
		h.uid, h.gid = 65534, 65534
	}
	sendmail := fmt.Sprintf("#!/bin/sh\nn=$(ls %[1]s | grep -c '^sent\\.')\ncat > %[1]s/sent.$n\n", dir)
	conf := fmt.Sprintf(`first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:~/mailbox
postmaster_address = postmaster@example.org
sendmail_path = %[1]s/sendmail
log_path = %[1]s/lda.log
info_log_path = %[1]s/lda.log
protocol lda {
  mail_plugins = sieve
}
plugin {
  sieve = ~/.dovecot.sieve
  sieve_extensions = +vacation-seconds
}
`, dir)
	for name, data := range map[string]string{"dovecot.conf": conf, "sendmail": sendmail} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(h.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.home, ".dovecot.sieve"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, h.home, filepath.Join(h.home, ".dovecot.sieve")} {
		if err := os.Chown(p, h.uid, h.gid); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// lda delivers msg from sender with the real dovecot-lda, as the user,
// and returns the replies it sent so far and its log.
func (h *ldaHome) lda(t *testing.T, sender, msg string) (int, string) {
	t.Helper()
	n, log, err := h.ldaRun(sender, msg)
	if err != nil {
		t.Fatal(err)
	}
	return n, log
}

// ldaRun is lda for any goroutine: a failure is its error.
func (h *ldaHome) ldaRun(sender, msg string) (int, string, error) {
	args := []string{"-c", filepath.Join(h.dir, "dovecot.conf"), "-f", sender, "-a", h.rcpt}
	cmd := exec.Command(dovecotLDA, args...)
	cmd.Env = []string{"HOME=" + h.home, "USER=" + h.user, "PATH=/usr/bin:/bin"}
	if os.Getuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(h.uid), Gid: uint32(h.gid)}}
	}
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(filepath.Join(h.dir, "lda.log"))
	if err != nil {
		return 0, "", fmt.Errorf("dovecot-lda: %v\n%s\n%s", err, out, log)
	}
	sent, _ := filepath.Glob(filepath.Join(h.dir, "sent.*"))
	return len(sent), string(log), nil
}

// courriel delivers msg from sender through the filter, running as root
// with Chown (the files written belong to the user) or as the user, and
// returns the replies queued and its log. Its copies go to a maildir of
// their own: the store makes it as the process.
func (h *ldaHome) courriel(t *testing.T, sender, msg string) (int, string) {
	t.Helper()
	n, log, err := h.courrielRun(t, sender, msg)
	if err != nil {
		t.Fatal(err)
	}
	return n, log
}

// courrielRun is courriel, the delivery's error returned (a reject's).
func (h *ldaHome) courrielRun(t *testing.T, sender, msg string) (int, string, error) {
	t.Helper()
	var log bytes.Buffer
	store, err := delivery.NewStore(delivery.Options{Hostname: "h", AllowedBase: h.dir})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	q := &recordingQueue{}
	// The extensions of dovecot-lda's configuration (newLDAHome).
	ext, warns := sieve.ParseExtensions("+vacation-seconds")
	if len(warns) > 0 {
		t.Fatal(warns)
	}
	f, err := New(Options{Extensions: ext, Store: store, Outbound: q, Hostname: "mx.x.y", Chown: os.Getuid() == 0,
		Directory: fakeDir{h.rcpt: {Address: h.rcpt, Home: h.home, Login: h.user}},
		Logger:    slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	m := &delivery.Message{ID: "m", From: sender, Arrived: time.Now(), Body: strings.NewReader(msg)}
	errs := f.Deliver(context.Background(), m, []delivery.Recipient{{Address: h.rcpt, Maildir: h.dir + "/courriel-mailbox/", UID: h.uid, GID: h.gid}})
	return len(q.data), log.String(), errs[0]
}

// vacationScripts are scripts whose handles Pigeonhole derives in
// different ways: courriel must find the same id in its database.
var vacationScripts = []struct{ name, script string }{
	{"default handle", "require \"vacation\";\nvacation :days 3 \"Absent — de retour lundi.\";\n"},
	{"subject, from, mime", "require \"vacation\";\nvacation :subject \"Absent\" :from \"xomail@x.y\" :mime \"Content-Type: text/plain\r\n\r\nAway.\";\n"},
	{"explicit handle", "require [\"vacation\", \"variables\"];\nset \"h\" \"ooo\";\nvacation :handle \"${h}-2026\" :days 2 \"Away.\";\n"},
	{"seconds", "require [\"vacation\", \"vacation-seconds\"];\nvacation :seconds 86400 \"Away.\";\n"},
}

func ldaMessage(from, id string) string {
	return "From: " + from + "\r\nTo: xomail@x.y\r\nSubject: hi\r\nMessage-ID: <" + id + "@z.z>\r\n\r\nbody\r\n"
}

// TestVacationMemoryFromPigeonhole: a reply the real Pigeonhole sent
// (dovecot-lda recorded it in ~/.dovecot.lda-dupes) keeps courriel from
// answering the same sender, in another case even, within the period;
// another sender gets courriel's reply.
func TestVacationMemoryFromPigeonhole(t *testing.T) {
	for _, c := range vacationScripts {
		t.Run(c.name, func(t *testing.T) {
			h := newLDAHome(t, c.script)
			if n, log := h.lda(t, "bob@z.z", ldaMessage("bob@z.z", "m1")); n != 1 {
				t.Fatalf("dovecot-lda sent %d replies, want 1\n%s", n, log)
			}
			if n, log := h.courriel(t, "Bob@Z.z", ldaMessage("Bob <Bob@Z.z>", "m2")); n != 0 || !strings.Contains(log, "already replied within the period") {
				t.Errorf("courriel queued %d replies after Pigeonhole's, want none\n%s", n, log)
			}
			if n, log := h.courriel(t, "carol@z.z", ldaMessage("carol@z.z", "m3")); n != 1 {
				t.Errorf("courriel queued %d replies to another sender, want 1\n%s", n, log)
			}
		})
	}
}

// TestVacationMemoryToPigeonhole: a reply courriel queued is recorded
// where the real Pigeonhole finds it: dovecot-lda delivering another
// message of the sender says "discarded duplicate vacation response" and
// sends none; courriel's records survive its rewrite of the file.
func TestVacationMemoryToPigeonhole(t *testing.T) {
	for _, c := range vacationScripts {
		t.Run(c.name, func(t *testing.T) {
			h := newLDAHome(t, c.script)
			if n, log := h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m1")); n != 1 {
				t.Fatalf("courriel queued %d replies, want 1\n%s", n, log)
			}
			fi, err := os.Stat(filepath.Join(h.home, DuplicateDBName))
			if err != nil {
				t.Fatal(err)
			}
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != h.uid || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: owner %d, mode %v; want %d, 0600 (dovecot-lda's)", DuplicateDBName, st.Uid, fi.Mode().Perm(), h.uid)
			}
			n, log := h.lda(t, "BOB@z.z", ldaMessage("bob@z.z", "m2"))
			if n != 0 || !strings.Contains(log, "discarded duplicate vacation response to <BOB@z.z>") {
				t.Errorf("dovecot-lda sent %d replies after courriel's, want none\n%s", n, log)
			}
			// dovecot-lda answers another sender and rewrites the file
			// with its record: courriel's must still be there.
			if n, log = h.lda(t, "carol@z.z", ldaMessage("carol@z.z", "m3")); n != 1 {
				t.Fatalf("dovecot-lda sent %d replies, want 1 (to carol)\n%s", n, log)
			}
			if n, log := h.courriel(t, "bob@z.z", ldaMessage("bob@z.z", "m4")); n != 0 {
				t.Errorf("courriel queued %d replies to bob after dovecot-lda rewrote the file, want none\n%s", n, log)
			}
			if n, log := h.courriel(t, "carol@z.z", ldaMessage("carol@z.z", "m5")); n != 0 {
				t.Errorf("courriel queued %d replies to carol after Pigeonhole's, want none\n%s", n, log)
			}
		})
	}
}

// TestVacationIDLockWithPigeonhole: dovecot-lda waits for the id's lock
// courriel holds (the same file, the same fcntl lock), and once it has
// it, finds the reply courriel recorded meanwhile: no second reply, as
// when two deliveries race.
func TestVacationIDLockWithPigeonhole(t *testing.T) {
	h := newLDAHome(t, vacationScripts[0].script)
	f, root := h.lockingFilter(t)
	handle := "Absent — de retour lundi.<default-subject><default-from><NO-MIME>"
	release, err := f.lockDupID(context.Background(), root, vacationDupID("bob@z.z", handle), h.uid, h.gid)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int
		log string
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, log, err := h.ldaRun("bob@z.z", ldaMessage("bob@z.z", "m1"))
		done <- result{n, log, err}
	}()
	// Give dovecot-lda the time to reach the lock (were it not waiting,
	// the test would pass without proving anything, never fail wrongly).
	time.Sleep(500 * time.Millisecond)
	fresh, problem, err := f.markReply(context.Background(), replyMark{home: h.home, user: h.user, sender: "bob@z.z", handle: handle,
		period: 3 * 24 * time.Hour, uid: h.uid, gid: h.gid})
	release()
	if err != nil || !fresh || problem != "" {
		t.Fatalf("courriel's reply: fresh %v, %q, %v", fresh, problem, err)
	}
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n != 0 || !strings.Contains(r.log, "discarded duplicate vacation response to <bob@z.z>") {
			t.Errorf("dovecot-lda sent %d replies beside courriel's, want none\n%s", r.n, r.log)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dovecot-lda still waits for the id's lock after courriel released it")
	}
}
