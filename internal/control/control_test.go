package control

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func serve(t *testing.T, o Options) *Server {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "control.sock")
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s
}

// raw sends bytes as a client and returns every line the server wrote.
func raw(t *testing.T, path, req string) []string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

func TestRequests(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{})
	s := serve(t, Options{Handlers: map[string]Handler{
		"move-user": func(_ context.Context, args []string, progress func(string)) (string, error) {
			progress("step one\r\nforged: OK")
			progress("step two")
			return "done " + strings.Join(args, ","), nil
		},
		"fail": func(context.Context, []string, func(string)) (string, error) {
			return "", errors.New("it failed\nNO more")
		},
		"wait": func(ctx context.Context, _ []string, _ func(string)) (string, error) {
			<-ctx.Done()
			close(cancelled)
			return "", ctx.Err()
		},
	}})
	path := s.Listener().Addr().String()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}

	var got []string
	text, err := Do(context.Background(), path, []string{"move-user", "xomail", "b"}, func(l string) { got = append(got, l) })
	if err != nil || text != "done xomail,b" {
		t.Fatalf("Do = %q, %v", text, err)
	}
	if len(got) != 2 || got[0] != "step one  forged: OK" || got[1] != "step two" {
		t.Errorf("progress %q: one line each, control characters removed", got)
	}
	_, err = Do(context.Background(), path, []string{"fail"}, nil)
	var no *ErrRefused
	if !errors.As(err, &no) || no.Text != "it failed NO more" {
		t.Errorf("failing handler: %v", err)
	}
	if _, err := Do(context.Background(), path, []string{"rm", "-rf"}, nil); !errors.As(err, &no) || !strings.Contains(no.Text, "unknown command") {
		t.Errorf("unknown command: %v", err)
	}

	for name, tc := range map[string]struct{ req, want string }{
		"too long":     {strings.Repeat("a", 5000) + "\r\n", "NO request longer than 1024 bytes"},
		"binary":       {"move-user x\x00y b\r\n", "NO request: only printable ASCII"},
		"too many":     {strings.Repeat("w ", 20) + "w\r\n", "NO request: more than 16 words"},
		"empty word":   {"move-user  b\r\n", "NO request: empty word"},
		"no line end":  {"move-user", "NO no request line"},
		"utf-8 in arg": {"move-user zoë b\r\n", "NO request: only printable ASCII"},
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = c.Write([]byte(tc.req))
		if name == "no line end" {
			_ = c.(*net.UnixConn).CloseWrite()
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.TrimSpace(line) != tc.want {
			t.Errorf("%s: %q, want %q", name, line, tc.want)
		}
	}

	// A client that goes away cancels what it asked for.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("wait\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // let the request be read before the close
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context did not end when the client left")
	}
}

// Only the allowed uids are served, whatever the socket's mode.
func TestPeerCredentials(t *testing.T) {
	t.Parallel()
	s := serve(t, Options{Allow: func(uint32) bool { return false },
		Handlers: map[string]Handler{"x": func(context.Context, []string, func(string)) (string, error) { return "ran", nil }}})
	if got := raw(t, s.Listener().Addr().String(), "x\r\n"); len(got) != 1 || got[0] != "NO permission denied" {
		t.Errorf("refused uid: %q", got)
	}

	if os.Geteuid() != 0 {
		t.Skip("the default rule (root and the server's uid) needs root to try another uid")
	}
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "c.sock")
	serve(t, Options{Path: path, Handlers: map[string]Handler{"x": func(context.Context, []string, func(string)) (string, error) { return "ran", nil }}})
	if err := os.Chmod(path, 0o666); err != nil { // only SO_PEERCRED stands in the way
		t.Fatal(err)
	}
	py := "import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\ns.sendall(b'x\\r\\n')\nprint(s.makefile().readline().strip())\n"
	// /usr/bin: a python3 found through root's PATH (pyenv) may not be readable by nobody.
	cmd := exec.Command("/usr/bin/python3", "-c", py, path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 as nobody: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "NO permission denied" {
		t.Errorf("uid 65534: %q", got)
	}
	if got := raw(t, path, "x\r\n"); len(got) != 1 || got[0] != "OK ran" {
		t.Errorf("root: %q", got)
	}
}

// A live server's socket is not taken over; a dead one's is.
func TestListenSocketFile(t *testing.T) {
	t.Parallel()
	s := serve(t, Options{})
	path := s.Listener().Addr().String()
	if _, err := Listen(Options{Path: path}); err == nil {
		t.Fatal("took over a live server's socket")
	}
	// A socket file bound but never listened on, as a dead server leaves
	// it. (A listener closed here could still accept for a moment: a
	// parallel test's fork holds a copy of every descriptor until exec.)
	dead := filepath.Join(t.TempDir(), "dead.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: dead}); err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	s2, err := Listen(Options{Path: dead})
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	s2.Close()
}
