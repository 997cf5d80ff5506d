package mailauth

import (
	"strings"
	"testing"
)

// readHeader's whole: a header cut by its limits is not taken for whole,
// and a short header before a long body is.
func TestReadHeaderWhole(t *testing.T) {
	many := strings.Repeat("X-A: b\r\n", maxHeaderFields+1)
	for _, tc := range []struct {
		name    string
		msg     string
		whole   bool
		fields  int
		endLine string // what the message holds at end
	}{
		{"short", "From: a@b\r\nTo: c@d\r\n\r\nbody\r\n", true, 2, "\r\nbody"},
		{"long body", "From: a@b\r\n\r\n" + strings.Repeat("x", 2*maxHeaderBytes), true, 1, "\r\nxx"},
		{"all header", "From: a@b\r\nTo: c@d\r\n", true, 2, ""},
		{"header over 1 MiB", "From: a@b\r\nX-Big: " + strings.Repeat("y", maxHeaderBytes) + "\r\n\r\nbody", false, 1, ""},
		{"too many fields", many + "\r\nbody", false, maxHeaderFields, "X-A: b\r\n\r\nbody"},
		{"as many as allowed", many[len("X-A: b\r\n"):] + "\r\nbody", true, maxHeaderFields, "\r\nbody"},
	} {
		fields, end, whole, err := readHeader(strings.NewReader(tc.msg))
		if err != nil {
			t.Fatal(err)
		}
		if whole != tc.whole || len(fields) != tc.fields {
			t.Errorf("%s: whole %v with %d fields, want %v with %d", tc.name, whole, len(fields), tc.whole, tc.fields)
		}
		if tc.endLine != "" && !strings.HasPrefix(tc.msg[end:], tc.endLine) {
			t.Errorf("%s: the header ends before %q", tc.name, tc.msg[end:min(int64(len(tc.msg)), end+20)])
		}
	}
}
