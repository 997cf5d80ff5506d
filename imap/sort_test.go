package imap

import "testing"

// TestBaseSubject: RFC 5256 §2.1's base subject, with the cases of
// imaptest's sort-subject file and a few of the RFC's grammar.
func TestBaseSubject(t *testing.T) {
	for in, want := range map[string]string{
		"a":              "a",
		"Re: a":          "a",
		"RE:  a  ":       "a",
		"Fwd: Re: fw: a": "a",
		"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)": "b",
		"Re: [FWD: c]":                         "c",
		"[xyz]":                                "[xyz]",
		"[xyz] a":                              "a",
		"re: [fwd: [fwd: re: [fwd: babylon]]]": "babylon",
		"Ad: Re: Ad: x":                        "Ad: Re: Ad: x",
		"b (a)":                                "b (a)",
		"Re [blob]: a":                         "a",
		"a\t b":                                "a b",
		"":                                     "",
		"   ":                                  "",
	} {
		if got := baseSubject(in); got != want {
			t.Errorf("baseSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrderedSet(t *testing.T) {
	for _, tc := range []struct {
		in   []uint32
		want string
	}{
		{[]uint32{1, 2, 3, 4, 5}, "1:5"},
		{[]uint32{5, 3, 2}, "5,3,2"},
		{[]uint32{2, 3, 9, 10, 11, 1}, "2:3,9:11,1"},
		{[]uint32{7}, "7"},
		{nil, ""},
	} {
		if got := orderedSet(tc.in); got != tc.want {
			t.Errorf("orderedSet(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
