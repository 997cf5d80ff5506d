package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"courriel/internal/testenv"
)

// haproxy is a Debian haproxy process in front of courriel listeners,
// with one frontend port per backend.
type haproxy struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  *bytes.Buffer
	// Front maps a backend name to the frontend address clients dial.
	Front map[string]string
}

// haproxyServer is one backend server line: its address and the options
// after it (send-proxy-v2, check ...).
type haproxyServer struct{ name, addr, opts string }

// startHAProxy runs haproxy in the foreground with one frontend per
// backend, on free loopback ports. defaults are extra lines of the
// defaults section.
func startHAProxy(t testing.TB, defaults string, backends map[string][]haproxyServer) *haproxy {
	t.Helper()
	bin := requireTool(t, "haproxy")
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global\n  maxconn 2000\n\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n%s\n", defaults)
	h := &haproxy{done: make(chan struct{}), log: &bytes.Buffer{}, Front: map[string]string{}}
	ports := testenv.FreePorts(t, len(backends))
	i := 0
	for name, servers := range backends {
		h.Front[name] = "127.0.0.1:" + strconv.Itoa(ports[i])
		i++
		fmt.Fprintf(&cfg, "frontend fe_%s\n  bind %s\n  default_backend %s\n\nbackend %s\n", name, h.Front[name], name, name)
		for _, s := range servers {
			fmt.Fprintf(&cfg, "  server %s %s %s\n", s.name, s.addr, s.opts)
		}
		cfg.WriteString("\n")
	}
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(bin, "-db", "-f", file)
	w := lockedWriter{&h.mu, h.log}
	h.cmd.Stdout, h.cmd.Stderr = w, w
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
			<-h.done
		}
		if t.Failed() {
			t.Logf("haproxy configuration:\n%s\nhaproxy log:\n%s", cfg.String(), h.logs())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range h.Front {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-h.done:
				t.Fatalf("haproxy exited:\n%s\n%s", cfg.String(), h.logs())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("haproxy not listening on %s:\n%s", addr, h.logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return h
}

func (h *haproxy) logs() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

// dialFrom connects to addr from the loopback address src (any of
// 127.0.0.0/8 is this machine's on Linux).
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	return d.Dial("tcp", addr)
}
