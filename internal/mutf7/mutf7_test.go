package mutf7

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, c := range []struct{ utf8, mutf7 string }{
		{"INBOX", "INBOX"}, {"R&D", "R&-D"}, {"Été", "&AMk-t&AOk-"}, {"日本語", "&ZeVnLIqe-"}, {"a😀b", "a&2D3eAA-b"},
	} {
		if got := Encode(c.utf8); got != c.mutf7 {
			t.Errorf("Encode(%q) = %q, want %q", c.utf8, got, c.mutf7)
		}
		if got, err := Decode(c.mutf7); err != nil || got != c.utf8 {
			t.Errorf("Decode(%q) = %q, %v; want %q", c.mutf7, got, err, c.utf8)
		}
	}
	for _, bad := range []string{"&", "&AGE-", "a\x01", "&2D0-"} {
		if got, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) = %q, want an error", bad, got)
		}
	}
}
