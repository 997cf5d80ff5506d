package smtp

import (
	"strings"
	"testing"
)

// TestSanitize: what goes into a reply is printable ASCII, at most n octets
// of the input; a log value keeps printable UTF-8 too (an SMTPUTF8 address
// found by grep), and neither holds anything that could split or forge a
// line. A clean short value comes back as is.
func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in        string
		n         int
		want, log string
	}{
		{"user@example.com", 300, "user@example.com", "user@example.com"},
		{"", 10, "", ""},
		{"exactly10!", 10, "exactly10!", "exactly10!"},
		{"eleven char", 10, "eleven cha...", "eleven cha..."},
		{"a\r\nb", 10, "a??b", "a??b"},
		{"tab\there", 10, "tab?here", "tab?here"},
		{"del\x7f", 10, "del?", "del?"},
		{"café", 10, "caf?", "café"},
		{"ünï@bücher.test", 300, "?n?@b?cher.test", "ünï@bücher.test"},
		{"用户@例子.测试", 300, "??@??.??", "用户@例子.测试"},
		{"a\u0085b\u2028c\u2029d", 20, "a?b?c?d", "a?b?c?d"},
		{"bom\ufeff", 10, "bom?", "bom?"},
		{"\xff\xfe", 10, "??", "??"},
		{strings.Repeat("x", 400), 300, strings.Repeat("x", 300) + "...", strings.Repeat("x", 300) + "..."},
	} {
		if got := sanitize(tc.in, tc.n); got != tc.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if got := logValue(tc.in, tc.n); got != tc.log {
			t.Errorf("logValue(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.log)
		}
	}
}
