package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of a request.
const (
	MaxRequest     = 1024 // bytes of the request line, CRLF included
	MaxArgs        = 16
	requestTimeout = 10 * time.Second
	maxConns       = 8
)

// Handler runs one command. progress sends a "* " line to the client; the
// returned text follows "OK ", the error's text "NO ". ctx ends when the
// client goes away or the server closes.
type Handler func(ctx context.Context, args []string, progress func(string)) (string, error)

// Options configure a Server.
type Options struct {
	Path     string             // the socket file; replaced if stale
	Handlers map[string]Handler // by command name
	Logger   *slog.Logger
	// Allow says whether a peer uid may use the socket; default: 0 and the
	// server's own effective uid.
	Allow func(uid uint32) bool
	// Mode is the socket file's mode; default 0600. A server whose Allow
	// admits everyone (mailq's) needs 0666: connecting takes write
	// permission.
	Mode os.FileMode
	// RoutineRequests logs each request at debug level, not info: a
	// socket any user may call in a loop must not fill the log.
	RoutineRequests bool
}

// Server serves the control socket.
type Server struct {
	o     Options
	ln    *net.UnixListener
	slots chan struct{}
	ctx   context.Context
	stop  context.CancelFunc

	// mu orders the connections' wg.Go against Close's wg.Wait: a
	// connection accepted as Close runs is either counted before the
	// wait or refused.
	mu     sync.Mutex
	closed bool // guarded by mu
	wg     sync.WaitGroup
}

// Listen creates the socket (mode o.Mode) and returns a server for it.
func Listen(o Options) (*Server, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.Allow == nil {
		self := uint32(os.Geteuid())
		o.Allow = func(uid uint32) bool { return uid == 0 || uid == self }
	}
	// A socket left by a server that died is in the way; a live one
	// answers, and is not taken over.
	if c, err := net.DialTimeout("unix", o.Path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s: another server is listening", o.Path)
	}
	if fi, err := os.Lstat(o.Path); err == nil && fi.Mode().Type() == os.ModeSocket {
		_ = os.Remove(o.Path)
	}
	// Created 0777 less the umask (connecting needs write permission:
	// with the usual 022, only the owner can), then o.Mode; the umask is
	// not changed, it is the whole process's.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(o.Path, o.Mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{o: o, ln: ln, slots: make(chan struct{}, maxConns), ctx: ctx, stop: stop}, nil
}

// Listener is the listening socket.
func (s *Server) Listener() net.Listener { return s.ln }

// Serve answers clients until Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("control: %w", err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			_, _ = io.WriteString(c, "NO busy: too many control connections\r\n")
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			<-s.slots
			c.Close()
			return nil
		}
		s.wg.Go(func() {
			defer func() { <-s.slots }()
			s.serveConn(c)
		})
		s.mu.Unlock()
	}
}

// Close stops listening, cancels running requests and waits for them.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	err := s.ln.Close()
	s.stop()
	s.wg.Wait()
	return err
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

func (s *Server) serveConn(c *net.UnixConn) {
	defer c.Close()
	w := bufio.NewWriter(c)
	final := func(word, text string) {
		_ = c.SetWriteDeadline(time.Now().Add(requestTimeout))
		w.WriteString(word + " " + oneLine(text) + "\r\n")
		w.Flush()
	}
	// The request line is read (bounded) before a refusal, so that a
	// refused client reads "permission denied" rather than failing to
	// write to a socket already closed.
	_ = c.SetReadDeadline(time.Now().Add(requestTimeout))
	args, rerr := readRequest(bufio.NewReaderSize(c, MaxRequest))
	uid, err := peerUID(c)
	if err != nil || !s.o.Allow(uid) {
		s.o.Logger.Warn("control: connection refused", "uid", uid, "err", err)
		final("NO", "permission denied")
		return
	}
	if rerr != nil {
		final("NO", rerr.Error())
		return
	}
	h := s.o.Handlers[args[0]]
	if h == nil {
		final("NO", "unknown command "+args[0])
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	// The client sends nothing more: a read returning means it went away.
	go func() {
		var b [1]byte
		_, _ = c.Read(b[:])
		cancel()
	}()
	var mu sync.Mutex
	progress := func(text string) {
		mu.Lock()
		defer mu.Unlock()
		_ = c.SetWriteDeadline(time.Now().Add(requestTimeout))
		w.WriteString("* " + oneLine(text) + "\r\n")
		w.Flush()
	}
	level := slog.LevelInfo
	if s.o.RoutineRequests {
		level = slog.LevelDebug
	}
	s.o.Logger.Log(ctx, level, "control: request", "uid", uid, "command", strings.Join(args, " "))
	text, err := h(ctx, args[1:], progress)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		s.o.Logger.Warn("control: request failed", "command", args[0], "err", err)
		final("NO", err.Error())
		return
	}
	final("OK", text)
}

// readRequest reads and splits the request line.
func readRequest(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("request longer than %d bytes", MaxRequest)
	}
	if err != nil {
		return nil, errors.New("no request line")
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r")
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return nil, errors.New("request: only printable ASCII")
		}
	}
	args := strings.Split(s, " ")
	if len(args) > MaxArgs {
		return nil, fmt.Errorf("request: more than %d words", MaxArgs)
	}
	for _, a := range args {
		if a == "" {
			return nil, errors.New("request: empty word")
		}
	}
	return args, nil
}

// oneLine keeps text on one line of printable characters.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// ErrRefused is a NO answer; its text is the server's.
type ErrRefused struct{ Text string }

func (e *ErrRefused) Error() string { return e.Text }

// Do sends one request to the server at path and calls progress with each
// progress line; it returns the OK text, or *ErrRefused with the NO text.
func Do(ctx context.Context, path string, args []string, progress func(string)) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return "", fmt.Errorf("control socket %s (is courriel serve running?): %w", path, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req := strings.Join(args, " ") + "\r\n"
	if len(req) > MaxRequest {
		return "", fmt.Errorf("request longer than %d bytes", MaxRequest)
	}
	if _, err := io.WriteString(c, req); err != nil {
		return "", fmt.Errorf("control: %w", err)
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", errors.New("control: the server closed the connection without an answer")
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "* "):
			if progress != nil {
				progress(line[2:])
			}
		case strings.HasPrefix(line, "OK"):
			return strings.TrimPrefix(strings.TrimPrefix(line, "OK"), " "), nil
		case strings.HasPrefix(line, "NO"):
			return "", &ErrRefused{Text: strings.TrimPrefix(strings.TrimPrefix(line, "NO"), " ")}
		default:
			return "", fmt.Errorf("control: unexpected line %q", line)
		}
	}
}
