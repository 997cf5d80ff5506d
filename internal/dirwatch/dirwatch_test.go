package dirwatch

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// recorder collects the keys the watcher reports.
type recorder struct{ ch chan []string }

func newWatcher(t *testing.T) (*Watcher[string], recorder) {
	t.Helper()
	r := recorder{ch: make(chan []string, 64)}
	w, err := New(func(keys []string) { r.ch <- slices.Clone(keys) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w, r
}

// wait returns once key is reported, or fails after a bound.
func (r recorder) wait(t *testing.T, key string) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case keys := <-r.ch:
			if slices.Contains(keys, key) {
				return
			}
		case <-deadline:
			t.Fatalf("%s not reported within 5 s", key)
		}
	}
}

// quiet fails if anything is reported within a short while.
func (r recorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case keys := <-r.ch:
		t.Fatalf("reported %v, want nothing", keys)
	case <-time.After(200 * time.Millisecond):
	}
}

func maildirFolder(t *testing.T) (folder, newDir, curDir string) {
	t.Helper()
	folder = t.TempDir()
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.Mkdir(filepath.Join(folder, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return folder, filepath.Join(folder, "new"), filepath.Join(folder, "cur")
}

// Every change another program makes to a maildir folder is reported:
// delivery through tmp/, a new file linked in, new/ to cur/, a flag
// change (rename in cur/), an expunge.
func TestChangesReported(t *testing.T) {
	folder, newDir, curDir := maildirFolder(t)
	w, r := newWatcher(t)
	if err := w.Add("inbox", newDir, curDir); err != nil {
		t.Fatal(err)
	}
	tmpFile := filepath.Join(folder, "tmp", "1.M1P1.host")
	write := func() {
		if err := os.WriteFile(tmpFile, []byte("Subject: x\n\nx\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Writing in tmp/ alone is nobody's business.
	write()
	r.quiet(t)
	steps := []struct {
		name string
		do   func() error
	}{
		{"delivery (rename tmp/ to new/)", func() error { return os.Rename(tmpFile, filepath.Join(newDir, "1.M1P1.host")) }},
		{"delivery (link into new/)", func() error {
			write()
			return os.Link(tmpFile, filepath.Join(newDir, "2.M1P1.host"))
		}},
		{"new/ to cur/", func() error {
			return os.Rename(filepath.Join(newDir, "1.M1P1.host"), filepath.Join(curDir, "1.M1P1.host:2,"))
		}},
		{"flag change", func() error {
			return os.Rename(filepath.Join(curDir, "1.M1P1.host:2,"), filepath.Join(curDir, "1.M1P1.host:2,S"))
		}},
		{"expunge", func() error { return os.Remove(filepath.Join(curDir, "1.M1P1.host:2,S")) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		r.wait(t, "inbox")
		// One batch per change here; nothing left over for the next step.
		for len(r.ch) > 0 {
			<-r.ch
		}
	}
	if !w.Watching("inbox") {
		t.Error("inbox no longer watched")
	}
}

// Holders are counted: the watches go with the last; two keys on one
// directory both hear of it.
func TestHolders(t *testing.T) {
	_, newDir, curDir := maildirFolder(t)
	w, r := newWatcher(t)
	for range 2 {
		if err := w.Add("a", newDir, curDir); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add("b", newDir); err != nil {
		t.Fatal(err)
	}
	touch := func(name string) {
		if err := os.WriteFile(filepath.Join(newDir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	touch("1")
	r.wait(t, "a")
	w.Remove("a")
	if !w.Watching("a") {
		t.Fatal("a lost its watch with one holder left")
	}
	w.Remove("a")
	if w.Watching("a") {
		t.Fatal("a still watched after its last holder left")
	}
	for len(r.ch) > 0 {
		<-r.ch
	}
	touch("2")
	r.wait(t, "b") // b's watch of new/ survived a's removal
	w.Remove("b")
	for len(r.ch) > 0 {
		<-r.ch
	}
	touch("3")
	r.quiet(t)
}

// A watched directory that goes away is reported, and from then on the key
// is not watched: its holder must poll.
func TestRemovedDirectory(t *testing.T) {
	folder, newDir, curDir := maildirFolder(t)
	w, r := newWatcher(t)
	if err := w.Add("f", newDir, curDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(folder, folder+".gone"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(folder + ".gone") })
	if err := os.RemoveAll(filepath.Join(folder+".gone", "new")); err != nil {
		t.Fatal(err)
	}
	r.wait(t, "f")
	deadline := time.Now().Add(5 * time.Second)
	for w.Watching("f") {
		if time.Now().After(deadline) {
			t.Fatal("f still counted as watched after its new/ was removed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAddFails(t *testing.T) {
	_, newDir, _ := maildirFolder(t)
	w, _ := newWatcher(t)
	file := filepath.Join(newDir, "file")
	os.WriteFile(file, nil, 0o600)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(newDir, link)
	for _, bad := range []string{filepath.Join(newDir, "missing"), file, link} {
		if err := w.Add("k", newDir, bad); err == nil {
			t.Errorf("Add %s: no error", bad)
		}
		if w.Watching("k") {
			t.Errorf("Add %s failed but k is watched", bad)
		}
	}
	// Nothing half-added stays behind: the next Add starts afresh.
	if err := w.Add("k", newDir); err != nil || !w.Watching("k") {
		t.Fatalf("Add after failures: %v", err)
	}
}

// Close ends the reads (the descriptor stayed non-blocking) and nothing is
// reported afterwards.
func TestClose(t *testing.T) {
	_, newDir, _ := maildirFolder(t)
	calls := make(chan []string, 8)
	w, err := New(func(k []string) { calls <- k })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("k", newDir); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- w.Close() }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	os.WriteFile(filepath.Join(newDir, "after"), nil, 0o600)
	select {
	case k := <-calls:
		t.Fatalf("reported %v after Close", k)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestLocal(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{t.TempDir(), true},
		{"/dev/shm", true},
		{"/proc", false},
		{"/nonexistent/path", false},
	} {
		if _, err := os.Stat(tc.path); tc.want && err != nil {
			continue
		}
		if got := Local(tc.path); got != tc.want {
			t.Errorf("Local(%s) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
