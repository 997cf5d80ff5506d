package smtp

import (
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

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
