package imap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

const wantIDLine = `* ID ("name" "courriel")`

func TestIDImplicitTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.addr, true)

	caps := strings.Join(r.cmd("c0", "CAPABILITY"), "\n")
	if !strings.Contains(caps, "AUTH=PLAIN") || strings.Contains(caps, "STARTTLS") || strings.Contains(caps, "LOGINDISABLED") {
		t.Errorf("implicit TLS CAPABILITY = %q", caps)
	}
	// RFC 2971 §3.2: ID is advertised.
	if !slices.Contains(strings.Fields(strings.SplitN(caps, "\n", 2)[0]), "ID") {
		t.Errorf("CAPABILITY does not advertise ID: %q", caps)
	}
	tests := []struct {
		tag, args string
		want      []string
	}{
		{"a1", "ID NIL", []string{wantIDLine, "a1 OK ID completed"}},
		{"a2", "id nil", []string{wantIDLine, "a2 OK ID completed"}},
		{"a3", `ID ("name" "Thunderbird" "version" "115.0" "os" NIL)`, []string{wantIDLine, "a3 OK ID completed"}},
		{"a4", `ID ("name" "with \"quote\" and \\")`, []string{wantIDLine, "a4 OK ID completed"}},
		{"a5", "ID garbage", []string{"a5 BAD Invalid ID arguments"}},
		{"a6", "ID", []string{"a6 BAD Invalid ID arguments"}},
		{"a7", `ID ("name")`, []string{"a7 BAD Invalid ID arguments"}},
		{"a8", `ID ("unterminated)`, []string{"a8 BAD Invalid ID arguments"}},
		{"a9", "NOOP", []string{"a9 OK NOOP completed"}},
	}
	for _, tc := range tests {
		got := r.cmd(tc.tag, tc.args)
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s %s: got %q, want %q", tc.tag, tc.args, got, tc.want)
		}
	}

	// Pipelined with other commands: answers in order.
	r.send("p1 NOOP\r\np2 ID NIL\r\np3 CAPABILITY\r\n")
	got := append(r.until("p1"), r.until("p2")...)
	got = append(got, r.until("p3")...)
	if len(got) != 5 || got[0] != "p1 OK NOOP completed" || got[1] != wantIDLine || got[2] != "p2 OK ID completed" ||
		!strings.HasPrefix(got[3], "* CAPABILITY ") || got[4] != "p3 OK CAPABILITY completed" {
		t.Errorf("pipelined: %q", got)
	}

	// A command line split across writes.
	r.send("s1 I")
	time.Sleep(50 * time.Millisecond)
	r.send("D N")
	time.Sleep(50 * time.Millisecond)
	r.send("IL\r\n")
	if got := r.until("s1"); strings.Join(got, "\n") != wantIDLine+"\ns1 OK ID completed" {
		t.Errorf("split ID: %q", got)
	}

	if got := last(r.cmd("l", "LOGIN alice secret")); !strings.HasPrefix(got, "l OK") {
		t.Fatalf("LOGIN: %q", got)
	}
	if got := r.cmd("i1", "ID NIL"); strings.Join(got, "\n") != wantIDLine+"\ni1 OK ID completed" {
		t.Errorf("ID after login: %q", got)
	}

	// A literal that contains ID command lines is message data, untouched.
	msg := "From: a@example.org\r\nSubject: id\r\n\r\nx ID NIL\r\ny ID (\"name\" \"z\")\r\n"
	r.send(fmt.Sprintf("ap APPEND INBOX {%d}\r\n", len(msg)))
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND continuation: %q", l)
	}
	r.send(msg + "\r\n")
	if got := last(r.until("ap")); !strings.HasPrefix(got, "ap OK") {
		t.Fatalf("APPEND: %q", got)
	}
	// The same with a non-synchronising literal (RFC 7888 LITERAL-).
	r.send(fmt.Sprintf("aq APPEND INBOX {%d+}\r\n%s\r\n", len(msg), msg))
	if got := last(r.until("aq")); !strings.HasPrefix(got, "aq OK") {
		t.Fatalf("APPEND literal-: %q", got)
	}
	if got := last(r.cmd("se", "SELECT INBOX")); !strings.HasPrefix(got, "se OK") {
		t.Fatalf("SELECT: %q", got)
	}
	for _, seq := range []string{"1", "2"} {
		f := r.cmd("f"+seq, "FETCH "+seq+" BODY.PEEK[]")
		body := strings.Join(f, "\n")
		if !strings.Contains(body, "x ID NIL") || !strings.Contains(body, `y ID ("name" "z")`) || strings.Contains(body, wantIDLine) {
			t.Errorf("message %s after APPEND: %q", seq, f)
		}
	}

	// IDLE, DONE, then ID again.
	r.send("id IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("IDLE: %q", l)
	}
	r.send("DONE\r\n")
	if got := last(r.until("id")); !strings.HasPrefix(got, "id OK") {
		t.Fatalf("IDLE end: %q", got)
	}
	if got := r.cmd("i2", "ID NIL"); strings.Join(got, "\n") != wantIDLine+"\ni2 OK ID completed" {
		t.Errorf("ID after IDLE: %q", got)
	}
	// A long line that is not ID is passed through untouched.
	long := "UID FETCH " + strings.Repeat("1,", 6000) + "1 (FLAGS)"
	if got := last(r.cmd("lo", long)); !strings.HasPrefix(got, "lo OK") {
		t.Errorf("long command: %q", got)
	}
	if got := last(r.cmd("z", "LOGOUT")); !strings.HasPrefix(got, "z OK") {
		t.Errorf("LOGOUT: %q", got)
	}
}

func TestIDPlainBeforeSTARTTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := dialRaw(t, e.plain, false)
	if got := r.cmd("a", "ID NIL"); strings.Join(got, "\n") != wantIDLine+"\na OK ID completed" {
		t.Errorf("ID on plain connection: %q", got)
	}
	caps := strings.Join(r.cmd("b", "CAPABILITY"), "\n")
	if !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") {
		t.Errorf("plain CAPABILITY = %q", caps)
	}
}

// TestIDImaplib drives ID with Python's imaplib, before and after login.
func TestIDImaplib(t *testing.T) {
	t.Parallel()
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 missing")
		}
		t.Skip("python3 missing")
	}
	e := newEnv(t)
	host, port, _ := strings.Cut(e.addr, ":")
	script := `
import imaplib, ssl, sys
imaplib.Commands['ID'] = ('NONAUTH', 'AUTH', 'SELECTED')
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
M = imaplib.IMAP4_SSL(sys.argv[1], int(sys.argv[2]), ssl_context=ctx, timeout=10)
typ, data = M.xatom('ID', 'NIL')
print("pre", typ, M.response('ID'))
M.login('alice', 'secret')
M.select('INBOX')
typ, data = M._simple_command('ID', '("name" "imaplib" "version" "3")')
print("post", typ, M.response('ID'))
typ, data = M.noop()
print("noop", typ)
M.logout()
`
	ctx, cancel := contextTimeout(t, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", script, host, port).CombinedOutput()
	if err != nil {
		t.Fatalf("imaplib: %v\n%s", err, out)
	}
	want := []string{
		`pre OK ('ID', [b'("name" "courriel")'])`,
		`post OK ('ID', [b'("name" "courriel")'])`,
		`noop OK`,
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("imaplib output lacks %q:\n%s", w, out)
		}
	}
}

func contextTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
