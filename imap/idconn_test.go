package imap

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

// chunkConn yields its input in chunks of the given sizes and records what
// is written to it.
type chunkConn struct {
	net.Conn
	in     []byte
	sizes  func() int
	out    bytes.Buffer
	closed bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := min(c.sizes(), len(p), len(c.in))
	copy(p, c.in[:n])
	c.in = c.in[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *chunkConn) Close() error                     { c.closed = true; return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }

func TestIDConnStream(t *testing.T) {
	t.Parallel()
	appendData := "Subject: x\r\n\r\nx ID NIL\r\n"
	parts := []struct {
		in    string
		taken bool // answered by idConn
	}{
		{"a1 ID NIL\r\n", true},
		{"a2 APPEND INBOX {24}\r\n" + appendData + "\r\n", false},
		{"a3 IDLE\r\n", false},
		{"DONE\r\n", false},
		{"a4 AUTHENTICATE PLAIN\r\n", false},
		{"b ID NIL\r\n", false}, // the SASL reply's place: never taken
		{`a5 ID ("k" "v")` + "\r\n", true},
		{"a0 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n", false}, // initial response
		{"c1 ID NIL\r\n", true},
		{"a6 LOGIN {5+}\r\nalice {6+}\r\nsecret\r\n", false},
		{"a7 UID FETCH 1:* BINARY[1]\r\n", false},
		{"a8 ID NIL {3}\r\nabc\r\n", false}, // a literal: left to the library
		{"a9 ID bad\r\n", true},
		{"b1 STARTTLS\r\n", false},
		{"b2 ID NIL\r\n", false}, // TLS records from here on
	}
	// Before STARTTLS, a line cut by the end of the stream still reaches
	// the library.
	cut := []struct {
		in    string
		taken bool
	}{{"c2 ID NIL\r\n", true}, {"zz I", false}}
	wantOut := wantIDLine + "\r\na1 OK ID completed\r\n" + wantIDLine + "\r\na5 OK ID completed\r\n" +
		wantIDLine + "\r\nc1 OK ID completed\r\na9 BAD Invalid ID arguments\r\n"
	checkIDStream(t, "full", parts, wantOut)
	checkIDStream(t, "cut", cut, wantIDLine+"\r\nc2 OK ID completed\r\n")
}

func checkIDStream(t *testing.T, label string, parts []struct {
	in    string
	taken bool
}, wantOut string) {
	var in, want strings.Builder
	for _, p := range parts {
		in.WriteString(p.in)
		if !p.taken {
			want.WriteString(p.in)
		}
	}
	sizes := map[string]func(r *rand.Rand) int{
		"one":    func(*rand.Rand) int { return 1 },
		"three":  func(*rand.Rand) int { return 3 },
		"all":    func(*rand.Rand) int { return 1 << 20 },
		"random": func(r *rand.Rand) int { return 1 + r.IntN(40) },
	}
	for name, size := range sizes {
		for _, readSize := range []int{1, 5, 64, 4096} {
			r := rand.New(rand.NewPCG(uint64(readSize), 9))
			cc := &chunkConn{in: []byte(in.String()), sizes: func() int { return size(r) }}
			c := newIDConn(cc)
			got, err := io.ReadAll(io.LimitReader(readerFunc(func(p []byte) (int, error) {
				return c.Read(p[:min(len(p), readSize)])
			}), 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			if string(got) != want.String() {
				t.Errorf("%s %s/%d: library read\n%q\nwant\n%q", label, name, readSize, got, want.String())
			}
			if cc.out.String() != wantOut {
				t.Errorf("%s %s/%d: replies %q, want %q", label, name, readSize, cc.out.String(), wantOut)
			}
		}
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func TestValidIDArgs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args string
		ok   bool
	}{
		{" NIL", true},
		{" nil", true},
		{` ("name" "x")`, true},
		{` ("name" "x" "version" NIL)`, true},
		{` ("a\"b" "c\\d")`, true},
		{"", false},
		{" ", false},
		{" ()", false},
		{` ("name")`, false},
		{` ("name" "x" )`, false},
		{` ("name"  "x")`, false},
		{` ("name" "x"`, false},
		{` ("na\me" "x")`, false},
		{` (name "x")`, false},
		{` NILL`, false},
		{`NIL`, false},
	} {
		if got := validIDArgs([]byte(tc.args)); got != tc.ok {
			t.Errorf("validIDArgs(%q) = %v, want %v", tc.args, got, tc.ok)
		}
	}
}
