package integration

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"courriel/delivery/queue"
	"courriel/internal/testenv"
)

// courriel runs the binary with a bounded time and returns its combined
// output and exit status (-1 when it could not run).
func courriel(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
	if err == nil {
		return string(out), 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	}
	t.Fatalf("courriel %v: %v", args, err)
	return "", -1
}

// `courriel queue list` run over and over while the server starts and
// runs never takes the spool from it: the server starts every time, keeps
// its owner lock, keeps its listeners and delivers its queue.
func TestQueueCommandBesideStartingServer(t *testing.T) {
	s, k := startServerDeferred(t)
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"r1@foreign.example"}, "Subject: held\r\n\r\nheld\r\n"); err != nil {
		t.Fatal(err)
	}
	spool := filepath.Join(s.dir, "queue")

	var runs, failures atomic.Int64
	var failMu sync.Mutex
	var failOut []string
	loop := func(stop <-chan struct{}, wg *sync.WaitGroup) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, code := courriel(t, "queue", "list", "-config", s.config)
			runs.Add(1)
			if code != 0 || !strings.Contains(out, " Kbytes in 1 Request.\n") {
				failures.Add(1)
				failMu.Lock()
				failOut = append(failOut, fmt.Sprintf("exit %d: %s", code, out))
				failMu.Unlock()
			}
		}
	}
	for restart := range 4 {
		s.stop(syscall.SIGTERM)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go loop(stop, &wg)
		}
		time.Sleep(100 * time.Millisecond) // the clients are running when the server starts
		s.start()
		for before := runs.Load(); runs.Load() < before+6; {
			time.Sleep(20 * time.Millisecond) // and keep running beside it
		}
		close(stop)
		wg.Wait()
		select {
		case <-s.done:
			t.Fatalf("restart %d: the server exited beside `courriel queue list`:\n%s", restart, s.logs())
		default:
		}
		pid, err := queue.OwnerPID(spool)
		if err != nil || pid != s.cmd.Process.Pid {
			t.Fatalf("restart %d: the spool's owner is pid %d (%v), want the server, %d", restart, pid, err, s.cmd.Process.Pid)
		}
	}
	if failures.Load() > 0 {
		t.Errorf("%d of %d `queue list` runs failed, e.g. %s", failures.Load(), runs.Load(), failOut[0])
	}
	t.Logf("%d `courriel queue list` runs beside 4 server start-ups", runs.Load())
	if strings.Contains(s.logs(), "listener failed") || strings.Contains(s.logs(), "ErrNotOwner") {
		t.Errorf("the server logged a failure:\n%s", s.logs())
	}
	// Still serving and still delivering: the runner is alive.
	k.mu.Lock()
	k.deferAll = false
	k.mu.Unlock()
	if out, code := courriel(t, "queue", "flush", "-config", s.config); code != 0 {
		t.Fatalf("queue flush -config: exit %d\n%s", code, out)
	}
	waitFor(t, "the queued message delivered", func() bool { return len(k.messages()) == 1 })
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"r2@foreign.example"}, "Subject: after\r\n\r\nafter\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new message delivered", func() bool { return len(k.messages()) == 2 })
}

// Flags after the queue command work as before it, for every command; a
// second server on the same spool is refused at start-up, naming the first.
func TestQueueCommandFlagsAnywhere(t *testing.T) {
	s, _ := startServerDeferred(t)
	for _, to := range []string{"keep@foreign.example", "drop@foreign.example"} {
		if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{to}, "Subject: q\r\n\r\nbody of "+to+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	before, code := courriel(t, "queue", "-config", s.config, "list")
	after, code2 := courriel(t, "queue", "list", "-config", s.config)
	if code != 0 || code2 != 0 || before != after || !strings.Contains(after, " Kbytes in 2 Requests.\n") {
		t.Fatalf("queue -config F list (exit %d):\n%s\nqueue list -config F (exit %d):\n%s", code, before, code2, after)
	}
	ids := regexp.MustCompile(`(?m)^(\S+)\s+\d+ .*\n\s+<(keep|drop)@`).FindAllStringSubmatch(after, -1)
	if len(ids) != 2 {
		t.Fatalf("cannot read the ids from:\n%s", after)
	}
	idOf := map[string]string{ids[0][2]: ids[0][1], ids[1][2]: ids[1][1]}
	out, code := courriel(t, "queue", "show", idOf["keep"], "-config", s.config)
	if code != 0 || !strings.Contains(out, "body of keep@foreign.example") {
		t.Errorf("queue show ID -config F: exit %d\n%s", code, out)
	}
	out, code = courriel(t, "queue", "delete", "-config", s.config, idOf["drop"])
	if code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("queue delete -config F ID: exit %d\n%s", code, out)
	}
	// The server's own log tells where the message went.
	waitFor(t, "the server logging the deletion", func() bool {
		return regexp.MustCompile(`removed by another process.*queue_id=` + regexp.QuoteMeta(idOf["drop"])).MatchString(s.logs())
	})
	// postsuper -d ALL and -d -: both left; "-" reads ids (the first
	// word of each line) from standard input.
	for _, to := range []string{"a@foreign.example", "b@foreign.example", "c@foreign.example"} {
		if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{to}, "Subject: bulk\r\n\r\nbulk\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := courriel(t, "queue", "list", "-config", s.config)
	var lines []string
	for _, m := range regexp.MustCompile(`(?m)^(\S+)\s+\d+ .*\n\s+<[ab]@`).FindAllStringSubmatch(list, -1) {
		lines = append(lines, m[1]+"  (from the list)")
	}
	if len(lines) != 2 {
		t.Fatalf("cannot read the ids of a@ and b@ from:\n%s", list)
	}
	cmd := exec.Command(binary, "queue", "delete", "-config", s.config, "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	if o, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(o), "Deleted: 2 message(s)") {
		t.Errorf("queue delete - : %v\n%s", err, o)
	}
	out, code = courriel(t, "queue", "delete", "ALL", "-config", s.config)
	if code != 0 || !strings.Contains(out, "Deleted: 2 message(s)") { // keep@ and c@
		t.Errorf("queue delete ALL: exit %d\n%s", code, out)
	}
	if out, _ := courriel(t, "queue", "list", "-config", s.config); !strings.Contains(out, "Mail queue is empty") {
		t.Errorf("after delete ALL:\n%s", out)
	}
	out, code = courriel(t, "queue", "delete", "-config", s.config, "../NOTANID")
	if code != 2 || !strings.Contains(out, "neither a queue id nor a msg_id") {
		t.Errorf("queue delete with a bad id: exit %d\n%s", code, out)
	}
	out, code = courriel(t, "queue", "delete", "-config", s.config, "NOSUCHID")
	if code != 1 || !strings.Contains(out, "NOSUCHID: no queued message") {
		t.Errorf("queue delete of an id naming nothing: exit %d\n%s", code, out)
	}
	out, code = courriel(t, "queue", "list", "-config", s.config, "extra")
	if code != 2 || !strings.Contains(out, "takes no argument") {
		t.Errorf("queue list with an extra word: exit %d, want 2\n%s", code, out)
	}
	out, code = courriel(t, "queue", "flush", "-config", s.config)
	if code != 0 || !strings.Contains(out, "flush requested") {
		t.Errorf("queue flush -config F: exit %d\n%s", code, out)
	}
	out, code = courriel(t, "queue", "list", "-nosuchflag", "-config", s.config)
	if code == 0 || !strings.Contains(out, "flag provided but not defined") {
		t.Errorf("an unknown flag after the command: exit %d, want a failure\n%s", code, out)
	}

	// A second server on the same configuration (so the same spool and
	// ports) stops at start-up and leaves the first one serving.
	out, code = courriel(t, "serve", "-config", s.config)
	if code == 0 || !strings.Contains(out, fmt.Sprintf("pid %d", s.cmd.Process.Pid)) {
		t.Errorf("a second server: exit %d, want a refusal naming pid %d\n%s", code, s.cmd.Process.Pid, out)
	}
	select {
	case <-s.done:
		t.Fatal("the first server exited")
	default:
	}
	if pid, _ := queue.OwnerPID(filepath.Join(s.dir, "queue")); pid != s.cmd.Process.Pid {
		t.Errorf("owner pid %d, want %d", pid, s.cmd.Process.Pid)
	}

	// With the server stopped, a flush says that nothing will happen, as
	// postqueue -f says "mail system is down", with its status (69,
	// EX_UNAVAILABLE).
	s.stop(syscall.SIGTERM)
	out, code = courriel(t, "queue", "flush", "-config", s.config)
	if code != 69 || !strings.Contains(out, "no server runs the queue") {
		t.Errorf("queue flush with no server: exit %d, want 69\n%s", code, out)
	}
}

// postsuper -h and -H: a held message stays put through a flush while
// another leaves, is listed with mailq's "!", and leaves once released.
func TestQueueHoldRelease(t *testing.T) {
	s, k := startServerDeferred(t)
	for _, to := range []string{"held@foreign.example", "free@foreign.example"} {
		if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{to}, "Subject: h\r\n\r\nbody of "+to+"\r\n"); err != nil {
			t.Fatal(err)
		}
	}
	list, _ := courriel(t, "queue", "list", "-config", s.config)
	m := regexp.MustCompile(`(?m)^(\S+)\s+\d+ .*\n\s+<held@`).FindStringSubmatch(list)
	if m == nil {
		t.Fatalf("cannot read the held message's id from:\n%s", list)
	}
	id := m[1]
	if out, code := courriel(t, "queue", "hold", id, "-config", s.config); code != 0 || !strings.Contains(out, id+": placed on hold") {
		t.Fatalf("queue hold: exit %d\n%s", code, out)
	}
	if out, _ := courriel(t, "queue", "list", "-config", s.config); !strings.Contains(out, id+"!") {
		t.Errorf("queue list does not mark the held message:\n%s", out)
	}
	waitFor(t, "the server logging the hold", func() bool {
		return regexp.MustCompile(`held by another process.*queue_id=` + regexp.QuoteMeta(id)).MatchString(s.logs())
	})
	k.mu.Lock()
	k.deferAll = false
	k.mu.Unlock()
	if out, code := courriel(t, "queue", "flush", "-config", s.config); code != 0 {
		t.Fatalf("queue flush: exit %d\n%s", code, out)
	}
	waitFor(t, "the message not held delivered", func() bool { return len(k.messages()) == 1 })
	if out, code := courriel(t, "queue", "release", "ALL", "-config", s.config); code != 0 || !strings.Contains(out, "Released from hold: 1 message(s)") {
		t.Fatalf("queue release ALL: exit %d\n%s", code, out)
	}
	if out, code := courriel(t, "queue", "flush", "-config", s.config); code != 0 {
		t.Fatalf("queue flush: exit %d\n%s", code, out)
	}
	waitFor(t, "the released message delivered", func() bool { return len(k.messages()) == 2 })
	if got := k.messages()[1]; !strings.Contains(got.data, "body of held@foreign.example") {
		t.Errorf("second delivery: %q", got.data)
	}
}

// withListenAddrs rewrites a configuration's [listen] addresses (the
// harness starts on port 0; check-config must see the bound ports) and, if
// queueDir is not "", its queue directory.
func withListenAddrs(t *testing.T, config string, addrs map[string]string, queueDir string) string {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for key, addr := range addrs {
		re := regexp.MustCompile(`(?m)^` + key + ` = ".*"$`)
		line := fmt.Sprintf("%s = %q", key, addr)
		if !re.MatchString(s) {
			s = strings.Replace(s, "[listen]\n", "[listen]\n"+line+"\n", 1)
			continue
		}
		s = re.ReplaceAllString(s, line)
	}
	if queueDir != "" {
		s = regexp.MustCompile(`(?m)^dir = ".*"$`).ReplaceAllString(s, fmt.Sprintf("dir = %q", queueDir))
	}
	out := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(out, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// check-config on a running server: its own ports are fine, so
// `check-config && systemctl reload` reloads; a port another program holds,
// or a courriel on another spool, is still reported.
func TestCheckConfigBesideRunningServer(t *testing.T) {
	s := startServer(t, withHTTP())
	pid := s.cmd.Process.Pid
	bound := map[string]string{"smtp": s.SMTP, "submission": s.Sub, "submissions": s.Subs, "imaps": s.IMAPS, "http": s.HTTP}
	live := withListenAddrs(t, s.config, bound, "")
	out, code := courriel(t, "check-config", "-q", "-config", live)
	if code != 0 || !strings.Contains(out, "configuration OK") {
		t.Fatalf("check-config on the running server's configuration: exit %d\n%s", code, out)
	}
	for name, addr := range bound {
		if want := fmt.Sprintf("ok   listen %s %s held by the running courriel (pid %d)", name, addr, pid); !strings.Contains(out, want) {
			t.Errorf("check-config does not say %q:\n%s", want, out)
		}
	}
	// The test directory has no postmaster@xoyize.xyz: a warning, not a
	// failure (the seed's Postfix takes no mail for it either).
	if want := "warn ldap: postmaster@xoyize.xyz reaches nobody"; !strings.Contains(out, want) {
		t.Errorf("check-config does not say %q:\n%s", want, out)
	}

	// Another program on the plain IMAP port.
	other, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	withOther := maps.Clone(bound)
	withOther["imap"] = other.Addr().String()
	busy := withListenAddrs(t, s.config, withOther, "")
	out, code = courriel(t, "check-config", "-q", "-config", busy)
	if code != 1 || !regexp.MustCompile(`FAIL listen imap `+regexp.QuoteMeta(other.Addr().String())+`: .*address already in use by another program \(not the running courriel, pid \d+\)`).MatchString(out) {
		t.Errorf("a port held by another program: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, fmt.Sprintf("ok   listen smtp %s held by the running courriel", s.SMTP)) {
		t.Errorf("the server's own smtp port is not recognised beside the busy one:\n%s", out)
	}

	// The same ports under a configuration whose spool no courriel runs:
	// whoever holds them, it is not this configuration's server.
	stranger := withListenAddrs(t, s.config, bound, filepath.Join(t.TempDir(), "queue"))
	out, code = courriel(t, "check-config", "-q", "-config", stranger)
	if code != 1 || !strings.Contains(out, "FAIL listen smtp "+s.SMTP) || !strings.Contains(out, "no courriel runs this configuration's queue") {
		t.Errorf("ports of a courriel on another spool: exit %d\n%s", code, out)
	}

	// Once the server is gone, the same ports are simply free.
	s.stop(syscall.SIGTERM)
	out, code = courriel(t, "check-config", "-q", "-config", live)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("ok   listen smtp %s free", s.SMTP)) {
		t.Errorf("after the server stopped: exit %d\n%s", code, out)
	}
}

// curlFrom fetches url with curl from a given local source address and
// returns the status code and body.
func curlFrom(t *testing.T, src, url string) (int, string) {
	t.Helper()
	out, err := run(t, "", "curl", "-sS", "--interface", src, "-w", "\n%{http_code}", url)
	if err != nil {
		t.Fatalf("curl %s from %s: %v\n%s", url, src, err, out)
	}
	i := strings.LastIndex(out, "\n")
	var code int
	fmt.Sscan(out[i+1:], &code)
	return code, strings.TrimSuffix(out[:i], "\n")
}

// The http listener: metrics and the health check's cause only for the
// configured networks, autoconfig for everyone; the queue metrics come from
// the queue's counters, not from the spool.
func TestMonitorExposure(t *testing.T) {
	requireTool(t, "curl")
	ca := testenv.NewCA(t)
	k := startSink(t, ca)
	k.mu.Lock()
	k.deferAll = true
	k.mu.Unlock()
	// 127.0.0.2 plays the monitoring host, 127.0.0.1 anyone else.
	s := startServerWithCA(t, ca, withHTTP(), withTOML(fmt.Sprintf("[queue.routes]\n\"foreign.example\" = %q\n[monitor]\ntrusted_networks = [\"127.0.0.2\"]\n", k.addr)))
	const trusted, other = "127.0.0.2", "127.0.0.1"
	base := "http://" + s.HTTP

	for _, src := range []string{trusted, other} {
		code, body := curlFrom(t, src, base+"/mail/config-v1.1.xml?emailaddress=test0@hosted-domain.com")
		_, imapsPort, _ := net.SplitHostPort(s.IMAPS)
		if code != 200 || !strings.Contains(body, "<hostname>xoyize.xyz</hostname>") || !strings.Contains(body, "<port>"+imapsPort+"</port>") {
			t.Errorf("autoconfig from %s: %d, want the bound IMAPS port %s\n%s", src, code, imapsPort, body)
		}
		if code, body := curlFrom(t, src, base+"/healthz"); code != 200 || body != "ok" {
			t.Errorf("healthz from %s: %d %q", src, code, body)
		}
	}
	if code, body := curlFrom(t, other, base+"/metrics"); code != 403 || strings.Contains(body, "courriel_") {
		t.Errorf("metrics from an untrusted address: %d\n%.500s", code, body)
	}

	// One message deferred by the remote MTA: counted by state.
	if err := submit(t, s, "alice", testenv.AlicePassword, "alice@example.org", []string{"r1@foreign.example", "r2@foreign.example"}, "Subject: m\r\n\r\nm\r\n"); err != nil {
		t.Fatal(err)
	}
	want := []string{"courriel_queue_messages 1", "courriel_queue_messages_deferred 1",
		`courriel_queue_recipients{state="pending"} 2`, `courriel_queue_recipients{state="failed"} 0`}
	var metrics string
	waitFor(t, "the deferral in the metrics", func() bool {
		code, body := curlFrom(t, trusted, base+"/metrics")
		metrics = body
		return code == 200 && strings.Contains(body, "courriel_queue_messages_deferred 1")
	})
	for _, w := range want {
		if !strings.Contains(metrics, w+"\n") {
			t.Errorf("metrics lack %q", w)
		}
	}
	// A scrape reads no envelope: with the files gone behind the server's
	// back (no rescan requested), the counters still say what it knows.
	envs, _ := filepath.Glob(filepath.Join(s.dir, "queue", "*.env"))
	if len(envs) != 1 {
		t.Fatalf("%d envelopes in the spool, want 1", len(envs))
	}
	if err := os.Rename(envs[0], filepath.Join(s.dir, "moved-away.env")); err != nil {
		t.Fatal(err)
	}
	if _, body := curlFrom(t, trusted, base+"/metrics"); !strings.Contains(body, "courriel_queue_messages 1\n") {
		t.Errorf("the scrape read the spool:\n%s", body)
	}
	os.Rename(filepath.Join(s.dir, "moved-away.env"), envs[0])

	// The directory goes down: everyone sees 503 (once the last check,
	// shared for a second, is over), only the monitoring host sees why
	// (it names the LDAP server).
	s.slapd.Stop(t)
	waitFor(t, "/healthz to see the directory down", func() bool {
		code, _ := curlFrom(t, other, base+"/healthz")
		return code == 503
	})
	code, body := curlFrom(t, trusted, base+"/healthz")
	if code != 503 || !strings.Contains(body, "ldap://") {
		t.Errorf("healthz from the trusted address, directory down: %d %q, want 503 and the cause", code, body)
	}
	t.Logf("directory down: /healthz from %s: %d %q", trusted, code, body)
	code, body = curlFrom(t, other, base+"/healthz")
	if code != 503 || body != "unavailable" {
		t.Errorf("healthz from an untrusted address, directory down: %d %q, want 503 \"unavailable\"", code, body)
	}
	s.slapd.Start(t)
}

// `courriel demo` serves passwords everyone knows: on anything but loopback
// it refuses to start unless told, by name, that it exposes them.
func TestDemoRefusesNetworkWithoutFlag(t *testing.T) {
	for _, listen := range []string{"0.0.0.0", "::", "192.0.2.1", ""} {
		dir := filepath.Join(t.TempDir(), "demo")
		out, code := courriel(t, "demo", "-dir", dir, "-listen", listen)
		if code != 2 || !strings.Contains(out, "-expose-demo-passwords") || !strings.Contains(out, `"demo"`) {
			t.Errorf("demo -listen %q: exit %d\n%s", listen, code, out)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("demo -listen %q created %s before refusing", listen, dir)
		}
	}
	// With the flag the check passes; 192.0.2.1 (TEST-NET) is not on this
	// machine, so the start fails later, at the first bind, not at the check.
	out, code := courriel(t, "demo", "-dir", filepath.Join(t.TempDir(), "demo"), "-listen", "192.0.2.1", "-expose-demo-passwords")
	if code == 0 || strings.Contains(out, "-expose-demo-passwords") || !strings.Contains(out, "192.0.2.1") {
		t.Errorf("demo -listen 192.0.2.1 -expose-demo-passwords: exit %d\n%s", code, out)
	}
}

// SIGTERM while a message is in DATA on port 25: every listener stops
// taking connections at once (a balancer's /healthz check fails, IMAPS and
// submission refuse), the message in flight still gets its 250, and the
// server exits. One listener after the other, 587, 993 and /healthz kept
// answering while port 25 drained.
func TestShutdownStopsEveryListenerAtOnce(t *testing.T) {
	s := startServer(t, withHTTP())
	c, err := net.Dial("tcp", s.SMTP)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(prefix string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading %q: %v", prefix, err)
			}
			if len(l) > 3 && l[3] == '-' {
				continue
			}
			if !strings.HasPrefix(l, prefix) {
				t.Fatalf("got %q, want %q", l, prefix)
			}
			return
		}
	}
	send := func(s string) { c.Write([]byte(s)) }
	expect("220 ")
	for _, cmd := range []struct{ line, want string }{
		{"EHLO client.example\r\n", "250 "}, {"MAIL FROM:<x@example.net>\r\n", "250 "},
		{"RCPT TO:<bob@hosted-domain.com>\r\n", "250 "}, {"DATA\r\n", "354 "},
	} {
		send(cmd.line)
		expect(cmd.want)
	}
	send("Subject: in flight\r\n\r\nfirst half\r\n")
	s.cmd.Process.Signal(syscall.SIGTERM)
	for _, addr := range []string{s.IMAPS, s.Sub, s.HTTP} {
		waitFor(t, addr+" refusing connections", func() bool {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				return false
			}
			return true
		})
	}
	send("second half\r\n.\r\n")
	expect("250 ")
	send("QUIT\r\n")
	select {
	case <-s.done:
	case <-time.After(40 * time.Second):
		t.Fatal("the server did not exit")
	}
	if n := len(s.maildirFiles(t, "bob", "new")); n != 1 {
		t.Errorf("bob has %d messages, want the one in flight", n)
	}
}
