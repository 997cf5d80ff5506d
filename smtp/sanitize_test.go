package smtp

import (
	"strings"
	"testing"
)

// TestSanitize: what goes into a log value or a reply is printable ASCII,
// at most n octets of the input; a clean short value comes back as is.
func TestSanitize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"user@example.com", 300, "user@example.com"},
		{"", 10, ""},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven cha..."},
		{"a\r\nb", 10, "a??b"},
		{"tab\there", 10, "tab?here"},
		{"del\x7f", 10, "del?"},
		{"café", 10, "caf?"},
		{"\xff\xfe", 10, "??"},
		{strings.Repeat("x", 400), 300, strings.Repeat("x", 300) + "..."},
	} {
		if got := sanitize(tc.in, tc.n); got != tc.want {
			t.Errorf("sanitize(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestLogValue: a log value keeps printable UTF-8 (an SMTPUTF8 address
// found by grep), and nothing that could split or forge a line.
func TestLogValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"user@example.com", 300, "user@example.com"},
		{"ünï@bücher.test", 300, "ünï@bücher.test"},
		{"用户@例子.测试", 300, "用户@例子.测试"},
		{"a\r\nb", 10, "a??b"},
		{"a\u0085b\u2028c\u2029d", 20, "a?b?c?d"},
		{"\xff\xfe", 10, "??"},
		{"bom\ufeff", 10, "bom?"},
		{"eleven char", 10, "eleven cha..."},
	} {
		if got := logValue(tc.in, tc.n); got != tc.want {
			t.Errorf("logValue(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
