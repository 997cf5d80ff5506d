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
