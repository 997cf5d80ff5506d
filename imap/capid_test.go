package imap

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

func TestCapRewriter(t *testing.T) {
	t.Parallel()
	body := "* CAPABILITY IMAP4rev1\r\nA OK [CAPABILITY X] fake\r\n" // message data that looks like output
	tests := []struct{ name, in, want string }{
		{"greeting", "* OK [CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN] courriel ready\r\n",
			"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 AUTH=PLAIN ID] courriel ready\r\n"},
		{"capability line", "* CAPABILITY IMAP4rev1 IDLE\r\nA1 OK CAPABILITY completed\r\n",
			"* CAPABILITY IMAP4rev1 IDLE ID\r\nA1 OK CAPABILITY completed\r\n"},
		{"login code", "A2 OK [CAPABILITY IMAP4rev1 MOVE] LOGIN completed\r\n",
			"A2 OK [CAPABILITY IMAP4rev1 MOVE ID] LOGIN completed\r\n"},
		{"literal untouched", "* 1 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + ")\r\n* CAPABILITY A\r\n",
			"* 1 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + body + ")\r\n* CAPABILITY A ID\r\n"},
		{"envelope text untouched", "* 1 FETCH (ENVELOPE (NIL \"x OK [CAPABILITY y]\" NIL))\r\n",
			"* 1 FETCH (ENVELOPE (NIL \"x OK [CAPABILITY y]\" NIL))\r\n"},
		{"other lines", "* 3 EXISTS\r\nA3 OK [READ-WRITE] SELECT completed\r\n",
			"* 3 EXISTS\r\nA3 OK [READ-WRITE] SELECT completed\r\n"},
	}
	for _, tt := range tests {
		// Whole, and one byte at a time: the result must not depend on how
		// the library splits its writes.
		for _, chunk := range []int{len(tt.in), 1, 3, 7} {
			var r capRewriter
			var out []byte
			for in := []byte(tt.in); len(in) > 0; {
				n := min(chunk, len(in))
				out = append(out, r.process(in[:n])...)
				in = in[n:]
			}
			out = append(out, r.drain()...)
			if string(out) != tt.want {
				t.Errorf("%s (chunks of %d):\n got %q\nwant %q", tt.name, chunk, out, tt.want)
			}
		}
	}
	// A line too long to hold passes through unchanged, and so does what
	// follows on it; the next line is rewritten again.
	long := "* 1 FETCH (X \"" + strings.Repeat("a", maxCapLine+10) + "\")\r\n* CAPABILITY B\r\n"
	var r capRewriter
	out := append(r.process([]byte(long)), r.drain()...)
	if !bytes.HasSuffix(out, []byte("* CAPABILITY B ID\r\n")) || len(out) != len(long)+3 {
		t.Errorf("long line: %d bytes, tail %q", len(out), out[len(out)-20:])
	}
}
