package imap

import (
	"bufio"
	"compress/flate"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// flateConn is the client side of COMPRESS=DEFLATE over c: raw DEFLATE
// both ways, each write sync-flushed as RFC 4978 asks.
type flateConn struct {
	net.Conn
	r io.Reader
	w *flate.Writer
}

func newFlateConn(c net.Conn) *flateConn {
	w, _ := flate.NewWriter(c, flate.DefaultCompression)
	return &flateConn{Conn: c, r: flate.NewReader(c), w: w}
}

func (f *flateConn) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *flateConn) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// TestCompress: after COMPRESS DEFLATE both directions are DEFLATE
// streams. An IDLE whose wait is interrupted every 100 ms by the server's
// own deadlines (IdleCheck) sees a delivery and ends with DONE, and the
// stream still decodes afterwards, back-references across those
// interruptions included (the same long command twice).
func TestCompress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = 100 * time.Millisecond })
	r := loggedIn(t, e)
	if got := strings.Join(r.cmd("c", "CAPABILITY"), "\n"); !strings.Contains(got, " COMPRESS=DEFLATE ") {
		t.Fatalf("CAPABILITY:\n%s", got)
	}
	if got := last(r.cmd("z", "COMPRESS DEFLATE")); got != "z OK DEFLATE active" {
		t.Fatalf("COMPRESS: %q", got)
	}
	fc := newFlateConn(r.c)
	r.c, r.br = fc, bufio.NewReader(fc)
	if got := last(r.cmd("n", "NOOP")); !strings.HasPrefix(got, "n OK") {
		t.Fatalf("NOOP under DEFLATE: %q", got)
	}
	if got := last(r.cmd("z2", "COMPRESS DEFLATE")); !strings.HasPrefix(got, "z2 NO [COMPRESSIONACTIVE]") {
		t.Errorf("second COMPRESS: %q", got)
	}
	r.cmd("s", "SELECT INBOX")
	r.send("i IDLE\r\n")
	if got := r.line(); !strings.HasPrefix(got, "+") {
		t.Fatalf("IDLE: %q", got)
	}
	time.Sleep(350 * time.Millisecond) // a few of the server's wake-ups
	e.deliver("1.M1.test", testMessage(1, "a@example.org", "compressed"))
	if got := r.line(); got != "* 1 EXISTS" {
		t.Fatalf("in IDLE: %q", got)
	}
	time.Sleep(250 * time.Millisecond)
	r.send("DONE\r\n")
	if got := last(r.until("i")); !strings.HasPrefix(got, "i OK") {
		t.Fatalf("DONE: %q", got)
	}
	long := "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM TO DATE MESSAGE-ID)])"
	for _, tag := range []string{"f1", "f2"} {
		got := strings.Join(r.cmd(tag, long), "\n")
		if !strings.Contains(got, "Subject: compressed") || !strings.Contains(got, tag+" OK") {
			t.Errorf("%s:\n%s", tag, got)
		}
	}
}
