package imap

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"courriel/imap/wire/inflate"
)

// BenchmarkCompressBytes reports the bytes a client receives for a
// full-folder `UID FETCH 1:* (FLAGS)`, plain and after COMPRESS DEFLATE,
// from courriel and from Debian's Dovecot 2.3 (imap_zlib) on the same
// mailbox (issue 13's figure). Needs root, dovecot and openssl, as
// BenchmarkBesideDovecot.
func BenchmarkCompressBytes(b *testing.B) {
	n := benchN()
	e := newEnv(b)
	genMailbox(b, e.maildir, n)
	var dv *dovecotServer
	if dovecotBenchable(b) {
		dv = startDovecot(b, n)
	}
	for range b.N {
		for _, compress := range []bool{false, true} {
			name := map[bool]string{false: "plain", true: "deflate"}[compress]
			b.ReportMetric(float64(fetchFlagsBytes(b, e.addr, "alice", "secret", compress)), "courriel_"+name+"_bytes")
			if dv != nil {
				b.ReportMetric(float64(fetchFlagsBytes(b, dv.addr, "bench", "demo", compress)), "dovecot_"+name+"_bytes")
			}
		}
	}
}

// countingConn counts the bytes read from the connection: what crossed
// the wire inside TLS.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	k, err := c.Conn.Read(p)
	c.n += int64(k)
	return k, err
}

// fetchFlagsBytes logs in, selects INBOX and counts the bytes received for
// UID FETCH 1:* (FLAGS), after COMPRESS DEFLATE when compress.
func fetchFlagsBytes(tb testing.TB, addr, user, pass string, compress bool) int64 {
	tb.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	cc := &countingConn{Conn: c}
	r := bufio.NewReader(cc)
	var w io.Writer = c
	unread := r.Buffered // input received and not yet read
	until := func(tag string) {
		for range 10_000_000 {
			l, err := r.ReadString('\n')
			if err != nil {
				tb.Fatalf("%s: %v", tag, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					tb.Fatalf("%s", l)
				}
				return
			}
		}
	}
	if _, err := r.ReadString('\n'); err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(w, "a LOGIN %s %s\r\n", user, pass)
	until("a")
	if compress {
		fmt.Fprintf(w, "z COMPRESS DEFLATE\r\n")
		until("z")
		in := inflate.NewReader(cc)
		r, w, unread = bufio.NewReader(in), newFlateConn(c), in.Buffered
	}
	fmt.Fprintf(w, "b SELECT INBOX\r\n")
	until("b")
	before := cc.n - int64(unread())
	fmt.Fprintf(w, "c UID FETCH 1:* (FLAGS)\r\n")
	until("c")
	return cc.n - before
}

// dovecotBenchable says whether Dovecot can be started beside us.
func dovecotBenchable(tb testing.TB) bool {
	if os.Geteuid() != 0 {
		tb.Log("Dovecot needs root: courriel only")
		return false
	}
	for _, tool := range []string{"dovecot", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Logf("%s not installed: courriel only", tool)
			return false
		}
	}
	return true
}
