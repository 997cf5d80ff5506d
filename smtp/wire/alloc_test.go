package wire

import (
	"io"
	"testing"
)

// TestWriterSessionAllocations: a one-message session's replies (greeting
// to 221) grow no buffer: the Writer is all that is allocated.
func TestWriterSessionAllocations(t *testing.T) {
	n := testing.AllocsPerRun(50, func() {
		w := NewWriter(io.Discard)
		w.Plain(220, "mx.example.org ESMTP Service Ready")
		w.Plain(250, "mx.example.org", "PIPELINING", "SIZE 26214400", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME", "CHUNKING", "SMTPUTF8", "LIMITS RCPTMAX=100")
		w.Flush()
		for _, r := range []string{"Ok", "Ok", "OK: queued", "Bye"} {
			w.Reply(250, Enhanced{2, 0, 0}, r)
			w.Flush()
		}
	})
	if n > 2 {
		t.Errorf("%v allocations for a session's replies", n)
	}
}
