package testenv

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPostfixDeliversLikeTheSeed: the Postfix instance of the benchmarks
// resolves an alias through the fixture's directory and writes the
// maildir the seed names (home + /mailbox/), as the seed's setup does.
func TestPostfixDeliversLikeTheSeed(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		skipOrFail(t, err)
	}
	base := PublicTempDir(t)
	s := StartSlapd(t, WithHomeBase(base))
	p := StartPostfix(t, s)
	out, err := exec.Command("swaks", "--server", p.Addr, "--to", "test0@hosted-domain.com", "--from", "a@example.net", "--body", "hi").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "<-  250 2.0.0 Ok: queued") {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(base, "xomail", "mailbox", "new", "*"))
		if len(files) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no delivery in %s:\n%s", base, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
