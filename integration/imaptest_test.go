package integration

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// imaptestDir is Dovecot's conformance suite beside the repository
// (../shared/tools/imaptest from the repository root: /work/main and
// /work/shared in CI); IMAPTEST_TOOLS names another place (a worktree
// elsewhere).
func imaptestDir(t *testing.T) string {
	if d := os.Getenv("IMAPTEST_TOOLS"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	return filepath.Join(root, "..", "shared", "tools", "imaptest")
}

// TestIMAPConformance runs imaptest's scripted files (Dovecot's own IMAP
// conformance suite) against courriel serve and fails when a file listed
// in testdata/imaptest-pass.txt (the files that pass today) does not pass.
// scripts/test builds imaptest when it is missing; in CI a missing
// imaptest is a failure.
func TestIMAPConformance(t *testing.T) {
	dir := imaptestDir(t)
	script := filepath.Join(dir, "conformance.sh")
	prefix := os.Getenv("IMAPTEST_PREFIX")
	if prefix == "" {
		prefix = "/opt/imaptest"
	}
	if _, err := os.Stat(script); err != nil {
		missing(t, "conformance.sh ("+script+")")
	}
	if _, err := os.Stat(filepath.Join(prefix, "bin", "imaptest")); err != nil {
		missing(t, "imaptest (build it with "+filepath.Join(dir, "build.sh")+")")
	}
	want := expectedPasses(t)
	s := startServer(t, withProduction())
	host, port, err := net.SplitHostPort(s.IMAPS)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, host, port, "alice", testenv.AlicePassword, "yes")
	cmd.Env = append(os.Environ(), "OUTDIR="+out, "IMAPTEST_PREFIX="+prefix, "TEST_TIMEOUT=30")
	report, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("conformance.sh: %v\n%s", err, report)
	}
	got := map[string]string{}
	f, err := os.Open(filepath.Join(out, "results.tsv"))
	if err != nil {
		t.Fatalf("no results: %v\n%s", err, report)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		if len(fields) >= 2 && fields[0] != "test" {
			got[fields[0]] = fields[1]
		}
	}
	for _, name := range want {
		if got[name] != "PASS" {
			detail, _ := os.ReadFile(filepath.Join(out, name+".err"))
			t.Errorf("imaptest %s: %s (passed before)\n%s", name, cmp.Or(got[name], "not run"), detail)
		}
	}
	if t.Failed() {
		t.Logf("conformance.sh output:\n%s", report)
	}
}

func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI (scripts/test builds it)", what)
	}
	t.Skipf("%s not available", what)
}

func expectedPasses(t *testing.T) []string {
	data, err := os.ReadFile(filepath.Join("testdata", "imaptest-pass.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		t.Fatal("testdata/imaptest-pass.txt lists no file")
	}
	return out
}
