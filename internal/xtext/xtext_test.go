package xtext

import "testing"

func TestRoundTrip(t *testing.T) {
	for _, v := range []string{"", "a@b.c", "a+b=c", "é\x00\r\n ~!", "rfc822;x@y"} {
		enc := Encode(v)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < '!' || c > '~' || c == '=' {
				t.Errorf("Encode(%q) = %q: octet %#02x", v, enc, c)
			}
		}
		if got, err := Decode(enc); got != v || err != nil {
			t.Errorf("Decode(Encode(%q)) = %q, %v", v, got, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	if v, err := Decode("a+2Bb+3D"); v != "a+b=" || err != nil {
		t.Errorf("Decode = %q, %v", v, err)
	}
	for _, bad := range []string{"+", "+2", "+2b", "+ZZ", "a=b", "a b", "\x7f", "é"} {
		if _, err := Decode(bad); err != ErrInvalid {
			t.Errorf("Decode(%q): %v, want ErrInvalid", bad, err)
		}
	}
}
