package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// feedDataCut hands stream to a dataCut in reads of at most the given
// sizes (cycled), as conn.Read does, and returns how many bytes it handed
// out before leaving bulk mode (-1 if it never did).
func feedDataCut(stream []byte, sizes []int) int {
	var d dataCut
	d.start()
	pos := 0
	for i := 0; pos < len(stream); i++ {
		chunk := stream[pos:min(len(stream), pos+sizes[i%len(sizes)])]
		for len(chunk) > 0 {
			out := d.cut(chunk)
			d.handedOut(out)
			pos += len(out)
			chunk = chunk[len(out):]
			if !d.on {
				return pos
			}
		}
	}
	return -1
}

// goSMTPEnd is where go-smtp's own DATA reader stops in stream: the length
// of the message it consumed with its end of data, or -1.
func goSMTPEnd(t *testing.T, stream []byte) int {
	t.Helper()
	// go-smtp does not export its DATA reader: this is its state machine
	// (data.go), which ends at the first ".\r\n" line, a line beginning
	// at the start or after "\r\n".
	r := bufio.NewReader(bytes.NewReader(stream))
	const (
		begin = iota
		dot
		dotCR
		cr
		data
	)
	state, n := begin, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			return -1
		}
		n++
		switch state {
		case begin:
			switch b {
			case '.':
				state = dot
			case '\r':
				state = cr
			default:
				state = data
			}
		case dot:
			state = data
			if b == '\r' {
				state = dotCR
			}
		case dotCR:
			if b == '\n' {
				return n
			}
			state = data
		case cr:
			state = data
			if b == '\n' {
				state = begin
			}
		case data:
			if b == '\r' {
				state = cr
			}
		}
	}
}

func TestDataCutStopsAtEndOfData(t *testing.T) {
	after := "MAIL FROM:<next@example.org>\r\nRCPT TO:<x@example.org>\r\n"
	cases := []struct{ name, message string }{
		{"plain", "Subject: a\r\n\r\nbody\r\n.\r\n"},
		{"empty message", ".\r\n"},
		{"dot-stuffed lines", "..x\r\n..\r\n.\r\n"},
		{"stuffed dot before the end", "a\r\n..\r\n.\r\n"},
		{"bare LF dot", "a\n.\r\nb\r\n.\r\n"},
		{"dot CR CR", "a\r\n.\r\r\n.\r\nb\r\n.\r\n"},
		{"long", strings.Repeat(strings.Repeat("y", 62)+"\r\n", 200) + ".\r\n"},
	}
	sizes := [][]int{{1}, {2}, {3}, {4}, {5}, {7}, {64}, {4096}, {1, 4096}, {3, 1, 2}}
	for _, tc := range cases {
		stream := []byte(tc.message + after)
		want := goSMTPEnd(t, stream)
		if want < 0 {
			t.Fatalf("%s: go-smtp would not end", tc.name)
		}
		for _, sz := range sizes {
			got := feedDataCut(stream, sz)
			// Leaving bulk mode early only costs a reply not held; leaving
			// it late would hand go-smtp the next command with the message.
			if got < 0 || got > want {
				t.Errorf("%s, reads of %v: left bulk mode after %d bytes, go-smtp's end of data is at %d", tc.name, sz, got, want)
			}
			if got != want && tc.name != "dot CR CR" {
				t.Errorf("%s, reads of %v: cut at %d, want exactly %d", tc.name, sz, got, want)
			}
		}
	}
}

// TestDataCutNeverLate: on random streams of CR, LF, dots and letters cut
// into random reads, bulk mode never outlives go-smtp's end of data.
func TestDataCutNeverLate(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("\r\n.a")
	for range 20000 {
		stream := make([]byte, 1+rng.IntN(40))
		for i := range stream {
			stream[i] = alphabet[rng.IntN(len(alphabet))]
		}
		want := goSMTPEnd(t, stream)
		sizes := []int{1 + rng.IntN(6), 1 + rng.IntN(6), 1 + rng.IntN(6)}
		got := feedDataCut(stream, sizes)
		if want >= 0 && (got < 0 || got > want) {
			t.Fatalf("stream %q, reads of %v: bulk mode ended at %d, go-smtp's end is at %d", stream, sizes, got, want)
		}
	}
}

// TestBulkDataThroughServer: transactions pipelined back to back over one
// connection, with bodies full of dot lines and the whole stream written
// in random segments, so that every end of data falls at some point of a
// read. Each message arrives byte-identical (dot-unstuffed) and every
// reply is in step.
func TestBulkDataThroughServer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Inbound, nil)
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	rng := rand.New(rand.NewPCG(3, 4))
	lines := []string{".", "..", "...x", "x.", "", "plain text", ". ", "\t.", strings.Repeat("z", 900)}
	const n = 60
	var want []string
	var stream strings.Builder
	for i := range n {
		var body, wire strings.Builder
		fmt.Fprintf(&body, "Subject: %d\r\n\r\n", i)
		for range rng.IntN(200) {
			l := lines[rng.IntN(len(lines))]
			body.WriteString(l + "\r\n")
		}
		for _, l := range strings.SplitAfter(body.String(), "\r\n") {
			if strings.HasPrefix(l, ".") {
				wire.WriteString(".")
			}
			wire.WriteString(l)
		}
		want = append(want, body.String())
		fmt.Fprintf(&stream, "MAIL FROM:<s%d@example.org>\r\nRCPT TO:<alice@mailbox.example>\r\nDATA\r\n%s.\r\n", i, wire.String())
	}
	go func() {
		s := stream.String()
		for len(s) > 0 {
			k := min(len(s), 1+rng.IntN(3000))
			if _, err := io.WriteString(c.conn, s[:k]); err != nil {
				return
			}
			s = s[k:]
		}
	}()
	for i := range n {
		for _, r := range []string{"250 ", "250 ", "354 ", "250 "} {
			if got := c.reply(); !strings.HasPrefix(got, r) {
				t.Fatalf("message %d: want %q..., got %q", i, r, got)
			}
		}
	}
	c.cmd("NOOP", "250 ")
	got := e.deliv.all()
	if len(got) != n {
		t.Fatalf("%d messages delivered, want %d", len(got), n)
	}
	for i, d := range got {
		if string(d.body) != want[i] {
			t.Errorf("message %d: body differs (%d octets, want %d)", i, len(d.body), len(want[i]))
		}
	}
}
