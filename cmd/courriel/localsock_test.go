package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestListenLocal: the directory is made 0755 and the socket 0666; a
// stale socket is replaced, a live one is not taken over, a directory
// others may write is refused.
func TestListenLocal(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "s.sock")
	if note, err := checkLocalSocket(path); err != nil || note != "(directory made at the start)" {
		t.Errorf("check-config before: %q, %v", note, err)
	}
	ln, err := listenLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	if note, err := checkLocalSocket(path); err != nil || note != "(a server answers on it)" {
		t.Errorf("check-config beside the server: %q, %v", note, err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o755, path: 0o666} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode(), err, want)
		}
	}
	if _, err := listenLocal(path); err == nil || !strings.Contains(err.Error(), "listening on it already") {
		t.Errorf("a live socket taken over: %v", err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a stale socket, as a killed server leaves it
	// A process another test forks meanwhile holds a copy of the
	// listening socket until it execs: the socket is stale once it
	// refuses connections.
	for i := 0; ; i++ {
		c, err := net.Dial("unix", path)
		if err != nil {
			break
		}
		c.Close()
		if i == 500 {
			t.Fatal("the socket still answers 5 s after it was closed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ln, err = listenLocal(path)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	ln.Close()
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Error("socket still answers after close")
	}
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := listenLocal(filepath.Join(open, "s.sock")); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("world-writable directory: %v", err)
	}
	if _, err := checkLocalSocket(filepath.Join(open, "s.sock")); err == nil {
		t.Error("check-config takes a world-writable directory")
	}
	// A socket there already (left by a server that ran before the
	// check): check-config refuses the directory as serve does.
	stale := filepath.Join(open, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	if note, err := checkLocalSocket(stale); err == nil {
		t.Errorf("check-config takes a stale socket in a world-writable directory: %q", note)
	}
}

// TestListenLocalSticky: a sticky world-writable directory (/tmp) is
// refused too: anyone could make the socket there while serve is down.
func TestListenLocalSticky(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "tmp")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.sock")
	if ln, err := listenLocal(path); err == nil || !strings.Contains(err.Error(), "writable by others") {
		if err == nil {
			ln.Close()
		}
		t.Errorf("sticky world-writable directory: %v", err)
	}
	if _, err := checkLocalSocket(path); err == nil {
		t.Error("check-config takes a sticky world-writable directory")
	}
	if err := checkSocketDir("/tmp"); err == nil {
		t.Error("/tmp accepted")
	}
}
