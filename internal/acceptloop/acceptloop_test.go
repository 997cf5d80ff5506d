package acceptloop

import (
	"errors"
	"net"
	"os"
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
