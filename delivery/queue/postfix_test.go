package queue

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startSmtpSink runs Postfix's smtp-sink (Debian package postfix) on a
// loopback port with args, writing each transaction it accepts to a file
// in the returned directory. Without smtp-sink the test is skipped, except
// in CI.
func startSmtpSink(t *testing.T, args ...string) (addr, dumps string) {
	t.Helper()
	bin, err := exec.LookPath("smtp-sink")
	if err != nil {
		bin = "/usr/sbin/smtp-sink"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("smtp-sink (Debian package postfix) is required in CI")
			}
			t.Skip("smtp-sink (Debian package postfix) is not installed")
		}
	}
	// smtp-sink drops root privileges: its dump directory must be
	// reachable by the user it becomes.
	dumps, err = os.MkdirTemp("", "courriel-smtp-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dumps) })
	os.Chmod(dumps, 0o777)
	argv := []string{"-d", filepath.Join(dumps, "tx.")}
	if os.Geteuid() == 0 {
		argv = append(argv, "-u", "nobody")
	}
	argv = append(argv, args...)
	// The kernel picks a free port, and smtp-sink binds it a moment
	// later; meanwhile another test's listener may be given the port, and
	// smtp-sink exits (address in use). Only smtp-sink's own greeting
	// says it has the port: else another port is tried, so that this
	// test's mail never goes to another test's server.
	for range 5 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, append(argv, addr, "64")...)
		cmd.Stderr = t.Output()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		if smtpSinkListens(addr, exited) {
			t.Cleanup(func() { cmd.Process.Kill(); <-exited })
			return addr, dumps
		}
		cmd.Process.Kill()
		<-exited
	}
	t.Fatal("smtp-sink did not get a port of its own in 5 tries")
	return "", ""
}

// smtpSinkListens waits until smtp-sink, started on addr, greets there;
// false when it exits, or when another server answers there.
func smtpSinkListens(addr string, exited <-chan struct{}) bool {
	for range 500 {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		greeting, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		return strings.HasPrefix(greeting, "220 smtp-sink ")
	}
	return false
}

// sunkRecipients reads smtp-sink's dumps: the recipients of each
// transaction, sorted.
func sunkRecipients(t *testing.T, dir string) [][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "tx.*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rcpts []string
		for _, l := range strings.Split(string(b), "\n") {
			if a, ok := strings.CutPrefix(l, "X-Rcpt-Args: <"); ok {
				a, _, _ = strings.Cut(a, ">") // then its DSN parameters: smtp-sink offers DSN
				rcpts = append(rcpts, a)
			}
		}
		out = append(out, rcpts)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, ","), strings.Join(b, ",")) })
	return out
}

func TestDeliveryToPostfixSmtpSink(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		args      []string
		together  bool // enqueue every message at once rather than one after the other
		msgs      int
		rcpts     int // per message
		wantDials func(msgs int) bool
	}{
		{name: "pipelined, connections reused, 50 RCPTs per transaction", together: true, msgs: 30, rcpts: 60,
			wantDials: func(n int) bool { return n <= 4 }},
		{name: "without PIPELINING", args: []string{"-p"}, msgs: 4, rcpts: 2,
			wantDials: func(n int) bool { return n == 1 }},
		{name: "server hangs up with 421 on RSET: a new connection each time, no failed attempt", args: []string{"-Q", "RSET"}, msgs: 4, rcpts: 2,
			wantDials: func(n int) bool { return n == 4 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr, dumps := startSmtpSink(t, tc.args...)
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": addr}
			o.DestinationConcurrency = 4
			o.ConnectionCacheTime = time.Minute // a slow machine must not expire it
			var dials atomic.Int32
			o.Dialer = func(ctx context.Context, network, a string) (net.Conn, error) {
				dials.Add(1)
				var d net.Dialer
				return d.DialContext(ctx, network, a)
			}
			h := start(t, o)
			var want [][]string
			for i := range tc.msgs {
				var rcpts []string
				for j := range tc.rcpts {
					rcpts = append(rcpts, "m"+strconv.Itoa(i)+"r"+strconv.Itoa(j)+"@remote.test")
				}
				for lo := 0; lo < len(rcpts); lo += rcptsPerTransaction {
					want = append(want, slices.Sorted(slices.Values(rcpts[lo:min(lo+rcptsPerTransaction, len(rcpts))])))
				}
				h.enqueue("alice@local.test", rcpts...)
				if !tc.together {
					h.waitUntil("the queue is empty", h.empty)
				}
			}
			h.waitUntil("the queue is empty", h.empty)
			got := sunkRecipients(t, dumps)
			for i := range got {
				slices.Sort(got[i])
			}
			slices.SortFunc(want, func(a, b []string) int { return strings.Compare(strings.Join(a, ","), strings.Join(b, ",")) })
			slices.SortFunc(got, func(a, b []string) int { return strings.Compare(strings.Join(a, ","), strings.Join(b, ",")) })
			if !slices.EqualFunc(got, want, slices.Equal) {
				t.Errorf("smtp-sink got %d transactions, want %d (one per message and 50 recipients)", len(got), len(want))
			}
			if n := int(dials.Load()); !tc.wantDials(n) {
				t.Errorf("%d connections for %d messages", n, tc.msgs)
			}
			if strings.Contains(h.logs.String(), "deferred") {
				t.Errorf("a delivery was deferred:\n%s", h.logs.String())
			}
		})
	}
}
