package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// mailq works for any user, as Postfix's (authorized_mailq_users =
// static:anyone): monitoring (check_mailq) runs it unprivileged, where
// neither the configuration nor the spool can be read. Such a user gets
// the running server's listing through the socket beside the local
// submission socket, found in the paths file at its default place
// (/run/courriel, a private mount here), and Postfix's last line, which
// check_mailq reads; with no server, postqueue's "mail system is down"
// status, 69.
func TestMailqAsAnyUser(t *testing.T) {
	for _, tool := range []string{"unshare", "setpriv"} {
		requireTool(t, tool)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a mount namespace and another uid")
	}
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	k.mu.Lock()
	k.deferAll = true
	k.mu.Unlock()
	s := startServerWithCA(t, ca, withLocalSocket(), withTOML("[queue.routes]\n\"foreign.example\" = \""+k.addr+"\"\n"))
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"r1@foreign.example"}, "Subject: q\r\n\r\nqueued\r\n"); err != nil {
		t.Fatal(err)
	}
	root, _ := courriel(t, "queue", "-config", s.config, "list")
	id := regexp.MustCompile(`(?m)^(\S+) +\d+ `).FindStringSubmatch(root)
	if id == nil || !strings.HasSuffix(root, "\n-- 0 Kbytes in 1 Request.\n") {
		t.Fatalf("root's queue list:\n%s", root)
	}
	// As nobody, with /run/courriel the server's run directory (its paths
	// file), the way to it open to all as /run's is, and the binary where
	// nobody may run it.
	for d := filepath.Dir(filepath.Dir(s.Local)); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	mailq := func() (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		script := `mount -t tmpfs tmpfs /run && mkdir /run/courriel && mount --bind "$1" /run/courriel &&
cp "$2" /run/courriel-bin && chmod 755 /run/courriel-bin &&
exec setpriv --reuid=65534 --regid=65534 --clear-groups /run/courriel-bin sendmail -bp -config "$3"`
		out, err := exec.CommandContext(ctx, "unshare", "-m", "sh", "-c", script, "sh", filepath.Dir(s.Local), binary, s.config).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := mailq()
	if code != 0 || out != root {
		t.Errorf("mailq as nobody: exit %d\n%s\nwant root's listing:\n%s", code, out, root)
	}
	s.stop(syscall.SIGTERM)
	if out, code := mailq(); code != 69 {
		t.Errorf("mailq as nobody, no server: exit %d, want 69\n%s", code, out)
	}
}
