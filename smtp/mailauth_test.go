package smtp

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"sync"
	"testing"

	"courriel/delivery"
	"courriel/delivery/queue"
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
		{"quarantine", AuthVerdict{Fields: []byte("Authentication-Results: mx.test; dmarc=fail\r\n"), Action: AuthQuarantine}, "250 ", "Junk"},
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

// TestMailAuthInboundAuthenticated: on port 25 a client that logged in
// (the seed offers AUTH there, and tells users to try 25 or 587) is signed
// as on submission, its added fields included, and not checked; its remote
// copies keep their sender (no SRS: its own mail, not a forward). One that
// did not log in is checked, never signed.
func TestMailAuthInboundAuthenticated(t *testing.T) {
	t.Parallel()
	ck := &fakeChecker{v: AuthVerdict{Fields: []byte("Authentication-Results: mx.test; spf=pass\r\n")}}
	q := &fwdQueue{}
	e := newEnv(t, Inbound, func(o *Options) {
		o.AuthChecker, o.Signer, o.SRS = ck, fakeSigner{}, fakeSRS{}
		q.fakeQueue = o.Queue.(*fakeQueue)
		o.Queue = q
	})
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN "+plainAuth("alice", "secret"), "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("From: alice@mailbox.example\r\nSubject: x\r\n\r\nhi\r\n.", "250 ")
	got := e.deliv.all()
	if len(got) != 1 || !strings.HasPrefix(string(got[0].msg.Header), "DKIM-Signature: fake\r\nReceived: ") {
		t.Fatalf("not signed as stored: %+v", got)
	}
	c.cmd("MAIL FROM:<alice@mailbox.example>", "250 ")
	c.cmd("RCPT TO:<someone@foreign.example>", "250 ")
	c.cmd("DATA", "354 ")
	c.cmd("From: alice@mailbox.example\r\nSubject: out\r\n\r\nhi\r\n.", "250 ")
	out := q.remote()
	if len(out) != 1 || !strings.HasPrefix(string(out[0].data), "DKIM-Signature: fake\r\n") {
		t.Fatalf("relayed copy not signed: %+v", out)
	}
	if len(q.rfrom) != 0 {
		t.Errorf("an authenticated client's mail left from an SRS sender: %q", q.rfrom)
	}
	if len(ck.in) != 0 {
		t.Error("an authenticated client's mail was checked")
	}
	// Without a login: checked, not signed.
	sendInbound(t, e, "250 ")
	got = e.deliv.all()
	if h := string(got[len(got)-1].msg.Header); strings.Contains(h, "DKIM-Signature") || !strings.Contains(h, "spf=pass") {
		t.Errorf("port 25 without a login:\n%s", h)
	}
}

// fakeSRS writes "srs=<local>=<domain>@mx.test" and takes back only
// those.
type fakeSRS struct{}

func (fakeSRS) Forward(sender string) (string, error) {
	return "srs=" + strings.Replace(sender, "@", "=", 1) + "@mx.test", nil
}
func (fakeSRS) IsSRS(addr string) bool { return strings.HasPrefix(addr, "srs=") }
func (fakeSRS) Reverse(addr string) (string, error) {
	orig, ok := strings.CutSuffix(strings.TrimPrefix(addr, "srs="), "@mx.test")
	if !ok || strings.Contains(orig, "forged") {
		return "", io.ErrUnexpectedEOF
	}
	return strings.Replace(orig, "=", "@", 1), nil
}

// fwdQueue records AcceptForward's senders beside the fake queue.
type fwdQueue struct {
	*fakeQueue
	mu          sync.Mutex
	from, rfrom []string
}

func (q *fwdQueue) AcceptForward(ctx context.Context, msgID, from, remoteFrom string, remote []string, local []delivery.Recipient, data delivery.Content, opts ...queue.Option) (string, []error, error) {
	q.mu.Lock()
	q.from, q.rfrom = append(q.from, from), append(q.rfrom, remoteFrom)
	q.mu.Unlock()
	return q.fakeQueue.Accept(ctx, msgID, from, remote, local, data, opts...)
}

// TestSRSHooks: port 25's forwards leave from the SRS sender (from <> when
// SPF failed, unchanged for <>), local copies keep the original; RCPT of
// an SRS address is relayed to the original sender for any client, a
// forged one gets 550 5.1.1; submission never rewrites.
func TestSRSHooks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		kind      Kind
		from      string
		spfFailed bool
		wantRF    string // "-": AcceptForward not used
	}{
		{"forward", Inbound, "x@remote.example", false, "srs=x=remote.example@mx.test"},
		{"SPF failed", Inbound, "x@remote.example", true, ""},
		{"null sender", Inbound, "", false, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var q *fwdQueue
			e := newEnv(t, tc.kind, func(o *Options) {
				q = &fwdQueue{fakeQueue: o.Queue.(*fakeQueue)}
				o.Queue, o.SRS = q, fakeSRS{}
				o.AuthChecker = &fakeChecker{v: AuthVerdict{SPFFailed: tc.spfFailed}}
			})
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<"+tc.from+">", "250 ")
			c.cmd("RCPT TO:<team@hosted.example>", "250 ")
			c.cmd("DATA", "354 ")
			c.cmd("Subject: x\r\n\r\nhi\r\n.", "250 ")
			if tc.wantRF == "-" {
				if len(q.rfrom) != 0 {
					t.Errorf("rewritten: %v", q.rfrom)
				}
				return
			}
			if len(q.rfrom) != 1 || q.rfrom[0] != tc.wantRF || q.from[0] != tc.from {
				t.Errorf("AcceptForward(from %v, remote from %v), want remote from %q", q.from, q.rfrom, tc.wantRF)
			}
		})
	}
	t.Run("bounce to an SRS address", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, Inbound, func(o *Options) { o.SRS = fakeSRS{} })
		c := e.dialRaw(t)
		c.cmd("EHLO client.example", "250 ")
		c.cmd("MAIL FROM:<>", "250 ")
		c.cmd("RCPT TO:<srs=forged=remote.example@mx.test>", "550 5.1.1 ")
		c.cmd("RCPT TO:<srs=x=remote.example@mx.test> NOTIFY=NEVER ORCPT=rfc822;srs+3Dx+3Dremote.example@mx.test", "250 ")
		c.cmd("DATA", "354 ")
		c.cmd("Subject: bounce\r\n\r\nhi\r\n.", "250 ")
		if r := e.queue.remote(); len(r) != 1 || r[0].from != "" || len(r[0].rcpts) != 1 || r[0].rcpts[0] != "x@remote.example" {
			t.Errorf("queued %+v", r)
		} else if d := r[0].env.Recipients[0]; d.Notify != "NEVER" || d.ORcpt != "rfc822;srs=x=remote.example@mx.test" {
			t.Errorf("DSN parameters of the reversed SRS copy: NOTIFY %q ORCPT %q", d.Notify, d.ORcpt)
		}
	})
}

// TestARCSealHook: a message port 25 forwards outside gets the ARC set on
// top of what is queued, sealed over the message as queued (our trace and
// results included); a message for local mailboxes only is not sealed.
func TestARCSealHook(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, rcpt string
		sealed     bool
	}{
		{"forward", "team@hosted.example", true},
		{"local only", "bob@mailbox.example", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sealedOver []byte
			v := AuthVerdict{Fields: []byte("Authentication-Results: mx.test; spf=pass\r\n")}
			v.Seal = func(msg io.ReaderAt, size int64) ([]byte, error) {
				sealedOver, _ = io.ReadAll(io.NewSectionReader(msg, 0, size))
				return []byte("ARC-Seal: i=1; fake\r\n"), nil
			}
			e := newEnv(t, Inbound, func(o *Options) { o.AuthChecker = &fakeChecker{v: v} })
			c := e.dialRaw(t)
			c.cmd("EHLO client.example", "250 ")
			c.cmd("MAIL FROM:<x@remote.example>", "250 ")
			c.cmd("RCPT TO:<"+tc.rcpt+">", "250 ")
			c.cmd("DATA", "354 ")
			c.cmd("Subject: x\r\n\r\nhi\r\n.", "250 ")
			var stored string
			if q := e.queue.all(); len(q) == 1 {
				stored = string(q[0].data)
			} else if d := e.deliv.all(); len(d) == 1 {
				stored = string(d[0].msg.Header) + string(d[0].body)
			} else {
				t.Fatalf("queued %d, delivered %d", len(q), len(d))
			}
			if !tc.sealed {
				if sealedOver != nil || strings.Contains(stored, "ARC-Seal") {
					t.Errorf("sealed a local message:\n%s", stored)
				}
				return
			}
			if !strings.HasPrefix(stored, "ARC-Seal: i=1; fake\r\nReceived: ") || stored[len("ARC-Seal: i=1; fake\r\n"):] != string(sealedOver) {
				t.Errorf("stored:\n%s\nsealed over:\n%s", stored, sealedOver)
			}
			if !strings.Contains(string(sealedOver), "Authentication-Results: mx.test; spf=pass\r\nSubject: x") {
				t.Errorf("sealed without our results:\n%s", sealedOver)
			}
		})
	}
}

// TestSignedUTF8BodyWithoutContentType: a UTF-8 body sent on 587 without
// MIME fields is made 7-bit before its signature, and what a reader
// decodes from the stored copy is the text sent, not us-ascii mojibake.
func TestSignedUTF8BodyWithoutContentType(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Submission, func(o *Options) { o.Signer = fakeSigner{} })
	c := e.dialRaw(t)
	c.cmd("EHLO client.example", "250 ")
	c.startTLS(e.ctls)
	c.cmd("EHLO client.example", "250 ")
	c.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235 ")
	c.cmd("MAIL FROM:<alice@mailbox.example> BODY=8BITMIME", "250 ")
	c.cmd("RCPT TO:<bob@mailbox.example>", "250 ")
	c.cmd("DATA", "354 ")
	const text = "Ça marche, déjà vu.\r\n"
	c.cmd("From: alice@mailbox.example\r\nSubject: x\r\n\r\n"+text+".", "250 ")
	got := e.deliv.all()
	if len(got) != 1 {
		t.Fatalf("%d messages stored", len(got))
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, got[0].msg.Header...), got[0].body...)))
	if err != nil {
		t.Fatal(err)
	}
	ct, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || ct != "text/plain" || params["charset"] != "utf-8" {
		t.Errorf("Content-Type %q: the reader would take the text for us-ascii", m.Header.Get("Content-Type"))
	}
	if cte := m.Header.Get("Content-Transfer-Encoding"); cte != "quoted-printable" {
		t.Fatalf("Content-Transfer-Encoding %q, want quoted-printable (signed 7-bit)", cte)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil || string(body) != text {
		t.Errorf("decoded body %q (%v), want %q", body, err, text)
	}
}
