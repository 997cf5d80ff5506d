package queue

import (
	"context"
	"net"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"courriel/delivery"
)

// A remote copy an alias expanded to carries the alias: orig_to= on its
// delivery lines, as Postfix logs it, and Original-Recipient in its DSN.
func TestOrigToOfForwards(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{rcpt: func(_ int, to string) error {
		if to == "gone@remote.test" {
			return smtpErr(550, gosmtp.EnhancedCode{5, 1, 1}, "user unknown")
		}
		return nil
	}})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	_, _, err := h.q.Accept(context.Background(), "M1", "sender@local.test", []string{"ext@remote.test", "gone@remote.test", "direct@remote.test"}, nil,
		delivery.MemContent(testMessage), WithOrigTo(map[string]string{"ext@remote.test": "alias@local.test", "gone@remote.test": "alias@local.test"}))
	if err != nil {
		t.Fatal(err)
	}
	raw := recv(t, b.got, "the DSN")
	h.waitUntil("the queue is empty", h.empty)
	logs := h.logs.String()
	for _, want := range []string{
		`to=<ext@remote.test> relay=127.0.0.1`,
		`status="sent (250`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	for _, line := range strings.Split(logs, "\n") {
		switch {
		case strings.Contains(line, "to=<ext@remote.test>"), strings.Contains(line, "to=<gone@remote.test>"):
			if !strings.Contains(line, "orig_to=<alias@local.test>") {
				t.Errorf("a forward's line without orig_to: %s", line)
			}
		case strings.Contains(line, "to=<direct@remote.test>") && strings.Contains(line, "orig_to"):
			t.Errorf("orig_to on a direct recipient's line: %s", line)
		}
	}
	r := parseDSN(t, raw)
	if len(r.rcpts) != 1 || r.rcpts[0].Get("Original-Recipient") != "rfc822; alias@local.test" || r.rcpts[0].Get("Final-Recipient") != "rfc822; gone@remote.test" {
		t.Errorf("DSN recipient blocks: %v", r.rcpts)
	}
}

// A message that needs SMTPUTF8 (asked for, UTF-8 in its header) leaves
// with it, or bounces where the next hop does not offer it (RFC 6531 §3.2);
// one that does not need it leaves without.
func TestSMTPUTF8Kept(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		offered, need bool
		wantUTF8      bool
		wantBounce    bool
	}{
		{"needed and offered", true, true, true, false},
		{"needed, not offered", false, true, false, true},
		{"not needed", true, false, false, false},
		{"not needed, not offered", false, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, sinkOptions{noUTF8: !tc.offered})
			o := baseOptions(t, t.TempDir(), newClock())
			o.Routes = map[string]string{"remote.test": s.addr}
			o.Dialer = nil
			b := newBounces()
			o.Bounce = b.fn
			h := start(t, o)
			var opts []Option
			if tc.need {
				opts = append(opts, WithSMTPUTF8())
			}
			msg := "From: José <jose@local.test>\r\nSubject: café\r\n\r\nbody\r\n"
			if _, _, err := h.q.Accept(context.Background(), "M1", "jose@local.test", []string{"bob@remote.test"}, nil, delivery.MemContent(msg), opts...); err != nil {
				t.Fatal(err)
			}
			if tc.wantBounce {
				raw := recv(t, b.got, "the DSN")
				if r := parseDSN(t, raw); len(r.rcpts) != 1 || r.rcpts[0].Get("Status") != "5.6.7" {
					t.Errorf("DSN: %v", r.rcpts)
				}
				return
			}
			got := recv(t, s.delivs, "the delivery")
			if got.utf8 != tc.wantUTF8 {
				t.Errorf("MAIL SMTPUTF8 = %v, want %v", got.utf8, tc.wantUTF8)
			}
		})
	}
}

// WithRemoteHeader's fields go on top of the copies that leave.
func TestRemoteHeader(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Routes = map[string]string{"remote.test": s.addr}
	o.Dialer = nil
	h := start(t, o)
	if _, _, err := h.q.Accept(context.Background(), "M1", "sender@local.test", []string{"ext@remote.test"}, nil,
		delivery.MemContent(testMessage), WithRemoteHeader([]byte("Delivered-To: alias@local.test\r\n"))); err != nil {
		t.Fatal(err)
	}
	got := recv(t, s.delivs, "the delivery")
	if !strings.HasPrefix(got.data, "Delivered-To: alias@local.test\r\n"+testMessage[:20]) {
		t.Errorf("remote copy begins %.80q", got.data)
	}
}

// A domain in U-labels is looked up in the DNS by its A-labels (Go's
// resolver refuses a non-ASCII name without asking: the mail bounced as
// "domain not found"); the RCPT keeps the address as the sender wrote it.
// A route or TLS policy the admin wrote in either form applies to both.
func TestIDNDomainLookedUpByALabel(t *testing.T) {
	t.Parallel()
	s := newSink(t, sinkOptions{})
	o := baseOptions(t, t.TempDir(), newClock())
	o.Resolver = &fakeResolver{
		mx:  map[string][]*net.MX{"xn--bcher-kva.test": {{Host: "mx.xn--bcher-kva.test.", Pref: 10}}},
		ips: map[string][]string{"mx.xn--bcher-kva.test": {"127.0.0.1"}},
	}
	o.Dialer = dialTo(s.addr)
	b := newBounces()
	o.Bounce = b.fn
	h := start(t, o)
	msg := "From: <jose@local.test>\r\nSubject: idn\r\n\r\nbody\r\n"
	if _, _, err := h.q.Accept(context.Background(), "M1", "jose@local.test", []string{"user@BÜCHER.test"}, nil, delivery.MemContent(msg), WithSMTPUTF8()); err != nil {
		t.Fatal(err)
	}
	got := recv(t, s.delivs, "the delivery")
	if len(got.rcpts) != 1 || got.rcpts[0] != "user@BÜCHER.test" || !got.utf8 {
		t.Errorf("RCPT %q, SMTPUTF8 %v; want the address as written, with SMTPUTF8", got.rcpts, got.utf8)
	}
	h.waitUntil("the queue is empty", h.empty)
	if !strings.Contains(h.logs.String(), "relay=mx.xn--bcher-kva.test[127.0.0.1]:25") {
		t.Errorf("log lacks the A-label MX host:\n%s", h.logs.String())
	}

	o2 := baseOptions(t, t.TempDir(), newClock())
	o2.Routes = map[string]string{"Bücher.test": "10.0.0.1:2525"}
	o2.TLSPolicies = map[string]Policy{"xn--caf-dma.test": PolicyEncrypt}
	q, err := Open(o2)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, d := range []string{"bücher.test", "xn--bcher-kva.test", "BÜCHER.TEST."} {
		if rt := q.routeFor(normalizeDomain(d)); rt.key != "route:[10.0.0.1]:2525" {
			t.Errorf("route for %s: %+v", d, rt)
		}
	}
	if _, ok := q.o.TLSPolicies[normalizeDomain("café.test")]; !ok {
		t.Errorf("the policy for xn--caf-dma.test does not apply to café.test: %v", q.o.TLSPolicies)
	}
}
