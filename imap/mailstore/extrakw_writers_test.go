package mailstore

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Two writers of one folder's courriel-keywords, as two courriel
// processes are: each its own Store and Registry (its own idea of the
// folder in memory) over the same directory.
const (
	writersMsgs  = 4  // messages of the folder, UIDs 1..4
	writersRound = 40 // keywords each writer adds, one STORE each
)

// writerKeyword is the i-th keyword writer w adds and the message it
// goes to: every message gets keywords of both writers.
func writerKeyword(w string, i int) (uint32, string) {
	return uint32(i%writersMsgs + 1), fmt.Sprintf("%s%d", w, i)
}

// runWriter adds writer w's keywords through the folder at path, in its
// own Store and Registry.
func runWriter(path, w string) error {
	st, err := OpenStore(path, Owner{})
	if err != nil {
		return err
	}
	defer st.Close()
	mb, err := NewRegistry().Open(st, "INBOX")
	if err != nil {
		return err
	}
	defer mb.Release()
	for i := range writersRound {
		uid, kw := writerKeyword(w, i)
		if _, _, err := mb.StoreFlags([]uint32{uid}, StoreAdd, []string{kw}, nil); err != nil {
			return fmt.Errorf("STORE %d +%s: %w", uid, kw, err)
		}
	}
	return nil
}

// writersFolder makes a folder of writersMsgs messages whose maildir
// letters are all taken: every keyword after goes to courriel-keywords.
func writersFolder(t *testing.T) string {
	t.Helper()
	st := testStore(t)
	for n := 1; n <= writersMsgs; n++ {
		deliverFile(t, st, "", n)
	}
	mb := openBox(t, NewRegistry(), st, "INBOX")
	fillLetters(t, mb, 1, false)
	return st.Path()
}

// checkWriters: courriel-keywords on disk, and a folder opened afresh,
// have every keyword of writers a and b on its message.
func checkWriters(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(path, ExtraKeywordsFileName))
	if err != nil {
		t.Fatal(err)
	}
	disk, _, err := decodeExtra(string(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	byUID := map[uint32][]string{}
	st, err := OpenStore(path, Owner{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mb := openBox(t, NewRegistry(), st, "INBOX")
	for uid := uint32(1); uid <= writersMsgs; uid++ {
		byUID[uid] = namesOf(t, mb, uid)
	}
	var onDisk []string
	for _, l := range disk {
		onDisk = append(onDisk, l...)
	}
	lost := 0
	for _, w := range []string{"a", "b"} {
		for i := range writersRound {
			uid, kw := writerKeyword(w, i)
			if !slices.Contains(onDisk, kw) {
				lost++
				t.Errorf("%s not in %s", kw, ExtraKeywordsFileName)
			} else if !slices.Contains(byUID[uid], kw) {
				t.Errorf("%s not on UID %d opened again: %q", kw, uid, byUID[uid])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d keywords of %d lost", lost, 2*writersRound)
	}
}

// TestExtraKeywordsTwoStores: two stores of one folder add different
// keywords to the same messages at the same time; none is lost.
// courriel-keywords was written whole from each one's memory, without a
// lock: the last write dropped the other's keywords.
func TestExtraKeywordsTwoStores(t *testing.T) {
	t.Parallel()
	path := writersFolder(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, w := range []string{"a", "b"} {
		wg.Go(func() { errs[i] = runWriter(path, w) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkWriters(t, path)
}

// writerChildEnv names the folder a re-executed test binary writes to as
// writer "b" (TestExtraKeywordsTwoProcesses).
const writerChildEnv = "COURRIEL_TEST_EXTRAKW_WRITER"

// TestExtraKeywordsTwoProcesses is TestExtraKeywordsTwoStores with the
// second writer a process of its own (the test binary run again), which
// starts its STOREs when the first one starts its own.
func TestExtraKeywordsTwoProcesses(t *testing.T) {
	if path := os.Getenv(writerChildEnv); path != "" {
		// The child: ready, then "go" on stdin, then its writes.
		fmt.Println("ready")
		if l, _ := bufio.NewReader(os.Stdin).ReadString('\n'); l != "go\n" {
			t.Fatalf("child: %q", l)
		}
		if err := runWriter(path, "b"); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Parallel()
	path := writersFolder(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestExtraKeywordsTwoProcesses$", "-test.count=1")
	cmd.Env = append(os.Environ(), writerChildEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(stdout)
	if l, err := out.ReadString('\n'); l != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q, %v (%s)", l, err, stderr.String())
	}
	io.WriteString(stdin, "go\n")
	errA := runWriter(path, "a")
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v\n%s%s", err, rest, stderr.String())
	}
	if errA != nil {
		t.Fatal(errA)
	}
	checkWriters(t, path)
}

// TestExtraKeywordsMergeOneMessage: a message's keywords changed by two
// stores, each unaware of the other's change: both changes are kept (one
// adds x, the other takes z away), and the store that writes second
// shows its sessions the other's keyword as a flag change.
func TestExtraKeywordsMergeOneMessage(t *testing.T) {
	t.Parallel()
	path := writersFolder(t)
	open := func() *Mailbox {
		st, err := OpenStore(path, Owner{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return openBox(t, NewRegistry(), st, "INBOX")
	}
	one := open()
	if _, _, err := one.StoreFlags([]uint32{1}, StoreAdd, []string{"z"}, nil); err != nil {
		t.Fatal(err)
	}
	two := open()
	w, _ := two.Watch()
	defer w.Close()
	if _, _, err := one.StoreFlags([]uint32{1}, StoreAdd, []string{"x"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := two.StoreFlags([]uint32{1}, StoreRemove, []string{"z"}, w); err != nil {
		t.Fatal(err)
	}
	wantNames(t, "the second store", two, 1, "x")
	if !slices.ContainsFunc(w.Changes(true), func(c Change) bool { return c.Kind == FlagsChanged && c.UID == 1 && c.Source == nil }) {
		t.Errorf("the other store's keyword is no change for the sessions")
	}
	wantNames(t, "opened again", open(), 1, "x")
}

// TestExtraKeywordsMergePastTheBound: another process filled the folder's
// room for keywords beyond the letters while this one added its own: the
// file keeps the other's, this process's fit in what is left, the rest
// dropped; the write is not refused (its keywords were all lost, and
// retried at every later write).
func TestExtraKeywordsMergePastTheBound(t *testing.T) {
	t.Parallel()
	const msgs = 9
	st := testStore(t)
	for n := 1; n <= msgs; n++ {
		deliverFile(t, st, "", n)
	}
	fillLetters(t, openBox(t, NewRegistry(), st, "INBOX"), 1, false)
	open := func() *Mailbox {
		st, err := OpenStore(st.Path(), Owner{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return openBox(t, NewRegistry(), st, "INBOX")
	}
	a, b := open(), open()
	for uid := uint32(1); uid < msgs; uid++ { // 8 × 125 = 1000 names
		var kws []string
		for i := range 125 {
			kws = append(kws, fmt.Sprintf("a%d_%d", uid, i))
		}
		if _, _, err := a.StoreFlags([]uint32{uid}, StoreAdd, kws, nil); err != nil {
			t.Fatal(err)
		}
	}
	var kws []string
	for i := range 100 {
		kws = append(kws, fmt.Sprintf("b%d", i))
	}
	if _, _, err := b.StoreFlags([]uint32{msgs}, StoreAdd, kws, nil); err != nil {
		t.Fatalf("STORE past the bound with the other's names: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(st.Path(), ExtraKeywordsFileName))
	if err != nil {
		t.Fatal(err)
	}
	disk, _, err := decodeExtra(string(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	as, bs := 0, 0
	for _, l := range disk {
		for _, n := range l {
			switch n[0] {
			case 'a':
				as++
			case 'b':
				bs++
			}
		}
	}
	if as != 1000 || bs != MaxExtraKeywords-1000 {
		t.Errorf("%s: %d of the other's names, %d of this one's; want 1000 and %d", ExtraKeywordsFileName, as, bs, MaxExtraKeywords-1000)
	}
}
