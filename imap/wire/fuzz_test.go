package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// FuzzReader feeds arbitrary bytes to the command reader: it must never
// panic, must end every command (or report an error) and must hand out
// no string longer than its limits allow.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"a1 NOOP\r\n",
		"a LOGIN {4}\r\nuser {2+}\r\npw\r\n",
		"a APPEND INBOX (\\Seen) ~{3}\r\nabc\r\n",
		"a SEARCH OR (FROM \"x\" NOT SEEN) UID 1:*,5\r\n",
		"a FETCH 1:* (BODY.PEEK[HEADER.FIELDS (TO FROM)]<0.100>)\r\n",
		"a ID (\"name\" \"x\" \"version\" NIL)\r\n",
		"a X ((((((((\r\n",
		"a X {99999999999999999999}\r\n",
		"a X \"unterminated\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(strings.NewReader(string(data)), &Buffers{})
		r.Limits = Limits{MaxLine: 1024, MaxLiteral: 1024, MaxDepth: 8, MaxRanges: 64}
		for range 1000 {
			args, err := readArgs(r)
			for _, a := range args {
				if len(a) > 1024 {
					t.Fatalf("token of %d bytes", len(a))
				}
			}
			if err == nil {
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return
			}
			var le *LimitError
			if errors.As(err, &le) && le.Fatal {
				return
			}
			if derr := r.Discard(); derr != nil {
				return
			}
		}
	})
}
