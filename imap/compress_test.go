package imap

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/imap/wire/inflate"
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

// recConn records each write of the server onto the connection below
// compression.
type recConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(p))
	c.mu.Unlock()
	if c.Conn == nil {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *recConn) taken() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// rawSession serves one connection whose server side is recorded; the
// session counts it as TLS (LOGIN allowed), so that the bytes below
// COMPRESS are the DEFLATE stream itself.
func rawSession(t *testing.T, e *testEnv) (*rawConn, *recConn, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan *recConn, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		rc := &recConn{Conn: c}
		accepted <- rc
		if se := e.srv.admit(rc, true); se != nil {
			se.serve()
		}
	}()
	r := dialRaw(t, ln.Addr().String(), false)
	rc := <-accepted
	if rc == nil {
		t.Fatal("no connection")
	}
	return r, rc, done
}

// TestCompressOneWritePerFlush: under COMPRESS=DEFLATE each response's
// flush reaches the connection in one write, sync marker included, and
// no write inflates to nothing. compress/flate writes a block in pieces
// and the marker (00 00 ff ff) on its own: on TLS, after "+ idling",
// mutt waited on a record that decoded to nothing until the next mail.
func TestCompressOneWritePerFlush(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *Options) { o.IdleCheck = time.Hour })
	r, rc, done := rawSession(t, e)
	if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
		t.Fatalf("LOGIN: %q", got)
	}
	if got := last(r.cmd("z", "COMPRESS DEFLATE")); got != "z OK DEFLATE active" {
		t.Fatalf("COMPRESS: %q", got)
	}
	mark := len(rc.taken())
	fc := newFlateConn(r.c)
	r.c, r.br = fc, bufio.NewReader(fc)
	// A message of several blocks, which flate writes in many pieces.
	var big strings.Builder
	for i := 0; big.Len() < 200<<10; i++ {
		fmt.Fprintf(&big, "line %d of a long message, %x\r\n", i, i*i*7919)
	}
	e.deliver("1.M1.test", testMessage(1, "a@example.org", "big")+big.String())
	r.cmd("n", "NOOP")
	r.cmd("s", "SELECT INBOX")
	r.send("i IDLE\r\n")
	if got := r.line(); got != "+ idling" {
		t.Fatalf("IDLE: %q", got)
	}
	e.deliver("2.M1.test", testMessage(2, "a@example.org", "small"))
	e.srv.Notify(e.maildir)
	if got := r.line(); got != "* 2 EXISTS" {
		t.Fatalf("in IDLE: %q", got)
	}
	r.send("DONE\r\n")
	r.until("i")
	if got := last(r.cmd("f", "FETCH 1 BODY.PEEK[]")); !strings.HasPrefix(got, "f OK") {
		t.Fatalf("FETCH: %q", got)
	}
	r.cmd("o", "LOGOUT")
	select { // the session ended: all its writes are recorded
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after LOGOUT")
	}
	writes := rc.taken()[mark:]
	src := &pendingSource{}
	in := inflate.NewReader(src)
	var all strings.Builder
	sawIdling := false
	for i, w := range writes {
		src.buf.Write(w)
		out := readInflated(t, in)
		all.WriteString(out)
		if out == "" {
			t.Errorf("write %d of %d (%x) inflates to nothing", i, len(writes), w)
		}
		if len(w) < deflateSpill && !bytes.HasSuffix(w, []byte{0, 0, 0xff, 0xff}) {
			t.Errorf("write %d of %d (%d bytes, %q) is not a whole flush", i, len(writes), len(w), out)
		}
		if strings.Contains(out, "+ idling\r\n") {
			sawIdling = true
			if !strings.HasSuffix(out, "+ idling\r\n") {
				t.Errorf("+ idling is not at the end of its write: %q", out)
			}
		}
	}
	if !sawIdling || !strings.Contains(all.String(), "o OK") {
		t.Errorf("the writes decode to:\n%.2000s", all.String())
	}
	if len(writes) > 40 {
		t.Errorf("%d writes for a few responses and a 200 KiB message", len(writes))
	}
}

// errPending stands for a client that has read all there is.
var errPending = errors.New("nothing more yet")

type pendingSource struct{ buf bytes.Buffer }

func (s *pendingSource) Read(p []byte) (int, error) {
	if s.buf.Len() == 0 {
		return 0, errPending
	}
	return s.buf.Read(p)
}

// readInflated reads what in decodes from the input it has.
func readInflated(t *testing.T, in *inflate.Reader) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		out = append(out, buf[:n]...)
		if errors.Is(err, errPending) {
			return string(out)
		}
		if err != nil {
			t.Fatalf("inflate after %d bytes: %v", len(out), err)
		}
	}
}

// TestDeflaterEmptyWrite: a write of nothing sends nothing (a flush of
// no data is a block that inflates to nothing).
func TestDeflaterEmptyWrite(t *testing.T) {
	rc := &recConn{}
	z := &deflater{buf: deflateBuf{dst: rc}}
	for _, p := range []string{"", "* OK one\r\n", "", "* OK two\r\n"} {
		if _, err := z.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
		if p == "" {
			z.out = nil // as sleep: the next write makes a compressor again
		}
	}
	if n := len(rc.taken()); n != 2 {
		t.Errorf("%d writes for two responses", n)
	}
}
