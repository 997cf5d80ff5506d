package queue

import (
	"bytes"
	"strings"
	"testing"
)

// Lines over the limit are broken by CRLF SPACE every max octets (the
// space counts in the next piece), as Postfix's smtp_text_out breaks them;
// a CRLF right at the limit, a CR alone and a bare LF are kept as they
// are, however the writes cut the text.
func TestLineBreaker(t *testing.T) {
	t.Parallel()
	const max = 10
	x := func(n int) string { return strings.Repeat("x", n) }
	for _, tc := range []struct {
		name, in, want string
		broke          bool
	}{
		{"short lines", "ab\r\ncd\r\n", "ab\r\ncd\r\n", false},
		{"at the limit", x(10) + "\r\n" + x(10) + "\r\n", x(10) + "\r\n" + x(10) + "\r\n", false},
		{"one over", x(11) + "\r\n", x(10) + "\r\n x\r\n", true},
		{"pieces of max-1 after the first", x(30) + "\r\n", x(10) + "\r\n " + x(9) + "\r\n " + x(9) + "\r\n " + x(2) + "\r\n", true},
		{"no line end", x(12), x(10) + "\r\n " + x(2), true},
		{"CR alone is content", x(9) + "\r" + x(2) + "\r\n", x(9) + "\r\r\n " + x(2) + "\r\n", true},
		{"CR at the end", x(3) + "\r", x(3) + "\r", false},
		{"bare LF ends a line", x(10) + "\n" + x(10) + "\n", x(10) + "\n" + x(10) + "\n", false},
		{"a dot after a break stays", x(10) + ".\r\n", x(10) + "\r\n .\r\n", true},
	} {
		for _, chunk := range []int{1, 3, len(tc.in)} {
			var out bytes.Buffer
			b := &lineBreaker{w: &out, max: max}
			for in := tc.in; in != ""; {
				n := min(chunk, len(in))
				if k, err := b.Write([]byte(in[:n])); k != n || err != nil {
					t.Fatalf("%s: Write = %d, %v", tc.name, k, err)
				}
				in = in[n:]
			}
			if err := b.Flush(); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want || b.broke != tc.broke {
				t.Errorf("%s, writes of %d: %q (broke %v), want %q (%v)", tc.name, chunk, out.String(), b.broke, tc.want, tc.broke)
			}
		}
	}
}

// A copy that leaves has its lines over 998 octets broken (the SMTP
// server takes them and stores them whole): a server that holds to RFC
// 5321's limit refused the message, or cut the lines where it liked. The
// pieces put back together (CRLF SPACE taken out) are the line sent. A
// signed message goes whole: a broken line fails its signature.
func TestLongLinesBrokenOnTheWire(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("0123456789", 250)
	for _, tc := range []struct {
		name, header string
		broken       bool
	}{
		{"unsigned", "Subject: long\r\n", true},
		{"DKIM-signed", "DKIM-Signature: v=1; a=rsa-sha256; d=local.test; s=s;\r\n\tbh=x; b=y\r\nSubject: long\r\n", false},
		{"ARC-sealed", "ARC-Seal: i=1; cv=none\r\narc-message-signature : i=1\r\nSubject: long\r\n", false},
		{"a signature in the body is none", "Subject: long\r\n\r\nDKIM-Signature: x\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 odd.test ESMTP", plainAnswer("", nil))
			h, b := startOdd(t, srv, nil)
			body := "\r\n"
			if strings.Contains(tc.header, "\r\n\r\n") {
				body = ""
			}
			msg := tc.header + body + long + "\r\n.after\r\n"
			if _, err := h.q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			h.waitJob()
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("messages received %d, DSNs %d; want the message", len(msgs), b.count())
			}
			whole := false // a line over the limit went
			for _, l := range strings.SplitAfter(msgs[0], "\r\n") {
				whole = whole || len(strings.TrimSuffix(l, "\r\n")) > smtpLineLimit
			}
			if broken := !whole; broken != tc.broken {
				t.Errorf("lines broken %v, want %v", broken, tc.broken)
			}
			if want := strings.Replace(msg, "\r\n.after", "\r\n..after", 1); strings.ReplaceAll(msgs[0], "\r\n ", "") != want {
				t.Errorf("sent %q", msgs[0])
			}
			if logged := strings.Contains(h.logs.String(), "breaking line > 998 bytes with <CR><LF>SPACE"); logged != tc.broken {
				t.Errorf("logged %v:\n%s", logged, h.logs.String())
			}
		})
	}
}
