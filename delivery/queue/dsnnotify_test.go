package queue

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// acceptDSN is Accept from sender@local.test with DSN parameters.
func (h *harness) acceptDSN(remote []string, local []delivery.Recipient, data string, opt Option) string {
	h.t.Helper()
	id, _, err := h.q.Accept(context.Background(), "", "sender@local.test", remote, local, strings.NewReader(data), opt)
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// TestSuccessDSNForLocalCopies: NOTIFY=SUCCESS on local copies gives one
// success DSN for the message (not one per recipient), Action delivered,
// with the client's ORCPT and ENVID; a copy without NOTIFY=SUCCESS is not
// in it; the DSN comes from the entry written before Accept returned.
func TestSuccessDSNForLocalCopies(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	h.acceptDSN(nil, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob"), ls.rcpt("carol")}, testMessage,
		WithDSN(RetHdrs, "env 1", map[string]RcptDSN{
			"alice@local.test": {Notify: "SUCCESS,FAILURE", ORcpt: "rfc822;first@orig.test"},
			"bob@local.test":   {Notify: "SUCCESS"},
			"carol@local.test": {Notify: "FAILURE"},
		}, nil))
	r := parseDSN(t, recv(t, b.got, "the success DSN"))
	h.waitUntil("the queue is empty", h.empty)
	if n := b.count(); n != 1 {
		t.Fatalf("%d DSNs, want one for both successes", n)
	}
	if s := r.header.Get("Subject"); s != "Successful Mail Delivery Report" {
		t.Errorf("Subject %q", s)
	}
	if v := r.perMsg.Get("Original-Envelope-Id"); v != "env 1" {
		t.Errorf("Original-Envelope-Id %q", v)
	}
	if len(r.rcpts) != 2 {
		t.Fatalf("%d recipient blocks, want alice and bob: %v", len(r.rcpts), r.rcpts)
	}
	want := []map[string]string{
		{"Final-Recipient": "rfc822; alice@local.test", "Original-Recipient": "rfc822; first@orig.test", "Action": "delivered", "Status": "2.0.0"},
		// no ORCPT: the address the client named (the alias) as Postfix
		{"Final-Recipient": "rfc822; bob@local.test", "Original-Recipient": "rfc822; team@local.test", "Action": "delivered", "Status": "2.0.0"},
	}
	for i, w := range want {
		for k, v := range w {
			if got := r.rcpts[i].Get(k); got != v {
				t.Errorf("recipient %d: %s = %q, want %q", i, k, got, v)
			}
		}
	}
	if strings.Contains(r.original, "Hello.") || !strings.Contains(r.original, "Subject: queue test") {
		t.Errorf("a success DSN returns the header only:\n%s", r.original)
	}
}

// TestSuccessDSNExpanded: an expansion is reported "expanded" although its
// copies no longer ask for success, and nothing else is reported.
func TestSuccessDSNExpanded(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	h.acceptDSN(nil, []delivery.Recipient{ls.rcpt("alice"), ls.rcpt("bob")}, testMessage,
		WithDSN("", "", map[string]RcptDSN{"alice@local.test": {Notify: "NEVER"}, "bob@local.test": {Notify: "NEVER"}},
			[]Expansion{{Addr: "team@local.test", DSN: RcptDSN{Notify: "SUCCESS", ORcpt: "rfc822;team@local.test"}}}))
	r := parseDSN(t, recv(t, b.got, "the success DSN"))
	h.waitUntil("the queue is empty", h.empty)
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Action") != "expanded" || r.rcpts[0].Get("Final-Recipient") != "rfc822; team@local.test" {
		t.Fatalf("recipient blocks %v, want team expanded", r.rcpts)
	}
	if r.perMsg.Get("Original-Envelope-Id") != "" {
		t.Errorf("an Original-Envelope-Id without ENVID")
	}
}

// TestDSNRelay: to a next hop that offers DSN the parameters go on (absent
// ORCPT: rfc822;<the address named>, as Postfix) and no success DSN comes
// from here; to one that does not, NOTIFY=SUCCESS gets "relayed".
func TestDSNRelay(t *testing.T) {
	t.Parallel()
	for _, offers := range []bool{true, false} {
		s := newSink(t, sinkOptions{dsn: offers})
		o := baseOptions(t, t.TempDir(), newClock())
		o.Routes = map[string]string{"*": s.addr}
		o.Dialer = nil
		b := newBounces()
		o.Bounce = b.fn
		h := start(t, o)
		h.acceptDSN([]string{"a@remote.test", "b@remote.test"}, nil, testMessage,
			WithDSN(RetFull, "E+1", map[string]RcptDSN{"a@remote.test": {Notify: "SUCCESS,DELAY", ORcpt: "rfc822;x+y@orig.test"}}, nil))
		got := recv(t, s.delivs, "the relayed copy")
		h.waitUntil("the queue is empty", h.empty)
		if !offers {
			if got.ret != "" || got.envid != "" || strings.Join(got.notify, "") != "" || strings.Join(got.orcpt, "") != "" {
				t.Errorf("DSN parameters to a next hop without DSN: %+v", got)
			}
			r := parseDSN(t, recv(t, b.got, "the relayed DSN"))
			if len(r.rcpts) != 1 || r.rcpts[0].Get("Action") != "relayed" || r.rcpts[0].Get("Final-Recipient") != "rfc822; a@remote.test" ||
				r.rcpts[0].Get("Original-Recipient") != "rfc822; x+y@orig.test" || r.rcpts[0].Get("Remote-Mta") == "" {
				t.Errorf("relayed DSN: %v", r.rcpts)
			}
			continue
		}
		if got.ret != "FULL" || got.envid != "E+1" {
			t.Errorf("MAIL RET %q ENVID %q, want FULL and E+1", got.ret, got.envid)
		}
		want := map[string][2]string{"a@remote.test": {"SUCCESS,DELAY", "rfc822;x+y@orig.test"}, "b@remote.test": {"", "rfc822;b@remote.test"}}
		for i, rc := range got.rcpts {
			if w := want[rc]; got.notify[i] != w[0] || got.orcpt[i] != w[1] {
				t.Errorf("RCPT %s: NOTIFY %q ORCPT %q, want %q", rc, got.notify[i], got.orcpt[i], w)
			}
		}
		if n := b.count(); n != 0 {
			t.Errorf("%d DSNs: the next hop took NOTIFY=SUCCESS, it reports", n)
		}
	}
}

// TestDSNFailureAsNotifyAndRet: NOTIFY=NEVER and NOTIFY=SUCCESS bounce
// nothing; the others bounce, in one DSN, that returns the header with
// RET=HDRS (no body) and the whole message with RET=FULL.
func TestDSNFailureAsNotifyAndRet(t *testing.T) {
	t.Parallel()
	for _, ret := range []string{RetHdrs, RetFull} {
		h, b, _ := startRefused(t)
		h.acceptDSN([]string{"never@remote.test", "ok@remote.test", "fail@remote.test", "plain@remote.test"}, nil, testMessage,
			WithDSN(ret, "", map[string]RcptDSN{
				"never@remote.test": {Notify: "NEVER"},
				"ok@remote.test":    {Notify: "SUCCESS,DELAY"},
				"fail@remote.test":  {Notify: "FAILURE", ORcpt: "rfc822;orig@x.test"},
			}, nil))
		r := parseDSN(t, recv(t, b.got, "the bounce"))
		h.waitUntil("the queue is empty", h.empty)
		if n := b.count(); n != 1 {
			t.Errorf("%s: %d DSNs, want 1", ret, n)
		}
		var finals []string
		for _, rc := range r.rcpts {
			finals = append(finals, rc.Get("Final-Recipient")+" "+rc.Get("Action"))
		}
		if strings.Join(finals, ",") != "rfc822; fail@remote.test failed,rfc822; plain@remote.test failed" {
			t.Errorf("%s: bounced %q, want fail and plain only", ret, finals)
		}
		if r.rcpts[0].Get("Original-Recipient") != "rfc822; orig@x.test" {
			t.Errorf("%s: Original-Recipient %q", ret, r.rcpts[0].Get("Original-Recipient"))
		}
		wantType := map[string]string{RetHdrs: "text/rfc822-headers", RetFull: "message/rfc822"}[ret]
		if r.types[2] != wantType {
			t.Errorf("%s: third part %s, want %s", ret, r.types[2], wantType)
		}
		hasBody := strings.Contains(r.original, "Hello.")
		if ret == RetHdrs && hasBody || ret == RetFull && !hasBody {
			t.Errorf("%s: returned:\n%s", ret, r.original)
		}
		if !strings.Contains(r.original, "Subject: queue test") {
			t.Errorf("%s: the header is not returned:\n%s", ret, r.original)
		}
	}
}

// TestDSNRetFull8BitIn7Bits: a bounce returning an 8-bit message whole
// returns it in 7 bits, the text the same once decoded, so that the DSN
// signed afterwards needs no conversion on its way.
func TestDSNRetFull8BitIn7Bits(t *testing.T) {
	t.Parallel()
	h, b, _ := startRefused(t)
	msg := "From: a@local.test\r\nTo: x@remote.test\r\nSubject: 8-bit\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 cr\xc3\xa8me\r\n"
	h.acceptDSN([]string{"x@remote.test"}, nil, msg, WithDSN(RetFull, "", nil, nil))
	report := recv(t, b.got, "the bounce")
	if bytes.ContainsFunc(report, func(r rune) bool { return r >= 0x80 }) {
		t.Errorf("the DSN holds 8-bit octets:\n%s", report)
	}
	r := parseDSN(t, report)
	if r.types[2] != "message/rfc822" || !strings.Contains(r.original, "caf=C3=A9 cr=C3=A8me") || !strings.Contains(r.original, "Content-Transfer-Encoding: quoted-printable") {
		t.Errorf("returned %s:\n%s", r.types[2], r.original)
	}
	h.waitUntil("the queue is empty", h.empty)
}

// TestDSNRetFullTooLarge: RET=FULL of a message over the bound returns its
// header only.
func TestDSNRetFullTooLarge(t *testing.T) {
	t.Parallel()
	big := testMessage + strings.Repeat("0123456789abcdef\r\n", maxDSNHeaders/18+1)
	m := &Message{ID: strings.Repeat("A", idLen), From: "a@b.test", Ret: RetFull, Size: int64(len(big))}
	f := writeTemp(t, big)
	got, err := returnedContent(f, m, dsnFailed)
	if err != nil || got.full || bytes.Contains(got.data, []byte("0123456789abcdef")) {
		t.Errorf("returned full=%v, %d octets, err %v: want the header only", got.full, len(got.data), err)
	}
	m.Size = int64(len(testMessage))
	f = writeTemp(t, testMessage)
	if got, _ := returnedContent(f, m, dsnDelayed); got.full {
		t.Error("a delay warning returns the whole message")
	}
}

// TestDelayWarningAsNotify: a delay warning only for the pending
// recipients whose NOTIFY is absent or has DELAY.
func TestDelayWarningAsNotify(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(int, string) error {
		return smtpErr(451, gosmtp.EnhancedCode{4, 2, 0}, "mailbox busy")
	}})
	clock := newClock()
	o := baseOptions(t, t.TempDir(), clock)
	o.Routes = map[string]string{"*": s.addr}
	o.Dialer = nil
	o.DelayWarning = time.Hour
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	h.acceptDSN([]string{"plain@remote.test", "delay@remote.test", "failure@remote.test"}, nil, testMessage,
		WithDSN("", "", map[string]RcptDSN{"delay@remote.test": {Notify: "DELAY"}, "failure@remote.test": {Notify: "FAILURE"}}, nil))
	h.waitJob()
	clock.Advance(2 * time.Hour)
	h.q.Flush()
	r := parseDSN(t, recv(t, b.got, "the delay warning"))
	var finals []string
	for _, rc := range r.rcpts {
		finals = append(finals, rc.Get("Final-Recipient")+" "+rc.Get("Action"))
	}
	if strings.Join(finals, ",") != "rfc822; plain@remote.test delayed,rfc822; delay@remote.test delayed" {
		t.Errorf("warned %q, want plain and delay", finals)
	}
}

// TestEnvelopeDSNFields: an envelope written before DSN loads; the new
// fields survive a round trip; bad values are refused as corrupt.
func TestEnvelopeDSNFields(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("A", idLen)
	old := `{"v":1,"id":"` + id + `","from":"a@b.test","created":"2025-01-01T00:00:00Z","size":10,` +
		`"rcpts":[{"addr":"c@d.test","state":"failed","notified":false}]}`
	m, err := decodeEnvelope(id, []byte(old), 10)
	if err != nil {
		t.Fatalf("an envelope from before DSN: %v", err)
	}
	if m.Ret != "" || m.EnvID != "" || m.Recipients[0].Notify != "" || !notifies(m.Recipients[0].Notify, NotifyFailure) {
		t.Errorf("DSN fields of an old envelope: %+v", m)
	}
	WithDSN(RetHdrs, "e", map[string]RcptDSN{"c@d.test": {Notify: "SUCCESS", ORcpt: "rfc822;x@y"}},
		[]Expansion{{Addr: "l@d.test", DSN: RcptDSN{Notify: "SUCCESS"}}})(m)
	b, err := encodeEnvelope(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeEnvelope(id, b, 10)
	if err != nil {
		t.Fatal(err)
	}
	if back.Ret != RetHdrs || back.EnvID != "e" || back.Recipients[0].ORcpt != "rfc822;x@y" || len(back.Expanded) != 1 {
		t.Errorf("round trip: %+v", back)
	}
	for _, bad := range []string{`"ret":"PARTIAL",`, `"envid":"a\r\nb",`,
		`"expanded":[{"addr":"l@d.test","state":"pending","action":"expanded"}],`} {
		j := strings.Replace(old, `"size":10,`, `"size":10,`+bad, 1)
		if _, err := decodeEnvelope(id, []byte(j), 10); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	for _, bad := range []string{`"notify":"NEVER,SUCCESS"`, `"orcpt":"x@y"`, `"action":"sent"`} {
		j := strings.Replace(old, `"notified":false`, bad, 1)
		if _, err := decodeEnvelope(id, []byte(j), 10); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestCanonicalNotify(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"never": "NEVER", "Delay,success": "SUCCESS,DELAY", "FAILURE,DELAY,SUCCESS": "SUCCESS,FAILURE,DELAY",
		"": "", "NEVER,DELAY": "", "SUCCESS,SUCCESS": "", "SUCCESS,": "", ",": "", "NONE": "",
	} {
		if got := CanonicalNotify(in); got != want {
			t.Errorf("CanonicalNotify(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"SUCCESS": "NEVER", "SUCCESS,DELAY": "DELAY", "FAILURE": "FAILURE", "": ""} {
		if got := WithoutSuccess(in); got != want {
			t.Errorf("WithoutSuccess(%q) = %q, want %q", in, got, want)
		}
	}
}

// writeTemp is a file holding s, open for reading.
func writeTemp(t *testing.T, s string) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "msg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNoSuccessDSNForTheNullSender: a message from <> (a DSN itself) gets
// no success DSN, whatever its NOTIFY says (RFC 3461 §6.2; RFC 5321 §6.1).
func TestNoSuccessDSNForTheNullSender(t *testing.T) {
	t.Parallel()
	ls := newLocalStore(t)
	o := baseOptions(t, t.TempDir(), newClock())
	o.Local = ls
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	_, _, err := h.q.Accept(context.Background(), "", "", nil, []delivery.Recipient{ls.rcpt("alice")}, strings.NewReader(testMessage),
		WithDSN("", "", map[string]RcptDSN{"alice@local.test": {Notify: "SUCCESS"}}, []Expansion{{Addr: "team@local.test", DSN: RcptDSN{Notify: "SUCCESS"}}}))
	if err != nil {
		t.Fatal(err)
	}
	h.waitUntil("the queue is empty", h.empty)
	if n := b.count(); n != 0 {
		t.Errorf("%d DSNs for a null-sender message", n)
	}
	if !strings.Contains(h.logs.String(), "no notification for the null sender") {
		t.Errorf("the success was not considered:\n%s", h.logs.String())
	}
}

// TestBuildDSNFields: the fields of each kind of DSN, per message and per
// recipient, and what each returns of the original.
func TestBuildDSNFields(t *testing.T) {
	t.Parallel()
	q := &Queue{o: Options{Hostname: "mta.test", MaxLifetime: time.Hour}}
	header := []byte("Subject: hi\r\n")
	whole := []byte("Subject: hi\r\n\r\nthe body\r\n")
	for _, tc := range []struct {
		name    string
		kind    dsnKind
		envid   string
		r       Recipient
		ret     returned
		want    map[string]string // per-recipient fields; "" must be absent
		subject string
		part3   string
	}{
		{name: "failed, ORCPT, RET=HDRS", kind: dsnFailed, envid: "E1",
			r:   Recipient{Addr: "a@x.test", State: StateFailed, ORcpt: "rfc822;orig@y.test", Code: 550, Status: "5.1.1", Reply: "550 5.1.1 unknown", RemoteMTA: "mx.x.test"},
			ret: returned{data: header}, subject: "Undelivered Mail Returned to Sender", part3: "text/rfc822-headers",
			want: map[string]string{"Action": "failed", "Status": "5.1.1", "Original-Recipient": "rfc822; orig@y.test",
				"Final-Recipient": "rfc822; a@x.test", "Remote-Mta": "dns; mx.x.test", "Diagnostic-Code": "smtp; 550 5.1.1 unknown"}},
		{name: "failed, RET=FULL", kind: dsnFailed,
			r:   Recipient{Addr: "a@x.test", State: StateFailed, Status: "5.0.0", Reply: "refused"},
			ret: returned{data: whole, full: true}, subject: "Undelivered Mail Returned to Sender", part3: "message/rfc822",
			want: map[string]string{"Action": "failed", "Original-Recipient": ""}},
		{name: "delivered here, the alias named", kind: dsnSuccess, envid: "E 2",
			r:   Recipient{Addr: "b@x.test", State: StateDelivered, Action: ActionDelivered, Status: "2.0.0", Reply: "delivered to maildir", Local: &LocalTarget{OrigTo: "team@x.test"}},
			ret: returned{data: header}, subject: "Successful Mail Delivery Report", part3: "text/rfc822-headers",
			want: map[string]string{"Action": "delivered", "Status": "2.0.0", "Original-Recipient": "rfc822; team@x.test", "Diagnostic-Code": "X-Courriel; delivered to maildir"}},
		{name: "relayed", kind: dsnSuccess,
			r:   Recipient{Addr: "c@y.test", State: StateDelivered, Action: ActionRelayed, Code: 250, Status: "2.0.0", Reply: "250 2.0.0 Ok", RemoteMTA: "mx.y.test"},
			ret: returned{data: header}, subject: "Successful Mail Delivery Report", part3: "text/rfc822-headers",
			want: map[string]string{"Action": "relayed", "Remote-Mta": "dns; mx.y.test"}},
		{name: "expanded, a bad status replaced", kind: dsnSuccess,
			r:   Recipient{Addr: "team@x.test", State: StateDelivered, Action: ActionExpanded, Status: "5.0.0", Reply: "alias expanded"},
			ret: returned{data: header}, subject: "Successful Mail Delivery Report", part3: "text/rfc822-headers",
			want: map[string]string{"Action": "expanded", "Status": "2.0.0"}},
		{name: "delayed", kind: dsnDelayed,
			r:   Recipient{Addr: "d@y.test", State: StatePending, Status: "4.2.0", Reply: "busy"},
			ret: returned{data: header}, subject: "Delayed Mail (still being retried)", part3: "text/rfc822-headers",
			want: map[string]string{"Action": "delayed", "Status": "4.2.0"}},
	} {
		m := &Message{ID: strings.Repeat("A", idLen), From: "s@x.test", Created: time.Unix(0, 0), EnvID: tc.envid, Recipients: []Recipient{tc.r}}
		r := parseDSN(t, q.buildDSN(m, tc.kind, m.Recipients, tc.ret, time.Unix(100, 0)))
		if got := r.header.Get("Subject"); got != tc.subject {
			t.Errorf("%s: Subject %q", tc.name, got)
		}
		if got := r.perMsg.Get("Original-Envelope-Id"); got != tc.envid {
			t.Errorf("%s: Original-Envelope-Id %q, want %q", tc.name, got, tc.envid)
		}
		if len(r.rcpts) != 1 {
			t.Fatalf("%s: %d recipient blocks", tc.name, len(r.rcpts))
		}
		for k, v := range tc.want {
			if got := r.rcpts[0].Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", tc.name, k, got, v)
			}
		}
		if r.types[2] != tc.part3 || strings.Contains(r.original, "the body") != tc.ret.full {
			t.Errorf("%s: third part %s:\n%s", tc.name, r.types[2], r.original)
		}
	}
}

// TestDSNQueuedOnceAcrossACrash: a DSN queued, then a crash before the
// message records it as sent: the next try finds that DSN in the spool
// (its id is the same at every try) and queues no second one.
func TestDSNQueuedOnceAcrossACrash(t *testing.T) {
	t.Parallel()
	o := baseOptions(t, t.TempDir(), newClock())
	q, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	data, err := os.CreateTemp(t.TempDir(), "data")
	if err != nil {
		t.Fatal(err)
	}
	data.WriteString(testMessage)
	now := o.Now()
	m := &Message{ID: newID(now), From: "sender@local.test", Created: now, Recipients: []Recipient{
		{Addr: "x@remote.test", State: StateFailed, Reply: "550 5.1.1 no such user", Status: "5.1.1"},
		{Addr: "y@remote.test", State: StateFailed, Reply: "550 5.1.1 no such user", Status: "5.1.1"},
	}}
	for try := range 2 { // the second is the try after the crash: m was not updated
		if err := q.sendDSN(context.Background(), m, dsnFailed, []int{0}, dsnID(m, dsnFailed, []int{0}), data, now); err != nil {
			t.Fatalf("try %d: %v", try, err)
		}
	}
	if l, _ := q.List(); len(l) != 1 {
		t.Fatalf("%d DSNs queued for one failure, want 1: %+v", len(l), l)
	}
	// Another DSN of the message (another recipient) is another message.
	if err := q.sendDSN(context.Background(), m, dsnFailed, []int{1}, dsnID(m, dsnFailed, []int{1}), data, now); err != nil {
		t.Fatal(err)
	}
	if l, _ := q.List(); len(l) != 2 {
		t.Fatalf("%d DSNs queued for two failures told apart, want 2", len(l))
	}
}
