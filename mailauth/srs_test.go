package mailauth

import (
	"strings"
	"testing"
	"time"
)

// TestSRS: an address rewritten by Forward comes back from Reverse, in any
// case; a changed hash, sender or domain, another secret, or an age past
// SRSMaxAge is refused; our own SRS addresses are not rewritten again.
func TestSRS(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := NewSRS("0123456789abcdef-secret", "mx.example.org", clock)
	if err != nil {
		t.Fatal(err)
	}
	for _, orig := range []string{"alice@example.net", "a=b+c@sub.example.com", "Bob.Smith@Example.COM"} {
		fwd, err := s.Forward(orig)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(fwd, "SRS0=") || !strings.HasSuffix(fwd, "@mx.example.org") || !s.IsSRS(fwd) {
			t.Errorf("Forward(%s) = %s", orig, fwd)
		}
		for _, a := range []string{fwd, strings.ToLower(fwd), strings.ToUpper(fwd[:16]) + fwd[16:]} {
			back, err := s.Reverse(a)
			if err != nil || !strings.EqualFold(back, orig) {
				t.Errorf("Reverse(%s) = %s, %v; want %s", a, back, err, orig)
			}
		}
		if again, _ := s.Forward(fwd); again != fwd {
			t.Errorf("our SRS address rewritten again: %s", again)
		}
	}
	fwd, _ := s.Forward("alice@example.net")
	other, _ := NewSRS("another-secret-of-16+", "mx.example.org", clock)
	for name, bad := range map[string]string{
		"hash":    strings.Replace(fwd, "SRS0="+fwd[5:7], "SRS0=ZZ", 1),
		"sender":  strings.Replace(fwd, "=alice@", "=mallory@", 1),
		"domain":  strings.Replace(fwd, "=example.net=", "=example.org=", 1),
		"secret":  func() string { a, _ := other.Forward("alice@example.net"); return a }(),
		"not SRS": "alice@mx.example.org",
		"foreign": strings.Replace(fwd, "@mx.example.org", "@elsewhere.example", 1),
		"short":   "SRS0=abc@mx.example.org",
	} {
		if got, err := s.Reverse(bad); err == nil {
			t.Errorf("%s: %s reversed to %s", name, bad, got)
		}
	}
	now = now.Add(SRSMaxAge - time.Hour)
	if _, err := s.Reverse(fwd); err != nil {
		t.Errorf("within SRSMaxAge: %v", err)
	}
	now = now.Add(48 * time.Hour)
	if _, err := s.Reverse(fwd); err == nil {
		t.Error("expired address reversed")
	}
	if a, err := s.Forward(strings.Repeat("x", 30) + "@" + strings.Repeat("y", 20) + ".example"); err == nil {
		t.Errorf("rewrote into a local part over 64 octets: %s", a)
	}
	if _, err := NewSRS("short", "mx.example.org", nil); err == nil {
		t.Error("short secret taken")
	}
}
