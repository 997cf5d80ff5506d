package managesieve

import (
	"sync"
	"testing"
	"time"
)

type countingMetrics struct {
	mu                       sync.Mutex
	opened, closed, failures map[string]int
}

func (m *countingMetrics) add(to map[string]int, l string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	to[l]++
}
func (m *countingMetrics) ConnOpened(l string)  { m.add(m.opened, l) }
func (m *countingMetrics) ConnClosed(l string)  { m.add(m.closed, l) }
func (m *countingMetrics) AuthFailure(l string) { m.add(m.failures, l) }

func (m *countingMetrics) get(from map[string]int) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return from["managesieve"]
}

func TestMetrics(t *testing.T) {
	m := &countingMetrics{opened: map[string]int{}, closed: map[string]int{}, failures: map[string]int{}}
	e := newEnv(t, func(o *Options) { o.Metrics = m })
	c := e.dial(t)
	c.startTLS(e)
	if r := c.cmd(`AUTHENTICATE "PLAIN" "` + plain("", "alice", "wrong") + `"`); r != `NO "Authentication failed."` {
		t.Fatalf("%q", r)
	}
	c.cmd("LOGOUT")
	// Counted as the server's side closes, just after the BYE: only a
	// close never counted takes the minute.
	for deadline := time.Now().Add(time.Minute); m.get(m.closed) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is not counted a minute after LOGOUT")
		}
	}
	if m.get(m.opened) != 1 || m.get(m.closed) != 1 || m.get(m.failures) != 1 {
		t.Fatalf("opened %d closed %d failures %d", m.get(m.opened), m.get(m.closed), m.get(m.failures))
	}
}
