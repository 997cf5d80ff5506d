package smtp

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
)

// fakeChecker answers one verdict and records what it was given.
type fakeChecker struct {
	v  AuthVerdict
	mu sync.Mutex
	in []AuthInput
}

func (f *fakeChecker) Check(_ context.Context, in AuthInput, msg io.ReaderAt, size int64) (AuthVerdict, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = append(f.in, in)
	return f.v, nil
}

type fakeSigner struct{}

func (fakeSigner) Sign(msg io.ReaderAt, size int64) ([]byte, error) {
	b, _ := io.ReadAll(io.NewSectionReader(msg, 0, size))
	// A "signature" that shows what was signed: the added Message-ID must
	// be in it.
	if !strings.Contains(string(b), "Message-ID: <") {
		return []byte("X-Signed: without the added fields\r\n"), nil
	}
	return []byte("DKIM-Signature: fake\r\n"), nil
}

const authMsg = "Authentication-Results: mx.test; dkim=pass\r\nFrom: a@remote.example\r\nSubject: x\r\n\r\nbody\r\n"

func sendInbound(t *testing.T, e *env, want string) {
	t.Helper()
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("MAIL FROM:<a@remote.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd(authMsg+".", want)
}

// TestMailAuthInbound: the checker's verdict decides port 25's reply and
// the stored copy: its fields on top, the message's header replaced when
// it says so, local copies to .Junk on quarantine, nothing stored on
// reject (550) or defer (451).
func TestMailAuthInbound(t *testing.T) {
	t.Parallel()
	stripped := "From: a@remote.example\r\nSubject: x\r\n\r\n"
	for _, tc := range []struct {
		name   string
		v      AuthVerdict
		want   string
		folder string
	}{
		{"accept", AuthVerdict{Fields: []byte("Authentication-Results: mx.test; spf=pass\r\n"),
			Header: []byte(stripped), HeaderEnd: int64(strings.Index(authMsg, "\r\n\r\n") + 4)}, "250 ", ""},
		{"quarantine", AuthVerdict{Fields: []byte("Authentication-Results: mx.test; dmarc=fail\r\n"), Action: AuthQuarantine}, "250 ", ".Junk"},
		{"reject", AuthVerdict{Action: AuthReject, Reason: "DMARC policy of remote.example\x00"}, "550 5.7.1 ", ""},
		{"defer", AuthVerdict{Action: AuthDefer, Reason: "DNS"}, "451 4.7.5 ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ck := &fakeChecker{v: tc.v}
			e := newEnv(t, Inbound, func(o *Options) { o.AuthChecker = ck; o.Signer = fakeSigner{} })
			sendInbound(t, e, tc.want)
			got := e.deliv.all()
			if tc.want != "250 " {
				if len(got) != 0 {
					t.Fatalf("stored after %s", tc.want)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%d deliveries", len(got))
			}
			h := string(got[0].msg.Header)
			if !strings.HasPrefix(h, "Received: ") || !strings.HasSuffix(h, string(tc.v.Fields)) || strings.Contains(h, "DKIM-Signature") {
				t.Errorf("trace header:\n%s", h)
			}
			body := string(got[0].body)
			if tc.v.Header != nil && body != stripped+"body\r\n" {
				t.Errorf("body not replaced:\n%s", body)
			}
			if tc.v.Header == nil && body != authMsg {
				t.Errorf("body changed:\n%s", body)
			}
			if f := got[0].rcpts[0].Folder; f != tc.folder {
				t.Errorf("folder %q, want %q", f, tc.folder)
			}
			if in := ck.in[0]; in.MailFrom != "a@remote.example" || in.Helo != "client.example" || !in.IP.IsLoopback() {
				t.Errorf("checker given %+v", in)
			}
		})
	}
}

// TestMailAuthSubmission: what submission accepts is signed as it will be
// stored, added fields included, and never checked.
func TestMailAuthSubmission(t *testing.T) {
	t.Parallel()
	ck := &fakeChecker{v: AuthVerdict{Action: AuthReject}}
	e := newEnv(t, Submission, func(o *Options) { o.AuthChecker = ck; o.Signer = fakeSigner{} })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("From: alice@mailbox.example\r\nSubject: x\r\n\r\nhi\r\n.", "250 ")
	got := e.deliv.all()
	if len(got) != 1 || !strings.HasPrefix(string(got[0].msg.Header), "DKIM-Signature: fake\r\nReceived: ") {
		t.Fatalf("not signed as stored: %+v", got)
	}
	if len(ck.in) != 0 {
		t.Error("submission was checked")
	}
}
