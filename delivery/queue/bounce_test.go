package queue

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gosmtp "github.com/emersion/go-smtp"
)

// report is a DSN taken apart with go-message.
type report struct {
	header   message.Header
	types    []string // part content types in order
	human    string
	perMsg   textproto.MIMEHeader
	rcpts    []textproto.MIMEHeader
	original string
}

func parseDSN(t *testing.T, raw []byte) *report {
	t.Helper()
	for _, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 998 {
			t.Errorf("DSN line longer than 998 octets: %.80q…", line)
		}
	}
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("go-message cannot read the DSN: %v\n%s", err, raw)
	}
	mt, params, _ := e.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("Content-Type = %s %v", mt, params)
	}
	r := &report{header: e.Header}
	mr := e.MultipartReader()
	if mr == nil {
		t.Fatal("DSN is not multipart")
	}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		ct, _, _ := p.Header.ContentType()
		r.types = append(r.types, ct)
		body, err := io.ReadAll(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch ct {
		case "text/plain":
			r.human = string(body)
		case "message/delivery-status", "message/global-delivery-status":
			tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(body)))
			if r.perMsg, err = tp.ReadMIMEHeader(); err != nil {
				t.Fatalf("per-message fields: %v\n%s", err, body)
			}
			for {
				h, err := tp.ReadMIMEHeader()
				if len(h) > 0 {
					r.rcpts = append(r.rcpts, h)
				}
				if err != nil {
					break
				}
			}
		case "text/rfc822-headers", "message/rfc822", "message/global-headers", "message/global":
			r.original = string(body)
		}
	}
	// The parts of an RFC 3464 DSN, or of an RFC 6533 one (about mail that
	// needs UTF-8); the last of each is the original when returned whole.
	want := []string{"text/plain", "message/delivery-status", "text/rfc822-headers", "message/rfc822"}
	if len(r.types) > 1 && r.types[1] == "message/global-delivery-status" {
		want = []string{"text/plain", "message/global-delivery-status", "message/global-headers", "message/global"}
	}
	if len(r.types) == 3 && r.types[2] == want[3] {
		want[2] = want[3] // RET=FULL
	}
	want = want[:3]
	if strings.Join(r.types, ",") != strings.Join(want, ",") {
		t.Fatalf("parts = %v, want %v", r.types, want)
	}
	return r
}

func TestPermanentFailureSendsDSN(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		if to == "nobody@remote.test" {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "<nobody@remote.test>: user unknown")
		}
		return nil
	}})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	id := h.enqueue("alice@local.test", "nobody@remote.test", "bob@remote.test")
	raw := recv(t, b.got, "the DSN")
	h.waitUntil("the queue is empty", h.empty)

	r := parseDSN(t, raw)
	if got := r.header.Get("From"); got != "Mail Delivery System <MAILER-DAEMON@mta.test>" {
		t.Errorf("From = %q", got)
	}
	if got := r.header.Get("To"); got != "<alice@local.test>" {
		t.Errorf("To = %q", got)
	}
	if got := r.header.Get("Auto-Submitted"); got != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", got)
	}
	if got := r.perMsg.Get("Reporting-Mta"); got != "dns; mta.test" {
		t.Errorf("Reporting-MTA = %q", got)
	}
	if got := r.perMsg.Get("Arrival-Date"); got != clock.Now().Format(time.RFC1123Z) {
		t.Errorf("Arrival-Date = %q", got)
	}
	if len(r.rcpts) != 1 {
		t.Fatalf("%d recipient blocks, want 1 (only the failed one): %v", len(r.rcpts), r.rcpts)
	}
	rc := r.rcpts[0]
	for field, want := range map[string]string{
		"Final-Recipient": "rfc822; nobody@remote.test",
		"Action":          "failed",
		"Status":          "5.1.1",
		"Remote-Mta":      "dns; 127.0.0.1",
		"Diagnostic-Code": "smtp; 550 5.1.1 <nobody@remote.test>: user unknown",
	} {
		if got := rc.Get(field); got != want {
			t.Errorf("%s = %q, want %q", field, got, want)
		}
	}
	if !strings.Contains(r.original, "Subject: queue test") || strings.Contains(r.original, "Hello.") {
		t.Errorf("original headers part = %q, want the headers and not the body", r.original)
	}
	if !strings.Contains(r.human, "<nobody@remote.test>: host 127.0.0.1 said: 550 5.1.1") {
		t.Errorf("human part = %q", r.human)
	}
	if got := s.transactions(); len(got) != 1 || got[0].rcpts[0] != "bob@remote.test" {
		t.Errorf("transactions = %+v, want bob's only", got)
	}
	if !strings.Contains(h.logs.String(), "queue_id="+id+" to=<nobody@remote.test>") ||
		!strings.Contains(h.logs.String(), `dsn=5.1.1 status="bounced (550 5.1.1`) {
		t.Errorf("no bounced log line:\n%s", h.logs.String())
	}
}

func TestDefaultBounceIsQueuedFromTheNullSender(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		if to == "nobody@remote.test" {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "user unknown")
		}
		return nil
	}})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	h := start(t, o)
	h.enqueue("alice@local.test", "nobody@remote.test")
	dsn := recv(t, s.delivs, "the DSN")
	h.waitUntil("the queue is empty", h.empty)
	if dsn.from != "" || len(dsn.rcpts) != 1 || dsn.rcpts[0] != "alice@local.test" {
		t.Fatalf("DSN envelope = %q → %q, want <> → alice", dsn.from, dsn.rcpts)
	}
	parseDSN(t, []byte(dsn.data))
}

func TestNullSenderNeverBounced(t *testing.T) {
	t.Parallel()
	h, b, s := startRefused(t)
	h.enqueue("", "nobody@remote.test")
	h.waitUntil("the queue is empty", h.empty)
	if n := b.count(); n != 0 {
		t.Errorf("%d bounces for a null-sender message, want none", n)
	}
	if conns, _ := s.counts(); conns != 1 {
		t.Errorf("%d connections: the failure should be final after one", conns)
	}
}

func TestExpiryBounces(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(451, gosmtp.EnhancedCode{4, 2, 0}, "mailbox busy")
	}})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	o.MaxLifetime = 2 * time.Hour
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	created := clock.Now()
	// Retry at each scheduled time; the last one is due when the lifetime
	// ends, and its failure bounces.
	for i := 0; ; i++ {
		m, _, err := h.q.Show(id)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil || i == 30 {
			t.Fatalf("after %d retries: %v", i, err)
		}
		if next := m.Recipients[0].NextAttempt; next.After(created.Add(o.MaxLifetime)) {
			t.Fatalf("retry scheduled at %v, after the lifetime", next)
		}
		clock.Advance(m.Recipients[0].NextAttempt.Sub(clock.Now()))
		h.q.wake()
		h.waitJob()
	}
	raw := recv(t, b.got, "the expiry DSN")
	r := parseDSN(t, raw)
	rc := r.rcpts[0]
	if rc.Get("Action") != "failed" || rc.Get("Status") != "4.4.7" ||
		rc.Get("Diagnostic-Code") != "smtp; 451 4.2.0 mailbox busy" {
		t.Errorf("recipient block = %v", rc)
	}
	h.waitUntil("the queue is empty", h.empty)
	if clock.Now().Sub(created) < o.MaxLifetime {
		t.Errorf("bounced before the lifetime ended")
	}
	if _, n := s.counts(); n != 0 {
		t.Errorf("%d transactions", n)
	}
}

func TestDelayWarningOnce(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(451, gosmtp.EnhancedCode{4, 2, 0}, "mailbox busy")
	}})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	o.DelayWarning = 4 * time.Hour
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	id := h.enqueue("alice@local.test", "bob@remote.test")
	h.waitJob()
	for range 8 { // 8 retries at ≥ 300s each, past 4h with the 4000s cap
		clock.Advance(4000 * time.Second)
		h.q.wake()
		h.waitJob()
	}
	if n := b.count(); n != 1 {
		t.Fatalf("%d delay warnings, want exactly 1", n)
	}
	r := parseDSN(t, <-b.got)
	if r.header.Get("Subject") != "Delayed Mail (still being retried)" || r.rcpts[0].Get("Action") != "delayed" ||
		r.rcpts[0].Get("Status") != "4.2.0" || r.rcpts[0].Get("Will-Retry-Until") == "" {
		t.Errorf("warning = subject %q, block %v", r.header.Get("Subject"), r.rcpts[0])
	}
	if !strings.Contains(r.human, "THIS IS A WARNING ONLY") {
		t.Errorf("human part = %q", r.human)
	}
	m, _, err := h.q.Show(id)
	if err != nil || !m.DelayWarned || m.Recipients[0].State != StatePending {
		t.Errorf("after the warning: %+v, %v", m, err)
	}
}

func TestDSNHostileReplyAndHeaders(t *testing.T) {
	t.Parallel()
	q := &Queue{o: Options{Hostname: "mta.test", MaxLifetime: time.Hour}}
	long := strings.Repeat("x", 3000)
	m := &Message{ID: strings.Repeat("A", idLen), From: "alice@local.test", Created: time.Unix(0, 0),
		Recipients: []Recipient{{
			Addr: "bob@remote.test", State: StateFailed, Code: 550, Status: "5.9.9x",
			Reply: printable("550 bad\r\nInjected: header\x00"+long, maxReplyText), RemoteMTA: "mx.remote.test",
		}}}
	headers := []byte("Subject: hi\r\nX-Boundary: =_courriel_\r\n")
	r := parseDSN(t, q.buildDSN(m, dsnFailed, m.Recipients, returned{data: headers}, time.Unix(100, 0)))
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Status") != "5.0.0" {
		t.Errorf("recipient blocks = %v, want one with the invalid status replaced by 5.0.0", r.rcpts)
	}
	if r.rcpts[0].Get("Injected") != "" {
		t.Error("a reply injected a DSN field")
	}
}
