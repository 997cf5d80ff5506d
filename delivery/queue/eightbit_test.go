package queue

import (
	"strings"
	"testing"

	"courriel/internal/sevenbit"
)

// A server without 8BITMIME gets 8-bit content as quoted-printable, and
// no BODY=8BITMIME.
func TestDowngradeForServerWithout8BITMIME(t *testing.T) {
	t.Parallel()
	srv := newOddServer(t, "220 old.test", plainAnswer("PIPELINING", nil))
	h, _ := startOdd(t, srv, nil)
	msg := "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
	if _, err := h.q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	h.waitJob()
	var mailLine string
	for _, c := range srv.commands() {
		if verb(c) == "MAIL" {
			mailLine = c
		}
	}
	msgs := srv.messages()
	if mailLine == "" || len(msgs) != 1 {
		t.Fatalf("commands %q: %d messages received, want one", srv.commands(), len(msgs))
	}
	if strings.Contains(mailLine, "8BITMIME") {
		t.Errorf("MAIL to a server without 8BITMIME: %q", mailLine)
	}
	if data := msgs[0]; sevenbit.Has8bit([]byte(data)) || !strings.Contains(data, "Content-Transfer-Encoding: quoted-printable\r\n") || !strings.Contains(data, "caf=C3=A9") {
		t.Errorf("data sent:\n%s", data)
	}
}

// A server without 8BITMIME but with SIZE is not told the size of an
// 8-bit message that goes converted to quoted-printable, which is larger
// than the size queued: Postfix's smtp(8) declares no SIZE when it
// downgrades (smtp_proto.c, SMTP_MIME_DOWNGRADE). A 7-bit message, sent
// as queued, still has its size declared.
func TestNoSizeDeclaredForConvertedBody(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, ehlo, msg string
		sized           bool
	}{
		{"8-bit", "SIZE 10240000", "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n", false},
		{"8-bit, pipelined", "PIPELINING\nSIZE 10240000", "Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n", false},
		{"7-bit", "SIZE 10240000", "Subject: a\r\n\r\ncafe\r\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newOddServer(t, "220 old.test ESMTP", plainAnswer(tc.ehlo, nil))
			h, _ := startOdd(t, srv, nil)
			if _, err := h.q.Enqueue(t.Context(), "alice@local.test", []string{"bob@remote.test"}, []byte(tc.msg)); err != nil {
				t.Fatal(err)
			}
			h.waitJob()
			var mail string
			for _, c := range srv.commands() {
				if verb(c) == "MAIL" {
					mail = c
				}
			}
			if strings.Contains(mail, "SIZE=") != tc.sized || strings.Contains(mail, "BODY=") {
				t.Errorf("MAIL %q; want SIZE= %v, no BODY=", mail, tc.sized)
			}
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("commands %q: %d messages received, want 1", srv.commands(), len(msgs))
			}
			if !tc.sized && (sevenbit.Has8bit([]byte(msgs[0])) || !strings.Contains(msgs[0], "Content-Transfer-Encoding: quoted-printable\r\n") || !strings.Contains(msgs[0], "caf=C3=A9")) {
				t.Errorf("data sent, want it converted:\n%s", msgs[0])
			}
		})
	}
}
