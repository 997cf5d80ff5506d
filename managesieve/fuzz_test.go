package managesieve

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"

	"courriel/sieve/scripts"
)

// FuzzReadCommand feeds hostile bytes to the command reader, before and
// after login: it must never panic, never return more than it was sent,
// and end at the input's end.
func FuzzReadCommand(f *testing.F) {
	for _, s := range []string{
		"CAPABILITY\r\n", `PUTSCRIPT "a" {5+}` + "\r\nkeep;\r\n", `NOOP "a\"b\\"` + "\r\n", "{99999999999}\r\n",
		`AUTHENTICATE "PLAIN" {3}` + "\r\nabc\r\n", "NOOP \"x\r\n", "\r\n\n", `CHECKSCRIPT {2000000+}` + "\r\n",
		`PUTSCRIPT "x" {10}` + "\r\n", "X {5}\r\nabcde {2}\r\nab\r\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, auth bool) {
		srv, err := NewServer(Options{Auth: noAuth{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			MaxLineLength: 1024, Limits: scripts.Limits{MaxScriptSize: 4096}})
		if err != nil {
			t.Fatal(err)
		}
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.Write(in)
			b.Close()
		}()
		se := newSession(srv, a, "127.0.0.1")
		if auth {
			st, err := scripts.Open(t.TempDir(), scripts.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			se.state, se.store = stateAuth, st
		}
		for i := 0; i <= len(in); i++ {
			_, args, err := se.readCommand()
			n := 0
			for _, a := range args {
				n += len(a.s)
			}
			if n > len(in) {
				t.Fatalf("%d octets of arguments from %d of input", n, len(in))
			}
			var r *reply
			var syn *syntaxError
			if err != nil && !errors.As(err, &r) && !errors.As(err, &syn) {
				return // the end of the input, or a closed pipe
			}
			if r != nil && r.bye {
				return
			}
		}
		t.Fatal("more commands than octets")
	})
}

type noAuth struct{ Authenticator }
