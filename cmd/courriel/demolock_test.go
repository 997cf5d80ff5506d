package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"courriel/delivery/queue"
)

// A second demo on a directory whose demo (or a serve of its printed
// configuration) runs stops before it writes anything there: the running
// one would reload the rewritten certificate.
func TestDemoSecondOnSameDir(t *testing.T) {
	t.Parallel()
	// The spool run by another process.
	dir := t.TempDir()
	q, err := queue.Open(queue.Options{Dir: filepath.Join(dir, "queue"), Hostname: "xoyize.xyz", TLSPolicy: queue.PolicyNone})
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	// An address of its own, should the demo get as far as its listeners.
	code, _, errOut := runCmd(t, "", "demo", "-dir", dir, "-listen", "127.0.0.97")
	if code == 0 || !strings.Contains(errOut, "is run by process") {
		t.Errorf("demo on a running spool: exit %d, %s", code, errOut)
	}
	for _, p := range []string{"tls", "vmail", "dkim", "srs-secret"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
			t.Errorf("demo on a running spool wrote %s", p)
		}
	}

	// Another demo holding the directory.
	dir2 := t.TempDir()
	unlock, err := lockDemoDir(dir2)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	code, _, errOut = runCmd(t, "", "demo", "-dir", dir2, "-listen", "127.0.0.97")
	if code == 0 || !strings.Contains(errOut, "a demo already runs on "+dir2) {
		t.Errorf("demo on a running demo's directory: exit %d, %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir2, "tls")); err == nil {
		t.Error("demo on a running demo's directory wrote tls")
	}
}
