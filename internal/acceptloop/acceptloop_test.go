package acceptloop

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first Accepts with a timeout, then hands out
// connections, then fails for good.
type flakyListener struct {
	net.Listener
	timeouts int
	conns    int
	err      error
	failed   bool // the last Accept returned err
}

func (l *flakyListener) Accept() (net.Conn, error) {
	switch {
	case l.timeouts > 0:
		l.timeouts--
		return nil, os.ErrDeadlineExceeded
	case l.conns > 0:
		l.conns--
		a, _ := net.Pipe()
		return a, nil
	}
	l.failed = true
	return nil, l.err
}

func TestRun(t *testing.T) {
	broken := errors.New("listener broken")
	for _, tc := range []struct {
		name    string
		closing bool
		want    error
	}{
		{"server closing", true, nil},
		{"listener broken", false, broken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &flakyListener{timeouts: 3, conns: 2, err: broken}
			var waits []time.Duration
			admitted := 0
			err := Run(l, func() bool { return tc.closing && l.failed }, func(_ error, d time.Duration) { waits = append(waits, d) },
				func(c net.Conn) { admitted++; c.Close() })
			if err != tc.want {
				t.Errorf("Run: %v, want %v", err, tc.want)
			}
			if admitted != 2 {
				t.Errorf("%d connections admitted, want 2", admitted)
			}
			if len(waits) != 3 || waits[0] != firstDelay || waits[2] != 4*firstDelay {
				t.Errorf("waits after the timeouts: %v", waits)
			}
		})
	}
}

// Out of descriptors, Accept fails with EMFILE until one is freed: the loop
// waits, and the connection queued meanwhile is admitted afterwards.
func TestOutOfDescriptorsWaitedOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	// The client's socket first, then every descriptor left is taken.
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	low := lim
	low.Cur = 256
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for range 512 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Fatal(err)
			}
			break
		}
		held = append(held, f)
	}
	emfile := make(chan error, 1)
	admitted := make(chan net.Conn, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ln, func() bool { return false }, func(err error, _ time.Duration) {
			select {
			case emfile <- err:
			default:
			}
		}, func(c net.Conn) { admitted <- c })
	}()
	select {
	case err := <-emfile:
		if !errors.Is(err, syscall.EMFILE) {
			t.Errorf("temporary error %v, want EMFILE", err)
		}
	case err := <-done:
		t.Fatalf("Run ended on EMFILE: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no EMFILE seen")
	}
	for _, f := range held[len(held)-8:] {
		f.Close()
	}
	held = held[:len(held)-8]
	select {
	case c := <-admitted:
		c.Close()
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the queued connection was not admitted once descriptors were free")
	}
}
