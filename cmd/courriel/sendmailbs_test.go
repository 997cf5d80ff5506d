package main

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSendmailStandalone: sendmail -bs speaks SMTP on stdin and stdout as
// PHP's mailers drive it (everything written at once: pipelined), hands
// each message to the server as sendmail does, and answers each DATA with
// what became of it; errors are answered and the session goes on.
func TestSendmailStandalone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		replies map[string]string
		stdin   string
		// wantReplies: the reply codes in order (the last line of each).
		wantReplies string
		wantCode    int
		wantCmds    []string // the server's commands, in order, a prefix of each
		wantData    []string // each message the server got
	}{
		{"Symfony's session", nil,
			"EHLO [127.0.0.1]\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<a@remote.example>\r\nRCPT TO:<root>\r\nDATA\r\n" +
				"Subject: x\r\n\r\n..leading dot\r\nbody\r\n.\r\nQUIT\r\n",
			"220 250 250 250 250 354 250 221", 0,
			[]string{"EHLO localhost", "MAIL FROM:<app@example.org> SIZE=", "RCPT TO:<a@remote.example>", "RCPT TO:<root@host.example>", "DATA", "QUIT"},
			[]string{"Subject: x\r\n\r\n..leading dot\r\nbody\r\n"}},
		{"LF line endings, null sender, two messages", nil,
			"HELO app\nMAIL FROM:<>\nRCPT TO:<b@remote.example>\nDATA\nSubject: one\n\n.\n" +
				"MAIL FROM:<www-data> BODY=8BITMIME\nRCPT TO:<c@remote.example>\nDATA\nSubject: two\n\nb\n.\nQUIT\n",
			"220 250 250 250 354 250 250 250 354 250 221", 0,
			[]string{"EHLO", "MAIL FROM:<> SIZE=", "RCPT TO:<b@remote.example>", "DATA", "QUIT",
				"EHLO", "MAIL FROM:<www-data@host.example> SIZE=", "RCPT TO:<c@remote.example>", "DATA", "QUIT"},
			[]string{"Subject: one\r\n\r\n", "Subject: two\r\n\r\nb\r\n"}},
		{"refused for good, the session goes on", map[string]string{"END": "554 5.6.0 no"},
			"EHLO a\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\nx\r\n.\r\n" +
				"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\ny\r\n.\r\nQUIT\r\n",
			"220 250 250 250 354 554 250 250 354 554 221", 0, nil, []string{"x\r\n", "y\r\n"}},
		{"out of order and unsupported", nil,
			"RCPT TO:<a@b.example>\r\nDATA\r\nMAIL FROM:<a@example.org> RET=FULL\r\nMAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\n" +
				"DATA\r\nRCPT TO:<b@remote.example> NOTIFY=NEVER\r\nRCPT TO:<a b@remote.example>\r\nSTARTTLS\r\nAUTH PLAIN\r\nVRFY root\r\nRSET\r\nNOOP\r\nQUIT\r\n",
			"220 503 503 555 250 503 503 555 501 502 502 502 250 250 221", 0, nil, nil},
		{"the client goes away within DATA: nothing sent", nil,
			"EHLO a\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\nSubject: cut\r\n\r\nhalf",
			"220 250 250 250 354", 0, nil, nil},
		{"too many errors", nil, strings.Repeat("BOGUS\r\n", 25), "220" + strings.Repeat(" 502", 20) + " 421", exDataErr, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, cfg := startFakeLocal(t, tc.replies)
			code, stdout, stderr := runCmd(t, tc.stdin, "sendmail", "-bs", "-i", "-config", cfg)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr %s", code, tc.wantCode, stderr)
			}
			if !strings.HasPrefix(stdout, "220 xoyize.xyz ESMTP") { // myhostname, as Postfix's smtpd -S
				t.Errorf("greeting %q, want myhostname's", strings.SplitN(stdout, "\r\n", 2)[0])
			}
			if got := replyCodes(t, stdout); got != tc.wantReplies {
				t.Errorf("replies %s, want %s:\n%s", got, tc.wantReplies, stdout)
			}
			cmds, _ := f.seen()
			if tc.wantCmds != nil && len(cmds) != len(tc.wantCmds) {
				t.Fatalf("commands %q, want %q", cmds, tc.wantCmds)
			}
			for i, w := range tc.wantCmds {
				if !strings.HasPrefix(cmds[i], w) {
					t.Errorf("command %d: %q, want %q...", i, cmds[i], w)
				}
			}
			f.mu.Lock()
			datas := f.datas
			f.mu.Unlock()
			if len(datas) != len(tc.wantData) {
				t.Fatalf("%d messages %q, want %d", len(datas), datas, len(tc.wantData))
			}
			for i, w := range tc.wantData {
				if !strings.HasSuffix(datas[i], w) {
					t.Errorf("message %d %q, want it to end in %q", i, datas[i], w)
				}
			}
		})
	}
}

// replyCodes lists the codes of the replies in out, one per reply (the
// last line of a multi-line reply).
func replyCodes(t *testing.T, out string) string {
	t.Helper()
	var codes []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
		if !regexp.MustCompile(`^[2-5][0-9][0-9][ -]`).MatchString(l) {
			t.Errorf("not a reply line: %q", l)
			continue
		}
		if l[3] == ' ' {
			codes = append(codes, l[:3])
		}
	}
	return strings.Join(codes, " ")
}

// TestSendmailStandaloneMaildrop: with the server unreachable, a message
// of sendmail -bs is answered 250 only once it is in the maildrop, its
// envelope as MAIL and RCPT gave it; without a maildrop either, 451.
func TestSendmailStandaloneMaildrop(t *testing.T) {
	t.Parallel()
	_, cfg := startFakeLocal(t, nil)
	os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
	session := "EHLO a\r\nMAIL FROM:<app@example.org>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\nSubject: s\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
	if code, out, _ := runCmd(t, session, "sendmail", "-bs", "-config", cfg); code != 0 || replyCodes(t, out) != "220 250 250 250 354 451 221" {
		t.Fatalf("without a maildrop: exit %d\n%s", code, out)
	}
	d := testMaildrop(t, cfg)
	if code, out, _ := runCmd(t, session, "sendmail", "-bs", "-config", cfg); code != 0 || replyCodes(t, out) != "220 250 250 250 354 250 221" {
		t.Fatalf("with a maildrop: exit %d\n%s", code, out)
	}
	_, m := onlyDropped(t, d)
	if e := m.Envelope; e.From != "app@example.org" || !e.FromSet || len(e.Recipients) != 1 || e.Recipients[0] != "b@remote.example" || e.Extract {
		t.Errorf("envelope %+v", e)
	}
	if string(m.Message) != "Subject: s\r\n\r\n.dot\r\n" {
		t.Errorf("message %q", m.Message)
	}
}

// TestSendmailStandaloneArgs: -bs takes no recipient, as Postfix's.
func TestSendmailStandaloneArgs(t *testing.T) {
	t.Parallel()
	_, cfg := startFakeLocal(t, nil)
	if code, _, stderr := runCmd(t, "", "sendmail", "-bs", "-config", cfg, "root"); code != exUsage || !strings.Contains(stderr, "requires no recipient") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestReadSMTPData: the text of one DATA, unstuffed, ending at the lone
// dot whatever the line endings, the rest left for the next command; a
// message past the limit is read to its dot and refused; the input
// ending first is no message.
func TestReadSMTPData(t *testing.T) {
	for _, tc := range []struct {
		name, in, want, rest string
		max                  int64
		wantErr              error
	}{
		{"CRLF", "a\r\n..b\r\n.\r\nQUIT\r\n", "a\r\n.b\r\n", "QUIT\r\n", 100, nil},
		{"LF", "From x\n\nb\n.\nQUIT\n", "From x\r\n\r\nb\r\n", "QUIT\n", 100, nil},
		{"empty", ".\r\nNOOP\r\n", "", "NOOP\r\n", 100, nil},
		{"too big", strings.Repeat("x", 200) + "\r\n" + strings.Repeat("y\r\n", 50) + ".\r\nNOOP\r\n", "", "NOOP\r\n", 100, errMessageTooLarge},
		{"too big, one long line", strings.Repeat("x", 200<<10) + "\r\n.\r\nNOOP\r\n", "", "NOOP\r\n", 100, errMessageTooLarge},
		{"cut", "a\r\nb", "", "", 100, io.ErrUnexpectedEOF},
		{"cut while too big", strings.Repeat("x\r\n", 100), "", "", 10, io.ErrUnexpectedEOF},
	} {
		br := bufio.NewReaderSize(strings.NewReader(tc.in), inputBuffer)
		got, err := readSMTPData(br, tc.max)
		if !errors.Is(err, tc.wantErr) || string(got) != tc.want {
			t.Errorf("%s: %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.wantErr)
		}
		if rest, _ := io.ReadAll(br); string(rest) != tc.rest {
			t.Errorf("%s: left %q, want %q", tc.name, rest, tc.rest)
		}
	}
}
