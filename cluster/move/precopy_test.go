package move

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"courriel/cluster"
	"courriel/directory"
)

const (
	moveA = "0123456789abcdef0123456789abcdef"
	moveB = "fedcba9876543210fedcba9876543210"
)

// stagingImporter is an importer for xomail homed at base/homes/xomail,
// with a canary file beside the homes that no stream may touch.
func stagingImporter(t *testing.T, lim Limits) (im *Importer, homes, canary string) {
	t.Helper()
	base := t.TempDir()
	homes = filepath.Join(base, "homes")
	if err := os.Mkdir(homes, 0o755); err != nil {
		t.Fatal(err)
	}
	canary = filepath.Join(base, "canary")
	if err := os.WriteFile(canary, []byte("canary"), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(homes, "xomail")
	im = NewImporter(ImportOptions{Directory: fixedUser{directory.User{Login: "xomail", Home: home, Maildir: home + "/mailbox/", UID: os.Getuid(), GID: os.Getgid()}},
		Limits: lim})
	return im, homes, canary
}

// preCopied is what the staging directory holds after stagedPre.
var preCopied = []member{dir("mailbox"), dir("mailbox/cur"), dir("mailbox/new"), dir("mailbox/.Work"), dir("mailbox/.Work/cur"),
	file("mailbox/cur/1.M1:2,S", "one"), file("mailbox/cur/3.M3:2,", "three"), file("mailbox/cur/3.M3:2,F", "three bis"),
	file("mailbox/new/2.M2", "two"), file("mailbox/dovecot-uidlist", "3 V1 N3\n1 :1.M1\n2 :2.M2\n"), dir("mailbox/cur/sub")}

func stagedPre(t *testing.T, im *Importer, token string) {
	t.Helper()
	if err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(craft2(t, "xomail", "pre-copy", token, "", preCopied, true))); err != nil {
		t.Fatalf("pre-copy: %v", err)
	}
}

// A pre-copy stays staged; deltas apply to it; the final one puts it in
// place; the move id is then spent.
func TestPreCopyDeltaFinal(t *testing.T) {
	t.Parallel()
	im, homes, _ := stagingImporter(t, Limits{})
	ctx := context.Background()
	stagedPre(t, im, moveA)
	names := listDir(t, homes)
	if len(names) != 1 || !strings.HasPrefix(names[0], ".courriel-import-xomail-") {
		t.Fatalf("after the pre-copy: %q, want one staging directory", names)
	}
	delta := craft2(t, "xomail", "delta", moveA, "R\tmailbox/new/2.M2\tmailbox/cur/2.M2:2,S\nD\tmailbox/dovecot-uidlist\n",
		[]member{file("mailbox/dovecot-uidlist", "3 V1 N4\n1 :1.M1\n2 :2.M2\n3 :4.M4\n"), file("mailbox/new/4.M4", "four")}, true)
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(delta)); err != nil {
		t.Fatalf("delta: %v", err)
	}
	final := craft2(t, "xomail", "final", moveA, "R\tmailbox/cur/1.M1:2,S\tmailbox/cur/1.M1:2,ST\nD\tmailbox/cur/1.M1:2,ST\nD\tmailbox/.Work\nD\tmailbox/dovecot-uidlist\n",
		[]member{file("mailbox/dovecot-uidlist", "3 V1 N4\n2 :2.M2\n3 :4.M4\n"), dir("sieve"), file("sieve/a.sieve", "keep;"),
			{h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + activeLink, Linkname: "sieve/a.sieve"}}}, true)
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(final)); err != nil {
		t.Fatalf("final: %v", err)
	}
	if names := listDir(t, homes); len(names) != 1 || names[0] != "xomail" {
		t.Fatalf("after the final delta: %q, want xomail alone", names)
	}
	got := readTree(t, filepath.Join(homes, "xomail"))
	want := map[string]string{
		"mailbox/cur/2.M2:2,S": "two", "mailbox/cur/3.M3:2,": "three", "mailbox/cur/3.M3:2,F": "three bis", "mailbox/new/4.M4": "four",
		"mailbox/dovecot-uidlist": "3 V1 N4\n2 :2.M2\n3 :4.M4\n", "sieve/a.sieve": "keep;", activeLink: "sieve/a.sieve",
	}
	for rel, n := range got {
		if n.kind == "dir" {
			continue
		}
		if w, ok := want[rel]; !ok || w != n.content {
			t.Errorf("%s: %q, want %q", rel, n.content, want[rel])
		}
	}
	for rel := range want {
		if _, ok := got[rel]; !ok {
			t.Errorf("%s missing", rel)
		}
	}
	if _, ok := got["mailbox/.Work"]; ok {
		t.Error("a removed folder is still there")
	}
	// The move id is spent: the final delta again is refused, the home untouched.
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(final)); !errors.Is(err, ErrRefused) {
		t.Errorf("final delta replayed: %v", err)
	}
	if names := listDir(t, homes); len(names) != 1 {
		t.Errorf("after a replay: %q", names)
	}
}

// A delta is refused for a staging directory this node did not pre-copy
// for that move: an unknown id, another user's, one replaced by a newer
// pre-copy, one expired.
func TestDeltaUnknownStaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	final := func(token string) []byte {
		return craft2(t, "xomail", "final", token, "", []member{file("mailbox/cur/9.M9:2,S", "nine")}, true)
	}
	im, homes, _ := stagingImporter(t, Limits{})
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(final(moveA))); !errors.Is(err, ErrRefused) {
		t.Errorf("delta without a pre-copy: %v", err)
	}
	if names := listDir(t, homes); len(names) != 0 {
		t.Errorf("left: %q", names)
	}

	// A newer pre-copy of the home replaces the older one, and what a
	// stopped process left.
	left := filepath.Join(homes, ".courriel-import-xomail-0123456789ab")
	if err := os.MkdirAll(filepath.Join(left, "mailbox/cur"), 0o700); err != nil {
		t.Fatal(err)
	}
	stagedPre(t, im, moveA)
	stagedPre(t, im, moveB)
	if names := listDir(t, homes); len(names) != 1 {
		t.Errorf("after two pre-copies: %q, want one staging directory", names)
	}
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(final(moveA))); !errors.Is(err, ErrRefused) {
		t.Errorf("delta for a replaced pre-copy: %v", err)
	}
	// Another login naming xomail's move.
	alice := craft2(t, "alice", "final", moveB, "", nil, true)
	if err := im.ImportHome(ctx, "alice", bytes.NewReader(alice)); err == nil {
		t.Error("alice's delta applied to xomail's pre-copy")
	}
	if err := im.ImportHome(ctx, "xomail", bytes.NewReader(final(moveB))); err != nil {
		t.Fatalf("delta for the current pre-copy: %v", err)
	}

	// Expired.
	im2, homes2, _ := stagingImporter(t, Limits{})
	now := time.Now()
	im2.o.Now = func() time.Time { return now }
	stagedPre(t, im2, moveA)
	now = now.Add(DefaultPendingTTL + time.Minute)
	if err := im2.ImportHome(ctx, "xomail", bytes.NewReader(final(moveA))); !errors.Is(err, ErrRefused) {
		t.Errorf("delta after the pre-copy expired: %v", err)
	}
	if names := listDir(t, homes2); len(names) != 0 {
		t.Errorf("expired staging left: %q", names)
	}
}

// Hostile deltas are refused, the staging directory removed, nothing
// outside it touched.
func TestDeltaRefusesHostile(t *testing.T) {
	t.Parallel()
	link := func(name, target string) member {
		return member{h: tar.Header{Typeflag: tar.TypeSymlink, Name: homePrefix + name, Linkname: target, Mode: 0o777}}
	}
	many := []member{dir("a"), dir("b"), dir("c")}
	for _, tc := range []struct {
		name    string
		ops     string
		members []member
		lim     Limits
		mangle  func([]byte) []byte
		noOps   bool
	}{
		{name: "remove dot-dot", ops: "D\t../canary\n"},
		{name: "remove dot-dot inside", ops: "D\tmailbox/../../canary\n"},
		{name: "remove absolute", ops: "D\t/etc/passwd\n"},
		{name: "remove the home", ops: "D\t.\n"},
		{name: "remove empty", ops: "D\t\n"},
		{name: "remove not staged", ops: "D\tmailbox/cur/9.M9:2,S\n"},
		{name: "rename dot-dot", ops: "R\tmailbox/cur/1.M1:2,S\t../../canary\n"},
		{name: "rename outside cur/new", ops: "R\tmailbox/cur/1.M1:2,S\tmailbox/1.M1:2,S\n"},
		{name: "rename another message", ops: "R\tmailbox/cur/1.M1:2,S\tmailbox/cur/2.M2:2,S\n"},
		{name: "rename across folders", ops: "R\tmailbox/cur/1.M1:2,S\tmailbox/.Work/cur/1.M1:2,S\n"},
		{name: "rename not staged", ops: "R\tmailbox/cur/9.M9:2,S\tmailbox/cur/9.M9:2,SF\n"},
		{name: "rename a directory", ops: "R\tmailbox/cur/sub\tmailbox/new/sub\n"},
		{name: "rename over a file", ops: "R\tmailbox/cur/3.M3:2,\tmailbox/cur/3.M3:2,F\n"},
		{name: "bad op", ops: "X\tmailbox/cur/1.M1:2,S\n"},
		{name: "op without newline", ops: "D\tmailbox/cur/1.M1:2,S"},
		{name: "op line too long", ops: "D\t" + strings.Repeat("a/", 5000) + "\n"},
		{name: "file over a staged one", members: []member{file("mailbox/cur/1.M1:2,S", "evil")}},
		{name: "directory over a staged one", members: []member{dir("mailbox/cur")}},
		{name: "symlink", members: []member{link("mailbox/new/x", "/etc/passwd")}},
		{name: "symlink over a folder", ops: "D\tmailbox/.Work\n", members: []member{link("mailbox/.Work", "/")}},
		{name: "sieve link out", members: []member{link(activeLink, "../../canary")}},
		{name: "member dot-dot", members: []member{file("mailbox/../../canary", "evil")}},
		{name: "under a removed directory", ops: "D\tmailbox/.Work\n", members: []member{file("mailbox/.Work/cur/5.M5", "x")}},
		{name: "too many entries", members: many, lim: Limits{MaxEntries: len(preCopied) + 2}},
		{name: "too many bytes", members: []member{file("mailbox/new/5.M5", "12345")}, lim: Limits{MaxTotal: 48}},
		{name: "tampered ops", ops: "D\tmailbox/cur/1.M1:2,S\n",
			mangle: func(b []byte) []byte { return bytes.Replace(b, []byte("1.M1:2,S"), []byte("3.M3:2,F"), 1) }},
		{name: "no ops member", noOps: true, members: []member{file("mailbox/new/5.M5", "x")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im, homes, canary := stagingImporter(t, tc.lim)
			stagedPre(t, im, moveA)
			stream := craft2(t, "xomail", "final", moveA, tc.ops, tc.members, true)
			if tc.noOps {
				stream = craftStream(t, formatLine2+"\nlogin xomail\nfinal "+moveA+"\n", nil, tc.members, true)
			}
			if tc.mangle != nil {
				stream = tc.mangle(stream)
			}
			err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(stream))
			if !errors.Is(err, ErrRefused) {
				t.Errorf("ImportHome = %v, want ErrRefused", err)
			}
			if names := listDir(t, homes); len(names) != 0 {
				t.Errorf("left on disk: %q", names)
			}
			if b, err := os.ReadFile(canary); err != nil || string(b) != "canary" {
				t.Errorf("canary: %q, %v", b, err)
			}
			if names := listDir(t, filepath.Dir(homes)); len(names) != 2 {
				t.Errorf("beside the homes: %q", names)
			}
		})
	}
	// The same pre-copy with a harmless final goes in: the cases fail for
	// their own reason.
	im, homes, _ := stagingImporter(t, Limits{MaxEntries: len(preCopied) + 2, MaxTotal: 48})
	stagedPre(t, im, moveA)
	ok := craft2(t, "xomail", "final", moveA, "R\tmailbox/cur/1.M1:2,S\tmailbox/cur/1.M1:2,SF\nD\tmailbox/.Work\n", []member{dir("a"), file("mailbox/new/5.M5", "x")}, true)
	if err := im.ImportHome(context.Background(), "xomail", bytes.NewReader(ok)); err != nil {
		t.Fatalf("harmless final: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(homes, "xomail/mailbox/cur/1.M1:2,SF")); err != nil || string(b) != "one" {
		t.Errorf("renamed message: %q, %v", b, err)
	}
}

// imapDo sends one command on a session of imapSession and returns its
// tagged reply, failing on anything but OK.
func imapDo(t *testing.T, c io.Writer, r *bufio.Reader, tag, command string) {
	t.Helper()
	fmt.Fprintf(c, "%s %s\r\n", tag, command)
	for range 100000 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("IMAP %s: %v", command, err)
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				t.Fatalf("IMAP %s: %s", command, l)
			}
			return
		}
	}
	t.Fatalf("IMAP %s: no tagged reply", command)
}

// The pre-copy runs while the user works: flags changed (files renamed),
// messages expunged and delivered, a Sieve script rewritten, both while
// the pre-copy is read (files vanish between the scan and their bytes)
// and after it. The new home is exactly the old one as it was at the
// hold: every name, content, mtime, the dovecot-uidlist; each delivered
// message once. With a low RepeatFiles, the changes go once more before
// the hold (a delta), with more changes while it is sent.
func TestMovePreCopyWhileWorking(t *testing.T) {
	t.Parallel()
	for _, repeat := range []bool{false, true} {
		t.Run(fmt.Sprintf("repeat=%v", repeat), func(t *testing.T) {
			t.Parallel()
			testMovePreCopyWhileWorking(t, repeat)
		})
	}
}

func testMovePreCopyWhileWorking(t *testing.T, repeat bool) {
	n := newTwoNodes(t)
	if repeat {
		n.mover.o.RepeatFiles = 1
	}
	makeHome(t, n.aHome)
	ctx := context.Background()
	aMaildir := n.aHome + "/mailbox/"
	for i := range 30 {
		if err := n.deliver(ctx, n.local, aMaildir, fmt.Sprintf("load-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	tc, tr := n.imapSession(t)
	defer tc.Close()
	delivered := 30
	work := func(round string, first int) {
		imapDo(t, tc, tr, round+"a", fmt.Sprintf("STORE %d:%d +FLAGS (\\Flagged)", first, first+4))
		imapDo(t, tc, tr, round+"b", fmt.Sprintf("STORE %d:%d +FLAGS (\\Deleted)", first+5, first+6))
		imapDo(t, tc, tr, round+"c", "EXPUNGE")
		for range 3 {
			if err := n.deliver(ctx, n.local, aMaildir, fmt.Sprintf("load-%d", delivered)); err != nil {
				t.Fatal(err)
			}
			delivered++
		}
		imapDo(t, tc, tr, round+"d", "NOOP")
		if err := os.WriteFile(filepath.Join(n.aHome, "sieve/main.sieve"), []byte("# "+round+"\nkeep;\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var pre, deltas, held []*Archive
	send := n.mover.o.Send
	n.mover.o.Send = func(ctx context.Context, c *cluster.Cluster, node cluster.Node, login string, a *Archive) error {
		switch a.kind {
		case kindFinal:
			held = append(held, a)
			return send(ctx, c, node, login, a)
		case kindDelta:
			deltas = append(deltas, a)
			work("w3", 15) // between the delta's scan and its bytes
			if err := send(ctx, c, node, login, a); err != nil {
				return err
			}
			work("w4", 20)
			return nil
		}
		pre = append(pre, a)
		work("w1", 1) // between the pre-copy's scan and its bytes
		if err := send(ctx, c, node, login, a); err != nil {
			return err
		}
		work("w2", 10) // after it, before the hold
		return nil
	}
	var progress []string
	if err := n.mover.Move(ctx, "xomail", "b", func(l string) { progress = append(progress, l) }); err != nil {
		t.Fatalf("Move: %v\n%s", err, strings.Join(progress, "\n"))
	}
	t.Logf("progress:\n%s", strings.Join(progress, "\n"))
	wantDeltas, rounds := 0, 2
	if repeat {
		wantDeltas, rounds = 1, 4
	}
	if len(pre) != 1 || len(deltas) != wantDeltas || len(held) != 1 {
		t.Fatalf("%d pre-copies, %d deltas, %d streams held; want 1, %d and 1", len(pre), len(deltas), len(held), wantDeltas)
	}
	stale := 0
	for _, e := range pre[0].entries {
		if e.stale {
			stale++
		}
	}
	if stale == 0 {
		t.Error("no file vanished while the pre-copy was read: the test does not test that")
	}
	renamed, _ := held[0].Changed()
	if renamed == 0 {
		t.Error("no rename in the final delta: the flag changes after the pre-copy were sent whole")
	}
	if held[0].Entries() >= pre[0].Entries()/2 {
		t.Errorf("the held delta sends %d entries, the pre-copy %d", held[0].Entries(), pre[0].Entries())
	}

	names := listDir(t, n.aBase)
	if len(names) != 1 || !strings.HasPrefix(names[0], "xomail.moved-") {
		t.Fatalf("node A's homes: %q", names)
	}
	old, moved := readTree(t, filepath.Join(n.aBase, names[0])), readTree(t, n.bHome)
	for rel, w := range old {
		if skipped(rel) {
			continue
		}
		g, ok := moved[rel]
		switch {
		case !ok:
			t.Errorf("%s missing in the new home", rel)
		case g.kind != w.kind || g.content != w.content:
			t.Errorf("%s: %s %q in the new home, %s %q in the old", rel, g.kind, g.content, w.kind, w.content)
		case g.kind == "file" && !g.mtime.Equal(w.mtime):
			t.Errorf("%s: mtime %v in the new home, %v in the old", rel, g.mtime, w.mtime)
		}
	}
	for rel := range moved {
		if _, ok := old[rel]; !ok {
			t.Errorf("%s in the new home, not in the old", rel)
		}
	}
	if got := listDir(t, n.bBase); len(got) != 1 {
		t.Errorf("node B: %q (staging left?)", got)
	}
	ids := countIDs(t, n.bHome+"/mailbox")
	for id, k := range ids {
		if k != 1 {
			t.Errorf("%s: %d copies", id, k)
		}
	}
	if len(ids) != delivered-2*rounds { // 2 expunged in each round
		t.Errorf("%d messages in the new home, %d delivered and %d expunged", len(ids), delivered, 2*rounds)
	}
	if b, err := os.ReadFile(filepath.Join(n.bHome, "sieve/main.sieve")); err != nil || !strings.HasPrefix(string(b), "# "+[]string{"w2", "w4"}[wantDeltas]) {
		t.Errorf("Sieve script: %q, %v; want the last one", b, err)
	}
	if !strings.Contains(strings.Join(progress, "\n"), "keeps working meanwhile") || !strings.Contains(strings.Join(progress, "\n"), "was held for") {
		t.Errorf("progress lines")
	}
}

// NoPreCopy: the whole home in one stream, held (format 1), as before
// pre-copies.
func TestMoveNoPreCopy(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	n.mover.o.NoPreCopy = true
	var progress []string
	if err := n.mover.Move(context.Background(), "xomail", "b", func(l string) { progress = append(progress, l) }); err != nil {
		t.Fatal(err)
	}
	p := strings.Join(progress, "\n")
	if strings.Contains(p, "pre-copying") || !strings.Contains(p, "sending 33 entries") {
		t.Errorf("progress:\n%s", p)
	}
	names := listDir(t, n.aBase)
	if len(names) != 1 {
		t.Fatalf("node A's homes: %q", names)
	}
	old, moved := readTree(t, filepath.Join(n.aBase, names[0])), readTree(t, n.bHome)
	for rel, w := range old {
		if g, ok := moved[rel]; !skipped(rel) && (!ok || g.kind != w.kind || g.content != w.content) {
			t.Errorf("%s differs in the new home", rel)
		}
	}
}

// The new node restarts between the pre-copy and the final delta: it
// refuses the changes of a move it has no staging directory for, the user
// is released where they were, and the next move replaces the staging
// directory the restart left.
func TestMoveNewNodeRestarted(t *testing.T) {
	t.Parallel()
	n := newTwoNodes(t)
	makeHome(t, n.aHome)
	ctx := context.Background()
	send := n.mover.o.Send
	restart := true
	n.mover.o.Send = func(ctx context.Context, c *cluster.Cluster, node cluster.Node, login string, a *Archive) error {
		err := send(ctx, c, node, login, a)
		if a.kind == kindPre && restart {
			n.hop.im.mu.Lock()
			clear(n.hop.im.pending) // what a restart forgets; the directory stays on disk
			n.hop.im.mu.Unlock()
		}
		return err
	}
	err := n.mover.Move(ctx, "xomail", "b", nil)
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != 554 || !strings.Contains(re.Text, "no pre-copy") {
		t.Fatalf("Move = %v, want B's 554", err)
	}
	if n.holds.Held(n.aHome) || n.gate.IsClosed(n.aHome) || n.writer.calls != 0 {
		t.Error("not released, or the directory written")
	}
	if _, err := os.Lstat(n.aHome); err != nil {
		t.Fatalf("old home: %v", err)
	}
	if got := listDir(t, n.bBase); len(got) != 1 || !strings.HasPrefix(got[0], ".courriel-import-xomail-") {
		t.Fatalf("node B: %q, want the staging directory the restart left", got)
	}
	restart = false
	if err := n.mover.Move(ctx, "xomail", "b", nil); err != nil {
		t.Fatalf("second move: %v", err)
	}
	if got := listDir(t, n.bBase); len(got) != 1 || got[0] != "xomail" {
		t.Errorf("node B: %q, want xomail alone", got)
	}
}
