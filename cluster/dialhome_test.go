package cluster

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// A node whose greeting does not come within the connect timeout is
// remembered as down; one that greets with a refusal is not.
func TestDialHomeGreeting(t *testing.T) {
	tests := []struct {
		name     string
		greeting string // "" says nothing
		wantDown bool
	}{
		{"silent", "", true},
		{"refusing", "* BYE busy\r\n", false},
		{"greeting", "* OK ready\r\n", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					if tc.greeting != "" {
						c.Write([]byte(tc.greeting))
					}
					defer c.Close()
				}
			}()
			// Short where it is waited out (the silent node); elsewhere
			// long, so that a slow run's greeting still comes within it.
			timeout := 30 * time.Second
			if tc.greeting == "" {
				timeout = 300 * time.Millisecond
			}
			c, err := New(Options{Self: "a", Secret: []byte("0123456789abcdef"), Nodes: map[string]Node{
				"b": {IMAP: ln.Addr().String()},
			}, ConnectTimeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			h := NewHops(c)
			b, _, _ := c.Home("b")
			errRefused := errors.New("refused")
			conn, _, err := h.DialHome(b, b.IMAP, func(br *bufio.Reader) error {
				line, err := br.ReadString('\n')
				if err != nil {
					return err
				}
				if line != "* OK ready\r\n" {
					return errRefused
				}
				return nil
			})
			switch {
			case tc.greeting == "* OK ready\r\n":
				if err != nil {
					t.Fatalf("DialHome: %v", err)
				}
				conn.Close()
			case tc.greeting == "" && err == nil, tc.greeting != "" && !errors.Is(err, errRefused):
				t.Fatalf("DialHome: %v", err)
			}
			again, err := h.Dial(context.Background(), b, b.IMAP)
			if err == nil {
				again.Close()
			}
			if down := errors.Is(err, ErrNodeDown); down != tc.wantDown {
				t.Fatalf("dialled again: %v; want down %v", err, tc.wantDown)
			}
		})
	}
}
