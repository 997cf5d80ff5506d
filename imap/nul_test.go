package imap

import (
	"fmt"
	"strings"
	"testing"
)

// TestFetchSendsNoNUL: a message holding NUL bytes (UTF-16 text sent as
// 8bit, broken mailers) is fetched in literals without them, each NUL
// sent as 0x80 as Dovecot 2.3 sends it, the sizes unchanged: a literal
// holds CHAR8, any byte but NUL (RFC 3501, RFC 9051 §4.3), and a client
// reading C strings cut the message at the first. From memory and
// streamed from the file (a message past the size read whole), and in
// ENVELOPE; BINARY still gives the NUL in a literal8.
func TestFetchSendsNoNUL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	small := "Subject: nul\x00here\r\nFrom: a@b\r\n\r\nbo\x00dy\r\n"
	large := "Subject: large\r\n\r\n" + strings.Repeat("x\x00y\r\n", 100_000)
	e.deliver("1700000001.M1P1.host", small)
	e.deliver("1700000002.M1P1.host", large)
	r := loggedIn(t, e)
	r.cmd("s", "EXAMINE INBOX")
	// fetch returns everything the server sent up to the tagged reply.
	fetch := func(cmd string) string {
		r.send("f " + cmd + "\r\n")
		var b strings.Builder
		for {
			l, err := r.br.ReadString('\n')
			b.WriteString(l)
			if err != nil {
				t.Fatalf("%s: %v after %d bytes", cmd, err, b.Len())
			}
			if strings.HasPrefix(l, "f ") {
				return b.String()
			}
		}
	}
	for _, c := range []struct {
		cmd  string
		want string // the data as sent, NULs as 0x80
	}{
		{"FETCH 1 (BODY.PEEK[])", "BODY[] {" + fmt.Sprint(len(small)) + "}\r\n" + strings.ReplaceAll(small, "\x00", "\x80") + ")"},
		{"FETCH 1 (BODY.PEEK[TEXT])", "BODY[TEXT] {7}\r\nbo\x80dy\r\n)"},
		{"FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "{21}\r\nSubject: nul\x80here\r\n\r\n)"},
		{"FETCH 1 (RFC822.HEADER)", "RFC822.HEADER {32}\r\nSubject: nul\x80here\r\nFrom: a@b\r\n\r\n)"},
		{"FETCH 1 (ENVELOPE)", "ENVELOPE (NIL {8}\r\nnul\x80here (("},
		{"FETCH 2 (BODY.PEEK[])", "BODY[] {" + fmt.Sprint(len(large)) + "}\r\n" + strings.ReplaceAll(large, "\x00", "\x80") + ")"},
		{"FETCH 2 (BODY.PEEK[TEXT]<0.10>)", "BODY[TEXT]<0> {10}\r\nx\x80y\r\nx\x80y\r\n)"},
	} {
		got := fetch(c.cmd)
		if !strings.Contains(got, c.want) || strings.Contains(got, "\x00") || !strings.HasSuffix(got, "f OK Fetch completed\r\n") {
			t.Errorf("%s: %q", c.cmd, got[:min(len(got), 200)])
		}
	}
	if got := fetch("FETCH 1 (BINARY.PEEK[1])"); !strings.Contains(got, "BINARY[1] ~{7}\r\nbo\x00dy\r\n)") {
		t.Errorf("BINARY: %q", got)
	}
}
