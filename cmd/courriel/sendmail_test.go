package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"courriel/delivery/maildrop"
)

func TestSendmailArgs(t *testing.T) {
	t.Parallel()
	def := func(f func(a *sendmailArgs)) *sendmailArgs {
		a := &sendmailArgs{config: defaultConfigPath, dots: true, mode: "m"}
		f(a)
		return a
	}
	for _, tc := range []struct {
		name string
		args []string
		want *sendmailArgs
	}{
		{"recipients", []string{"root", "a@b.example"}, def(func(a *sendmailArgs) { a.rcpts = []string{"root", "a@b.example"} })},
		{"-t -i", []string{"-t", "-i"}, def(func(a *sendmailArgs) { a.extract, a.dots = true, false })},
		{"-ti clustered", []string{"-ti"}, def(func(a *sendmailArgs) { a.extract, a.dots = true, false })},
		{"-oi", []string{"-oi", "root"}, def(func(a *sendmailArgs) { a.dots, a.rcpts = false, []string{"root"} })},
		{"-oem ignored", []string{"-oem", "-odb", "root"}, def(func(a *sendmailArgs) { a.rcpts = []string{"root"} })},
		{"-f separate", []string{"-f", "cron@x.example", "root"}, def(func(a *sendmailArgs) { a.from, a.fromSet, a.rcpts = "cron@x.example", true, []string{"root"} })},
		{"-f attached", []string{"-fcron@x.example", "root"}, def(func(a *sendmailArgs) { a.from, a.fromSet, a.rcpts = "cron@x.example", true, []string{"root"} })},
		{"-r", []string{"-r", "cron", "root"}, def(func(a *sendmailArgs) { a.from, a.fromSet, a.rcpts = "cron", true, []string{"root"} })},
		{"-f <>", []string{"-f", "<>", "root"}, def(func(a *sendmailArgs) { a.from, a.fromSet, a.rcpts = "<>", true, []string{"root"} })},
		{"-F", []string{"-F", "Cron Daemon", "-i", "root"}, def(func(a *sendmailArgs) { a.fullName, a.dots, a.rcpts = "Cron Daemon", false, []string{"root"} })},
		{"-FName attached", []string{"-FDaemon", "root"}, def(func(a *sendmailArgs) { a.fullName, a.rcpts = "Daemon", []string{"root"} })},
		{"ignored -v -bm -B", []string{"-v", "-bm", "-B", "8BITMIME", "root"}, def(func(a *sendmailArgs) { a.rcpts = []string{"root"} })},
		{"DSN", []string{"-N", "failure,delay", "-R", "hdrs", "-V", "env1", "root"}, def(func(a *sendmailArgs) {
			a.notify, a.ret, a.envid, a.rcpts = "FAILURE,DELAY", "HDRS", "env1", []string{"root"}
		})},
		{"-config", []string{"-config", "/x.toml", "root"}, def(func(a *sendmailArgs) { a.config, a.rcpts = "/x.toml", []string{"root"} })},
		{"interspersed", []string{"root", "-oi"}, def(func(a *sendmailArgs) { a.dots, a.rcpts = false, []string{"root"} })},
		{"after --", []string{"-i", "--", "-odd@x.example"}, def(func(a *sendmailArgs) { a.dots, a.rcpts = false, []string{"-odd@x.example"} })},
		{"newaliases", []string{"-bi"}, def(func(a *sendmailArgs) { a.mode = "i" })},
		{"-q", []string{"-q"}, def(func(a *sendmailArgs) { a.mode = "q" })},
	} {
		got, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	for _, bad := range [][]string{{"-f"}, {"-N", "sometimes"}, {"-R", "all"}, {"-k"}} {
		if _, err := parseSendmailArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestReadSendmailInput(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   string
		dots bool
		want string
	}{
		{"LF to CRLF", "Subject: x\n\nbody\n", true, "Subject: x\r\n\r\nbody\r\n"},
		{"CRLF kept", "Subject: x\r\n\r\nbody\r\n", true, "Subject: x\r\n\r\nbody\r\n"},
		{"last line", "Subject: x\n\nno newline", true, "Subject: x\r\n\r\nno newline\r\n"},
		{"dot ends", "Subject: x\n\nbody\n.\nafter\n", true, "Subject: x\r\n\r\nbody\r\n"},
		{"-i: dot kept", "Subject: x\n\nbody\n.\nafter\n", false, "Subject: x\r\n\r\nbody\r\n.\r\nafter\r\n"},
		{"mbox From_ dropped", "From root Mon Dec  7 10:00:00 2026\nSubject: x\n\nb\n", true, "Subject: x\r\n\r\nb\r\n"},
		// A progress bar's lone CRs (curl, wget, rsync in a cron job),
		// which the server would refuse: line breaks in the body, spaces
		// in the header; NULs dropped.
		{"bare CR in the body", "Subject: cron\n\n  10%\r 100%\r\ndone\r\r\n", true, "Subject: cron\r\n\r\n  10%\r\n 100%\r\ndone\r\n\r\n"},
		{"bare CR in the header", "Subject: a\rb\n\nx\n", true, "Subject: a b\r\n\r\nx\r\n"},
		{"NUL dropped", "Subject: a\x00b\n\nx\x00\x00y\n", true, "Subject: ab\r\n\r\nxy\r\n"},
	} {
		got, err := readSendmailInput(strings.NewReader(tc.in), tc.dots, 1<<20)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := readSendmailInput(strings.NewReader(strings.Repeat("x\n", 100)), true, 50); err == nil {
		t.Error("input past the limit accepted")
	}
}

// TestReadSendmailInputLongLines: the checks of whole lines ("." ending
// the input, a CRLF) hold for lines longer than the read buffer (64 KiB).
func TestReadSendmailInputLongLines(t *testing.T) {
	t.Parallel()
	hdr := "Subject: x\n\n"
	// The buffer fills right before a "." in the middle of a line.
	long := strings.Repeat("b", 64<<10)
	out, err := readSendmailInput(strings.NewReader(hdr+long+".\nsecond line\n"), true, 100<<20)
	if want := "Subject: x\r\n\r\n" + long + ".\r\nsecond line\r\n"; err != nil || string(out) != want {
		t.Errorf("a \".\" inside a long line: %d bytes, %v; want %d bytes", len(out), err, len(want))
	}
	// The buffer fills with the CR of the line's CRLF.
	long = strings.Repeat("b", 64<<10-1)
	out, err = readSendmailInput(strings.NewReader(hdr+long+"\r\nnext\n"), true, 100<<20)
	if want := "Subject: x\r\n\r\n" + long + "\r\nnext\r\n"; err != nil || string(out) != want {
		t.Errorf("a CRLF across two buffer fills: %v, ends %q", err, out[max(0, len(out)-12):])
	}
	// A "From " further in a long first line is no mbox separator.
	out, err = readSendmailInput(strings.NewReader("X-Long: "+strings.Repeat("c", 64<<10)+"From x\n\nb\n"), true, 100<<20)
	if err != nil || !bytes.Contains(out, []byte("From x\r\n")) {
		t.Errorf("text of a long first line dropped: %v", err)
	}
	if _, err := readSendmailInput(strings.NewReader(strings.Repeat("x", 1000)), true, 50); err == nil {
		t.Error("a long line past the limit accepted")
	}
}

// TestSendmailHeaderAddressComments: comments are no addresses, nor do they
// hide the address beside them (cron's "root (Cron Daemon)").
func TestSendmailHeaderAddressComments(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"root (Cron Daemon)", []string{"root"}},
		{"alice@example.com (Alice), root", []string{"alice@example.com", "root"}},
		{"Root <root>, bob@example.com (Bob (the (builder)))", []string{"root", "bob@example.com"}},
		{`root (a \) b, c), "x (y)" <x@example.com>, z`, []string{"root", "x@example.com", "z"}},
		{"alice@example.com, bob", []string{"alice@example.com", "bob"}},
	} {
		if got := headerAddresses(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSendmailPrepare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		args      []string
		fullName  string
		msg       string
		wantData  string
		wantRcpts []string
	}{
		{"unqualified recipient", []string{"root"}, "", "Subject: x\r\n\r\nb\r\n",
			"Subject: x\r\n\r\nb\r\n", []string{"root@host.example"}},
		{"-t with Bcc removed", []string{"-t"}, "", "To: a@x.example, root\r\nCc: \"B, b\" <b@y.example>\r\nBcc: hidden@z.example,\r\n  other\r\nSubject: x\r\n\r\nb\r\n",
			"To: a@x.example, root@host.example\r\nCc: \"B, b\" <b@y.example>\r\nSubject: x\r\n\r\nb\r\n",
			[]string{"a@x.example", "root@host.example", "b@y.example", "hidden@z.example", "other@host.example"}},
		{"-t adds to the command line", []string{"-t", "admin"}, "", "To: a@x.example, Admin <admin>\r\n\r\nb\r\n",
			"To: a@x.example, Admin <admin@host.example>\r\n\r\nb\r\n", []string{"admin@host.example", "a@x.example"}},
		{"-t Resent- fields win", []string{"-t"}, "", "To: old@x.example\r\nResent-To: new@x.example\r\nResent-Bcc: rb@x.example\r\n\r\nb\r\n",
			"To: old@x.example\r\nResent-To: new@x.example\r\n\r\nb\r\n", []string{"new@x.example", "rb@x.example"}},
		{"Bcc kept without -t", []string{"root"}, "", "Bcc: x@y.example\r\n\r\nb\r\n", "Bcc: x@y.example\r\n\r\nb\r\n", []string{"root@host.example"}},
		{"-F adds From", []string{"-F", "Cron Daemon", "root"}, "", "Subject: x\r\n\r\nb\r\n",
			"From: \"Cron Daemon\" <sender@host.example>\r\nSubject: x\r\n\r\nb\r\n", []string{"root@host.example"}},
		{"full name and a From", []string{"root"}, "Root", "From: me@x.example\r\n\r\nb\r\n",
			"From: me@x.example\r\n\r\nb\r\n", []string{"root@host.example"}},
		{"no header", []string{"root"}, "Root", "hello\r\nworld\r\n",
			"From: \"Root\" <sender@host.example>\r\n\r\nhello\r\nworld\r\n", []string{"root@host.example"}},
		// RFC 5322 §4.5: spaces before the colon (PHP scripts write
		// them); the header goes on, its Bcc is read and removed.
		{"-t space before the colon", []string{"-t"}, "", "To: a@x.example\r\nX-Mailer : PHP\r\nBcc\t: boss@x.example\r\nSubject: x\r\n\r\nb\r\n",
			"To: a@x.example\r\nX-Mailer : PHP\r\nSubject: x\r\n\r\nb\r\n", []string{"a@x.example", "boss@x.example"}},
		{"group", []string{"-t"}, "", "To: undisclosed-recipients:;\r\nCc: root\r\n\r\nb\r\n",
			"To: undisclosed-recipients:;\r\nCc: root@host.example\r\n\r\nb\r\n", []string{"root@host.example"}},
		// The header's addresses qualified as Postfix's cleanup does,
		// display names, comments, groups and folding kept.
		{"cron's header qualified", []string{"-FCronDaemon", "-i", "root"}, "", "From: root (Cron Daemon)\r\nTo: root\r\nSubject: Cron <root@h> job\r\n\r\nout\r\n",
			"From: root@host.example (Cron Daemon)\r\nTo: root@host.example\r\nSubject: Cron <root@h> job\r\n\r\nout\r\n", []string{"root@host.example"}},
		{"address fields qualified", []string{"root"}, "", "To: \"Doe, J\" <jd>,\r\n (c) bob (Bob (B)),\r\n friends: a, b@x.example, <c@y.example>;\r\nReply-To : sales\r\nResent-Cc: Ann <ann@z.example>, =?UTF-8?Q?J=C3=B6rg?= <joerg>\r\nX-To: root\r\n\r\nb\r\n",
			"To: \"Doe, J\" <jd@host.example>,\r\n (c) bob@host.example (Bob (B)),\r\n friends: a@host.example, b@x.example, <c@y.example>;\r\nReply-To : sales@host.example\r\nResent-Cc: Ann <ann@z.example>, =?UTF-8?Q?J=C3=B6rg?= <joerg@host.example>\r\nX-To: root\r\n\r\nb\r\n", []string{"root@host.example"}},
		{"qualified addresses untouched", []string{"root"}, "", "From: \"a (b)\" <a@x.example>\r\nCc: \"q r\"@x.example, <>, g:;\r\n\r\nb\r\n",
			"From: \"a (b)\" <a@x.example>\r\nCc: \"q r\"@x.example, <>, g:;\r\n\r\nb\r\n", []string{"root@host.example"}},
	} {
		a, err := parseSendmailArgs(tc.args)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		fullName := tc.fullName
		if a.fullName != "" {
			fullName = a.fullName
		}
		p, err := prepareMessage([]byte(tc.msg), a, "sender@host.example", fullName, "host.example")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if string(p.data) != tc.wantData {
			t.Errorf("%s: data\n%q, want\n%q", tc.name, p.data, tc.wantData)
		}
		if !reflect.DeepEqual(p.rcpts, tc.wantRcpts) {
			t.Errorf("%s: recipients %q, want %q", tc.name, p.rcpts, tc.wantRcpts)
		}
	}
}

// fakeLocalServer answers sendmail's commands on a Unix socket: replies
// maps a command's verb (MAIL, RCPT, DATA, END for the end of the
// message) to its reply, "250 ok" otherwise; it records the commands
// and the message.
type fakeLocalServer struct {
	mu       sync.Mutex
	commands []string
	data     string
	// datas: every message received, in order.
	datas []string
}

func startFakeLocal(t *testing.T, replies map[string]string) (*fakeLocalServer, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &fakeLocalServer{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c, replies)
		}
	}()
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`myhostname = "xoyize.xyz"
[listen]
smtp = ""
submission = ""
submissions = ""
imaps = ""
managesieve = ""
local = %q
[ldap]
search_base = "ou=mail,dc=xoyize,dc=xyz"
bind_dn = "cn=r"
bind_password = "x"
[queue]
dir = %q
`, sock, filepath.Join(dir, "queue"))), 0o600); err != nil {
		t.Fatal(err)
	}
	return f, cfg
}

func (f *fakeLocalServer) serve(c net.Conn, replies map[string]string) {
	defer c.Close()
	r := bufio.NewReader(c)
	answer := func(verb, def string) {
		if v, ok := replies[verb]; ok {
			def = v
		}
		fmt.Fprintf(c, "%s\r\n", def)
	}
	answer("GREET", "220 host.example ESMTP")
	// RCPTMAX N: past N recipients in a transaction, 452 4.5.3, as
	// courriel's session; END#N: the reply to the end of the Nth message
	// of the connection.
	rcptMax, _ := strconv.Atoi(replies["RCPTMAX"])
	rcpts, msgs := 0, 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.commands = append(f.commands, line)
		f.mu.Unlock()
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		verb, _, _ = strings.Cut(verb, ":")
		switch verb {
		case "MAIL":
			rcpts = 0
			answer(verb, "250 2.0.0 Ok")
		case "RCPT":
			if rcptMax > 0 && rcpts >= rcptMax {
				fmt.Fprintf(c, "452 4.5.3 Too many recipients\r\n")
				continue
			}
			rcpts++
			answer(verb, "250 2.0.0 Ok")
		case "EHLO":
			fmt.Fprintf(c, "250-host.example\r\n250-SIZE 1000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN\r\n")
		case "DATA":
			answer("DATA", "354 go on")
			if _, ok := replies["DATA"]; ok {
				continue
			}
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			f.mu.Lock()
			f.data = b.String()
			f.datas = append(f.datas, b.String())
			f.mu.Unlock()
			msgs++
			if v, ok := replies["END#"+strconv.Itoa(msgs)]; ok {
				fmt.Fprintf(c, "%s\r\n", v)
				continue
			}
			if v, ok := replies["END"]; ok && v == "" {
				return // no answer
			}
			answer("END", "250 2.0.0 Ok: queued")
		case "QUIT":
			fmt.Fprintf(c, "221 bye\r\n")
			return
		default:
			answer(verb, "250 2.0.0 Ok")
		}
	}
}

func (f *fakeLocalServer) seen() ([]string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.commands...), f.data
}

// TestSendmailExchange: what sendmail says to the server and how it
// exits for each answer (Postfix's sendmail exit statuses).
func TestSendmailExchange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		replies  map[string]string
		args     []string
		stdin    string
		wantCode int
		wantCmds []string // in order, a prefix of each
		wantData string   // the end of the message; "" not checked
	}{
		{"sent", nil, []string{"-f", "cron", "root", "a@remote.example"}, "Subject: x\n\n.leading dot\nbody\n", 0,
			[]string{"EHLO localhost", "MAIL FROM:<cron@host.example> SIZE=", "RCPT TO:<root@host.example>", "RCPT TO:<a@remote.example>", "DATA", "QUIT"},
			"Subject: x\r\n\r\n..leading dot\r\nbody\r\n"},
		{"null sender, DSN", nil, []string{"-f", "<>", "-N", "never", "-V", "a=b", "root"}, "x\n", 0,
			[]string{"EHLO", "MAIL FROM:<> SIZE=", "RCPT TO:<root@host.example> NOTIFY=NEVER", "DATA"}, ""},
		{"unknown recipient", map[string]string{"RCPT": "550 5.1.1 <x>: unknown user"}, []string{"root"}, "x\n", exNoUser,
			[]string{"EHLO", "MAIL", "RCPT", "RSET", "QUIT"}, ""},
		{"temporary", map[string]string{"RCPT": "451 4.3.0 try later"}, []string{"root"}, "x\n", exTempFail,
			[]string{"EHLO", "MAIL", "RCPT", "RSET"}, ""},
		{"refused at the end", map[string]string{"END": "554 5.6.0 no"}, []string{"root"}, "x\n", exUnavailable,
			[]string{"EHLO", "MAIL", "RCPT", "DATA"}, ""},
		{"too large", map[string]string{"MAIL": "552 5.3.4 too big"}, []string{"root"}, "x\n", exUnavailable,
			[]string{"EHLO", "MAIL", "QUIT"}, ""},
		{"-t without recipients", nil, []string{"-t"}, "Subject: x\n\nb\n", exUsage, nil, ""}, // refused before connecting
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, cfg := startFakeLocal(t, tc.replies)
			code, _, stderr := runCmd(t, tc.stdin, append([]string{"sendmail", "-config", cfg}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %s", code, tc.wantCode, stderr)
			}
			if code != 0 && !strings.Contains(stderr, "mail NOT sent") {
				t.Errorf("stderr does not say the mail was not sent: %s", stderr)
			}
			cmds, data := f.seen()
			if len(cmds) < len(tc.wantCmds) {
				t.Fatalf("commands %q, want %q", cmds, tc.wantCmds)
			}
			for i, w := range tc.wantCmds {
				if !strings.HasPrefix(cmds[i], w) {
					t.Errorf("command %d: %q, want %q...", i, cmds[i], w)
				}
			}
			// (A From: with the invoking user's full name may come first.)
			if tc.wantData != "" && !strings.HasSuffix(data, tc.wantData) {
				t.Errorf("data %q, want %q", data, tc.wantData)
			}
		})
	}
}

// TestSendmailNoServer: no server on the socket is exit 75 (EX_TEMPFAIL),
// and says the mail was not sent.
func TestSendmailNoServer(t *testing.T) {
	t.Parallel()
	_, cfg := startFakeLocal(t, nil)
	os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
	code, _, stderr := runCmd(t, "Subject: x\n\nb\n", "sendmail", "-config", cfg, "root")
	if code != exTempFail || !strings.Contains(stderr, "mail NOT sent") || !strings.Contains(stderr, "is courriel serve running?") {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestArgsOfSendmailName(t *testing.T) {
	t.Parallel()
	if got := argsOf([]string{"/usr/sbin/sendmail", "-t", "-i"}); !reflect.DeepEqual(got, []string{"sendmail", "-t", "-i"}) {
		t.Errorf("as sendmail: %q", got)
	}
	if got := argsOf([]string{"/usr/local/bin/courriel", "queue", "list"}); !reflect.DeepEqual(got, []string{"queue", "list"}) {
		t.Errorf("as courriel: %q", got)
	}
}

// FuzzSendmailPrepare: any input and -t make a message and recipients
// without a panic; the message ends in CRLF, and the field of hidden
// recipients (Bcc, or Resent-Bcc when the Resent- fields are the source)
// is left for nobody to read.
func FuzzSendmailPrepare(f *testing.F) {
	for _, s := range []string{
		"To: a@x.example, root\nBcc: b\nSubject: x\n\nbody\n",
		"Resent-To: r@x.example\nTo: (c,omment) \"q,q\" <q@x.example>\n\n",
		"hello\n.\nworld",
		"To: undisclosed-recipients:;\r\nBcc:\r\n x\r\n\r\n",
		"From root Mon Dec  7 10:00:00 2026\nTo: <a@b>,,<\n",
	} {
		f.Add(s)
	}
	a := &sendmailArgs{extract: true, dots: true}
	f.Fuzz(func(t *testing.T, in string) {
		msg, err := readSendmailInput(strings.NewReader(in), true, 1<<20)
		if err != nil {
			return
		}
		p, err := prepareMessage(msg, a, "s@host.example", "Full Name", "host.example")
		if err != nil {
			return
		}
		if len(p.data) > 0 && !strings.HasSuffix(string(p.data), "\r\n") {
			t.Fatalf("message does not end in CRLF: %q", p.data)
		}
		in0, _, _ := splitHeader(msg)
		resent := false
		for _, fl := range in0 {
			switch strings.ToLower(fl.name) {
			case "resent-to", "resent-cc", "resent-bcc":
				resent = true
			}
		}
		hidden := "bcc" // the field whose recipients are hidden
		if resent {
			hidden = "resent-bcc"
		}
		out, _, _ := splitHeader(p.data)
		for _, fl := range out {
			if strings.EqualFold(fl.name, hidden) {
				t.Fatalf("%s left in:\n%q", fl.name, p.data)
			}
		}
	})
}

// TestSendmailInterrupted: a signal (ctx ending) stops sendmail at once,
// whatever it waits for (its input, the server), exit 75 saying the mail
// was not sent, or not known to be sent once the message's end went out;
// never that the server was unreachable. ctx ends once sendmail is where
// the case says (reading stdin, connected, the message's end sent); what
// sendmail says tells it saw the signal there, not a timeout of its own.
func TestSendmailInterrupted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		stage string // where the server stops answering; "" stdin never ends
		want  string
	}{
		{"reading stdin", "", "mail NOT sent"},
		{"awaiting the greeting", "greet", "mail NOT sent"},
		{"awaiting the answer to the message", "end", "mail NOT known to be sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, cfg := startFakeLocal(t, nil)
			sock := filepath.Join(filepath.Dir(cfg), "s.sock")
			os.Remove(sock)
			ln, err := net.Listen("unix", sock)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			reached := make(chan struct{}) // sendmail waits where tc.stage says
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				if tc.stage == "greet" {
					close(reached)
				} else {
					fmt.Fprint(c, "220 h.example ESMTP\r\n")
					r := bufio.NewReader(c)
					for data := false; ; {
						line, err := r.ReadString('\n')
						if err != nil {
							return
						}
						switch {
						case data && line == ".\r\n":
							data = false // and no answer
							close(reached)
						case data:
						case strings.HasPrefix(line, "DATA"):
							data = true
							fmt.Fprint(c, "354 go on\r\n")
						default:
							fmt.Fprint(c, "250 ok\r\n")
						}
					}
				}
				io.Copy(io.Discard, c)
			}()
			var stdin io.Reader = strings.NewReader("Subject: x\n\nb\n")
			if tc.stage == "" {
				pr, pw := io.Pipe()
				t.Cleanup(func() { pw.Close() })
				stdin = &firstRead{r: pr, reading: reached}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ret := make(chan error, 1)
			go func() { ret <- runSendmail(ctx, []string{"-config", cfg, "root"}, stdin, io.Discard, io.Discard) }()
			select {
			case <-reached:
			case err := <-ret:
				t.Fatalf("sendmail returned before it waited %s: %v", tc.name, err)
			case <-time.After(hangAfter):
				t.Fatalf("sendmail not %s after %v", tc.name, hangAfter)
			}
			cancel()
			select {
			case err = <-ret:
			case <-time.After(hangAfter):
				t.Fatalf("sendmail still %s %v after the signal: hung", tc.name, hangAfter)
			}
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exTempFail || !strings.Contains(err.Error(), "interrupted") ||
				!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "serve running") {
				t.Errorf("got %v", err)
			}
		})
	}
}

// hangAfter bounds the waits of TestSendmailInterrupted: only a hang takes
// this long.
const hangAfter = 30 * time.Second

// firstRead is r that closes reading as its reader first waits on it.
type firstRead struct {
	r       io.Reader
	reading chan struct{}
	once    sync.Once
}

func (f *firstRead) Read(p []byte) (int, error) {
	f.once.Do(func() { close(f.reading) })
	return f.r.Read(p)
}

// TestSendmailSocketDirWritable: a socket in a directory others may write
// (which serve refuses) may be anyone's: sendmail does not hand it the
// message, exit 78.
func TestSendmailSocketDirWritable(t *testing.T) {
	t.Parallel()
	f, cfg := startFakeLocal(t, nil)
	if err := os.Chmod(filepath.Dir(cfg), 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "Subject: x\n\nb\n", "sendmail", "-config", cfg, "root")
	if code != exConfig || !strings.Contains(stderr, "writable by others") || !strings.Contains(stderr, "mail NOT sent") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if cmds, _ := f.seen(); len(cmds) != 0 {
		t.Errorf("the socket was told %q", cmds)
	}
}

// TestSendmailDropsWhenUnreachable: when the server cannot take the
// message now (no socket, a 421 at the banner, a 4xx for a recipient, no
// answer to the end of the message), sendmail leaves it in the maildrop
// with its envelope, 0600, and exits 0; the file reads back as what the
// command line asked. Without a maildrop it is exit 75, as before.
func TestSendmailDropsWhenUnreachable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		replies map[string]string
		noSock  bool
	}{
		{"no socket", nil, true},
		{"421 at the banner", map[string]string{"GREET": "421 4.3.2 shutting down"}, false},
		{"4xx for a recipient", map[string]string{"RCPT": "451 4.3.0 directory down"}, false},
		{"no answer to the end", map[string]string{"END": ""}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, cfg := startFakeLocal(t, tc.replies)
			if tc.noSock {
				os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
			}
			args := []string{"sendmail", "-config", cfg, "-t", "-i", "-f", "cron@example.org", "-F", "Cron Daemon", "-N", "failure", "-R", "hdrs", "-V", "id 1", "root", "a@remote.example"}
			msg := "To: b@remote.example\n\n.\nbody\n"

			// Without a maildrop (no server ever ran): not sent, exit 75.
			if code, _, stderr := runCmd(t, msg, args...); code != exTempFail || !strings.Contains(stderr, "mail NOT") || !strings.Contains(stderr, "maildrop") {
				t.Fatalf("without a maildrop: exit %d, stderr %q", code, stderr)
			}
			d := testMaildrop(t, cfg)
			code, _, stderr := runCmd(t, msg, args...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			name, f := onlyDropped(t, d)
			fi, err := os.Stat(filepath.Join(d.Path(), strconv.Itoa(os.Geteuid()), name))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("file mode %v, %v", fi.Mode(), err)
			}
			want := &maildrop.Envelope{From: "cron@example.org", FromSet: true, FullName: "Cron Daemon", Extract: true,
				Recipients: []string{"root", "a@remote.example"}, Notify: "FAILURE", Ret: "HDRS", EnvID: "id 1"}
			if !reflect.DeepEqual(f.Envelope, want) {
				t.Errorf("envelope %+v, want %+v", f.Envelope, want)
			}
			if string(f.Message) != "To: b@remote.example\r\n\r\n.\r\nbody\r\n" {
				t.Errorf("message %q", f.Message)
			}
		})
	}
}

// testMaildrop makes the maildrop of startFakeLocal's configuration cfg,
// as the server makes it.
func testMaildrop(t *testing.T, cfg string) *maildrop.Dir {
	t.Helper()
	queueDir := filepath.Join(filepath.Dir(cfg), "queue")
	must(t, os.Mkdir(queueDir, 0o700))
	d, _, err := maildrop.Setup(filepath.Join(queueDir, "maildrop"))
	must(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

// onlyDropped is the one file of the invoking user in the maildrop d.
func onlyDropped(t *testing.T, d *maildrop.Dir) (string, *maildrop.File) {
	t.Helper()
	u, err := d.OpenUser(uint32(os.Geteuid()))
	must(t, err)
	defer u.Close()
	l, err := u.List(10, 0)
	if err != nil || len(l.Ready) != 1 {
		t.Fatalf("maildrop %+v, %v", l, err)
	}
	f, err := u.Read(l.Ready[0], 1<<20)
	must(t, err)
	return l.Ready[0], f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestSendmailSplitsOnTooManyRecipients: past the server's recipient
// limit (452 4.5.3 for a recipient after others were taken) sendmail
// sends the message to those taken and the rest in the next
// transactions, exit 0, each recipient once; when a later transaction
// fails for now, only the recipients not served yet go to the maildrop
// (as an explicit list, the prepared message), exit 0.
func TestSendmailSplitsOnTooManyRecipients(t *testing.T) {
	t.Parallel()
	f, cfg := startFakeLocal(t, map[string]string{"RCPTMAX": "2"})
	code, _, stderr := runCmd(t, "Subject: x\n\nb\n", "sendmail", "-config", cfg, "a", "b", "c", "d", "e")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	cmds, _ := f.seen()
	var got []string
	for _, c := range cmds {
		if strings.HasPrefix(c, "RCPT TO:") {
			got = append(got, c)
		}
	}
	if n := len(f.datas); n != 3 || strings.Join(got, ",") != "RCPT TO:<a@host.example>,RCPT TO:<b@host.example>,RCPT TO:<c@host.example>,RCPT TO:<c@host.example>,RCPT TO:<d@host.example>,RCPT TO:<e@host.example>,RCPT TO:<e@host.example>" {
		t.Errorf("%d messages, recipients %q", n, got)
	}

	f, cfg = startFakeLocal(t, map[string]string{"RCPTMAX": "2", "END#2": "451 4.3.0 try later"})
	queueDir := filepath.Join(filepath.Dir(cfg), "queue")
	must(t, os.Mkdir(queueDir, 0o700))
	d, _, err := maildrop.Setup(filepath.Join(queueDir, "maildrop"))
	must(t, err)
	defer d.Close()
	code, _, stderr = runCmd(t, "Subject: x\n\nb\n", "sendmail", "-config", cfg, "-f", "cron@example.org", "a", "b", "c", "d", "e")
	if code != 0 {
		t.Fatalf("a later transaction refused for now: exit %d, stderr %q", code, stderr)
	}
	u, err := d.OpenUser(uint32(os.Geteuid()))
	must(t, err)
	defer u.Close()
	l, _ := u.List(10, 0)
	if len(l.Ready) != 1 {
		t.Fatalf("maildrop %+v", l)
	}
	mf, err := u.Read(l.Ready[0], 1<<20)
	must(t, err)
	if !reflect.DeepEqual(mf.Envelope.Recipients, []string{"c@host.example", "d@host.example", "e@host.example"}) || mf.Envelope.Extract ||
		mf.Envelope.From != "cron@example.org" || string(mf.Message) != f.datas[0] {
		t.Errorf("the rest in the maildrop: %+v\n%q\nfirst sent:\n%q", mf.Envelope, mf.Message, f.datas[0])
	}
}

// TestSendmailPathsFile: a user who cannot read the configuration finds
// the socket and the maildrop in the file the server wrote beside its
// socket, so a non-default queue.dir works; a paths file others may
// write is not trusted (the defaults then).
func TestSendmailPathsFile(t *testing.T) {
	f, cfg := startFakeLocal(t, nil)
	dir := filepath.Dir(cfg)
	sock := filepath.Join(dir, "s.sock")
	must(t, os.Chmod(dir, 0o755))
	must(t, writePathsFile(sock, filepath.Join(dir, "queue"), 2048, "mx.example.org"))
	pf := filepath.Join(dir, "sendmail.paths")
	if fi, err := os.Stat(pf); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("paths file %v %v, want 0644", fi, err)
	}
	old := sendmailPathsFile
	sendmailPathsFile = pf
	defer func() { sendmailPathsFile = old }()
	unreadable := filepath.Join(dir, "no-such-config.toml")
	if code, _, stderr := runCmd(t, "Subject: x\n\nb\n", "sendmail", "-config", unreadable, "root"); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if _, data := f.seen(); !strings.Contains(data, "Subject: x") {
		t.Errorf("the server of the paths file got %q", data)
	}
	got, err := sendmailPaths(unreadable, pf)
	if err != nil || got != (sendmailDest{sock, filepath.Join(dir, "queue", "maildrop"), 2048, "mx.example.org"}) {
		t.Errorf("paths %+v, %v", got, err)
	}
	must(t, os.Chmod(pf, 0o666))
	if got, _ := sendmailPaths(unreadable, pf); got.socket != DefaultLocalSocket {
		t.Errorf("a paths file anyone may write is trusted: %+v", got)
	}
}

// TestSendmailTooManyRecipients: -t with more recipients in the header
// than maxSendmailRecipients is refused, exit 65, before anything is
// sent or left in the maildrop: one message is not split into hundreds
// of transactions (nor of bounces).
func TestSendmailTooManyRecipients(t *testing.T) {
	t.Parallel()
	f, cfg := startFakeLocal(t, nil)
	queueDir := filepath.Join(filepath.Dir(cfg), "queue")
	must(t, os.Mkdir(queueDir, 0o700))
	d, _, err := maildrop.Setup(filepath.Join(queueDir, "maildrop"))
	must(t, err)
	defer d.Close()
	var to strings.Builder
	to.WriteString("To: a0@example.org")
	for i := 1; i <= maxSendmailRecipients; i++ {
		fmt.Fprintf(&to, ",\n a%d@example.org", i)
	}
	msg := to.String() + "\nSubject: x\n\nb\n"
	for _, noSock := range []bool{false, true} {
		if noSock {
			os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
		}
		code, _, stderr := runCmd(t, msg, "sendmail", "-config", cfg, "-t", "-i")
		if code != exDataErr || !strings.Contains(stderr, fmt.Sprintf("more than %d recipients", maxSendmailRecipients)) || !strings.Contains(stderr, "mail NOT sent") {
			t.Errorf("socket gone %v: exit %d, stderr %.300q", noSock, code, stderr)
		}
	}
	if cmds, _ := f.seen(); len(cmds) != 0 {
		t.Errorf("commands sent: %.300q", cmds)
	}
	if u, err := d.OpenUser(uint32(os.Geteuid())); err == nil {
		l, _ := u.List(10, 0)
		u.Close()
		if len(l.Ready) != 0 {
			t.Errorf("left in the maildrop: %v", l.Ready)
		}
	}
	// At the limit: sent.
	_, cfg = startFakeLocal(t, nil)
	msg = strings.Replace(msg, "To: a0@example.org,\n", "To: ", 1)
	if code, _, stderr := runCmd(t, msg, "sendmail", "-config", cfg, "-t", "-i"); code != 0 {
		t.Errorf("%d recipients: exit %d, stderr %.300q", maxSendmailRecipients, code, stderr)
	}
}

// TestSendmailExtractNoRecipient: -t with a header that names nobody (and
// no argument) is exit 64, "no recipient addresses found in the message
// header", as Postfix's sendmail exits before postdrop, also when the
// server is stopped: nothing is left in the maildrop, where the message
// could only be set aside, the caller told it was sent.
func TestSendmailExtractNoRecipient(t *testing.T) {
	t.Parallel()
	f, cfg := startFakeLocal(t, nil)
	d := testMaildrop(t, cfg)
	msg := "Subject: report\nBcc:\n\nbody\n"
	for _, noSock := range []bool{false, true} {
		if noSock {
			os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
		}
		code, _, stderr := runCmd(t, msg, "sendmail", "-config", cfg, "-t", "-i")
		if code != exUsage || !strings.Contains(stderr, "no recipient addresses found in the message header") || !strings.Contains(stderr, "mail NOT sent") {
			t.Errorf("socket gone %v: exit %d, stderr %q", noSock, code, stderr)
		}
	}
	if cmds, _ := f.seen(); len(cmds) != 0 {
		t.Errorf("commands sent: %q", cmds)
	}
	if u, err := d.OpenUser(uint32(os.Geteuid())); err == nil {
		l, _ := u.List(10, 0)
		u.Close()
		if len(l.Ready) != 0 {
			t.Errorf("left in the maildrop: %v", l.Ready)
		}
	}
}

// TestSendmailDropTooLarge: with the server stopped, a message larger
// than message_size_limit is refused, exit 69 as the server's 552 is,
// instead of going to the maildrop, where the pickup could only set it
// aside (the sender told nothing, the caller told it was sent); Postfix's
// sendmail cannot write it either (its queue file is limited to
// message_size_limit). A smaller one goes to the maildrop.
func TestSendmailDropTooLarge(t *testing.T) {
	t.Parallel()
	_, cfg := startFakeLocal(t, nil)
	b, err := os.ReadFile(cfg)
	must(t, err)
	must(t, os.WriteFile(cfg, append([]byte("message_size_limit = 2048\n"), b...), 0o600))
	os.Remove(filepath.Join(filepath.Dir(cfg), "s.sock"))
	d := testMaildrop(t, cfg)
	big := "Subject: big\n\n" + strings.Repeat("x", 3000) + "\n"
	code, _, stderr := runCmd(t, big, "sendmail", "-config", cfg, "root")
	if code != exUnavailable || !strings.Contains(stderr, "message_size_limit 2048") || !strings.Contains(stderr, "mail NOT sent") {
		t.Errorf("too large: exit %d, stderr %q", code, stderr)
	}
	if u, err := d.OpenUser(uint32(os.Geteuid())); err == nil {
		l, _ := u.List(10, 0)
		u.Close()
		if len(l.Ready) != 0 {
			t.Errorf("left in the maildrop: %v", l.Ready)
		}
	}
	if code, _, stderr := runCmd(t, "Subject: small\n\nb\n", "sendmail", "-config", cfg, "root"); code != 0 {
		t.Fatalf("small: exit %d, stderr %q", code, stderr)
	}
	if _, f := onlyDropped(t, d); !strings.Contains(string(f.Message), "Subject: small") {
		t.Errorf("dropped %q", f.Message)
	}
}
