package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// needTool skips (fails in CI) without a client program.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
}

// swaks sends one message with swaks and returns its transcript; a
// refusal is an error.
func swaks(t testing.TB, server, to, subject string) (string, error) {
	t.Helper()
	cmd := exec.Command("swaks", "--server", server, "--helo", "client.test", "--from", "sender@example.net",
		"--to", to, "--header", "Subject: "+subject, "--header", "Message-Id: <"+subject+"@example.net>",
		"--body", "hello "+subject, "--timeout", "30")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustSwaks(t testing.TB, server, to, subject string) {
	t.Helper()
	out, err := swaks(t, server, to, subject)
	if err != nil || !strings.Contains(out, "<-  250 2.0.0 OK") {
		t.Fatalf("swaks to %s for %s: %v\n%s", server, to, err, out)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Mail for alice (homed on b) sent to a's port 25 through one of her
// aliases lands once, in her maildir, stored by b, where her Sieve script
// ran and saw the original recipient; a stores nothing and keeps nothing.
func TestClusterHandOver(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	home := filepath.Join(e.homeBase, "alice")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	script := `require ["fileinto", "envelope", "mailbox"];
if envelope :is "to" "a.smith@hosted-domain.com" { fileinto :create "ViaAlias"; }
`
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		os.Chown(home, 20001, 20001)
		os.Chown(filepath.Join(home, ".dovecot.sieve"), 20001, 20001)
	}

	mustSwaks(t, e.a.smtpAddr, "a.smith@hosted-domain.com", "hop1")
	md := e.maildir("alice")
	waitFor(t, "the copy in alice's ViaAlias folder", 20*time.Second, func() bool { return len(mailFiles(t, md, "ViaAlias")) > 0 })
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	time.Sleep(300 * time.Millisecond) // a duplicate would have arrived by now
	files := mailFiles(t, md, "ViaAlias")
	if len(files) != 1 || len(mailFiles(t, md, "")) != 0 {
		t.Fatalf("alice: ViaAlias %v, INBOX %v; want exactly one copy, filed by her script", files, mailFiles(t, md, ""))
	}
	if !strings.Contains(filepath.Base(files[0]), ".nodeb") {
		t.Errorf("copy %s not stored by node b", files[0])
	}
	msg := readFile(t, files[0])
	mustContain(t, "the copy", msg, "Return-Path: <sender@example.net>", "Delivered-To: alice@xoyize.xyz", "Subject: hop1")
	if n := strings.Count(msg, "Received: "); n != 2 {
		t.Errorf("copy has %d Received fields, want 2 (a's port 25, b's cluster listener):\n%s", n, msg)
	}
	if os.Geteuid() == 0 {
		var st syscall.Stat_t
		if err := syscall.Stat(files[0], &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 20001 || st.Gid != 20001 {
			t.Errorf("copy owned by %d:%d, want alice's 20001:20001", st.Uid, st.Gid)
		}
	}

	// xomail is at home on a: a's port 25 stores it itself, and b's
	// port 25 hands it to a.
	mustSwaks(t, e.a.smtpAddr, "xomail@xoyize.xyz", "local-a")
	mustSwaks(t, e.b.smtpAddr, "xomail@xoyize.xyz", "from-b")
	xmd := e.maildir("xomail")
	waitFor(t, "xomail's two copies", 20*time.Second, func() bool { return len(mailFiles(t, xmd, "")) >= 2 })
	waitFor(t, "b's queue to empty", 20*time.Second, func() bool { return e.b.queueLen(t) == 0 })
	for _, f := range mailFiles(t, xmd, "") {
		if !strings.Contains(filepath.Base(f), ".nodea") {
			t.Errorf("xomail's copy %s not stored by node a", f)
		}
	}
	if n := len(mailFiles(t, xmd, "")); n != 2 {
		t.Errorf("xomail has %d copies, want 2", n)
	}
}

// b's cluster listener is down: a still answers 250 (queued, fsynced),
// dials b once rather than once per message, and once b is back and the
// retry comes every copy is delivered once.
func TestClusterHomeDown(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	e.b.stopHop(t)
	const n = 8
	for i := range n {
		mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", fmt.Sprintf("down%d", i))
		if q := e.a.queueLen(t); q != i+1 {
			t.Fatalf("a's spool holds %d messages at its 250 for the %dth, want all of them", q, i+1)
		}
	}
	waitFor(t, "every copy tried once", 20*time.Second, func() bool {
		l, err := e.a.queue.List()
		if err != nil || len(l) != n {
			return false
		}
		for _, s := range l {
			if len(s.Recipients) != 1 || s.Recipients[0].Attempts == 0 {
				return false
			}
		}
		return true
	})
	if d := e.a.hopDials.Load(); d >= n {
		t.Errorf("a dialled b %d times for %d messages: the dead node is not remembered", d, n)
	}
	l, _ := e.a.queue.List()
	for _, s := range l {
		r := s.Recipients[0]
		if r.Node != "b" || r.State != "pending" || !strings.HasPrefix(r.Status, "4.") {
			t.Errorf("queued copy: %+v", r)
		}
		if wait := r.NextAttempt.Sub(r.LastAttempt); wait < 30*time.Second || wait > 60*time.Second {
			t.Errorf("node copy retried after %v, want 30-60 s", wait)
		}
	}
	md := e.maildir("bob")
	if f := mailFiles(t, md, ""); len(f) != 0 {
		t.Fatalf("bob has copies while b is down: %v", f)
	}

	e.b.startHop(t)
	back := time.Now()
	e.a.clock.advance(46 * time.Second) // the retry is due
	waitFor(t, "bob's copies", 30*time.Second, func() bool { return len(mailFiles(t, md, "")) >= n })
	t.Logf("%d queued copies delivered %v after b came back (retry clock moved by 46 s)", n, time.Since(back).Round(time.Millisecond))
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	time.Sleep(300 * time.Millisecond)
	seen := map[string]int{}
	for _, f := range mailFiles(t, md, "") {
		msg := readFile(t, f)
		for i := range n {
			if strings.Contains(msg, fmt.Sprintf("Subject: down%d\r\n", i)) || strings.Contains(msg, fmt.Sprintf("Subject: down%d\n", i)) {
				seen[fmt.Sprint(i)]++
			}
		}
	}
	if len(seen) != n {
		t.Errorf("delivered %d distinct messages of %d: %v", len(seen), n, seen)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("message down%s stored %d times", k, c)
		}
	}
}

// A held user's copy is queued, never stored, on whatever path it comes:
// port 25's single copy here; once the user's home moves to b, the copy
// follows. A node copy whose user comes home here is stored here.
func TestClusterHeldUserFollowsMove(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	release := e.a.holds.Hold(filepath.Join(e.homeBase, "xomail"))
	mustSwaks(t, e.a.smtpAddr, "xomail@xoyize.xyz", "held1")
	waitFor(t, "the held copy tried", 20*time.Second, func() bool {
		l, _ := e.a.queue.List()
		return len(l) == 1 && l[0].Recipients[0].Attempts > 0
	})
	xmd := e.maildir("xomail")
	if f := mailFiles(t, xmd, ""); len(f) != 0 {
		t.Fatalf("held user's copy stored: %v", f)
	}
	l, _ := e.a.queue.List()
	if r := l[0].Recipients[0]; r.Status != "4.2.0" || r.Node != "" {
		t.Errorf("held copy: %+v", r)
	}
	// The move: the copy to b is made, the attribute flipped, the hold
	// released.
	e.setHome(t, "xomail", "b", false)
	release()
	e.a.clock.advance(46 * time.Second)
	waitFor(t, "xomail's copy on b", 20*time.Second, func() bool { return len(mailFiles(t, xmd, "")) > 0 })
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	f := mailFiles(t, xmd, "")
	if len(f) != 1 || !strings.Contains(filepath.Base(f[0]), ".nodeb") {
		t.Errorf("xomail's copies %v: want one, stored by b", f)
	}

	// alice (home b) while b is down: a node copy; then her home moves
	// to a: the copy is stored on a.
	e.b.stopHop(t)
	mustSwaks(t, e.a.smtpAddr, "alice@xoyize.xyz", "comeshome")
	waitFor(t, "alice's copy tried", 20*time.Second, func() bool {
		l, _ := e.a.queue.List()
		return len(l) == 1 && l[0].Recipients[0].Attempts > 0
	})
	e.setHome(t, "alice", "a", false)
	e.a.clock.advance(46 * time.Second)
	amd := e.maildir("alice")
	waitFor(t, "alice's copy on a", 20*time.Second, func() bool { return len(mailFiles(t, amd, "")) > 0 })
	if f := mailFiles(t, amd, ""); len(f) != 1 || !strings.Contains(filepath.Base(f[0]), ".nodea") {
		t.Errorf("alice's copies %v: want one, stored by a", f)
	}
}

// clusterProbe drives a cluster listener with Python's smtplib: each line
// of the output is "<command>: <code>".
const clusterProbe = `
import smtplib, sys, base64
host, port, secret, mode, source = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP(host, port, timeout=20, source_address=(source, 0))
s.ehlo("a.test")
def show(what, r):
    print("%s: %d" % (what, r[0]))
def plain(authz, user, pw):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, pw)).encode()).decode()
if mode == "noauth":
    show("MAIL", s.docmd("MAIL", "FROM:<x@example.net>"))
    show("XIMPORT", s.docmd("XIMPORT", "alice 3"))
elif mode == "port25":
    show("MAIL", s.docmd("MAIL", "FROM:<x@example.net>"))
    show("RCPT", s.docmd("RCPT", "TO:<alice@xoyize.xyz> XKEY=abc"))
    show("XIMPORT", s.docmd("XIMPORT", "alice 3"))
elif mode == "wrong":
    show("AUTH", s.docmd("AUTH", "PLAIN " + plain("", "courriel-cluster", secret + "x")))
elif mode == "outsider":
    show("AUTH", s.docmd("AUTH", "PLAIN " + plain("", "courriel-cluster", secret)))
    show("MAIL", s.docmd("MAIL", "FROM:<x@example.net>"))
elif mode == "user":
    show("AUTH", s.docmd("AUTH", "PLAIN " + plain("", "alice", "whatever")))
elif mode == "ok":
    show("AUTH", s.docmd("AUTH", "PLAIN " + plain("", "courriel-cluster", secret)))
    show("MAIL", s.docmd("MAIL", "FROM:<sender@example.net>"))
    show("RCPT elsewhere", s.docmd("RCPT", "TO:<xomail@xoyize.xyz>"))
    show("RCPT relay", s.docmd("RCPT", "TO:<someone@example.com>"))
    show("RCPT unknown", s.docmd("RCPT", "TO:<nosuchuser@xoyize.xyz>"))
    show("RCPT alias", s.docmd("RCPT", "TO:<a.smith@hosted-domain.com>"))
    show("RCPT held", s.docmd("RCPT", "TO:<bob@xoyize.xyz>"))
    show("RCPT alice", s.docmd("RCPT", "TO:<alice@xoyize.xyz> ORCPT=rfc822;contact+2Bx@example.org XJUNK"))
    show("DATA", s.docmd("DATA"))
    s.send(b"Subject: over the hop\r\n\r\nbody\r\n.\r\n")
    show("END", s.getreply())
    show("XIMPORT", s.docmd("XIMPORT", "alice 12"))
    s.send(b"\x00binary\r\n.\r\n")
    show("IMPORTED", s.getreply())
s.quit()
`

func probeCluster(t *testing.T, addr, secret, mode string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	// The nodes listen on 127.0.0.1; 127.0.0.2 is no node's address.
	source := "127.0.0.1"
	if mode == "outsider" {
		source = "127.0.0.2"
	}
	out, err := exec.Command("python3", "-c", clusterProbe, host, port, secret, mode, source).CombinedOutput()
	if err != nil {
		t.Fatalf("probe %s: %v\n%s", mode, err, out)
	}
	return string(out)
}

// The cluster listener takes mail only from a node that logged in with
// the secret, only for maildrops homed here and not held, with no relay.
func TestClusterListenerRefuses(t *testing.T) {
	needTool(t, "python3")
	e := startClusterEnv(t, -1)
	b := e.b
	release := b.holds.Hold(filepath.Join(e.homeBase, "bob"))
	defer release()
	for _, tc := range []struct{ mode, want string }{
		{"noauth", "MAIL: 530\nXIMPORT: 500\n"},
		{"wrong", "AUTH: 535\n"},
		{"user", "AUTH: 535\n"},
		// The right secret in clear from an address that is no node's.
		{"outsider", "AUTH: 535\nMAIL: 530\n"},
		{"ok", "AUTH: 235\nMAIL: 250\nRCPT elsewhere: 450\nRCPT relay: 554\nRCPT unknown: 450\nRCPT alias: 450\n" +
			"RCPT held: 450\nRCPT alice: 250\nDATA: 354\nEND: 250\nXIMPORT: 354\nIMPORTED: 250\n"},
	} {
		if got := probeCluster(t, b.hopAddr, clusterSecret, tc.mode); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.mode, got, tc.want)
		}
	}
	md := e.maildir("alice")
	f := mailFiles(t, md, "Junk")
	if len(f) != 1 || len(mailFiles(t, md, "")) != 0 {
		t.Fatalf("alice: Junk %v INBOX %v, want the copy in Junk (XJUNK)", f, mailFiles(t, md, ""))
	}
	mustContain(t, "the copy", readFile(t, f[0]), "Delivered-To: alice@xoyize.xyz", "Subject: over the hop")
	select {
	case got := <-b.imports:
		if !bytes.Equal(got, []byte("alice\n\x00binary\r\n.\r\n")) {
			t.Errorf("XIMPORT handed %q", got)
		}
	default:
		t.Error("XIMPORT handed nothing to ImportHome")
	}
	// Port 25 knows nothing of XKEY or XIMPORT (its ORCPT is DSN's).
	if got, want := probeCluster(t, b.smtpAddr, clusterSecret, "port25"), "MAIL: 250\nRCPT: 555\nXIMPORT: 500\n"; got != want {
		t.Errorf("port 25:\n got %q\nwant %q", got, want)
	}
}

// loseReply is a proxy in front of a cluster listener that, once, closes
// both sides when the listener answers the end of a message: the copy is
// stored on the home node and the front node never hears it.
func loseReply(t *testing.T, target string) (addr string, lost *atomic.Bool) {
	lost = new(atomic.Bool)
	addr = lineProxy(t, target, false, func(line string) (string, bool) {
		// Stored there, never heard here.
		return line, !(strings.Contains(line, "OK: queued") && lost.CompareAndSwap(false, true))
	})
	return addr, lost
}

// lineProxy is a proxy in front of target that passes the lines of one
// direction (the front node's commands when commands, else the
// listener's replies) through each, which gives the line to pass on, or
// false to close both sides; the other direction is copied as it is.
func lineProxy(t *testing.T, target string, commands bool, each func(line string) (string, bool)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			front, err := ln.Accept()
			if err != nil {
				return
			}
			home, err := net.Dial("tcp", target)
			if err != nil {
				front.Close()
				continue
			}
			from, to := home, front
			if commands {
				from, to = front, home
			}
			go func() { io.Copy(from, to); from.Close() }()
			go func() {
				defer front.Close()
				defer home.Close()
				r := bufio.NewReader(from)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					line, ok := each(line)
					if !ok {
						return
					}
					if _, err := io.WriteString(to, line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// A 250 lost between the home node and the front: the front retries, and
// the home node finds the keyed copy instead of storing it again.
func TestClusterLostReplyNoDuplicate(t *testing.T) {
	needTool(t, "swaks")
	var lost *atomic.Bool
	e := startClusterEnv(t, -1, clusterOpt{via: func(hopB string) string {
		var addr string
		addr, lost = loseReply(t, hopB)
		return addr
	}})
	mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", "lost250")
	md := e.maildir("bob")
	// The hand-over before a's 250 is the attempt that lost it: the copy
	// is queued with that attempt recorded, so the retry says XRETRY.
	if l, _ := e.a.queue.List(); !lost.Load() || len(l) != 1 || l[0].Recipients[0].Attempts != 1 {
		t.Fatalf("at a's 250: reply lost %v, queue %+v; want the hand-over's attempt recorded", lost.Load(), l)
	}
	waitFor(t, "the copy stored on b, its 250 lost", 20*time.Second, func() bool {
		l, _ := e.a.queue.List()
		return lost.Load() && len(mailFiles(t, md, "")) == 1 && len(l) == 1 && l[0].Recipients[0].Attempts == 1
	})
	// bob's IMAP client has seen it: in cur/ with flags, where only a
	// retry (XRETRY) looks.
	f := mailFiles(t, md, "")[0]
	if err := os.Rename(f, filepath.Join(md, "cur", filepath.Base(f)+":2,S")); err != nil {
		t.Fatal(err)
	}
	e.a.clock.advance(46 * time.Second)
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	if f := mailFiles(t, md, ""); len(f) != 1 {
		t.Errorf("bob has %d copies after the retry, want 1: %v", len(f), f)
	}
}

// With [cluster] tls the hop is STARTTLS, the home node's certificate
// verified against the cluster's CA; the listener takes no login in clear.
func TestClusterHopTLS(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1, clusterOpt{tls: true})
	mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", "overtls")
	md := e.maildir("bob")
	waitFor(t, "bob's copy", 20*time.Second, func() bool { return len(mailFiles(t, md, "")) == 1 })
	msg := readFile(t, mailFiles(t, md, "")[0])
	mustContain(t, "the copy", msg, "Subject: overtls", "(using TLS")
	if got := probeCluster(t, e.b.hopAddr, clusterSecret, "wrong"); got != "AUTH: 530\n" {
		t.Errorf("AUTH in clear on a TLS cluster listener: %q", got)
	}
}

// A home node the configuration does not list: RCPT gets 451, nothing is
// accepted or stored, until an admin fixes the entry or the configuration.
func TestClusterUnknownHomeNode(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	e.setHome(t, "bob", "nowhere", false)
	out, _ := exec.Command("swaks", "--server", e.a.smtpAddr, "--to", "bob@xoyize.xyz", "--from", "x@example.net",
		"--quit-after", "RCPT").CombinedOutput()
	if !strings.Contains(string(out), "<** 451 4.3.0") {
		t.Errorf("RCPT for a user homed on an unknown node:\n%s", out)
	}
}

// The home node's 4xx is a retry, its 5xx a bounce, as for any
// destination.
func TestClusterHomeNodeReplies(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	release := e.b.holds.Hold(filepath.Join(e.homeBase, "bob"))
	mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", "held-on-b")
	waitFor(t, "the copy deferred by b", 20*time.Second, func() bool {
		l, _ := e.a.queue.List()
		return len(l) == 1 && l[0].Recipients[0].Attempts > 0
	})
	l, _ := e.a.queue.List()
	if r := l[0].Recipients[0]; r.Code != 450 || r.State != "pending" || r.Node != "b" {
		t.Errorf("after b's 450: %+v", r)
	}
	release()
	e.a.clock.advance(46 * time.Second)
	waitFor(t, "bob's copy", 20*time.Second, func() bool { return len(mailFiles(t, e.maildir("bob"), "")) == 1 })

	// alice's script rejects: b answers 550 at the end of the data, a
	// bounces to the sender (a DSN queued for example.net).
	home := filepath.Join(e.homeBase, "alice")
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".dovecot.sieve"), []byte("require \"reject\";\nreject \"not from you\";\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		os.Chown(home, 20001, 20001)
		os.Chown(filepath.Join(home, ".dovecot.sieve"), 20001, 20001)
	}
	mustSwaks(t, e.a.smtpAddr, "alice@xoyize.xyz", "rejected")
	select {
	case dsn := <-e.a.bounces:
		mustContain(t, "the DSN", string(dsn), "Final-Recipient: rfc822; alice@xoyize.xyz", "Status: 5.7.1", "not from you")
	case <-time.After(20 * time.Second):
		t.Fatal("no bounce")
	}
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	if f := mailFiles(t, e.maildir("alice"), ""); len(f) != 0 {
		t.Errorf("alice has a copy of a message her script rejected: %v", f)
	}
}

// sendTx sends one message to every address in to over c, in one
// transaction; it returns once the client has the reply to the data.
func sendTx(c *smtp.Client, to []string, subject string) error {
	if err := c.Mail("sender@example.net"); err != nil {
		return err
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, "From: sender@example.net\r\nSubject: "+subject+"\r\nMessage-Id: <"+subject+"@example.net>\r\n\r\nhello\r\n"); err != nil {
		return err
	}
	return w.Close()
}

func dialSMTP(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	return c
}

// A message for users homed on b only, given to a, is handed to b before
// a answers: when the client reads the 250, the copies are in the
// maildirs, stored by b, and a's spool is empty. The next message goes
// on the same hop session.
func TestClusterHandOverInline(t *testing.T) {
	e := startClusterEnv(t, -1)
	c := dialSMTP(t, e.a.smtpAddr)
	bob, alice := e.maildir("bob"), e.maildir("alice")
	if err := sendTx(c, []string{"bob@xoyize.xyz", "a.smith@hosted-domain.com"}, "inline1"); err != nil {
		t.Fatal(err)
	}
	// Checked at once, not waited for: the 250 came after b's.
	for _, md := range []string{bob, alice} {
		f := mailFiles(t, md, "")
		if len(f) != 1 || !strings.Contains(filepath.Base(f[0]), ".nodeb") {
			t.Fatalf("%s at a's 250: %v, want one copy stored by b", md, f)
		}
		mustContain(t, "the copy", readFile(t, f[0]), "Subject: inline1", "Return-Path: <sender@example.net>")
	}
	if n := e.a.queueLen(t); n != 0 {
		t.Errorf("a's spool holds %d messages after a hand-over, want 0", n)
	}
	if err := sendTx(c, []string{"bob@xoyize.xyz"}, "inline2"); err != nil {
		t.Fatal(err)
	}
	if f := mailFiles(t, bob, ""); len(f) != 2 {
		t.Errorf("bob at the second 250: %v, want two copies", f)
	}
	time.Sleep(300 * time.Millisecond) // a queued duplicate would have arrived by now
	if f, g := mailFiles(t, bob, ""), mailFiles(t, alice, ""); len(f) != 2 || len(g) != 1 {
		t.Errorf("bob %v, alice %v: want two and one copies", f, g)
	}
	if n := e.a.queueLen(t); n != 0 {
		t.Errorf("a's spool holds %d messages, want 0", n)
	}
	t.Logf("a dialled b %d times for two messages", e.a.hopDials.Load())
}

// b's cluster listener answers 4xx (bob held there, being moved): a
// answers 250 all the same, with the copy queued and the attempt
// recorded; the retry delivers it once.
func TestClusterHandOverDeferred(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1)
	release := e.b.holds.Hold(filepath.Join(e.homeBase, "bob"))
	mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", "held-on-b")
	l, err := e.a.queue.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || len(l[0].Recipients) != 1 {
		t.Fatalf("a's queue at its 250: %+v, want the message", l)
	}
	if r := l[0].Recipients[0]; r.Attempts != 1 || r.Status != "4.2.0" || r.Node != "b" || r.State != "pending" {
		t.Errorf("queued copy: %+v, want the hand-over's 4.2.0 recorded", r)
	}
	md := e.maildir("bob")
	if f := mailFiles(t, md, ""); len(f) != 0 {
		t.Fatalf("bob has copies while held on b: %v", f)
	}
	release()
	e.a.clock.advance(46 * time.Second)
	waitFor(t, "a's queue to empty", 20*time.Second, func() bool { return e.a.queueLen(t) == 0 })
	time.Sleep(300 * time.Millisecond)
	if f := mailFiles(t, md, ""); len(f) != 1 || !strings.Contains(filepath.Base(f[0]), ".nodeb") {
		t.Errorf("bob's copies %v: want one, stored by b", f)
	}
}

// stall is a listener that accepts connections and never says a word: a
// home node hung after its accept.
func stall(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	return ln.Addr().String()
}

// b's cluster listener accepts the connection and never greets: a's
// hand-over gives up within its bound (well inside swaks's 30 s), and
// the message is queued.
func TestClusterHandOverStalled(t *testing.T) {
	needTool(t, "swaks")
	e := startClusterEnv(t, -1, clusterOpt{via: func(string) string { return stall(t) }})
	mustSwaks(t, e.a.smtpAddr, "bob@xoyize.xyz", "stalled")
	l, err := e.a.queue.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Recipients[0].Node != "b" || l[0].Recipients[0].State != "pending" {
		t.Fatalf("a's queue at its 250: %+v, want the node copy", l)
	}
	if f := mailFiles(t, e.maildir("bob"), ""); len(f) != 0 {
		t.Errorf("bob has copies: %v", f)
	}
}

// recordHop is a proxy in front of a cluster listener that keeps the
// command lines the front node sends, each passed through rewrite if
// given (what another version of the front would send).
func recordHop(t *testing.T, target string, lines *[]string, mu *sync.Mutex, rewrite ...func(string) string) string {
	return lineProxy(t, target, true, func(line string) (string, bool) {
		for _, f := range rewrite {
			line = f(line)
		}
		mu.Lock()
		*lines = append(*lines, strings.TrimRight(line, "\r\n"))
		mu.Unlock()
		return line, true
	})
}

// The DSN parameters a client gave for copies homed on another node cross
// the hop (the home node offers XDSN): RET and ENVID on MAIL, NOTIFY
// without SUCCESS (the front reports that) and the client's ORCPT as
// XORCPT on RCPT, which the home node takes; the copies are stored there.
func TestClusterHopCarriesDSN(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	e := startClusterEnv(t, -1, clusterOpt{via: func(hopB string) string { return recordHop(t, hopB, &lines, &mu) }})
	r := greetFront(t, e)
	r.cmd("MAIL FROM:<sender@example.net> RET=HDRS ENVID=env+2B1", "250 ")
	r.cmd("RCPT TO:<alice@xoyize.xyz> NOTIFY=NEVER ORCPT=rfc822;orig+2Balice@x.example", "250 ")
	r.cmd("RCPT TO:<bob@xoyize.xyz> NOTIFY=FAILURE,DELAY ORCPT=utf-8;b\\x{F6}b@x.example", "250 ")
	r.cmd("DATA", "354 ")
	r.cmd("Subject: dsn over the hop\r\n\r\nbody\r\n.", "250 ")
	r.cmd("QUIT", "221 ")
	waitFor(t, "alice's and bob's copies", 20*time.Second, func() bool {
		return len(mailFiles(t, e.maildir("alice"), "")) == 1 && len(mailFiles(t, e.maildir("bob"), "")) == 1
	})
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	for _, want := range []string{" RET=HDRS ENVID=env+2B1",
		"RCPT TO:<alice@xoyize.xyz> XKEY=", " NOTIFY=NEVER XORCPT=rfc822;orig+2Balice@x.example",
		"RCPT TO:<bob@xoyize.xyz> XKEY=", ` NOTIFY=FAILURE,DELAY XORCPT=utf-8;b\x{F6}b@x.example`} {
		if !strings.Contains(got, want) {
			t.Errorf("the hop carried no %q:\n%s", want, got)
		}
	}
}

// A DSN parameter the home node refuses on the hop (another version's
// form: here xtext's +F6 where RFC 6533 wants \x{F6}, and a NOTIFY no
// node sends) is ignored there, not answered 5xx: the copy is stored, not
// bounced for a parameter that only feeds a DSN.
func TestClusterHopBadDSNParamIgnored(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	garble := strings.NewReplacer(`XORCPT=utf-8;b\x{F6}b@x.example`, `XORCPT=utf-8;b+F6b@x.example`, "NOTIFY=NEVER", "NOTIFY=SOMETIMES")
	e := startClusterEnv(t, -1, clusterOpt{via: func(hopB string) string {
		return recordHop(t, hopB, &lines, &mu, garble.Replace)
	}})
	r := greetFront(t, e)
	r.cmd("MAIL FROM:<sender@example.net>", "250 ")
	r.cmd("RCPT TO:<alice@xoyize.xyz> NOTIFY=NEVER", "250 ")
	r.cmd("RCPT TO:<bob@xoyize.xyz> ORCPT=utf-8;b\\x{F6}b@x.example", "250 ")
	r.cmd("DATA", "354 ")
	r.cmd("Subject: odd dsn parameters over the hop\r\n\r\nbody\r\n.", "250 ")
	r.cmd("QUIT", "221 ")
	waitFor(t, "alice's and bob's copies", 20*time.Second, func() bool {
		return len(mailFiles(t, e.maildir("alice"), "")) == 1 && len(mailFiles(t, e.maildir("bob"), "")) == 1
	})
	mu.Lock()
	got := strings.Join(lines, "\n")
	mu.Unlock()
	if !strings.Contains(got, "XORCPT=utf-8;b+F6b@x.example") || !strings.Contains(got, "NOTIFY=SOMETIMES") {
		t.Fatalf("the hop did not carry the garbled parameters:\n%s", got)
	}
}

// greetFront connects to node a's port 25 and says EHLO.
func greetFront(t *testing.T, e *clusterEnv) *raw {
	t.Helper()
	c, err := net.Dial("tcp", e.a.smtpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, conn: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r.expect("220 ")
	r.cmd("EHLO client.test", "250 ")
	return r
}
