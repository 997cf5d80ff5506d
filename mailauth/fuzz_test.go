package mailauth

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzOwnResultsRemoved: whatever the header, removing our
// Authentication-Results keeps every other byte in order, removes only
// whole fields of that name claiming our id, and leaves none of ours.
func FuzzOwnResultsRemoved(f *testing.F) {
	f.Add("Authentication-Results: mx.test; dkim=pass\r\nFrom: a@b\r\n\r\nbody\r\n")
	f.Add("Authentication-Results: (c) MX.TEST.; x\r\n folded\r\nX: y\r\nAuthentication-Results: other; z\r\n\r\n")
	f.Add("no header at all")
	f.Add("Authentication-Results:mx.test\n\nAuthentication-Results: mx.test; body\n")
	c := &Checker{authservID: "mx.test"}
	f.Fuzz(func(t *testing.T, msg string) {
		fields, end, err := readHeader(strings.NewReader(msg))
		if err != nil || end < 0 || end > int64(len(msg)) {
			t.Fatalf("readHeader: end %d of %d, %v", end, len(msg), err)
		}
		var all []byte
		for _, f := range fields {
			all = append(all, f.Raw...)
		}
		if !bytes.Equal(all, []byte(msg[:end])) {
			t.Fatalf("fields are not the header's bytes:\n%q\n%q", all, msg[:end])
		}
		kept, removed := c.withoutOwnResults(fields)
		if !removed && !bytes.Equal(kept, all) {
			t.Fatal("changed without removing")
		}
		rest, _, _ := readHeader(bytes.NewReader(append(kept, msg[end:]...)))
		for _, f := range rest {
			if strings.EqualFold(f.Name, "Authentication-Results") && strings.EqualFold(authservIDOf(f.value()), "mx.test") {
				t.Fatalf("one of ours left: %q", f.Raw)
			}
		}
	})
}
