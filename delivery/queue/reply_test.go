package queue

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		in       string
		wantCode int
		wantText string
		wantErr  bool
		wantEnh  [3]int
		wantMsg  string
	}{
		{name: "one line", in: "250 2.1.5 ok\r\n", wantCode: 250, wantText: "2.1.5 ok", wantEnh: [3]int{2, 1, 5}, wantMsg: "ok"},
		{name: "several lines", in: "550-5.1.1 no such\r\n550-5.1.1 user\r\n550 5.1.1 here\r\n", wantCode: 550, wantText: "5.1.1 no such\n5.1.1 user\n5.1.1 here", wantEnh: [3]int{5, 1, 1}, wantMsg: "no such\nuser\nhere"},
		{name: "code alone", in: "354\r\n", wantCode: 354},
		{name: "bare LF", in: "421 bye\n", wantCode: 421, wantText: "bye", wantMsg: "bye"},
		{name: "no enhanced code", in: "452 mailbox full\r\n", wantCode: 452, wantText: "mailbox full", wantMsg: "mailbox full"},
		// The last line's code, as Postfix reads it.
		{name: "code changes within the reply", in: "250-a\r\n550 b\r\n", wantCode: 550, wantText: "a\nb", wantMsg: "a\nb"},
		{name: "code changes, enhanced codes", in: "550-5.1.1 no such\r\n551 5.1.1 user\r\n", wantCode: 551, wantText: "5.1.1 no such\n5.1.1 user", wantEnh: [3]int{5, 1, 1}, wantMsg: "no such\nuser"},
		{name: "not a reply", in: "hello\r\n", wantErr: true},
		{name: "code out of range", in: "650 x\r\n", wantErr: true},
		{name: "bad separator", in: "250x\r\n", wantErr: true},
		{name: "line longer than the buffer", in: "250 " + strings.Repeat("x", 5000) + "\r\n", wantErr: true},
		{name: "endless continuation", in: strings.Repeat("250-x\r\n", maxReplyLines+1) + "250 x\r\n", wantErr: true},
		{name: "cut short", in: "250-x\r\n", wantErr: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &session{r: bufio.NewReaderSize(strings.NewReader(tc.in), 4096)}
			code, text, err := s.readReply()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("read %d %q, want an error", code, text)
				}
				return
			}
			if err != nil || code != tc.wantCode || text != tc.wantText {
				t.Fatalf("read %d %q %v, want %d %q", code, text, err, tc.wantCode, tc.wantText)
			}
			e := replyError(code, text)
			if e.EnhancedCode != tc.wantEnh || e.Message != tc.wantMsg {
				t.Errorf("replyError = %v %q, want %v %q", e.EnhancedCode, e.Message, tc.wantEnh, tc.wantMsg)
			}
		})
	}
}
