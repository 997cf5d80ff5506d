package mailauth

import (
	"regexp"
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
	// A local part over 64 octets is rewritten (RFC 5321's local-part
	// limit is not enforced, by smtp as by Postfix) and comes back; past
	// the 256-octet path (254 octets of address), the sender is kept.
	long := strings.Repeat("x", 70) + "@" + strings.Repeat("y", 20) + ".example"
	if a, err := s.Forward(long); err != nil {
		t.Errorf("Forward(%s): %v", long, err)
	} else if back, err := s.Reverse(a); err != nil || back != long {
		t.Errorf("Reverse(%s) = %s, %v", a, back, err)
	}
	if a, err := s.Forward(strings.Repeat("x", 200) + "@" + strings.Repeat("y", 40) + ".example"); err == nil {
		t.Errorf("rewrote into an address over 254 octets: %s (%d)", a, len(a))
	}
	// A quoted local part would need quoting inside ours, and a bounce to
	// one with '@' is a relay trick: the sender is kept.
	for _, q := range []string{`"x@y"@example.net`, `"john doe"@example.net`, `"a..b"@example.net`} {
		if a, err := s.Forward(q); err == nil {
			t.Errorf("Forward(%s) = %s", q, a)
		}
	}
	if _, err := NewSRS("short", "mx.example.org", nil); err == nil {
		t.Error("short secret taken")
	}
}

// TestSRS1: another forwarder's SRS0 address is rewritten in the second
// form (SRS1, the first forwarder's domain and the rest of its address),
// another's SRS1 keeps its first forwarder; Reverse gives the first
// forwarder's SRS0 address back; a changed hash or first forwarder is
// refused; ours are not rewritten again.
func TestSRS1(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	s, err := NewSRS("0123456789abcdef-secret", "mx.example.org", func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		sender, wantFirst, wantBack string
	}{
		{"SRS0=HHH=TT=orig.example=user@fwd1.example", "fwd1.example", "SRS0=HHH=TT=orig.example=user@fwd1.example"},
		{"srs0+x1Yz=AB=orig.example=a.b@Fwd1.Example", "Fwd1.Example", "SRS0+x1Yz=AB=orig.example=a.b@Fwd1.Example"},
		// Another forwarder's SRS1: the first forwarder stays.
		{"SRS1=QQQ=fwd1.example==HHH=TT=orig.example=user@fwd2.example", "fwd1.example", "SRS0=HHH=TT=orig.example=user@fwd1.example"},
	}
	for _, tc := range cases {
		fwd, err := s.Forward(tc.sender)
		if err != nil {
			t.Fatalf("Forward(%s): %v", tc.sender, err)
		}
		want := regexp.MustCompile(`^SRS1=[A-Z2-7]{8}=` + regexp.QuoteMeta(tc.wantFirst) + `=[=+-]`)
		if !want.MatchString(fwd) || !strings.HasSuffix(fwd, "@mx.example.org") || !s.IsSRS(fwd) {
			t.Errorf("Forward(%s) = %s", tc.sender, fwd)
		}
		for _, a := range []string{fwd, strings.ToLower(fwd)} {
			back, err := s.Reverse(a)
			if err != nil || !strings.EqualFold(back, tc.wantBack) {
				t.Errorf("Reverse(%s) = %s, %v; want %s", a, back, err, tc.wantBack)
			}
		}
		if again, _ := s.Forward(fwd); again != fwd {
			t.Errorf("our SRS1 address rewritten again: %s", again)
		}
	}
	fwd, _ := s.Forward("SRS0=HHH=TT=orig.example=user@fwd1.example")
	// No timestamp of ours: an SRS1 address does not expire here.
	now = now.Add(2 * SRSMaxAge)
	if _, err := s.Reverse(fwd); err != nil {
		t.Errorf("SRS1 after SRSMaxAge: %v", err)
	}
	for name, bad := range map[string]string{
		"hash":   "SRS1=AAAAAAAA" + fwd[13:],
		"first":  strings.Replace(fwd, "=fwd1.example=", "=evil.example=", 1),
		"rest":   strings.Replace(fwd, "=user@", "=mallory@", 1),
		"short":  "SRS1=abc@mx.example.org",
		"no sep": strings.Replace(fwd, "=fwd1.example==", "=fwd1.example=x", 1),
	} {
		if got, err := s.Reverse(bad); err == nil {
			t.Errorf("%s: %s reversed to %s", name, bad, got)
		}
	}
	// Addresses that only look like SRS get SRS0 like any sender.
	for _, sender := range []string{"SRS0@fwd1.example", "SRS1=x@fwd2.example", "srs0x@a.example"} {
		if fwd, err := s.Forward(sender); err != nil || !strings.HasPrefix(fwd, "SRS0=") {
			t.Errorf("Forward(%s) = %s, %v", sender, fwd, err)
		}
	}
}
