package cluster

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// tcpPair is two ends of one loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func TestSplice(t *testing.T) {
	for _, end := range []string{"client", "home"} {
		t.Run(end+" ends", func(t *testing.T) {
			user, clientSide := tcpPair(t) // user is the mail client
			homeSide, home := tcpPair(t)   // home is the home node
			sp := &Splice{
				Client: clientSide, CloseClient: func() { clientSide.Close() }, Home: homeSide,
				ToHome: []byte("pipelined\r\n"), ToClient: []byte("after login\r\n"),
				WriteTimeout: 10 * time.Second,
			}
			ran := make(chan struct{})
			go func() { sp.Run(); close(ran) }()
			for _, c := range []net.Conn{user, home} {
				c.SetDeadline(time.Now().Add(10 * time.Second))
			}
			ur, hr := bufio.NewReader(user), bufio.NewReader(home)
			expect := func(r *bufio.Reader, want string) {
				t.Helper()
				if got, err := r.ReadString('\n'); got != want {
					t.Fatalf("read %q, %v; want %q", got, err, want)
				}
			}
			expect(hr, "pipelined\r\n")
			expect(ur, "after login\r\n")
			io.WriteString(user, "a NOOP\r\n")
			expect(hr, "a NOOP\r\n")
			io.WriteString(home, "a OK\r\n")
			expect(ur, "a OK\r\n")
			// Either side ending ends the other.
			other := ur
			if end == "client" {
				user.Close()
				other = hr
			} else {
				home.Close()
			}
			if _, err := other.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("the other side still open: %v", err)
			}
			select {
			case <-ran:
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return")
			}
		})
	}
}
