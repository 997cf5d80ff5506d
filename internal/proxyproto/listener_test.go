package proxyproto

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a log destination the test reads while the listener writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// listen wraps a loopback listener trusting trusted; the test dials from
// 127.0.0.1.
func listen(t *testing.T, trusted string, timeout time.Duration) (*Listener, *syncBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	var pfx []netip.Prefix
	if trusted != "" {
		pfx = []netip.Prefix{netip.MustParsePrefix(trusted)}
	}
	l := NewListener(ln, Options{Trusted: pfx, HeaderTimeout: timeout, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(func() { l.Close() })
	return l, &logs
}

// acceptOne accepts in the background; the channel yields the connection
// or nothing within the bound.
func acceptOne(l net.Listener) chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

func dial(t *testing.T, l net.Listener, first []byte) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if first != nil {
		if _, err := c.Write(first); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestTrustedPeerWithHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header []byte
		remote string
	}{
		{"v1", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"), "192.0.2.7:40000"},
		{"v2", v2(1, 0x21, v6Block("2001:db8::7", "2001:db8::1", 40000, 993)), "[2001:db8::7]:40000"},
		{"v2 mapped", v2(1, 0x21, v6Block("::ffff:192.0.2.7", "::ffff:198.51.100.1", 40000, 25)), "192.0.2.7:40000"},
		{"v2 local", v2(0, 0, nil), ""}, // the balancer's own address
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := listen(t, "127.0.0.0/8", 5*time.Second)
			ch := acceptOne(l)
			c := dial(t, l, append(tc.header, "hello"...))
			sc := <-ch
			if sc == nil {
				t.Fatal("not accepted")
			}
			defer sc.Close()
			want := tc.remote
			if want == "" {
				want = c.LocalAddr().String()
			}
			if got := sc.RemoteAddr().String(); got != want {
				t.Errorf("RemoteAddr %s, want %s", got, want)
			}
			if _, ok := sc.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr is a %T", sc.RemoteAddr())
			}
			sc.SetReadDeadline(time.Now().Add(5 * time.Second))
			b := make([]byte, 5)
			if _, err := io.ReadFull(sc, b); err != nil || string(b) != "hello" {
				t.Errorf("client bytes after the header: %q %v", b, err)
			}
		})
	}
}

// A trusted peer without a header, or with a broken one, is closed and
// logged, never handed to the server.
func TestTrustedPeerWithoutHeader(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first []byte
	}{
		{"silent", nil},
		{"smtp command", []byte("EHLO x\r\n")},
		{"garbled v1", []byte("PROXY TCP4 999.0.2.7 1.2.3.4 1 2\r\n")},
		{"unix v2", v2(1, 0x31, make([]byte, 216))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, logs := listen(t, "127.0.0.1/32", 300*time.Millisecond)
			ch := acceptOne(l)
			c := dial(t, l, tc.first)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, net.ErrClosed) {
				t.Errorf("the connection was not closed: %d %v", n, err)
			}
			select {
			case sc := <-ch:
				t.Errorf("handed to the server: %v", sc)
			case <-time.After(100 * time.Millisecond):
			}
			if !strings.Contains(logs.String(), "PROXY header missing or invalid") {
				t.Errorf("not logged: %s", logs)
			}
		})
	}
}

// An untrusted client speaks the protocol unchanged; a PROXY header from
// it closes the connection, however it is split.
func TestUntrustedClient(t *testing.T) {
	for _, tc := range []struct {
		name    string
		parts   []string
		refused bool
	}{
		{"smtp", []string{"EHLO client\r\n"}, false},
		{"imap", []string{"a1 CAPABILITY\r\n"}, false},
		{"blank line first", []string{"\r\n", "QUIT\r\n"}, false},
		{"P tag", []string{"PRO", "Z1 NOOP\r\n"}, false},
		{"v1", []string{"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"}, true},
		{"v1 split", []string{"PRO", "XY TCP4 192.0.2.7 198.51.100.1 40000 25\r\n"}, true},
		{"v2", []string{string(v2(1, 0x11, v4Block("192.0.2.7", "198.51.100.1", 1, 2)))}, true},
		{"v2 split", []string{"\r\n\r\n", "\x00\r\nQUIT\n!"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, logs := listen(t, "192.0.2.0/24", time.Second)
			ch := acceptOne(l)
			c := dial(t, l, nil)
			sc := <-ch
			if sc == nil {
				t.Fatal("not accepted")
			}
			defer sc.Close()
			if got := sc.RemoteAddr().String(); got != c.LocalAddr().String() {
				t.Errorf("RemoteAddr %s, want %s", got, c.LocalAddr())
			}
			go func() {
				for _, p := range tc.parts {
					c.Write([]byte(p))
					time.Sleep(20 * time.Millisecond)
				}
			}()
			want := strings.Join(tc.parts, "")
			sc.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(want))
			_, err := io.ReadFull(sc, got)
			if tc.refused {
				if !errors.Is(err, ErrUntrustedHeader) {
					t.Errorf("read %q, %v; want ErrUntrustedHeader", got, err)
				}
				if !strings.Contains(logs.String(), "PROXY header from an address not in proxy_protocol.trusted_networks") {
					t.Errorf("not logged: %s", logs)
				}
				return
			}
			if err != nil || string(got) != want {
				t.Errorf("read %q, %v; want %q", got, err, want)
			}
		})
	}
}

// A trusted peer that does not send its header holds up nobody else, and
// Close ends the wait.
func TestSlowPeerDoesNotStallAccept(t *testing.T) {
	l, _ := listen(t, "127.0.0.0/8", time.Minute)
	slow := dial(t, l, []byte("PROXY TCP4 192.0.2."))
	ch := acceptOne(l)
	dial(t, l, []byte("PROXY TCP4 192.0.2.8 198.51.100.1 40000 25\r\n"))
	select {
	case sc := <-ch:
		if sc == nil || sc.RemoteAddr().String() != "192.0.2.8:40000" {
			t.Fatalf("accepted %v", sc)
		}
		sc.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a slow peer stalled the next connection")
	}
	l.Close()
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := slow.Read(make([]byte, 1)); err == nil {
		t.Error("Close left the slow peer's connection open")
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

// flakyListener fails its first Accept with a temporary error, then
// hands out one connection, then fails for good.
type flakyListener struct {
	net.Listener
	calls int
	conn  net.Conn
}

var errBroken = errors.New("listener broken")

func (l *flakyListener) Accept() (net.Conn, error) {
	l.calls++
	switch l.calls {
	case 1:
		return nil, os.ErrDeadlineExceeded
	case 2:
		return l.conn, nil
	}
	return nil, errBroken
}

// The wrapped listener's errors come through as they are, in order, so
// acceptloop's backoff on temporary ones and its end on the others apply.
func TestAcceptErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	a, b := net.Pipe() // RemoteAddr "pipe": not trusted
	defer a.Close()
	defer b.Close()
	l := NewListener(&flakyListener{Listener: inner, conn: a}, Options{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	defer l.Close()
	if _, err := l.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("first Accept: %v, want the temporary error", err)
	}
	if c, err := l.Accept(); err != nil || c.RemoteAddr() != a.RemoteAddr() {
		t.Errorf("second Accept: %v %v, want the connection", c, err)
	}
	for range 2 {
		if _, err := l.Accept(); err != errBroken {
			t.Errorf("Accept after the listener broke: %v", err)
		}
	}
}
