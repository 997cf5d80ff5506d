package imap

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"courriel/imap/uidlist"
)

// Dovecot's imaptest logs in, works and logs out again and again, in
// bursts (so that the INBOX, large enough, lingers between close sessions
// and is kept loaded between bursts, then taken back or loaded afresh),
// while another program renames files in cur/ (flags) and delivers into
// new/. imaptest checks every answer against what it saw before, under
// -race in CI; afterwards, the UIDs and flags the server gives are the
// files on disk by dovecot-uidlist's numbering. Each check of a kept
// folder's reuse is singled out in mailstore's keep_test.go; this is the
// whole under a real client.
func TestKeptFolderUnderOutsideChanges(t *testing.T) {
	if testing.Short() {
		t.Skip("runs imaptest for some 12 s")
	}
	t.Parallel()
	bin := imaptestBin(t)
	e := newEnv(t)
	for _, d := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(e.maildir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const start = 1100 // above the size from which a folder is kept
	for i := range start {
		body := fmt.Sprintf("From: s%d@example.org\r\nSubject: before %d\r\n\r\nbody %d\r\n", i, i, i)
		name := fmt.Sprintf("%d.M%dP1.test,S=%d:2,%s", 1700000000+i, i, len(body), map[bool]string{true: "S"}[i%3 == 0])
		if err := os.WriteFile(filepath.Join(e.maildir, "cur", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mbox := writeMbox(t, 100)
	const rounds = 8

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var renamed, delivered, maxKept int
	wg.Go(func() { renamed, delivered = changeFromOutside(ctx, e.maildir) })
	wg.Go(func() {
		for ctx.Err() == nil {
			if n, _ := e.srv.reg.KeptFolders(); n > 0 {
				mu.Lock()
				maxKept = max(maxKept, n)
				mu.Unlock()
			}
			time.Sleep(5 * time.Millisecond)
		}
	})

	// imaptest in bursts of a second: while one runs, its sessions follow
	// each other closely enough to find the folder still open (lingering);
	// between bursts it settles and is kept, then taken back, or loaded
	// afresh after the outside changes.
	// A folder is kept only when a release falls in the quiet part of a
	// second, past the stamps' margin: on a loaded machine that can miss a
	// whole run of bursts, so bursts go on (boundedly) until it happened.
	host, port, _ := strings.Cut(e.addr, ":")
	kept := func() bool { mu.Lock(); defer mu.Unlock(); return maxKept > 0 }
	for round := 0; round < rounds || !kept() && round < 4*rounds; round++ {
		cmd := exec.Command(bin, "host="+host, "port="+port, "user=alice", "pass=secret", "mbox="+mbox,
			"clients=1", "msgs="+strconv.Itoa(start+100), "secs=1", "ssl=any-cert", "logout=100", "seed="+strconv.Itoa(round+1))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("imaptest: %v\n%s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "Error") || strings.Contains(l, "BUG") {
				t.Errorf("imaptest, round %d: %s", round, l)
			}
		}
		time.Sleep(400 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("%d renames and %d deliveries from outside; at most %d folder kept", renamed, delivered, maxKept)
	if renamed == 0 || delivered == 0 {
		t.Fatal("nothing changed from outside: the test proves nothing")
	}
	if maxKept == 0 {
		t.Error("the INBOX was never kept between imaptest's sessions: the test proves nothing")
	}

	// What the server says is what is on disk.
	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(goimap.SeqSet{{Start: 1, Stop: 0}}, &goimap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint32]string{}
	for _, m := range msgs {
		var fl []string
		for _, f := range m.Flags {
			switch f {
			case goimap.FlagSeen, goimap.FlagFlagged, goimap.FlagAnswered, goimap.FlagDeleted, goimap.FlagDraft:
				fl = append(fl, string(f))
			}
		}
		slices.Sort(fl)
		got[uint32(m.UID)] = strings.Join(fl, " ")
	}
	want := diskView(t, e.maildir)
	if len(got) != len(want) {
		t.Errorf("the server has %d messages, the disk %d", len(got), len(want))
	}
	bad := 0
	for uid, w := range want {
		if g, ok := got[uid]; !ok || g != w {
			if bad++; bad <= 5 {
				t.Errorf("UID %d: server %q (present %v), disk %q", uid, g, ok, w)
			}
		}
	}
}

// changeFromOutside renames random files of cur/ (toggling F) and
// delivers files into new/, as another program, for 300 ms out of every
// second until ctx ends; the quiet parts let the folder be kept.
func changeFromOutside(ctx context.Context, maildir string) (renamed, delivered int) {
	rng := rand.New(rand.NewPCG(1, 2))
	cur := filepath.Join(maildir, "cur")
	for i := 0; ctx.Err() == nil; i++ {
		if time.Now().UnixMilli()%1000 >= 300 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if ents, err := os.ReadDir(cur); err == nil && len(ents) > 0 {
			name := ents[rng.IntN(len(ents))].Name()
			base, flags, ok := strings.Cut(name, ":2,")
			if ok {
				if strings.Contains(flags, "F") {
					flags = strings.ReplaceAll(flags, "F", "")
				} else {
					flags = sortedFlags(flags + "F")
				}
				if os.Rename(filepath.Join(cur, name), filepath.Join(cur, base+":2,"+flags)) == nil {
					renamed++
				}
			}
		}
		if i%5 == 0 {
			body := fmt.Sprintf("From: outside@example.org\r\nSubject: outside %d\r\n\r\nhello\r\n", i)
			name := fmt.Sprintf("%d.M%dP2.outside,S=%d", time.Now().Unix(), i, len(body))
			tmp := filepath.Join(maildir, "tmp", name)
			if os.WriteFile(tmp, []byte(body), 0o600) == nil && os.Rename(tmp, filepath.Join(maildir, "new", name)) == nil {
				delivered++
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	return renamed, delivered
}

func sortedFlags(s string) string {
	b := []byte(s)
	slices.Sort(b)
	return string(b)
}

// diskView maps each message file's UID (by dovecot-uidlist) to its
// system flags, as IMAP names them, sorted.
func diskView(t *testing.T, maildir string) map[uint32]string {
	t.Helper()
	f, err := os.Open(filepath.Join(maildir, "dovecot-uidlist"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := uidlist.Parse(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	uidOf := map[string]uint32{}
	for _, r := range l.Records {
		uidOf[r.Name] = r.UID
	}
	names := map[byte]string{'S': `\Seen`, 'F': `\Flagged`, 'R': `\Answered`, 'T': `\Deleted`, 'D': `\Draft`}
	view := map[uint32]string{}
	for _, sub := range []string{"cur", "new"} {
		ents, err := os.ReadDir(filepath.Join(maildir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range ents {
			base, flags, _ := strings.Cut(ent.Name(), ":2,")
			uid, ok := uidOf[base]
			if !ok {
				t.Errorf("%s/%s has no UID in dovecot-uidlist", sub, ent.Name())
				continue
			}
			var fl []string
			for i := 0; i < len(flags); i++ {
				if n, ok := names[flags[i]]; ok {
					fl = append(fl, n)
				}
			}
			slices.Sort(fl)
			view[uid] = strings.Join(fl, " ")
		}
	}
	return view
}
